//! Pool statistics (spec b.2) and per-ENI figures used by the policy.

use ipnet::Ipv4Net;
use serde::Serialize;

use super::{CidrInfo, Datastore, Eni};
use crate::time::Time;

/// `GetIPStats` for IPv4: only CIDRs of the current mode, excluded ENIs skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct IpStats {
    /// Addresses in mode CIDRs.
    pub total_ips: u32,
    /// Addresses assigned.
    pub assigned_ips: u32,
    /// Released addresses still cooling.
    pub cooldown_ips: u32,
    /// Prefixes (raw counter, exclusion not applied).
    pub total_prefixes: u32,
}

impl IpStats {
    /// `TotalIPs − AssignedIPs`: cooling addresses count as available, as upstream.
    pub fn available(&self) -> u32 {
        self.total_ips - self.assigned_ips
    }
}

/// Figures for one ENI, mode CIDRs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct EniStats {
    /// Addresses in mode CIDRs.
    pub total_ips: u32,
    /// Assigned addresses.
    pub assigned_ips: u32,
    /// Mode CIDRs (/32s or /28s).
    pub cidrs: u32,
    /// Prefixes with nothing assigned.
    pub free_prefixes: u32,
}

impl Datastore {
    fn mode_cidrs<'a>(&self, eni: &'a Eni) -> impl Iterator<Item = &'a CidrInfo> + use<'a> {
        let (pd, fallback) = (self.prefix_delegation, self.ip_fallback);
        eni.cidrs
            .values()
            .filter(move |c| c.is_prefix == pd || (fallback && !c.is_prefix))
    }

    /// Figures of one ENI.
    pub fn eni_stats(&self, eni: &Eni) -> EniStats {
        let mut s = EniStats::default();
        for c in self.mode_cidrs(eni) {
            let assigned = c.assigned();
            s.total_ips += c.size();
            s.assigned_ips += assigned;
            s.cidrs += 1;
            if c.is_prefix && assigned == 0 {
                s.free_prefixes += 1;
            }
        }
        s
    }

    /// Pool statistics at `now`.
    pub fn stats(&self, now: Time) -> IpStats {
        let mut s = IpStats {
            total_prefixes: self.allocated_prefixes as u32,
            ..IpStats::default()
        };
        for eni in self.enis.iter().filter(|e| !e.excluded) {
            for c in self.mode_cidrs(eni) {
                s.total_ips += c.size();
                for a in c.addresses.values() {
                    if a.key.is_some() {
                        s.assigned_ips += 1;
                    } else if a
                        .unassigned_at
                        .is_some_and(|t| now.since(t) <= self.cooldown)
                    {
                        s.cooldown_ips += 1;
                    }
                }
            }
        }
        s
    }

    /// Prefixes with nothing assigned, across all ENIs (`GetFreePrefixes`).
    pub fn free_prefixes(&self) -> u32 {
        self.enis
            .iter()
            .flat_map(|e| e.cidrs.values())
            .filter(|c| c.is_prefix && c.assigned() == 0)
            .count() as u32
    }

    /// Whether `eni` released an address less than one cooldown ago.
    pub fn eni_has_cooling(&self, eni: &Eni, now: Time) -> bool {
        eni.cidrs.values().any(|c| {
            c.addresses.values().any(|a| {
                a.key.is_none()
                    && a.unassigned_at
                        .is_some_and(|t| now.since(t) <= self.cooldown)
            })
        })
    }

    /// CIDRs of `eni` nothing is assigned from and nothing was released from within `hold`
    /// (never a just-freed address), /32s before prefixes, highest first within each kind.
    pub fn idle_cidrs(
        &self,
        eni: &Eni,
        now: Time,
        hold: std::time::Duration,
    ) -> Vec<(Ipv4Net, u32)> {
        let mut out: Vec<(Ipv4Net, u32)> = eni
            .cidrs
            .values()
            .filter(|c| {
                c.addresses
                    .values()
                    .all(|a| a.key.is_none() && a.unassigned_at.is_none_or(|t| now.since(t) > hold))
            })
            .map(|c| (c.net, c.size()))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        out
    }

    /// Recompute the raw counters from scratch (for invariant checks).
    pub fn recount(&self) -> (u64, u64, u64) {
        let mut total = 0u64;
        let mut assigned = 0u64;
        let mut prefixes = 0u64;
        for c in self.enis.iter().flat_map(|e| e.cidrs.values()) {
            total += u64::from(c.size());
            assigned += u64::from(c.assigned());
            prefixes += u64::from(c.is_prefix);
        }
        (total, assigned, prefixes)
    }
}
