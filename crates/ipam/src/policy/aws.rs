//! The `aws` policy: upstream ipamd's warm-pool decisions (spec c.2–c.6), bit for bit, with
//! deterministic choices where upstream iterates Go maps (grow the lowest device first, release
//! from the highest).

use std::time::Duration;

use vpc_cni_limits::IPS_PER_PREFIX;

use super::common::{drain_excluded, has_room_for_eni};
use super::targets::{TargetState, div_ceil, target_state};
use super::{Action, AssignFailure, CidrKind, Decision, NodeState, PoolLimits, PoolPolicy};
use crate::datastore::{Datastore, Eni, IpStats};
use crate::settings::Settings;
use crate::time::Time;

/// Minimum time between two pool shrinks.
pub const DECREASE_INTERVAL: Duration = Duration::from_secs(30);
/// Growth pause after an insufficient-addresses error (boundary inclusive).
pub const INSUFFICIENT_CIDR_COOLDOWN: Duration = Duration::from_secs(120);
/// Minimum ENI age before the pool manager may free it.
pub const MIN_ENI_LIFETIME: Duration = Duration::from_secs(60);

/// Upstream ipamd's policy for card 0 of an IPv4 node.
#[derive(Debug, Clone)]
pub struct AwsPolicy {
    settings: Settings,
    limits: PoolLimits,
    last_decrease: Option<Time>,
    last_insufficient: Option<Time>,
}

