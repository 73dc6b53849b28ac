//! The assignment key (the CNI triple) and the pod metadata stored with an assignment.

use serde::{Deserialize, Serialize};

/// Network name upstream used for entries migrated from pre-1.12 CRI-based recovery.
pub const MIGRATED_NETWORK_NAME: &str = "_migrated-from-cri";
/// Interface name upstream used for entries migrated from CRI-based recovery.
pub const MIGRATED_IF_NAME: &str = "unknown";

/// What an address is assigned to: (network name, container ID, interface name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IpamKey {
    /// CNI network name (`aws-cni`).
    pub network_name: String,
    /// Sandbox container ID.
    pub container_id: String,
    /// Interface inside the pod (`eth0`).
    pub if_name: String,
}

impl IpamKey {
    /// Build a key.
    pub fn new(network: &str, container: &str, if_name: &str) -> Self {
        IpamKey {
            network_name: network.to_string(),
            container_id: container.to_string(),
            if_name: if_name.to_string(),
        }
    }

    /// The legacy key upstream falls back to when DEL cannot find the exact key.
    pub fn migrated(&self) -> Self {
        IpamKey::new(MIGRATED_NETWORK_NAME, &self.container_id, MIGRATED_IF_NAME)
    }
}

impl std::fmt::Display for IpamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.network_name, self.container_id, self.if_name
        )
    }
}

/// Pod identity recorded with an assignment (checkpoint `metadata`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PodMetadata {
    /// Pod namespace.
    #[serde(
        rename = "k8sPodNamespace",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub namespace: String,
    /// Pod name.
    #[serde(
        rename = "k8sPodName",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    /// Interfaces the pod has (multi-NIC); 0 means 1.
    #[serde(rename = "interfacesCount", default, skip_serializing_if = "is_zero")]
    pub interfaces_count: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}
