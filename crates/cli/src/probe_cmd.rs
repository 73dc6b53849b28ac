//! `vpc-cni health-probe` (and the program named `grpc-health-probe`): the gRPC health check of
//! upstream's exec probes, with `grpc-health-probe`'s flags (`-addr=unix:///var/run/aws-node/
//! ipamd.sock -connect-timeout=5s -rpc-timeout=5s`, Go's single-dash syntax, `--` too) and its
//! exit codes, so upstream's DaemonSet probes run unchanged against this image.

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// `grpc-health-probe`'s exit codes.
pub mod exit {
    /// SERVING.
    pub const OK: u8 = 0;
    /// Bad flags.
    pub const INVALID_ARGUMENTS: u8 = 1;
    /// The connection failed (or timed out).
    pub const CONNECTION_FAILURE: u8 = 2;
    /// The Check RPC failed (or timed out).
    pub const RPC_FAILURE: u8 = 3;
    /// The service answered, but not SERVING.
    pub const UNHEALTHY: u8 = 4;
}

const USAGE: &str =
    "usage: grpc-health-probe -addr=ADDR [-service=NAME] [-connect-timeout=5s] [-rpc-timeout=5s]
  ADDR: unix:///path/to.sock, unix:/path, or host:port
exit codes: 0 SERVING, 1 bad flags, 2 connection failure, 3 RPC failure, 4 not SERVING";

/// The probe's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Where: a unix socket or host:port.
    pub addr: Addr,
    /// The service name asked about ("" = the server).
    pub service: String,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// RPC timeout.
    pub rpc_timeout: Duration,
}

/// The address forms `grpc-health-probe` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// `unix://…` or `unix:…`.
    Unix(PathBuf),
    /// `host:port` (`:port` means localhost).
    Tcp(String),
}

/// A Go duration: `5s`, `500ms`, `1m`, `1.5s`, `1m30s`.
fn go_duration(flag: &str, v: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid value {v:?} for flag -{flag}: expected a duration such as 5s, 500ms or 1m")
    };
    let mut total = 0f64;
    let mut rest = v.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[u_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parse the flags (after the program name).
pub fn parse(args: &[String]) -> Result<Probe, String> {
    let mut p = Probe {
        addr: Addr::Tcp(String::new()),
        service: String::new(),
        connect_timeout: Duration::from_secs(1),
        rpc_timeout: Duration::from_secs(1),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let flag = a.trim_start_matches('-');
        if flag.len() == a.len() {
            return Err(format!("unexpected argument {a:?}"));
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, v.to_string()),
            None if matches!(flag, "v" | "tls" | "h" | "help") => (flag, "true".into()),
            None => (
                flag,
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("flag needs an argument: -{flag}"))?,
            ),
        };
        match name {
            "addr" => {
                p.addr = if let Some(path) = value.strip_prefix("unix://") {
                    Addr::Unix(PathBuf::from(path))
                } else if let Some(path) = value.strip_prefix("unix:") {
                    Addr::Unix(PathBuf::from(path))
                } else {
                    Addr::Tcp(value)
                }
            }
            "service" => p.service = value,
            "connect-timeout" => p.connect_timeout = go_duration(name, &value)?,
            "rpc-timeout" => p.rpc_timeout = go_duration(name, &value)?,
            "v" | "user-agent" | "gzip" => {}
            "h" | "help" => return Err(String::new()),
            "tls" | "tls-no-verify" | "tls-ca-cert" | "tls-client-cert" | "tls-client-key"
            | "tls-server-name" | "spiffe" | "alts" => {
                return Err(format!(
                    "-{name}: TLS is not supported (ipamd's socket is a local unix socket)"
                ));
            }
            other => return Err(format!("flag provided but not defined: -{other}")),
        }
    }
    if p.addr == Addr::Tcp(String::new()) {
        return Err("-addr not specified".into());
    }
    Ok(p)
}

