//! Upstream's application-level retry loops (on top of the SDK's own retries): how many tries,
//! the first delay, its doubling up to a cap, and the jitter, per operation (spec c.5, c.6, h.1).

use std::future::Future;
use std::time::Duration;

use vpc_cni_cloud::CloudError;

/// One retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all.
    pub tries: u32,
    /// Delay after the first failure.
    pub first: Duration,
    /// Largest delay.
    pub cap: Duration,
    /// ± jitter in percent of the delay.
    pub jitter_pct: u64,
}

/// `CreateTags` on a managed ENI: 5 tries, 500 ms → 60 s, 30 % jitter.
pub const TAG: Backoff = Backoff::new(5, 500, 30);
/// `DetachNetworkInterface`: 12 tries, 200 ms → 60 s, 15 % jitter.
pub const DETACH: Backoff = Backoff::new(12, 200, 15);
/// `DeleteNetworkInterface`: 12 tries, 500 ms → 60 s.
pub const DELETE: Backoff = Backoff::new(12, 500, 15);
/// Waiting for a new ENI in IMDS: 12 polls, 100 ms → 60 s, 15 % jitter.
pub const IMDS_WAIT: Backoff = Backoff::new(12, 100, 15);

impl Backoff {
    const fn new(tries: u32, first_ms: u64, jitter_pct: u64) -> Self {
        Backoff {
            tries,
            first: Duration::from_millis(first_ms),
            cap: Duration::from_secs(60),
            jitter_pct,
        }
    }

    /// The delay after failed attempt `attempt` (0-based); `noise` in 0..=1000 spreads it over
    /// ±jitter (500 is the middle).
    pub fn delay(&self, attempt: u32, noise: u32) -> Duration {
        let base = (self.first.as_millis() as u64)
            .saturating_mul(1 << attempt.min(20))
            .min(self.cap.as_millis() as u64);
        let j = self.jitter_pct;
        // factor in thousandths: (1000 - 10j) ..= (1000 + 10j)
        let factor = 1000 - 10 * j + 20 * j * u64::from(noise.min(1000)) / 1000;
        Duration::from_millis(base * factor / 1000)
    }

    /// Run `op` until it succeeds, `give_up` says an error is final, or the tries run out.
    pub async fn retry<T, Fut>(
        &self,
        what: &str,
        mut op: impl FnMut() -> Fut,
        give_up: impl Fn(&CloudError) -> bool,
    ) -> Result<T, CloudError>
    where
        Fut: Future<Output = Result<T, CloudError>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if give_up(&e) || attempt + 1 >= self.tries => return Err(e),
                Err(e) => {
                    tracing::debug!(what, attempt, code = %e.code, "retrying");
                }
            }
            tokio::time::sleep(self.delay(attempt, noise())).await;
            attempt += 1;
        }
    }
}

fn noise() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(500, |d| d.subsec_nanos() % 1001)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_to_the_cap_with_bounded_jitter() {
        let mid = |b: Backoff| {
            (0..10)
                .map(|a| b.delay(a, 500).as_millis())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            mid(TAG),
            [
                500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000
            ]
        );
        assert_eq!(mid(DETACH)[..4], [200, 400, 800, 1600]);
        assert_eq!(mid(IMDS_WAIT)[..3], [100, 200, 400]);
        assert_eq!(TAG.delay(0, 0).as_millis(), 350);
        assert_eq!(TAG.delay(0, 1000).as_millis(), 650);
        assert_eq!(DETACH.delay(0, 0).as_millis(), 170);
        assert_eq!(DETACH.delay(20, 1000).as_millis(), 69_000);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_on_success_final_errors_and_the_last_try() {
        let err = |code: &str| CloudError {
            code: code.into(),
            message: String::new(),
        };
        let calls = std::cell::Cell::new(0);
        let r: Result<u32, _> = TAG
            .retry(
                "t",
                || {
                    calls.set(calls.get() + 1);
                    async { Err(err("InternalError")) }
                },
                |_| false,
            )
            .await;
        assert_eq!(
            (r.unwrap_err().code.as_str(), calls.get()),
            ("InternalError", 5)
        );
        calls.set(0);
        let r: Result<u32, _> = DELETE
            .retry(
                "t",
                || {
                    calls.set(calls.get() + 1);
                    async { Err(err("UnauthorizedOperation")) }
                },
                |e| e.code == "UnauthorizedOperation",
            )
            .await;
        assert!(r.is_err());
        assert_eq!(calls.get(), 1, "a final error is not retried");
        calls.set(0);
        let r = DETACH
            .retry(
                "t",
                || {
                    calls.set(calls.get() + 1);
                    let n = calls.get();
                    async move {
                        if n < 3 {
                            Err(err("InternalError"))
                        } else {
                            Ok(n)
                        }
                    }
                },
                |_| false,
            )
            .await;
        assert_eq!(r.unwrap(), 3);
    }
}
