//! The `adaptive` policy (ours, `VPC_CNI_POOL_POLICY=adaptive`): the warm pool is sized from what
//! the node observes — pod arrivals (rate, recent bursts, pods waiting) and how long the cloud
//! takes to deliver an address — instead of a fixed ENI's or prefix's worth. Idle addresses go
//! back after a hold time, highest first, whole ENIs when they empty; prefix mode falls back to
//! /32s on a fragmented subnet instead of pausing. The upstream variables are bounds only:
//! `MINIMUM_IP_TARGET` a floor, `MAX_ENI` and max pods caps.

use std::time::Duration;

use vpc_cni_limits::IPS_PER_PREFIX;

use super::aws::MIN_ENI_LIFETIME;
use super::common::{drain_excluded, has_room_for_eni};
use super::forecast::{Demand, poisson_quantile};
use super::{
    Action, AssignFailure, CidrKind, Decision, Delivery, NodeState, PoolLimits, PoolPolicy,
};
use crate::datastore::{Datastore, Eni};
use crate::settings::Settings;
use crate::time::Time;

/// From a miss to the refill call: the executor runs a cycle at once when an ADD finds no
/// address (`refill_on_miss`), so only scheduling slack and the pod's own retry remain.
pub const REACTION: Duration = Duration::from_secs(1);
/// Share of lead-time windows in which the warm pool covers every arrival.
pub const CONFIDENCE: f64 = 0.99;
/// An address idle (and a pool not grown) for this long may go back to EC2.
pub const HOLD: Duration = Duration::from_secs(60);
/// After `InsufficientCidrBlocks`, prefix mode uses /32s this long before trying prefixes again.
pub const FALLBACK: Duration = Duration::from_secs(300);
/// Growth pause when the subnet has no address at all (no /32 either).
pub const INSUFFICIENT_PAUSE: Duration = Duration::from_secs(60);
/// A secondary ENI goes back only if the others could have held the peak of this long: an ENI
/// costs one subnet address when empty, and making it again costs five EC2 calls.
pub const ENI_MEMORY: Duration = Duration::from_secs(3600);
/// Arrivals expected within this window set the band between growing and shrinking.
pub const REUSE: Duration = Duration::from_secs(120);
/// Two pool periods: a timer that expires is seen by a cycle within them.
const PERIOD_SLACK: Duration = Duration::from_secs(10);
/// Releases are batched: at most one round of `UnassignPrivateIpAddresses` this often.
pub const RELEASE_EVERY: Duration = Duration::from_secs(120);
/// A new node expects pods (it was most likely launched for pending ones): for this long after
/// the policy starts, the ENIs already attached are kept filled (no ENI is made for it).
pub const BOOT: Duration = Duration::from_secs(300);
/// Longest throttling back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(16);
const FIRST_ASSIGN_GUESS: Duration = Duration::from_secs(1);
const FIRST_ENI_GUESS: Duration = Duration::from_secs(8);

/// What the policy computed for a cycle, kept for reasons and `describe`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sizing {
    rate_per_min: f64,
    lead: Duration,
    warm: u32,
    waiting: u32,
    /// Arrivals expected within [`REUSE`]: the width of the band the pool may float in, so a
    /// freed address likely to be reused soon is not returned and asked for again.
    band: u32,
    ready: u32,
    total: u32,
    assigned: u32,
}

impl Sizing {
    /// Addresses wanted free within one lead time.
    fn target(&self) -> u32 {
        self.warm + self.waiting
    }

    /// Where growth fills to and shrinking stops: the target plus half the reuse band.
    fn middle(&self) -> u32 {
        self.target() + self.band.div_ceil(2)
    }

    /// Above this the pool shrinks.
    fn high(&self) -> u32 {
        self.target() + self.band
    }

    fn why(&self) -> String {
        format!(
            "warm {} (99% of arrivals at {:.1} pods/min over a {:.1} s lead) + {} waiting, band {}, {} ready, {} of {} assigned",
            self.warm,
            self.rate_per_min,
            self.lead.as_secs_f64(),
            self.waiting,
            self.band,
            self.ready,
            self.assigned,
            self.total
        )
    }
}

/// The adaptive policy for card 0 of an IPv4 node.
#[derive(Debug, Clone)]
pub struct AdaptivePolicy {
    settings: Settings,
    limits: PoolLimits,
    demand: Demand,
    /// (cycle time, addresses assigned) over [`ENI_MEMORY`], a falling sequence (only a later
    /// maximum matters), for the recent peak.
    usage: std::collections::VecDeque<(Time, u32)>,
    assign_latency: Option<Duration>,
    eni_latency: Option<Duration>,
    last_growth: Option<Time>,
    release_due: Option<Time>,
    started: Option<Time>,
    fallback_until: Option<Time>,
    paused_until: Option<Time>,
    backoff_until: Option<Time>,
    throttle_level: u32,
    jitter: u64,
    last: Sizing,
}

