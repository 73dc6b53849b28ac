//! The cloud seam of the daemon: the EC2 and IMDS operations ipamd performs, as one async trait,
//! and [`SimCloud`], its implementation over the simulated VPC (the embedded default backend).
//! The real AWS implementation lives in its own crate so nothing else links the AWS SDK.

mod sim;

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

pub use sim::SimCloud;

/// A cloud failure, with the AWS error code when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CloudError {
    /// AWS error code (`InsufficientCidrBlocks`, `RequestLimitExceeded`, …) or a local kind.
    pub code: String,
    /// Message.
    pub message: String,
}

/// The AWS error codes the daemon and the backends react to, typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `InsufficientCidrBlocks`: no aligned /28 left in the subnet.
    InsufficientCidrBlocks,
    /// `InsufficientFreeAddressesInSubnet`.
    InsufficientFreeAddressesInSubnet,
    /// `PrivateIpAddressLimitExceeded`: the ENI is full.
    PrivateIpAddressLimitExceeded,
    /// `AttachmentLimitExceeded`: the instance has its maximum of ENIs.
    AttachmentLimitExceeded,
    /// `RequestLimitExceeded` or another throttling code.
    Throttled,
    /// `UnauthorizedOperation`: missing IAM permission.
    Unauthorized,
    /// `InvalidNetworkInterface.InUse`.
    InUse,
    /// Any `*.NotFound`.
    NotFound,
    /// Anything else (server errors, local failures).
    Other,
}

impl CloudError {
    /// The typed kind of the error code.
    pub fn kind(&self) -> ErrorKind {
        match self.code.as_str() {
            "InsufficientCidrBlocks" => ErrorKind::InsufficientCidrBlocks,
            "InsufficientFreeAddressesInSubnet" => ErrorKind::InsufficientFreeAddressesInSubnet,
            "PrivateIpAddressLimitExceeded" => ErrorKind::PrivateIpAddressLimitExceeded,
            "AttachmentLimitExceeded" => ErrorKind::AttachmentLimitExceeded,
            "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => ErrorKind::Throttled,
            "UnauthorizedOperation" => ErrorKind::Unauthorized,
            "InvalidNetworkInterface.InUse" => ErrorKind::InUse,
            c if c.ends_with(".NotFound") => ErrorKind::NotFound,
            _ => ErrorKind::Other,
        }
    }

    /// Whether the subnet is out of addresses (ipamd then pauses growth for 120 s).
    pub fn is_insufficient_addresses(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::InsufficientCidrBlocks | ErrorKind::InsufficientFreeAddressesInSubnet
        )
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        let cases = [
            ("InsufficientCidrBlocks", ErrorKind::InsufficientCidrBlocks),
            (
                "InsufficientFreeAddressesInSubnet",
                ErrorKind::InsufficientFreeAddressesInSubnet,
            ),
            (
                "PrivateIpAddressLimitExceeded",
                ErrorKind::PrivateIpAddressLimitExceeded,
            ),
            (
                "AttachmentLimitExceeded",
                ErrorKind::AttachmentLimitExceeded,
            ),
            ("RequestLimitExceeded", ErrorKind::Throttled),
            ("UnauthorizedOperation", ErrorKind::Unauthorized),
            ("InvalidNetworkInterface.InUse", ErrorKind::InUse),
            ("InvalidNetworkInterfaceID.NotFound", ErrorKind::NotFound),
            ("InvalidAttachmentID.NotFound", ErrorKind::NotFound),
            ("InternalError", ErrorKind::Other),
        ];
        for (code, kind) in cases {
            let e = CloudError {
                code: code.into(),
                message: String::new(),
            };
            assert_eq!(e.kind(), kind, "{code}");
            assert_eq!(
                e.is_insufficient_addresses(),
                code.starts_with("Insufficient"),
                "{code}"
            );
        }
    }
}

/// Instance facts from IMDS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceMeta {
    /// `instance-id`.
    pub instance_id: String,
    /// `instance-type`.
    pub instance_type: String,
    /// `placement/availability-zone`.
    pub availability_zone: String,
    /// Region.
    pub region: String,
    /// `mac` of the primary ENI.
    pub primary_mac: String,
    /// `local-ipv4`.
    pub primary_ip: Ipv4Addr,
    /// `vpc-ipv4-cidr-blocks`.
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// `ipv6` (the node's IPv6 address in a dual-stack subnet).
    pub ipv6: Option<Ipv6Addr>,
    /// `vpc-ipv6-cidr-blocks` of the primary ENI's VPC.
    pub vpc_ipv6_cidrs: Vec<Ipv6Net>,
}

/// An attached interface as IMDS shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interface {
    /// ENI ID.
    pub id: String,
    /// MAC.
    pub mac: String,
    /// Device number.
    pub device_number: u32,
    /// Subnet ID.
    pub subnet_id: String,
    /// Subnet CIDR.
    pub subnet_cidr: Ipv4Net,
    /// Primary private IP.
    pub primary_ip: Ipv4Addr,
    /// Secondary private IPs.
    pub secondary_ips: Vec<Ipv4Addr>,
    /// Delegated prefixes.
    pub prefixes: Vec<Ipv4Net>,
    /// `ipv6s`.
    pub ipv6s: Vec<Ipv6Addr>,
    /// `ipv6-prefix`: delegated /80s.
    pub ipv6_prefixes: Vec<Ipv6Net>,
    /// `subnet-ipv6-cidr-blocks`.
    pub subnet_ipv6_cidrs: Vec<Ipv6Net>,
}

/// Where a new ENI goes under custom networking: an ENIConfig's subnet and security groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EniPlacement {
    /// Subnet ID.
    pub subnet: String,
    /// Security group IDs (empty: the primary ENI's).
    pub security_groups: Vec<String>,
}

