//! The upstream checkpoint format (`/var/run/aws-node/ipam.json`, spec a.5): types and the
//! conversion from a datastore. Reading and writing files is the daemon's job.

use serde::{Deserialize, Serialize};

use crate::datastore::Datastore;
use crate::key::PodMetadata;

/// The only version string upstream accepts.
pub const CHECKPOINT_VERSION: &str = "vpc-cni-ipam/1";

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointData {
    /// Must be [`CHECKPOINT_VERSION`].
    pub version: String,
    /// Assigned addresses only.
    pub allocations: Vec<CheckpointEntry>,
}

/// One assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    /// CNI network name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// Sandbox container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Pod interface.
    #[serde(rename = "ifName")]
    pub if_name: String,
    /// IPv4 address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipv4: String,
    /// IPv6 address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ipv6: String,
    /// Unix nanoseconds.
    #[serde(rename = "allocationTimestamp", default)]
    pub allocation_timestamp: i64,
    /// Pod identity.
    #[serde(default, skip_serializing_if = "is_empty_meta")]
    pub metadata: PodMetadata,
}

fn is_empty_meta(m: &PodMetadata) -> bool {
    *m == PodMetadata::default()
}

impl CheckpointData {
    /// The checkpoint of a datastore whose [`crate::Time`] epoch is the Unix epoch.
    pub fn from_datastore(ds: &Datastore) -> Self {
        let mut allocations: Vec<CheckpointEntry> = ds
            .assignments()
            .map(|(key, ip, info)| CheckpointEntry {
                network_name: key.network_name.clone(),
                container_id: key.container_id.clone(),
                if_name: key.if_name.clone(),
                ipv4: ip.to_string(),
                ipv6: String::new(),
                allocation_timestamp: info.assigned_at.as_millis() as i64 * 1_000_000,
                metadata: info.metadata.clone(),
            })
            .collect();
        // Addresses kept aside for live pods stay in the file, so a second restart keeps them.
        allocations.extend(ds.held().map(|(ip, h)| CheckpointEntry {
            network_name: h.key.network_name.clone(),
            container_id: h.key.container_id.clone(),
            if_name: h.key.if_name.clone(),
            ipv4: ip.to_string(),
            ipv6: String::new(),
            allocation_timestamp: h.since.as_millis() as i64 * 1_000_000,
            metadata: h.metadata.clone(),
        }));
        if let Some(v6) = ds.v6() {
            allocations.extend(v6.assignments().map(|(key, ip, info)| CheckpointEntry {
                network_name: key.network_name.clone(),
                container_id: key.container_id.clone(),
                if_name: key.if_name.clone(),
                ipv4: String::new(),
                ipv6: ip.to_string(),
                allocation_timestamp: info.assigned_at.as_millis() as i64 * 1_000_000,
                metadata: info.metadata.clone(),
            }));
        }
        allocations.sort_by(|a, b| (&a.ipv4, &a.ipv6).cmp(&(&b.ipv4, &b.ipv6)));
        CheckpointData {
            version: CHECKPOINT_VERSION.to_string(),
            allocations,
        }
    }
}