impl AdaptivePolicy {
    /// A policy with no history.
    pub fn new(settings: Settings, limits: PoolLimits) -> Self {
        AdaptivePolicy {
            settings,
            limits,
            demand: Demand::default(),
            usage: std::collections::VecDeque::new(),
            assign_latency: None,
            eni_latency: None,
            last_growth: None,
            release_due: None,
            started: None,
            fallback_until: None,
            paused_until: None,
            backoff_until: None,
            throttle_level: 0,
            jitter: 0x9e37_79b9_7f4a_7c15,
            last: Sizing::default(),
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

    /// Replace the settings (per-node overrides).
    pub fn set_settings(&mut self, settings: Settings) {
        self.settings = settings;
    }

    /// Replace the limits.
    pub fn set_limits(&mut self, limits: PoolLimits) {
        self.limits = limits;
    }

    fn fallback(&self, now: Time) -> bool {
        self.fallback_until.is_some_and(|t| now < t)
    }

    fn kind(&self, now: Time) -> CidrKind {
        if self.limits.prefix_delegation && !self.fallback(now) {
            CidrKind::Prefix
        } else {
            CidrKind::SecondaryIp
        }
    }

    /// Addresses one unit of `kind` carries.
    fn unit(kind: CidrKind) -> u32 {
        match kind {
            CidrKind::Prefix => IPS_PER_PREFIX,
            CidrKind::SecondaryIp => 1,
        }
    }

    fn allocatable<'a>(&self, ds: &'a Datastore, skip: &'a [String]) -> Option<&'a Eni> {
        ds.allocatable_enis(
            self.limits.max_cidrs_per_eni(),
            self.settings.custom_networking,
        )
        .find(|e| !skip.contains(&e.id))
    }

    /// Time from a pod's arrival until a refill it triggers is usable.
    fn lead(&self, ds: &Datastore, now: Time) -> Duration {
        let delivery = if self.allocatable(ds, &[]).is_some() {
            self.assign_latency.unwrap_or(FIRST_ASSIGN_GUESS)
        } else {
            self.eni_latency.unwrap_or(FIRST_ENI_GUESS)
        };
        let backoff = self.backoff_until.map_or(Duration::ZERO, |t| {
            if t > now {
                t.since(now)
            } else {
                Duration::ZERO
            }
        });
        REACTION + delivery + backoff
    }

    fn size(&self, ds: &Datastore, now: Time) -> Sizing {
        let lead = self.lead(ds, now);
        let rate = self.demand.rate(now);
        // Bursts beyond the quantile are served by the refill a miss triggers at once: holding a
        // burst's worth for the next one costs more idle addresses than it saves in waits.
        let warm = poisson_quantile(rate * lead.as_secs_f64(), CONFIDENCE).max(1);
        // Addresses cooling now but usable before a refill would land count as ready.
        let later = ds.stats(now.plus(lead));
        Sizing {
            rate_per_min: rate * 60.0,
            lead,
            warm,
            waiting: ds.waiting(),
            band: (rate * REUSE.as_secs_f64()).ceil() as u32,
            ready: later.available() - later.cooldown_ips,
            total: later.total_ips,
            assigned: later.assigned_ips,
        }
    }

    /// Addresses still addable before the pool holds max pods.
    fn room_for_pods(&self, sz: &Sizing) -> u32 {
        self.limits.max_pods.saturating_sub(sz.total)
    }

    /// Addresses to add now (0 when the pool covers the target and the floor).
    fn need(&self, sz: &Sizing) -> u32 {
        let floor = self.settings.minimum_ip_target.saturating_sub(sz.total);
        // Below the target: fill to the middle of the band in one call.
        let short = if sz.ready < sz.target() {
            sz.middle() - sz.ready
        } else {
            0
        };
        short.max(floor).min(self.room_for_pods(sz))
    }

    fn growth_blocked(&self, node: NodeState, now: Time) -> Option<&'static str> {
        if node.terminating {
            return Some("terminating");
        }
        if node.unschedulable && !self.settings.manage_enis_non_schedulable {
            return Some("node is unschedulable");
        }
        if self.paused_until.is_some_and(|t| now < t) {
            return Some("the subnet had no free address (60 s pause)");
        }
        if self.backoff_until.is_some_and(|t| now < t) {
            return Some("backing off after EC2 throttling");
        }
        None
    }

    /// Ask for `need` addresses: the lowest ENI with room (not in `skip`), else a new ENI when
    /// `eni_ok`.
    fn grow(
        &self,
        ds: &Datastore,
        need: u32,
        skip: &[String],
        why: &str,
        now: Time,
        eni_ok: bool,
    ) -> Option<Decision> {
        if need == 0 {
            return None;
        }
        let kind = self.kind(now);
        let mut units = need.div_ceil(Self::unit(kind));
        // Under throttling every call is scarce: a call fills what it touches.
        if self.throttle_level > 0 {
            units = units.max(self.limits.max_cidrs_per_eni());
        }
        let max_cidrs = self.limits.max_cidrs_per_eni();
        if let Some(eni) = self.allocatable(ds, skip) {
            let room = max_cidrs - eni.cidrs.len() as u32;
            let count = room.min(units);
            return Some(Decision {
                reason: format!(
                    "adaptive: {why}; {} has room for {room}: assign {count}",
                    eni.id
                ),
                action: Action::AssignToEni {
                    eni: eni.id.clone(),
                    count,
                    kind,
                },
            });
        }
        if !eni_ok || !has_room_for_eni(&self.settings, &self.limits, ds) {
            return None;
        }
        let count = units.min(max_cidrs);
        Some(Decision {
            reason: format!("adaptive: {why}; every ENI is full: new ENI with {count}"),
            action: Action::AllocateEni { count, kind },
        })
    }

    fn booting(&self, now: Time) -> bool {
        self.started.is_some_and(|t| now.since(t) < BOOT)
    }

    /// Addresses to add on attached ENIs while booting: up to one ENI's worth available.
    fn boot_need(&self, sz: &Sizing, now: Time) -> u32 {
        if !self.booting(now) {
            return 0;
        }
        // Prefix mode: the one prefix the target already asks for is the boot pool.
        let want = if self.limits.prefix_delegation {
            0
        } else {
            self.limits.max_ips_per_eni
        };
        want.saturating_sub(sz.total - sz.assigned)
            .min(self.room_for_pods(sz))
    }

    /// The executor's next step after an `AssignToEni` failed (see [`super::AwsPolicy`]'s).
    ///
    /// - Insufficient addresses in prefix mode: /32s on the same ENI at once, for five minutes.
    /// - Insufficient addresses otherwise, with subnet discovery: the next ENI, else a new one in
    ///   another eligible subnet; without: a 60 s pause.
    /// - Anything else: nothing (throttling is reported through `record_throttled`).
    pub fn after_assign_failure(
        &mut self,
        ds: &Datastore,
        tried: &[String],
        failure: AssignFailure,
        now: Time,
    ) -> Option<Decision> {
        if failure != AssignFailure::Insufficient {
            return None;
        }
        let need = self
            .last
            .target()
            .saturating_sub(ds.stats(now).available())
            .max(1);
        if self.limits.prefix_delegation && !self.fallback(now) {
            self.fallback_until = Some(now.plus(FALLBACK));
            let eni = tried.last()?.clone();
            let room = self
                .limits
                .max_cidrs_per_eni()
                .saturating_sub(ds.eni(&eni).map_or(0, |e| e.cidrs.len() as u32));
            let count = need.min(room);
            return (count > 0).then(|| Decision {
                reason: format!(
                    "adaptive: no free /28 block in the subnet of {eni}: {count} /32 address(es) instead, prefixes again in {} s",
                    FALLBACK.as_secs()
                ),
                action: Action::AssignToEni {
                    eni,
                    count,
                    kind: CidrKind::SecondaryIp,
                },
            });
        }
        if self.settings.subnet_discovery {
            let why = format!(
                "the subnet of {} is out of addresses (ENABLE_SUBNET_DISCOVERY)",
                tried.last().map_or("the last ENI", String::as_str)
            );
            return self.grow(ds, need, tried, &why, now, true);
        }
        self.paused_until = Some(now.plus(INSUFFICIENT_PAUSE));
        None
    }

    fn next_jitter(&mut self) -> f64 {
        // xorshift64: deterministic, so a simulation replays the same back-offs.
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        0.5 + (self.jitter % 1000) as f64 / 1000.0
    }
}

impl PoolPolicy for AdaptivePolicy {
    fn cycle(&mut self, ds: &mut Datastore, node: NodeState, now: Time) -> Vec<Decision> {
        if !self.settings.provisioning_enabled() {
            return Vec::new();
        }
        // Prefix mode serves pods from fallback /32s too (after every prefix).
        ds.set_ip_fallback(self.limits.prefix_delegation);
        ds.prune_waiting(now, crate::datastore::WAITING_MAX_AGE);
        self.demand.observe(now, ds.arrivals());
        if self.started.is_none() {
            self.started = Some(now);
            // Each node its own jitter sequence (seeded from its first ENI), so a fleet started
            // together does not back off and release in lockstep.
            if let Some(e) = ds.enis().first() {
                self.jitter ^= e.id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
                self.jitter |= 1;
            }
        }
        let mut out = drain_excluded(ds);
        let sz = self.size(ds, now);
        self.last = sz;
        self.record_usage(now, sz.assigned);
        let need = self.need(&sz);
        let boot = self.boot_need(&sz, now);
        if need > 0 || boot > 0 {
            if self.growth_blocked(node, now).is_none() {
                // A new ENI (five calls) only for real need, and only when the addresses
                // cooling now would not cover the target either: those come back within the
                // cooldown. Booting fills the ENIs there are, in the same call.
                let eni_ok = need > 0
                    && (sz.total - sz.assigned < sz.target()
                        || sz.total < self.settings.minimum_ip_target);
                let why = if boot > need {
                    format!(
                        "a node starting expects pods: one ENI's worth ready for its first {} s ({boot} more)",
                        BOOT.as_secs()
                    )
                } else {
                    format!("need {need}: {}", sz.why())
                };
                if let Some(d) = self.grow(ds, need.max(boot), &[], &why, now, eni_ok) {
                    self.last_growth = Some(now);
                    out.push(d);
                }
            }
            return out;
        }
        if !self.may_shrink(node, now) {
            return out;
        }
        if let Some((id, free)) = self.spare_eni(ds, &sz, now)
            && ds.remove_eni(&id, false).is_ok()
        {
            out.push(Decision {
                reason: format!(
                    "adaptive: {id} has no pods and its {free} address(es) are beyond the target: {}",
                    sz.why()
                ),
                action: Action::FreeEni { eni: id },
            });
            return out;
        }
        // Release rounds are spread (0.5–1.5 × RELEASE_EVERY, per node) and wait out a
        // throttling back-off: nothing is urgent about giving addresses back.
        let backing_off = self.backoff_until.is_some_and(|t| now < t);
        if !backing_off && self.release_due.is_none_or(|t| now >= t) {
            let released = self.release(ds, &sz, now);
            if !released.is_empty() {
                let gap = RELEASE_EVERY.mul_f64(self.next_jitter());
                self.release_due = Some(now.plus(gap));
            }
            out.extend(released);
        }
        out
    }

