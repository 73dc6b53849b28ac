//! The simulated VPC (subnets, ENIs, instance limits, EC2 errors, throttling, latency, faults) and,
//! on top of it, the discrete-event cluster simulator. Deterministic for a given seed; time is
//! passed in.

pub mod chart;
pub mod cluster;
pub mod compare;
pub mod discovery;
pub mod error;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod subnet;
pub mod throttle;
pub mod vpc;

pub use cluster::{Cluster, SimError};
pub use error::{Ec2Error, Ec2ErrorCode};
pub use report::Report;
pub use rng::Rng;
pub use scenario::Scenario;
pub use subnet::{ReservationType, Subnet};
pub use throttle::{Ec2Action, Throttle};
pub use vpc::{
    Attachment, CallStats, ConnTrack, EniFilter, EniPage, EniStatus, Faults, ImdsInterface,
    Instance, Latency, SimEni, Vpc,
};
