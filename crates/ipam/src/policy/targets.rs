//! "Short" and "over" (spec c.3): how far the pool is from the warm IP targets.

use serde::Serialize;
use vpc_cni_limits::IPS_PER_PREFIX;

use crate::datastore::IpStats;
use crate::settings::Settings;

/// Distance from the warm IP targets, in IPs (secondary-IP mode) or prefixes (PD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TargetState {
    /// How many IPs/prefixes are missing.
    pub short: u32,
    /// How many IPs/prefixes could be released.
    pub over: u32,
    /// Whether `WARM_IP_TARGET` or `MINIMUM_IP_TARGET` is set (else all zero).
    pub defined: bool,
}

/// `ceil(a / b)` for non-negative `a`.
pub(crate) fn div_ceil(a: i64, b: i64) -> i64 {
    (a + b - 1).div_euclid(b)
}

/// Upstream `datastoreTargetState` for card 0.
pub fn target_state(
    settings: &Settings,
    stats: &IpStats,
    free_prefixes: u32,
    pd: bool,
) -> TargetState {
    if !settings.warm_ip_targets_defined() {
        return TargetState::default();
    }
    let w = i64::from(settings.warm_ip_target);
    let m = i64::from(settings.minimum_ip_target);
    let total = i64::from(stats.total_ips);
    let available = i64::from(stats.available());
    let short = (w - available).max(0).max(m - total);
    let over = (available - w).max(0).min(total - m).max(0);
    if !pd {
        return TargetState {
            short: short as u32,
            over: over as u32,
            defined: true,
        };
    }
    let per = i64::from(IPS_PER_PREFIX);
    let total_prefixes = i64::from(stats.total_prefixes);
    let need_warm = div_ceil(i64::from(stats.assigned_ips) + w, per);
    let need_min = div_ceil(m, per);
    let over_prefixes = i64::from(free_prefixes)
        .min(total_prefixes - need_warm)
        .max(0)
        .min(total_prefixes - need_min)
        .max(0);
    TargetState {
        short: div_ceil(short, per) as u32,
        over: over_prefixes as u32,
        defined: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(w: u32, m: u32) -> Settings {
        Settings {
            warm_ip_target: w,
            minimum_ip_target: m,
            ..Settings::default()
        }
    }

    fn stats(total: u32, assigned: u32, prefixes: u32) -> IpStats {
        IpStats {
            total_ips: total,
            assigned_ips: assigned,
            cooldown_ips: 0,
            total_prefixes: prefixes,
        }
    }

    #[test]
    fn secondary_ip_table() {
        // (W, M, total, assigned) → (short, over)
        let cases = [
            ((0, 0, 14, 0), (0, 0)),
            ((5, 20, 0, 0), (20, 0)),
            ((5, 20, 14, 0), (6, 0)),
            ((5, 20, 20, 16), (1, 0)),
            ((5, 20, 28, 1), (0, 8)),
            ((2, 0, 10, 0), (0, 8)),
            ((2, 12, 10, 0), (2, 0)),
        ];
        for ((w, m, t, a), (short, over)) in cases {
            let got = target_state(&settings(w, m), &stats(t, a, 0), 0, false);
            assert_eq!(
                (got.short, got.over),
                (short, over),
                "W={w} M={m} T={t} A={a}"
            );
            assert_eq!(got.defined, w > 0 || m > 0);
        }
    }

    #[test]
    fn prefix_table() {
        // (W, M, total, assigned, prefixes, free prefixes) → (short prefixes, over prefixes)
        let cases = [
            ((5, 25, 0, 0, 0, 0), (2, 0)),
            ((5, 25, 32, 25, 2, 0), (0, 0)),
            ((5, 25, 32, 28, 2, 0), (1, 0)),
            ((5, 25, 48, 37, 3, 0), (0, 0)),
            ((1, 0, 48, 1, 3, 2), (0, 2)),
            ((16, 0, 32, 1, 2, 1), (0, 0)),
        ];
        for ((w, m, t, a, p, f), (short, over)) in cases {
            let got = target_state(&settings(w, m), &stats(t, a, p), f, true);
            assert_eq!(
                (got.short, got.over),
                (short, over),
                "W={w} M={m} T={t} A={a} P={p} F={f}"
            );
        }
    }
}
