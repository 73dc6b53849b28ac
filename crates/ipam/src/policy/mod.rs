//! Warm-pool policies: given the pool (datastore), the node's limits, settings and `now`, decide
//! the next cloud actions as data. The `aws` policy reproduces upstream ipamd (spec c).
//!
//! Executor contract: [`Action::Release`] and [`Action::FreeEni`] are decided after the policy
//! already removed those CIDRs / that ENI from the datastore (as upstream does before calling
//! EC2); the executor only performs the cloud call. Growth actions are requests: the executor
//! adds whatever the cloud returned to the datastore. A failed `AssignToEni` is retried once
//! asking for one (unless EC2 said `PrivateIpAddressLimitExceeded`: then the ENI's addresses are
//! imported); if that fails too the executor asks [`AwsPolicy::after_assign_failure`] for the
//! next step. A failed `AllocateEni` with insufficient addresses is reported with
//! [`PoolPolicy::record_insufficient_addresses`] (the 120 s growth pause).

pub mod adaptive;
mod any;
mod aws;
mod common;
pub mod forecast;
mod limits;
mod targets;
#[cfg(test)]
mod test_support;

use std::time::Duration;

use serde::Serialize;

use crate::datastore::Datastore;
use crate::time::Time;

pub use adaptive::AdaptivePolicy;
pub use any::Policy;
pub use aws::AwsPolicy;
pub use limits::PoolLimits;
pub use targets::TargetState;

/// What kind of CIDR an action is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CidrKind {
    /// Secondary private IPs (/32).
    SecondaryIp,
    /// /28 prefixes.
    Prefix,
}

/// One cloud action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// `AssignPrivateIpAddresses` on an attached ENI.
    AssignToEni {
        /// Target ENI.
        eni: String,
        /// How many IPs or prefixes.
        count: u32,
        /// IPs or prefixes.
        kind: CidrKind,
    },
    /// Create and attach a new ENI carrying `count` IPs or prefixes.
    AllocateEni {
        /// How many IPs or prefixes the new ENI gets.
        count: u32,
        /// IPs or prefixes.
        kind: CidrKind,
    },
    /// `UnassignPrivateIpAddresses` for CIDRs already removed from the datastore.
    Release {
        /// The ENI they were on.
        eni: String,
        /// The CIDRs.
        cidrs: Vec<ipnet::Ipv4Net>,
    },
    /// Detach and delete an ENI already removed from the datastore.
    FreeEni {
        /// The ENI.
        eni: String,
    },
}

/// How an `AssignToEni` failed, for [`AwsPolicy::after_assign_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssignFailure {
    /// `InsufficientCidrBlocks` / `InsufficientFreeAddressesInSubnet`.
    Insufficient,
    /// Anything else (after the retry asking for one; `PrivateIpAddressLimitExceeded` is not a
    /// failure: the executor imports the ENI's addresses instead).
    Other,
}

/// An action with the rule that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Why, in one line (names the setting and the numbers).
    pub reason: String,
}

/// Node facts that change at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct NodeState {
    /// SIGTERM received: no growth, no ENI freeing.
    pub terminating: bool,
    /// Node carries the unschedulable taint.
    pub unschedulable: bool,
}

/// What a completed growth call delivered, for [`PoolPolicy::record_delivery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// `AssignPrivateIpAddresses` until the addresses were in the datastore.
    Assign,
    /// Create + attach an ENI until its addresses were in the datastore.
    Eni,
}

/// A warm-pool policy.
pub trait PoolPolicy {
    /// One pool-manager cycle (upstream `updateIPPoolIfRequired`).
    fn cycle(&mut self, ds: &mut Datastore, node: NodeState, now: Time) -> Vec<Decision>;

    /// The executor saw `InsufficientCidrBlocks` / `InsufficientFreeAddressesInSubnet`.
    fn record_insufficient_addresses(&mut self, now: Time);

    /// A one-line description of the pool against its targets.
    fn describe(&self, ds: &Datastore, now: Time) -> String;

    /// The executor saw `RequestLimitExceeded` (the `aws` policy ignores it, as upstream).
    fn record_throttled(&mut self, _now: Time) {}

    /// A growth call completed after `took` (the `aws` policy ignores it, as upstream).
    fn record_delivery(&mut self, _what: Delivery, _took: Duration) {}

    /// Until when cloud calls should wait after throttling (owed releases and frees included);
    /// `None`: no back-off (the `aws` policy, as upstream, retries every cycle).
    fn backoff_until(&self) -> Option<Time> {
        None
    }

    /// How long the policy may still act after the last pod change with nothing else
    /// happening (its timers and memories): a driver may stop cycling a node after this.
    fn quiet_after(&self) -> Duration {
        Duration::from_secs(130)
    }

    /// Whether an ADD that found no address should run a pool cycle at once rather than wait
    /// for the next period (upstream waits: `false` for `aws`).
    fn refill_on_miss(&self) -> bool {
        false
    }
}