impl AwsPolicy {
    /// A policy with no history.
    pub fn new(settings: Settings, limits: PoolLimits) -> Self {
        AwsPolicy {
            settings,
            limits,
            last_decrease: None,
            last_insufficient: None,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The limits in force.
    pub fn limits(&self) -> &PoolLimits {
        &self.limits
    }

    /// Whether the pool is below its targets now (`isDatastorePoolTooLow`).
    pub fn pool_too_low(&self, ds: &Datastore, now: Time) -> bool {
        self.too_low(ds, &ds.stats(now)).is_some()
    }

    /// Whether the pool holds more than its targets now (`isDatastorePoolTooHigh`).
    pub fn pool_too_high(&self, ds: &Datastore, now: Time) -> bool {
        self.too_high(ds, &ds.stats(now)).is_some()
    }

    /// Replace the settings (per-node overrides read from the Node object); the caller keeps the
    /// limits consistent (`MAX_ENI`).
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// Replace the limits (e.g. when max pods is refreshed from the Node object).
    pub fn set_limits(&mut self, limits: PoolLimits) {
        self.limits = limits;
    }

    fn pd(&self) -> bool {
        self.limits.prefix_delegation
    }

    fn kind(&self) -> CidrKind {
        if self.pd() {
            CidrKind::Prefix
        } else {
            CidrKind::SecondaryIp
        }
    }

    fn targets(&self, ds: &Datastore, stats: &IpStats) -> TargetState {
        target_state(&self.settings, stats, ds.free_prefixes(), self.pd())
    }

    /// Warm target and its unit in IPs when no warm IP target is set: (target, unit, name).
    fn warm_unit(&self) -> (u32, u32, &'static str) {
        if self.pd() {
            (
                self.settings.warm_prefix_target,
                IPS_PER_PREFIX,
                "WARM_PREFIX_TARGET",
            )
        } else {
            (
                self.settings.warm_eni_target,
                self.limits.max_ips_per_eni,
                "WARM_ENI_TARGET",
            )
        }
    }

    /// `isDatastorePoolTooLow`; `Some(reason)` when low.
    fn too_low(&self, ds: &Datastore, stats: &IpStats) -> Option<String> {
        if stats.total_ips >= self.limits.max_pods {
            return None;
        }
        let t = self.targets(ds, stats);
        if t.defined {
            return (t.short > 0).then(|| self.short_reason(stats, &t));
        }
        let (target, unit, name) = self.warm_unit();
        let a = stats.available();
        let low = a < unit.saturating_mul(target) || (target == 0 && a == 0);
        low.then(|| format!("pool too low: {a} available < {name}={target} × {unit} IPs"))
    }

    fn short_reason(&self, stats: &IpStats, t: &TargetState) -> String {
        let unit = if self.pd() { " prefix(es)" } else { " IP(s)" };
        format!(
            "pool too low: {} short{unit} (WARM_IP_TARGET={}, MINIMUM_IP_TARGET={}, {} total, {} available)",
            t.short,
            self.settings.warm_ip_target,
            self.settings.minimum_ip_target,
            stats.total_ips,
            stats.available()
        )
    }

    /// How many IPs/prefixes growth asks for (`tryAssignIPs` / `getPrefixesNeeded`).
    fn wanted(&self, ds: &Datastore, t: &TargetState) -> u32 {
        if self.pd() {
            if t.defined {
                t.short.max(1)
            } else {
                self.settings
                    .warm_prefix_target
                    .saturating_sub(ds.free_prefixes())
                    .max(1)
            }
        } else if t.defined {
            t.short
        } else {
            self.limits.max_ips_per_eni
        }
    }

    fn growth_blocked(&self, node: NodeState, now: Time) -> Option<&'static str> {
        if node.terminating {
            return Some("terminating");
        }
        if node.unschedulable && !self.settings.manage_enis_non_schedulable {
            return Some("node is unschedulable");
        }
        if self
            .last_insufficient
            .is_some_and(|t| now.since(t) <= INSUFFICIENT_CIDR_COOLDOWN)
        {
            return Some("within 120 s of an insufficient-addresses error");
        }
        None
    }

    /// `increaseDatastorePool`: fill the first allocatable ENI, else allocate a new one.
    fn increase(&self, ds: &Datastore, stats: &IpStats, why: String) -> Option<Decision> {
        let t = self.targets(ds, stats);
        self.grow(ds, &t, &[], &why, "every ENI is full")
    }

    /// The first allocatable ENI not in `skip` gets what the targets want (as much as it has
    /// room for), else a new ENI when the instance has room for one.
    fn grow(
        &self,
        ds: &Datastore,
        t: &TargetState,
        skip: &[String],
        why: &str,
        none_left: &str,
    ) -> Option<Decision> {
        // Never past max pods: an ENI's worth of addresses when 2 are missing is how upstream
        // ends with more addresses than pods can ever use (the Node's capacity is the cap).
        let room_for_pods = self.room_for_pods(ds);
        let wanted = self.wanted(ds, t).min(room_for_pods);
        if wanted == 0 {
            return None;
        }
        let max_cidrs = self.limits.max_cidrs_per_eni();
        if let Some(eni) = ds
            .allocatable_enis(max_cidrs, self.settings.custom_networking)
            .find(|e| !skip.contains(&e.id))
        {
            let room = max_cidrs - eni.cidrs.len() as u32;
            let count = room.min(wanted);
            return Some(Decision {
                reason: format!("{why}; {} has room for {room}: assign {count}", eni.id),
                action: Action::AssignToEni {
                    eni: eni.id.clone(),
                    count,
                    kind: self.kind(),
                },
            });
        }
        if !self.has_room_for_eni(ds) {
            return None;
        }
        let count = self.new_eni_resources(ds, t).min(room_for_pods);
        (count > 0).then(|| Decision {
            reason: format!("{why}; {none_left}: new ENI with {count}"),
            action: Action::AllocateEni {
                count,
                kind: self.kind(),
            },
        })
    }

    /// The executor's next step after an `AssignToEni` failed, also when asking for a single
    /// address or prefix (upstream `tryAssignIPs` / `tryAssignPrefixes`). `tried`: the ENIs
    /// that failed so far in this cycle.
    ///
    /// - Insufficient addresses with subnet discovery on: the next allocatable ENI; when none is
    ///   left, a new ENI (the backend picks another eligible subnet), in the same cycle. No
    ///   growth pause: that comes only if the new ENI fails too.
    /// - Insufficient addresses without subnet discovery: the 120 s growth pause; nothing else.
    /// - Any other error: nothing (upstream returns the error; no ENI is created).
    pub fn after_assign_failure(
        &mut self,
        ds: &Datastore,
        tried: &[String],
        failure: AssignFailure,
        now: Time,
    ) -> Option<Decision> {
        match failure {
            AssignFailure::Other => None,
            AssignFailure::Insufficient if !self.settings.subnet_discovery => {
                self.record_insufficient_addresses(now);
                None
            }
            AssignFailure::Insufficient => {
                let t = self.targets(ds, &ds.stats(now));
                let why = format!(
                    "the subnet of {} is out of addresses (ENABLE_SUBNET_DISCOVERY)",
                    tried.last().map_or("the last ENI", String::as_str)
                );
                self.grow(
                    ds,
                    &t,
                    tried,
                    &why,
                    "no other ENI has room: another eligible subnet",
                )
            }
        }
    }

    /// `GetENIResourcesToAllocate`.
    fn new_eni_resources(&self, ds: &Datastore, t: &TargetState) -> u32 {
        if self.pd() {
            self.wanted(ds, t).min(self.limits.max_prefixes_per_eni)
        } else if t.defined {
            t.short.min(self.limits.max_ips_per_eni)
        } else {
            self.limits.max_ips_per_eni
        }
    }

    /// Addresses (or /28 prefixes, rounded up) the pool may still add before it holds max pods.
    fn room_for_pods(&self, ds: &Datastore) -> u32 {
        let total = ds.stats(Time::ZERO).total_ips;
        let room = self.limits.max_pods.saturating_sub(total);
        if self.pd() {
            room.div_ceil(IPS_PER_PREFIX)
        } else {
            room
        }
    }

    /// `hasRoomForEni`.
    fn has_room_for_eni(&self, ds: &Datastore) -> bool {
        has_room_for_eni(&self.settings, &self.limits, ds)
    }

    /// `isDatastorePoolTooHigh`; `Some((amount, reason))` when high.
    fn too_high(&self, ds: &Datastore, stats: &IpStats) -> Option<(u32, String)> {
        let t = self.targets(ds, stats);
        if t.defined {
            return (t.over > 0).then(|| {
                let unit = if self.pd() { "prefix(es)" } else { "IP(s)" };
                (
                    t.over,
                    format!(
                        "pool too high: {} {unit} over WARM_IP_TARGET={} / MINIMUM_IP_TARGET={}",
                        t.over, self.settings.warm_ip_target, self.settings.minimum_ip_target
                    ),
                )
            });
        }
        if !self.pd() {
            return None;
        }
        let free = ds.free_prefixes();
        let target = self.settings.warm_prefix_target;
        (free > target).then(|| {
            (
                free - target,
                format!("pool too high: {free} free prefixes > WARM_PREFIX_TARGET={target}"),
            )
        })
    }

    /// `tryUnassignCidrsFromAll`: release up to `amount` unused CIDRs, highest device first.
    fn decrease(&self, ds: &mut Datastore, amount: u32, why: &str) -> Vec<Decision> {
        let mut left = amount as usize;
        let mut out = Vec::new();
        let ids: Vec<String> = ds.enis().iter().rev().map(|e| e.id.clone()).collect();
        for id in ids {
            if left == 0 {
                break;
            }
            let mut cidrs = ds.freeable_cidrs(&id);
            cidrs.reverse();
            cidrs.truncate(left);
            let removed: Vec<_> = cidrs
                .into_iter()
                .filter(|net| ds.del_cidr(&id, *net, false).is_ok())
                .collect();
            if removed.is_empty() {
                continue;
            }
            left -= removed.len();
            out.push(Decision {
                reason: format!("{why}: release {} from {id}", removed.len()),
                action: Action::Release {
                    eni: id,
                    cidrs: removed,
                },
            });
        }
        out
    }

    /// `shouldRemoveExtraENIs`.
    fn should_remove_extra_enis(&self, ds: &Datastore, stats: &IpStats) -> bool {
        if self.settings.warm_ip_targets_defined() {
            return true;
        }
        let target = if self.pd() {
            self.settings.warm_prefix_target
        } else {
            self.settings.warm_eni_target
        };
        if stats.available()
            >= target
                .saturating_add(1)
                .saturating_mul(self.limits.max_ips_per_eni)
        {
            return true;
        }
        self.pd()
            && ds
                .enis()
                .iter()
                .any(|e| !e.is_primary && !e.is_trunk && !e.is_efa && !e.has_pods())
    }

    /// `getDeletableENI`: the first ENI (highest device first) that may go.
    fn deletable_eni<'a>(&self, ds: &'a Datastore, now: Time) -> Option<&'a Eni> {
        let s = &self.settings;
        let round = |n: u32| {
            if self.pd() {
                (div_ceil(i64::from(n), 16) as u32).saturating_mul(16)
            } else {
                n
            }
        };
        ds.enis().iter().rev().find(|eni| {
            if eni.is_primary || eni.is_trunk || eni.is_efa {
                return false;
            }
            if now.since(eni.created_at) < MIN_ENI_LIFETIME
                || ds.eni_has_cooling(eni, now)
                || eni.has_pods()
            {
                return false;
            }
            let (mut free, mut total, mut free_prefixes) = (0u32, 0u32, 0u32);
            for other in ds.enis().iter().filter(|o| o.id != eni.id && !o.excluded) {
                let st = ds.eni_stats(other);
                free += st.total_ips - st.assigned_ips;
                total += st.total_ips;
                free_prefixes += st.free_prefixes;
            }
            if s.warm_ip_target != 0 && free < round(s.warm_ip_target) {
                return false;
            }
            if s.minimum_ip_target != 0 && total < round(s.minimum_ip_target) {
                return false;
            }
            !(self.pd() && s.warm_prefix_target != 0 && free_prefixes < s.warm_prefix_target)
        })
    }
}

