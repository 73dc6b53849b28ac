//! The policy a node runs, chosen by `VPC_CNI_POOL_POLICY`: one type the daemon, the simulator
//! and the planner hold, forwarding to `aws` or `adaptive`.

use std::time::Duration;

use super::{
    AdaptivePolicy, AssignFailure, AwsPolicy, Decision, Delivery, NodeState, PoolLimits, PoolPolicy,
};
use crate::datastore::Datastore;
use crate::settings::{PolicyKind, Settings};
use crate::time::Time;

/// Either policy.
#[derive(Debug, Clone)]
pub enum Policy {
    /// Upstream's warm targets.
    Aws(AwsPolicy),
    /// Sized from observed arrivals and delivery time.
    Adaptive(Box<AdaptivePolicy>),
}

impl Policy {
    /// The policy `settings.pool_policy` names.
    pub fn new(settings: Settings, limits: PoolLimits) -> Self {
        match settings.pool_policy {
            PolicyKind::Aws => Policy::Aws(AwsPolicy::new(settings, limits)),
            PolicyKind::Adaptive => {
                Policy::Adaptive(Box::new(AdaptivePolicy::new(settings, limits)))
            }
        }
    }

    /// Which one runs.
    pub fn kind(&self) -> PolicyKind {
        match self {
            Policy::Aws(_) => PolicyKind::Aws,
            Policy::Adaptive(_) => PolicyKind::Adaptive,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        match self {
            Policy::Aws(p) => p.settings(),
            Policy::Adaptive(p) => p.settings(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &PoolLimits {
        match self {
            Policy::Aws(p) => p.limits(),
            Policy::Adaptive(p) => p.limits(),
        }
    }

    /// Replace the settings; a different `VPC_CNI_POOL_POLICY` starts that policy afresh.
    pub fn set_settings(&mut self, settings: Settings) {
        if settings.pool_policy != self.kind() {
            *self = Policy::new(settings, *self.limits());
            return;
        }
        match self {
            Policy::Aws(p) => p.set_settings(settings),
            Policy::Adaptive(p) => p.set_settings(settings),
        }
    }

    /// Replace the limits.
    pub fn set_limits(&mut self, limits: PoolLimits) {
        match self {
            Policy::Aws(p) => p.set_limits(limits),
            Policy::Adaptive(p) => p.set_limits(limits),
        }
    }

    /// The executor's next step after a failed `AssignToEni`.
    pub fn after_assign_failure(
        &mut self,
        ds: &Datastore,
        tried: &[String],
        failure: AssignFailure,
        now: Time,
    ) -> Option<Decision> {
        match self {
            Policy::Aws(p) => p.after_assign_failure(ds, tried, failure, now),
            Policy::Adaptive(p) => p.after_assign_failure(ds, tried, failure, now),
        }
    }
}

impl PoolPolicy for Policy {
    fn cycle(&mut self, ds: &mut Datastore, node: NodeState, now: Time) -> Vec<Decision> {
        match self {
            Policy::Aws(p) => p.cycle(ds, node, now),
            Policy::Adaptive(p) => p.cycle(ds, node, now),
        }
    }

    fn record_insufficient_addresses(&mut self, now: Time) {
        match self {
            Policy::Aws(p) => p.record_insufficient_addresses(now),
            Policy::Adaptive(p) => p.record_insufficient_addresses(now),
        }
    }

    fn describe(&self, ds: &Datastore, now: Time) -> String {
        match self {
            Policy::Aws(p) => p.describe(ds, now),
            Policy::Adaptive(p) => p.describe(ds, now),
        }
    }

    fn record_throttled(&mut self, now: Time) {
        if let Policy::Adaptive(p) = self {
            p.record_throttled(now);
        }
    }

    fn record_delivery(&mut self, what: Delivery, took: Duration) {
        if let Policy::Adaptive(p) = self {
            p.record_delivery(what, took);
        }
    }

    fn backoff_until(&self) -> Option<Time> {
        match self {
            Policy::Aws(p) => p.backoff_until(),
            Policy::Adaptive(p) => p.backoff_until(),
        }
    }

    fn quiet_after(&self) -> Duration {
        match self {
            Policy::Aws(p) => p.quiet_after(),
            Policy::Adaptive(p) => p.quiet_after(),
        }
    }

    fn refill_on_miss(&self) -> bool {
        matches!(self, Policy::Adaptive(_))
    }
}
