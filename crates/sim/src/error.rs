//! EC2 errors with AWS's error codes, as the simulated VPC returns them.

use serde::Serialize;

/// An AWS EC2 error code the simulated VPC can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Ec2ErrorCode {
    /// No aligned /28 is free in the subnet.
    InsufficientCidrBlocks,
    /// The subnet has no free address.
    InsufficientFreeAddressesInSubnet,
    /// The ENI would exceed its address limit.
    PrivateIpAddressLimitExceeded,
    /// The instance would exceed its ENI limit.
    AttachmentLimitExceeded,
    /// The account-wide token bucket of the action is empty.
    RequestLimitExceeded,
    /// Deleting an attached ENI.
    #[serde(rename = "InvalidNetworkInterface.InUse")]
    InvalidNetworkInterfaceInUse,
    /// Unknown ENI.
    #[serde(rename = "InvalidNetworkInterfaceID.NotFound")]
    InvalidNetworkInterfaceIdNotFound,
    /// Unknown attachment.
    #[serde(rename = "InvalidAttachmentID.NotFound")]
    InvalidAttachmentIdNotFound,
    /// Unknown instance.
    #[serde(rename = "InvalidInstanceID.NotFound")]
    InvalidInstanceIdNotFound,
    /// Unknown subnet.
    #[serde(rename = "InvalidSubnetID.NotFound")]
    InvalidSubnetIdNotFound,
    /// Unknown security group.
    #[serde(rename = "InvalidGroup.NotFound")]
    InvalidGroupNotFound,
    /// A bad parameter (device index in use, address not on the ENI, …).
    InvalidParameterValue,
    /// Parameters that cannot go together (an ENI and an instance in different zones, …).
    InvalidParameterCombination,
    /// An injected server-side failure.
    InternalError,
    /// `UnauthorizedOperation`: the caller's IAM policy does not allow the action.
    UnauthorizedOperation,
}

impl Ec2ErrorCode {
    /// The code as AWS spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientCidrBlocks => "InsufficientCidrBlocks",
            Self::InsufficientFreeAddressesInSubnet => "InsufficientFreeAddressesInSubnet",
            Self::PrivateIpAddressLimitExceeded => "PrivateIpAddressLimitExceeded",
            Self::AttachmentLimitExceeded => "AttachmentLimitExceeded",
            Self::RequestLimitExceeded => "RequestLimitExceeded",
            Self::InvalidNetworkInterfaceInUse => "InvalidNetworkInterface.InUse",
            Self::InvalidNetworkInterfaceIdNotFound => "InvalidNetworkInterfaceID.NotFound",
            Self::InvalidAttachmentIdNotFound => "InvalidAttachmentID.NotFound",
            Self::InvalidInstanceIdNotFound => "InvalidInstanceID.NotFound",
            Self::InvalidSubnetIdNotFound => "InvalidSubnetID.NotFound",
            Self::InvalidGroupNotFound => "InvalidGroup.NotFound",
            Self::InvalidParameterValue => "InvalidParameterValue",
            Self::InvalidParameterCombination => "InvalidParameterCombination",
            Self::InternalError => "InternalError",
            Self::UnauthorizedOperation => "UnauthorizedOperation",
        }
    }

    /// Whether the error means the subnet is out of addresses (ipamd's 120 s pause).
    pub fn is_insufficient_addresses(self) -> bool {
        matches!(
            self,
            Self::InsufficientCidrBlocks | Self::InsufficientFreeAddressesInSubnet
        )
    }
}

impl std::fmt::Display for Ec2ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An EC2 error: code plus message, as the API returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Ec2Error {
    /// The AWS error code.
    pub code: Ec2ErrorCode,
    /// Human-readable message.
    pub message: String,
}

impl Ec2Error {
    /// Build an error.
    pub fn new(code: Ec2ErrorCode, message: impl Into<String>) -> Self {
        Ec2Error {
            code,
            message: message.into(),
        }
    }
}
