//! The warm-pool brain of the VPC CNI, pure and sans-IO: the datastore (ENIs, addresses,
//! assignments, cooldown), the settings read from upstream env var names, and the policies that
//! turn pool state plus `now` into cloud actions. The daemon, the simulator and the planner all
//! drive this same code.

pub mod checkpoint;
pub mod datastore;
pub mod key;
pub mod policy;
pub mod settings;
pub mod time;
pub mod v6;

pub use datastore::{
    AddressInfo, Assignment, Datastore, DatastoreError, EniSpec, HOST_HELD_NETWORK, Held, Holding,
    IpStats, Released,
};
pub use key::{IpamKey, PodMetadata};
pub use policy::{
    Action, AdaptivePolicy, AssignFailure, AwsPolicy, CidrKind, Decision, Delivery, NodeState,
    Policy, PoolLimits, PoolPolicy,
};
pub use settings::{PolicyKind, Settings, SettingsError};
pub use time::Time;
pub use v6::{V6Assignment, V6Error, V6Pool};