async fn check(p: &Probe) -> Result<(), (u8, String)> {
    let endpoint = Endpoint::from_static("http://localhost").connect_timeout(p.connect_timeout);
    let connected = match &p.addr {
        Addr::Unix(path) => {
            let path = path.clone();
            let connector = tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            });
            tokio::time::timeout(
                p.connect_timeout,
                endpoint.connect_with_connector(connector),
            )
            .await
        }
        Addr::Tcp(hostport) => {
            let host = if hostport.starts_with(':') {
                format!("localhost{hostport}")
            } else {
                hostport.clone()
            };
            let ep = Endpoint::from_shared(format!("http://{host}"))
                .map_err(|e| (exit::INVALID_ARGUMENTS, format!("-addr {hostport}: {e}")))?
                .connect_timeout(p.connect_timeout);
            tokio::time::timeout(p.connect_timeout, ep.connect()).await
        }
    };
    let addr = match &p.addr {
        Addr::Unix(path) => format!("unix://{}", path.display()),
        Addr::Tcp(a) => a.clone(),
    };
    let channel = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err((
                exit::CONNECTION_FAILURE,
                format!("error: failed to connect service at {addr:?}: {e}"),
            ));
        }
        Err(_) => {
            return Err((
                exit::CONNECTION_FAILURE,
                format!(
                    "timeout: failed to connect service {addr:?} within {:?}",
                    p.connect_timeout
                ),
            ));
        }
    };
    let mut client = HealthClient::new(channel);
    let rpc = client.check(HealthCheckRequest {
        service: p.service.clone(),
    });
    let reply = match tokio::time::timeout(p.rpc_timeout, rpc).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => {
            return Err((
                exit::RPC_FAILURE,
                format!(
                    "error: health rpc failed: {:?}: {}",
                    status.code(),
                    status.message()
                ),
            ));
        }
        Err(_) => {
            return Err((
                exit::RPC_FAILURE,
                format!(
                    "timeout: health rpc did not complete within {:?}",
                    p.rpc_timeout
                ),
            ));
        }
    };
    let status = tonic_health::pb::health_check_response::ServingStatus::try_from(reply.status)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN");
    if status != "SERVING" {
        return Err((
            exit::UNHEALTHY,
            format!("service unhealthy (responded with {status:?})"),
        ));
    }
    Ok(())
}

/// Run the probe with `args` (after the program name); the process's exit code.
pub fn run(args: &[String]) -> u8 {
    let p = match parse(args) {
        Ok(p) => p,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            return exit::INVALID_ARGUMENTS;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::RPC_FAILURE;
        }
    };
    match rt.block_on(check(&p)) {
        Ok(()) => {
            println!("status: SERVING");
            exit::OK
        }
        Err((code, msg)) => {
            eprintln!("{msg}");
            code
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn upstreams_probe_command_parses() {
        let p = parse(&args(&[
            "-addr=unix:///var/run/aws-node/ipamd.sock",
            "-connect-timeout=5s",
            "-rpc-timeout=5s",
        ]))
        .unwrap();
        assert_eq!(p.addr, Addr::Unix("/var/run/aws-node/ipamd.sock".into()));
        assert_eq!(p.connect_timeout, Duration::from_secs(5));
        assert_eq!(p.rpc_timeout, Duration::from_secs(5));
        // The v1.19–v1.22 form and the double-dash and spaced forms.
        let p = parse(&args(&["-addr", ":50051", "--rpc-timeout", "1m30s"])).unwrap();
        assert_eq!(p.addr, Addr::Tcp(":50051".into()));
        assert_eq!(p.rpc_timeout, Duration::from_secs(90));
        assert_eq!(
            parse(&args(&["-addr=unix:/s", "-connect-timeout=250ms"]))
                .unwrap()
                .connect_timeout,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn bad_flags_name_the_flag() {
        for (a, words) in [
            (vec![], "-addr not specified"),
            (vec!["-addr=:1", "-connect-timeout=5"], "-connect-timeout"),
            (vec!["-addr=:1", "-rpc-timeout=soon"], "-rpc-timeout"),
            (vec!["-addr=:1", "-bogus=1"], "not defined: -bogus"),
            (vec!["-addr"], "needs an argument: -addr"),
            (vec!["-addr=:1", "-tls"], "TLS is not supported"),
            (vec!["stray"], "unexpected argument"),
        ] {
            let e = parse(&args(&a)).unwrap_err();
            assert!(e.contains(words), "{a:?}: {e}");
        }
    }
}