impl PoolPolicy for AwsPolicy {
    fn cycle(&mut self, ds: &mut Datastore, node: NodeState, now: Time) -> Vec<Decision> {
        if !self.settings.provisioning_enabled() {
            return Vec::new();
        }
        let mut out = drain_excluded(ds);
        let stats = ds.stats(now);
        if let Some(why) = self.too_low(ds, &stats) {
            if self.growth_blocked(node, now).is_none() {
                out.extend(self.increase(ds, &stats, why));
            }
        } else if let Some((amount, why)) = self.too_high(ds, &stats)
            && self
                .last_decrease
                .is_none_or(|t| now.since(t) > DECREASE_INTERVAL)
        {
            out.extend(self.decrease(ds, amount, &why));
            self.last_decrease = Some(now);
        }
        let stats = ds.stats(now);
        let may_free =
            !node.terminating && (!node.unschedulable || self.settings.manage_enis_non_schedulable);
        if may_free
            && self.should_remove_extra_enis(ds, &stats)
            && let Some(id) = self.deletable_eni(ds, now).map(|e| e.id.clone())
            && ds.remove_eni(&id, false).is_ok()
        {
            out.push(Decision {
                reason: format!(
                    "{id} has no pods and the rest of the pool meets the targets \
                     ({} available elsewhere)",
                    ds.stats(now).available()
                ),
                action: Action::FreeEni { eni: id },
            });
        }
        out
    }

