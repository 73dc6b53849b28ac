//! Listeners that hold up under abuse: the HTTP listeners (metrics, introspection) serve at most
//! [`http_connection_cap`] connections at a time, give a client [`HEADER_TIMEOUT`] to send its
//! request and [`CONNECTION_LIFETIME`] in all, and every accept loop backs off on errors (a
//! process out of descriptors gets `EMFILE` from every accept: retrying at once spins a core and
//! floods the log). Repeated log lines are rate-limited.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, UnixListener};

/// Concurrent connections per HTTP listener, at most (fewer under a low descriptor limit, see
/// [`http_connection_cap`]).
pub const MAX_HTTP_CONNECTIONS: usize = 64;

/// Descriptors kept for everything but the HTTP listeners (the plugin's socket, netlink,
/// checkpoint writes, the cloud's connections).
pub const RESERVED_FDS: u64 = 64;

/// How many connections one HTTP listener may hold under the process's descriptor limit:
/// a quarter of what is left after [`RESERVED_FDS`], between 4 and [`MAX_HTTP_CONNECTIONS`], so
/// idle HTTP clients can never take the descriptors the plugin's socket needs.
pub fn http_connection_cap() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(3)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .unwrap_or(1024);
    (soft.saturating_sub(RESERVED_FDS) / 4).clamp(4, MAX_HTTP_CONNECTIONS as u64) as usize
}
/// Time a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a connection may live in all (one request: keep-alive is off).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// First and longest pause after a failed accept.
pub const ACCEPT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(1));

/// At most one log line per key and period; says how many it held back.
pub struct LogLimiter {
    every: Duration,
    seen: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogLimiter {
    /// One line per `every` per key.
    pub fn new(every: Duration) -> Self {
        LogLimiter {
            every,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(held back since the last line)` when a line may be written now.
    pub fn allow(&self, key: &'static str) -> Option<u64> {
        let mut m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match m.get_mut(key) {
            Some((last, held)) if now.duration_since(*last) < self.every => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                let n = *held;
                *last = now;
                *held = 0;
                Some(n)
            }
            None => {
                m.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

fn limiter() -> &'static LogLimiter {
    static L: std::sync::OnceLock<LogLimiter> = std::sync::OnceLock::new();
    L.get_or_init(|| LogLimiter::new(Duration::from_secs(10)))
}

/// Accept the next connection, pausing (10 ms doubling to 1 s) after every failure.
pub async fn accept_with_backoff<T, F, Fut>(what: &'static str, mut accept: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<T>>,
{
    let mut pause = ACCEPT_BACKOFF.0;
    loop {
        match accept().await {
            Ok(c) => return c,
            Err(e) => {
                if let Some(held) = limiter().allow(what) {
                    tracing::error!(listener = what, error = %e, held_back = held, "accept failed; backing off");
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(ACCEPT_BACKOFF.1);
            }
        }
    }
}

/// A bound HTTP listener.
pub enum HttpListener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix socket.
    Unix(UnixListener),
}

/// Serve `router` on `listener` forever, within the bounds above.
pub async fn serve_http(what: &'static str, listener: HttpListener, router: axum::Router) {
    let cap = http_connection_cap();
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    loop {
        let io: Box<dyn Io> = match &listener {
            HttpListener::Tcp(l) => Box::new(accept_with_backoff(what, || l.accept()).await.0),
            HttpListener::Unix(l) => Box::new(accept_with_backoff(what, || l.accept()).await.0),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(held) = limiter().allow("http-full") {
                tracing::warn!(
                    listener = what,
                    max = MAX_HTTP_CONNECTIONS,
                    held_back = held,
                    "connection limit reached; closing new connections"
                );
            }
            continue;
        };
        let svc = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(io), svc);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop(slot);
        });
    }
}

/// A connection of either kind.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_held_back() {
        let l = LogLimiter::new(Duration::from_millis(50));
        assert_eq!(l.allow("k"), Some(0));
        for _ in 0..1000 {
            assert_eq!(l.allow("k"), None);
        }
        assert_eq!(l.allow("other"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.allow("k"), Some(1000));
    }
}
