//! EC2 instance-type network limits (ENIs, IPv4 per ENI, network cards, hypervisor, vCPUs) and
//! the EKS max-pods arithmetic built on them. Pure: the only I/O is reading a data directory.

mod builtin;
mod error;
mod maxpods;
mod suggest;
mod table;

pub use error::LimitsError;
pub use maxpods::{
    CniVersion, Formula, HOST_NETWORK_PODS, IPS_PER_PREFIX, LARGE_CAP, LARGE_CAP_VCPUS, MaxPods,
    MaxPodsOptions, SMALL_CAP, max_pods, raw_max_pods,
};
pub use suggest::near_matches;
pub use table::{
    DATA_DIR_ENV, DEFAULT_SEARCH_PATH, Hypervisor, InstanceLimits, InstanceType, LIMITS_FILE,
    LimitsTable, NetworkCard, TableSource, VCPUS_FILE,
};