/// A subnet as `DescribeSubnets` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubnetFacts {
    /// Subnet ID.
    pub id: String,
    /// Its VPC.
    pub vpc_id: String,
    /// Its availability zone.
    pub zone: String,
    /// Its IPv4 block.
    pub cidr: Ipv4Net,
}

/// What EC2's tags say about the attached ENIs (spec c.7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EniClasses {
    /// Attached ENIs ipamd leaves alone: tagged `node.k8s.amazonaws.com/no_manage=true`, or
    /// without this node's tag while `MANAGE_UNTAGGED_ENI=false`. Never the primary ENI.
    pub unmanaged: Vec<String>,
    /// Managed ENIs that lacked this node's tags and were given them (`CreateTags`).
    pub tagged: Vec<String>,
    /// Trunk ENIs (`InterfaceType=trunk`, attached by the VPC resource controller for security
    /// groups for pods): they take an ENI slot and give ipamd no address.
    #[serde(default)]
    pub trunks: Vec<String>,
}

/// The EC2 + IMDS operations ipamd uses.
pub trait Cloud: Send + Sync + 'static {
    /// IMDS instance metadata.
    fn instance(&self) -> impl Future<Output = Result<InstanceMeta, CloudError>> + Send;
    /// IMDS `network/interfaces/macs/…`: attached interfaces, device order.
    fn interfaces(&self) -> impl Future<Output = Result<Vec<Interface>, CloudError>> + Send;
    /// `DescribeNetworkInterfaces` of one ENI: the secondary IPs and prefixes EC2 holds (the
    /// truth when IMDS lags or the datastore is out of sync).
    fn eni_addresses(
        &self,
        eni: &str,
    ) -> impl Future<Output = Result<(Vec<Ipv4Addr>, Vec<Ipv4Net>), CloudError>> + Send;
    /// `AssignPrivateIpAddresses` by count (IPs or prefixes).
    fn assign(
        &self,
        eni: &str,
        ips: u32,
        prefixes: u32,
    ) -> impl Future<Output = Result<(Vec<Ipv4Addr>, Vec<Ipv4Net>), CloudError>> + Send;
    /// `UnassignPrivateIpAddresses`.
    fn unassign(
        &self,
        eni: &str,
        cidrs: &[Ipv4Net],
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    /// `AssignIpv6Addresses` with `Ipv6PrefixCount` (upstream's IPv6 mode gives an ENI one /80).
    fn assign_ipv6_prefixes(
        &self,
        eni: &str,
        count: u32,
    ) -> impl Future<Output = Result<Vec<Ipv6Net>, CloudError>> + Send;
    /// `UnassignIpv6Addresses` of /80 prefixes.
    fn unassign_ipv6_prefixes(
        &self,
        eni: &str,
        prefixes: &[Ipv6Net],
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    /// Create, attach (lowest free device index) and mark DeleteOnTermination a new ENI with
    /// `ips` secondary IPs or `prefixes` prefixes; wait until it is usable. A failed attach
    /// deletes the new ENI. With a placement (custom networking) the ENI goes to that subnet with
    /// those groups (the primary ENI's when the list is empty) and no other subnet is tried.
    fn allocate_eni(
        &self,
        ips: u32,
        prefixes: u32,
        placement: Option<&EniPlacement>,
    ) -> impl Future<Output = Result<Interface, CloudError>> + Send;
    /// `DescribeSubnets` of one subnet (`InvalidSubnetID.NotFound` when there is none).
    fn subnet(&self, id: &str) -> impl Future<Output = Result<SubnetFacts, CloudError>> + Send;
    /// `DescribeSecurityGroups` of these groups: `InvalidGroup.NotFound` naming one that does
    /// not exist.
    fn check_security_groups(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<(), CloudError>> + Send;
    /// Detach and delete an ENI.
    fn free_eni(&self, eni: &str) -> impl Future<Output = Result<(), CloudError>> + Send;
    /// Read the attached ENIs' tags: name the unmanaged ones and give every managed non-trunk
    /// ENI the tags it lacks (upstream `TagENI`). A backend without EC2 tags (the simulated
    /// VPC, like upstream's IMDS-only mode) manages every ENI and tags none.
    fn manage_enis(
        &self,
        _attached: &[Interface],
    ) -> impl Future<Output = Result<EniClasses, CloudError>> + Send {
        async { Ok(EniClasses::default()) }
    }
    /// Re-read the primary ENI's security groups; when they changed, give them to `enis` and to
    /// ENIs created from now on (`ModifyNetworkInterfaceAttribute`, Groups) and return them. A
    /// backend whose ENIs keep their groups (the simulated VPC) has nothing to refresh.
    fn refresh_security_groups(
        &self,
        _enis: &[String],
    ) -> impl Future<Output = Result<Option<Vec<String>>, CloudError>> + Send {
        async { Ok(None) }
    }
    /// Of these subnets, the ones whose ENIs give no pod addresses (spec c.7: with subnet
    /// discovery, tagged `kubernetes.io/role/cni=0` or for other clusters only). A backend
    /// without subnet tags excludes none.
    fn excluded_subnets(
        &self,
        _subnets: &[String],
    ) -> impl Future<Output = Result<Vec<String>, CloudError>> + Send {
        async { Ok(Vec::new()) }
    }
    /// `DescribeInstanceTypes` for a type the limits table lacks (`None`: not available here).
    fn instance_type(
        &self,
        _name: &str,
    ) -> impl Future<Output = Result<Option<vpc_cni_limits::InstanceType>, CloudError>> + Send {
        async { Ok(None) }
    }
}
