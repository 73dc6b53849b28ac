//! The planner: answers "what will my nodes hold" by driving the same `ipam` policy the daemon
//! runs, on an ideal cloud (no latency, no subnet limits), to a fixed point at each pod count.

mod ideal;
mod plan;
mod subnet;

pub use ideal::IdealCloud;
pub use plan::{CYCLE, EniRow, PlanError, PlanReport, PlanRequest, PlanRow, min_prefixes, plan};
pub use subnet::{AWS_RESERVED, SubnetFit, SubnetQuestion, fit};
