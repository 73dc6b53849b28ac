//! The CNI protocol layer of the `aws-cni` plugin: network configuration and `CNI_*`
//! environment parsing with upstream defaults, the host veth naming rule, ADD results in
//! upstream's shape per CNI version (and reading them back on DEL), and CNI error documents.
//! Pure: the plugin binary and the dataplane build on it.

pub mod conflist;
pub mod error;
pub mod names;
pub mod netconf;
pub mod result;

pub use error::{CniError, Code};
pub use names::{dummy_name, host_veth_name};
pub use netconf::{CniEnv, Command, NetConf, SUPPORTED_VERSIONS};
pub use result::{PodIp, PrevIp, add_result, parse_prev};

/// The VERSION answer.
pub fn version_result(cni_version: &str) -> serde_json::Value {
    serde_json::json!({ "cniVersion": cni_version, "supportedVersions": SUPPORTED_VERSIONS })
}