    fn record_insufficient_addresses(&mut self, now: Time) {
        self.last_insufficient = Some(now);
    }

    fn describe(&self, ds: &Datastore, now: Time) -> String {
        let stats = ds.stats(now);
        if stats.total_ips >= self.limits.max_pods {
            return format!(
                "at max pods: {} IPs ≥ max pods {}, no growth",
                stats.total_ips, self.limits.max_pods
            );
        }
        if let Some(why) = self.too_low(ds, &stats) {
            let blocked = if self.has_room_for_eni(ds)
                || ds
                    .allocatable_enis(
                        self.limits.max_cidrs_per_eni(),
                        self.settings.custom_networking,
                    )
                    .next()
                    .is_some()
            {
                "growth pending"
            } else {
                "no room: every ENI is full and the ENI limit is reached"
            };
            return format!("{why} ({blocked})");
        }
        let a = stats.available();
        if self.settings.warm_ip_targets_defined() {
            format!(
                "steady: {a} available ≥ WARM_IP_TARGET={}, {} total ≥ MINIMUM_IP_TARGET={}",
                self.settings.warm_ip_target, stats.total_ips, self.settings.minimum_ip_target
            )
        } else {
            let (target, unit, name) = self.warm_unit();
            let extra = if self.pd() {
                format!(", {} free prefix(es)", ds.free_prefixes())
            } else {
                String::new()
            };
            format!("steady: {a} available ≥ {name}={target} × {unit} IPs{extra}")
        }
    }
}

#[cfg(test)]
#[path = "aws_tests.rs"]
mod tests;
