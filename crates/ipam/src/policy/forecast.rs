//! Demand forecasting for the adaptive policy: pod arrivals observed at each pool cycle, kept
//! over a horizon, turned into an arrival rate and the number of arrivals to expect, at a chosen
//! confidence, within one delivery time of the cloud. Pure arithmetic, no clock of its own.

use std::collections::VecDeque;
use std::time::Duration;

use crate::time::Time;

/// How far back arrivals count for the long-run rate.
pub const HORIZON: Duration = Duration::from_secs(15 * 60);
/// The short window: the rate that reacts to a rising load.
pub const SHORT: Duration = Duration::from_secs(2 * 60);

/// Arrivals seen per pool cycle.
#[derive(Debug, Clone, Default)]
pub struct Demand {
    /// (cycle time, arrivals since the previous cycle), only cycles with arrivals.
    history: VecDeque<(Time, u32)>,
    last_total: Option<u64>,
    first_seen: Option<Time>,
}

impl Demand {
    /// Record the datastore's arrival counter at a cycle; returns the arrivals since the last one.
    pub fn observe(&mut self, now: Time, arrivals_total: u64) -> u32 {
        let n = self
            .last_total
            .map_or(0, |t| arrivals_total.saturating_sub(t)) as u32;
        self.last_total = Some(arrivals_total);
        self.first_seen.get_or_insert(now);
        if n > 0 {
            self.history.push_back((now, n));
        }
        while self
            .history
            .front()
            .is_some_and(|(t, _)| now.since(*t) > HORIZON)
        {
            self.history.pop_front();
        }
        n
    }

    fn sum_within(&self, now: Time, window: Duration) -> u32 {
        self.history
            .iter()
            .rev()
            .take_while(|(t, _)| now.since(*t) <= window)
            .map(|(_, n)| n)
            .sum()
    }

    /// Arrivals per second: the larger of the short-window and the long-window rate, so a rising
    /// load is followed within minutes and a falling one forgotten over the horizon.
    pub fn rate(&self, now: Time) -> f64 {
        let Some(first) = self.first_seen else {
            return 0.0;
        };
        // A young node divides by at least one short window, not by the few seconds it has lived.
        let seen = now.since(first).max(SHORT);
        let long = f64::from(self.sum_within(now, HORIZON)) / seen.min(HORIZON).as_secs_f64();
        let short = f64::from(self.sum_within(now, SHORT)) / SHORT.as_secs_f64();
        long.max(short)
    }
}

/// The smallest `k` with P(X ≤ k) ≥ `q` for a Poisson variable of mean `mean` (normal
/// approximation past a mean of 500, where the sum would underflow).
pub fn poisson_quantile(mean: f64, q: f64) -> u32 {
    if mean <= 0.0 || !mean.is_finite() {
        return 0;
    }
    if mean > 500.0 {
        // z for q ≈ 0.99 (the only confidence used) is 2.326; others map through a short table.
        let z = if q >= 0.999 {
            3.09
        } else if q >= 0.99 {
            2.326
        } else if q >= 0.95 {
            1.645
        } else {
            1.0
        };
        return (mean + z * mean.sqrt()).ceil() as u32;
    }
    let mut pmf = (-mean).exp();
    let mut cdf = pmf;
    let mut k = 0u32;
    while cdf < q && k < 10_000 {
        k += 1;
        pmf *= mean / f64::from(k);
        cdf += pmf;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_quantiles() {
        // (mean, q) → k, from the Poisson CDF.
        let cases = [
            ((0.0, 0.99), 0),
            ((0.03, 0.99), 1),
            ((1.0, 0.99), 4),
            ((5.0, 0.99), 11),
            ((10.0, 0.5), 10),
            ((1000.0, 0.99), 1074),
        ];
        for ((mean, q), k) in cases {
            assert_eq!(poisson_quantile(mean, q), k, "mean {mean} q {q}");
        }
    }

    #[test]
    fn rate_follows_a_rise_fast_and_a_fall_slowly() {
        let mut d = Demand::default();
        let mut total = 0u64;
        let mut t = Time::ZERO;
        // 1 pod per 5 s for 10 minutes.
        for _ in 0..120 {
            t = t.plus(Duration::from_secs(5));
            total += 1;
            d.observe(t, total);
        }
        assert!((d.rate(t) - 0.2).abs() < 0.02, "{}", d.rate(t));
        // Silence for 5 minutes: the long window still remembers.
        t = t.plus(Duration::from_secs(300));
        d.observe(t, total);
        assert!(d.rate(t) > 0.05 && d.rate(t) < 0.2, "{}", d.rate(t));
        // After the horizon, nothing.
        t = t.plus(HORIZON);
        d.observe(t, total);
        assert_eq!(d.rate(t), 0.0);
    }
}