    fn record_insufficient_addresses(&mut self, now: Time) {
        if self.limits.prefix_delegation && !self.fallback(now) {
            // The next ENI carries /32s: no pause.
            self.fallback_until = Some(now.plus(FALLBACK));
        } else {
            self.paused_until = Some(now.plus(INSUFFICIENT_PAUSE));
        }
    }

    fn record_throttled(&mut self, now: Time) {
        self.throttle_level = (self.throttle_level + 1).min(6);
        let base = Duration::from_secs(1u64 << self.throttle_level);
        let wait = base.mul_f64(self.next_jitter()).min(MAX_BACKOFF);
        self.backoff_until = Some(now.plus(wait));
    }

    fn record_delivery(&mut self, what: Delivery, took: Duration) {
        self.throttle_level = 0;
        let slot = match what {
            Delivery::Assign => &mut self.assign_latency,
            Delivery::Eni => &mut self.eni_latency,
        };
        *slot = Some(match *slot {
            None => took,
            Some(prev) => prev.mul_f64(0.7) + took.mul_f64(0.3),
        });
    }

    fn refill_on_miss(&self) -> bool {
        true
    }

    fn backoff_until(&self) -> Option<Time> {
        self.backoff_until
    }

    fn quiet_after(&self) -> Duration {
        // The ENI memory is the longest: an ENI may go back an hour after the last peak.
        ENI_MEMORY + HOLD + RELEASE_EVERY + PERIOD_SLACK
    }

    fn describe(&self, ds: &Datastore, now: Time) -> String {
        let sz = self.size(ds, now);
        let mut s = format!("adaptive: {}", sz.why());
        let need = self.need(&sz);
        if need > 0 {
            s.push_str(&format!("; needs {need}"));
        }
        if sz.total >= self.limits.max_pods {
            s.push_str(&format!("; at max pods {}", self.limits.max_pods));
        }
        if self.settings.minimum_ip_target > 0 {
            s.push_str(&format!(
                "; floor MINIMUM_IP_TARGET={}",
                self.settings.minimum_ip_target
            ));
        }
        if self.fallback(now) {
            s.push_str("; /32 fallback (no free /28 block)");
        }
        if self.paused_until.is_some_and(|t| now < t) {
            s.push_str("; growth paused (subnet out of addresses)");
        }
        if self.backoff_until.is_some_and(|t| now < t) {
            s.push_str("; backing off (EC2 throttling)");
        }
        s
    }
}

#[path = "adaptive_shrink.rs"]
mod shrink;

#[cfg(test)]
#[path = "adaptive_tests.rs"]
mod tests;
