//! The `aws` policy: upstream ipamd's warm-pool decisions (spec c.2–c.6), bit for bit, with
//! deterministic choices where upstream iterates Go maps (grow the lowest device first, release
//! from the highest).

use std::time::Duration;

use vpc_cni_limits::IPS_PER_PREFIX;

use super::targets::{TargetState, div_ceil, target_state};
use super::{Action, CidrKind, Decision, NodeState, PoolLimits, PoolPolicy};
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
        let low = a < unit * target || (target == 0 && a == 0);
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
        let wanted = self.wanted(ds, &t);
        if wanted == 0 {
            return None;
        }
        let max_cidrs = self.limits.max_cidrs_per_eni();
        if let Some(eni) = ds
            .allocatable_enis(max_cidrs, self.settings.custom_networking)
            .next()
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
        let count = self.new_eni_resources(ds, &t);
        (count > 0).then(|| Decision {
            reason: format!("{why}; every ENI is full: new ENI with {count}"),
            action: Action::AllocateEni {
                count,
                kind: self.kind(),
            },
        })
    }

    /// Growth step after an `AssignToEni` failed with an error other than insufficient addresses:
    /// upstream then tries a new ENI in the same cycle.
    pub fn after_assign_failure(&self, ds: &Datastore, now: Time) -> Option<Decision> {
        let stats = ds.stats(now);
        if !self.has_room_for_eni(ds) {
            return None;
        }
        let count = self.new_eni_resources(ds, &self.targets(ds, &stats));
        (count > 0).then(|| Decision {
            reason: format!("assigning to an existing ENI failed: new ENI with {count}"),
            action: Action::AllocateEni {
                count,
                kind: self.kind(),
            },
        })
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

    /// `hasRoomForEni`.
    fn has_room_for_eni(&self, ds: &Datastore) -> bool {
        let trunk_slot = u32::from(self.settings.enable_pod_eni && !self.limits.trunk_attached);
        let cap = self
            .limits
            .max_eni
            .saturating_sub(self.limits.unmanaged_enis)
            .saturating_sub(trunk_slot);
        (ds.enis().len() as u32) < cap
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
        if stats.available() >= (target + 1) * self.limits.max_ips_per_eni {
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
                div_ceil(i64::from(n), 16) as u32 * 16
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
        let mut out = Vec::new();
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
mod tests {
    use std::net::Ipv4Addr;

    use ipnet::Ipv4Net;
    use vpc_cni_limits::LimitsTable;

    use super::*;
    use crate::datastore::EniSpec;
    use crate::key::{IpamKey, PodMetadata};

    /// A node of `ty` whose ENIs hold `cidrs[i]` /32s (or /28s in PD) and `pods` assigned.
    fn node(ty: &str, settings: Settings, cidrs: &[u32], pods: u32) -> (Datastore, AwsPolicy) {
        let table = LimitsTable::builtin();
        let limits = PoolLimits::new(&table.get(ty).unwrap().limits, &settings, 250);
        let pd = limits.prefix_delegation;
        let mut ds = Datastore::new(pd, settings.ip_cooldown);
        let mut next = u32::from(Ipv4Addr::new(10, 0, 0, 0));
        for (d, n) in cidrs.iter().enumerate() {
            let id = format!("eni-{d}");
            let spec = EniSpec {
                id: id.clone(),
                device_number: d as u32,
                is_primary: d == 0,
                ..Default::default()
            };
            ds.add_eni(spec, Time::ZERO).unwrap();
            for _ in 0..*n {
                let net = Ipv4Net::new(Ipv4Addr::from(next), if pd { 28 } else { 32 }).unwrap();
                ds.add_cidr(&id, net, pd).unwrap();
                next += 16;
            }
        }
        for p in 0..pods {
            ds.assign(
                &IpamKey::new("aws-cni", &p.to_string(), "eth0"),
                PodMetadata::default(),
                Time::ZERO,
            )
            .unwrap();
        }
        (ds, AwsPolicy::new(settings, limits))
    }

    fn actions(ty: &str, settings: Settings, cidrs: &[u32], pods: u32) -> Vec<Action> {
        let (mut ds, mut p) = node(ty, settings, cidrs, pods);
        p.cycle(&mut ds, NodeState::default(), Time::from_secs(600))
            .into_iter()
            .map(|d| d.action)
            .collect()
    }

    fn assign(eni: &str, count: u32, kind: CidrKind) -> Action {
        Action::AssignToEni {
            eni: eni.into(),
            count,
            kind,
        }
    }

    /// (instance type, settings, CIDRs per ENI, pods, expected actions)
    type GrowthCase = (&'static str, Settings, Vec<u32>, u32, Vec<Action>);

    #[test]
    fn growth_table() {
        use CidrKind::{Prefix, SecondaryIp as Ip};
        let d = Settings::default;
        let targets = |w, m| Settings {
            warm_ip_target: w,
            minimum_ip_target: m,
            ..d()
        };
        let pd = |wpt, w, m| Settings {
            prefix_delegation: true,
            warm_prefix_target: wpt,
            warm_ip_target: w,
            minimum_ip_target: m,
            ..d()
        };
        let cases: Vec<GrowthCase> = vec![
            // WARM_ENI_TARGET=1, empty primary: fill it with a whole ENI's worth.
            ("r5.xlarge", d(), vec![0], 0, vec![assign("eni-0", 14, Ip)]),
            // One ENI's worth free: steady.
            ("r5.xlarge", d(), vec![14], 0, vec![]),
            // 13 free < 14: primary full → new ENI with 14.
            (
                "r5.xlarge",
                d(),
                vec![14],
                1,
                vec![Action::AllocateEni {
                    count: 14,
                    kind: Ip,
                }],
            ),
            // Targets: short = max(5 − 5, 20 − 14) = 6 → new ENI with 6.
            (
                "r5.xlarge",
                targets(5, 20),
                vec![14],
                0,
                vec![Action::AllocateEni { count: 6, kind: Ip }],
            ),
            // Targets: short 1 with room on the second ENI.
            (
                "r5.xlarge",
                targets(5, 20),
                vec![14, 6],
                16,
                vec![assign("eni-1", 1, Ip)],
            ),
            // MAX_ENI=1 and full: nothing to do.
            (
                "r5.xlarge",
                Settings {
                    max_eni: Some(1),
                    ..d()
                },
                vec![14],
                14,
                vec![],
            ),
            // PD, WARM_PREFIX_TARGET=1, no free prefix: one more prefix on the primary.
            (
                "m5.large",
                pd(1, 0, 0),
                vec![1],
                1,
                vec![assign("eni-0", 1, Prefix)],
            ),
            // PD with targets: MINIMUM 25 → 2 prefixes at once.
            (
                "m5.large",
                pd(1, 5, 25),
                vec![0],
                0,
                vec![assign("eni-0", 2, Prefix)],
            ),
            // Custom networking: the primary is never grown.
            (
                "m5.large",
                Settings {
                    custom_networking: true,
                    ..d()
                },
                vec![0],
                0,
                vec![Action::AllocateEni { count: 9, kind: Ip }],
            ),
        ];
        for (ty, s, cidrs, pods, want) in cases {
            assert_eq!(
                actions(ty, s.clone(), &cidrs, pods),
                want,
                "{ty} {s:?} cidrs={cidrs:?} pods={pods}"
            );
        }
    }

    #[test]
    fn shrink_and_free_table() {
        let d = Settings::default;
        // WARM_IP_TARGET=2 with 10 free /32s: release 8, highest device first.
        let acts = actions(
            "r5.xlarge",
            Settings {
                warm_ip_target: 2,
                ..d()
            },
            &[14],
            4,
        );
        assert!(
            matches!(&acts[..], [Action::Release { eni, cidrs }] if eni == "eni-0" && cidrs.len() == 8),
            "{acts:?}"
        );
        // WARM_ENI_TARGET=1, 3 ENIs and 0 pods: 42 ≥ 2 × 14 → free the highest empty ENI.
        let acts = actions("r5.xlarge", d(), &[14, 14, 14], 0);
        assert_eq!(
            acts,
            vec![Action::FreeEni {
                eni: "eni-2".into()
            }]
        );
        // PD: 3 free prefixes > WARM_PREFIX_TARGET=1 → release 2.
        let acts = actions(
            "m5.large",
            Settings {
                prefix_delegation: true,
                warm_prefix_target: 1,
                ..d()
            },
            &[3],
            0,
        );
        assert!(
            matches!(&acts[..], [Action::Release { cidrs, .. }] if cidrs.len() == 2),
            "{acts:?}"
        );
    }

    #[test]
    fn timers_gate_actions() {
        // An ENI younger than one minute is not freed.
        let (mut ds, mut p) = node("r5.xlarge", Settings::default(), &[14, 14, 14], 0);
        assert!(
            p.cycle(&mut ds, NodeState::default(), Time::from_secs(30))
                .is_empty()
        );
        // Within 120 s of an insufficient-addresses error growth pauses (boundary inclusive).
        let (mut ds, mut p) = node("r5.xlarge", Settings::default(), &[0], 0);
        p.record_insufficient_addresses(Time::from_secs(100));
        assert!(
            p.cycle(&mut ds, NodeState::default(), Time::from_secs(220))
                .is_empty()
        );
        assert_eq!(
            p.cycle(&mut ds, NodeState::default(), Time::from_secs(221))
                .len(),
            1
        );
        // Two shrinks are at least 30 s apart.
        let (mut ds, mut p) = node(
            "r5.xlarge",
            Settings {
                warm_ip_target: 2,
                ..Settings::default()
            },
            &[14],
            4,
        );
        assert_eq!(
            p.cycle(&mut ds, NodeState::default(), Time::from_secs(100))
                .len(),
            1
        );
        ds.add_cidr("eni-0", "10.9.9.9/32".parse().unwrap(), false)
            .unwrap();
        assert!(
            p.cycle(&mut ds, NodeState::default(), Time::from_secs(130))
                .is_empty()
        );
        assert_eq!(
            p.cycle(&mut ds, NodeState::default(), Time::from_secs(131))
                .len(),
            1
        );
        // A terminating node does not grow.
        let (mut ds, mut p) = node("r5.xlarge", Settings::default(), &[0], 0);
        let term = NodeState {
            terminating: true,
            unschedulable: false,
        };
        assert!(p.cycle(&mut ds, term, Time::ZERO).is_empty());
    }
}
