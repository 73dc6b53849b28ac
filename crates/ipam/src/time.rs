//! Time as data: the brain never reads a clock, callers pass `now` in.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A point in time, in milliseconds since an epoch the caller chooses (Unix time for the daemon,
/// zero for simulations).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(0);

    /// Build from whole seconds.
    pub fn from_secs(s: u64) -> Time {
        Time(s * 1000)
    }

    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier` (zero if `earlier` is in the future).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// This time plus `d`.
    pub fn plus(self, d: Duration) -> Time {
        Time(self.0 + d.as_millis() as u64)
    }

    /// RFC 3339 UTC, reading the time as Unix milliseconds: `2026-11-23T09:25:43Z`, or with
    /// `millis` `2026-11-23T09:25:43.500Z`.
    pub fn rfc3339(self, millis: bool) -> String {
        let secs = self.0 / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
        if millis {
            format!(
                "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z",
                self.0 % 1000
            )
        } else {
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
        }
    }
}

#[cfg(test)]
mod rfc3339_tests {
    use super::Time;

    #[test]
    fn civil_dates() {
        assert_eq!(Time(0).rfc3339(false), "1970-01-01T00:00:00Z");
        assert_eq!(Time(951_782_400_000).rfc3339(false), "2000-02-29T00:00:00Z");
        assert_eq!(
            Time(1_795_425_944_500).rfc3339(true),
            "2026-11-23T09:25:44.500Z"
        );
    }
}
