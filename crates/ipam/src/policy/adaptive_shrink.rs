//! The adaptive policy's shrinking side: the usage peak it remembers, when it may give
//! addresses back, which whole ENI may go, and which idle CIDRs are released.

use std::time::Duration;

use super::{AdaptivePolicy, ENI_MEMORY, HOLD, MIN_ENI_LIFETIME, Sizing};
use crate::datastore::Datastore;
use crate::policy::{Action, Decision, NodeState};
use crate::time::Time;

impl AdaptivePolicy {
    /// Most addresses assigned at once within [`ENI_MEMORY`].
    pub(super) fn recent_peak(&self) -> u32 {
        self.usage.iter().map(|(_, n)| *n).max().unwrap_or(0)
    }

    pub(super) fn record_usage(&mut self, now: Time, assigned: u32) {
        while self
            .usage
            .front()
            .is_some_and(|(t, _)| now.since(*t) > ENI_MEMORY)
        {
            self.usage.pop_front();
        }
        // Only a new maximum of the tail matters for the peak: drop samples it covers.
        while self.usage.back().is_some_and(|(_, n)| *n <= assigned) {
            self.usage.pop_back();
        }
        self.usage.push_back((now, assigned));
    }

    /// Whether the pool may give addresses back now (not booting, no growth within the hold
    /// time).
    pub(super) fn may_shrink(&self, node: NodeState, now: Time) -> bool {
        let free_ok =
            !node.terminating && (!node.unschedulable || self.settings.manage_enis_non_schedulable);
        free_ok && !self.booting(now) && self.last_growth.is_none_or(|t| now.since(t) >= HOLD)
    }

    pub(super) fn hold(&self, ds: &Datastore) -> Duration {
        HOLD.max(ds.cooldown())
    }

    /// A whole ENI to return: no pods, old enough, every CIDR idle for the hold time, and the
    /// rest of the pool still covers the target and the floor.
    pub(super) fn spare_eni(
        &self,
        ds: &Datastore,
        sz: &Sizing,
        now: Time,
    ) -> Option<(String, u32)> {
        let hold = self.hold(ds);
        ds.enis().iter().rev().find_map(|eni| {
            if eni.is_primary || eni.is_trunk || eni.is_efa || eni.has_pods() {
                return None;
            }
            if now.since(eni.created_at) < MIN_ENI_LIFETIME
                || ds.idle_cidrs(eni, now, hold).len() != eni.cidrs.len()
            {
                return None;
            }
            let free = ds.eni_stats(eni).total_ips;
            // The other ENIs must be able to hold the recent peak again: an ENI freed at a
            // trough and made again at the next peak is two calls that undo each other.
            let others = (ds.enis().len() as u32 - 1) * self.limits.max_ips_per_eni;
            let keeps = sz.ready.saturating_sub(free) >= sz.middle()
                && sz.total.saturating_sub(free) >= self.settings.minimum_ip_target
                && others >= self.recent_peak() + sz.middle();
            keeps.then(|| (eni.id.clone(), free))
        })
    }

    /// Release idle CIDRs beyond the target and the floor, highest ENI and address first.
    pub(super) fn release(&self, ds: &mut Datastore, sz: &Sizing, now: Time) -> Vec<Decision> {
        // Above the band, back to its middle; the hold time (no release within 60 s of growth,
        // none of an address freed within 60 s) keeps the pool from oscillating.
        if sz.ready <= sz.high() {
            return Vec::new();
        }
        let over_target = sz.ready - sz.middle();
        let over_floor = sz.total.saturating_sub(self.settings.minimum_ip_target);
        let mut budget = over_target.min(over_floor);
        if budget == 0 {
            return Vec::new();
        }
        let hold = self.hold(ds);
        let pd = ds.prefix_delegation();
        let ids: Vec<String> = ds.enis().iter().rev().map(|e| e.id.clone()).collect();
        let mut out = Vec::new();
        for id in ids {
            let Some(eni) = ds.eni(&id) else { continue };
            if eni.excluded {
                continue;
            }
            let mut picked = Vec::new();
            for (net, size) in ds.idle_cidrs(eni, now, hold) {
                // In secondary-IP mode a left-over prefix serves no pod: it is not part of the surplus.
                let serves = pd || size == 1;
                if serves && size <= budget {
                    budget -= size;
                    picked.push(net);
                }
            }
            let removed: Vec<_> = picked
                .into_iter()
                .filter(|net| ds.del_cidr(&id, *net, false).is_ok())
                .collect();
            if !removed.is_empty() {
                out.push(Decision {
                    reason: format!(
                        "adaptive: {} idle ≥ {} s beyond the target ({}): release {} from {id}",
                        over_target.min(over_floor),
                        hold.as_secs(),
                        sz.why(),
                        removed.len()
                    ),
                    action: Action::Release {
                        eni: id,
                        cidrs: removed,
                    },
                });
            }
            if budget == 0 {
                break;
            }
        }
        out
    }
}
