//! Soak: `vpc-cni daemon --cloud aws` against the EC2/IMDS emulator (run in this process, so its
//! VPC can be read directly at the end) with injected faults and throttling, under continuous pod
//! churn over the daemon's gRPC socket. The number of live pods follows a slow wave between 0 and
//! max pods, so ENIs are attached and freed again and again.
//!
//! Checked, and the exit code says whether they held: no address handed to two live pods, every
//! DEL returns the address its ADD got (none lost), after the churn every address and ENI EC2
//! holds for the node is one the daemon holds (no leaked ENI, attached or not), descriptor count
//! flat, RSS flat (growth from the first to the last third of the run under 10 % + 1 MiB).
//!
//! `cargo run --release -p vpc-cni --example soak -- --seconds 900` (scripts/soak wraps it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/node.rs"]
mod node;

use anyhow::{Context, bail};
use clap::Parser;
use node::{Reaped, add_request, aws_daemon, connect, free_port, rss_kib, vpc_cni_exe};
use tonic::transport::Channel;
use vpc_cni_emulator::{EmulatorConfig, Running, start};
use vpc_cni_proto::rpc::DelNetworkRequest;
use vpc_cni_proto::rpc::cni_backend_client::CniBackendClient;

#[derive(Debug, Parser)]
struct Args {
    /// How long the churn runs.
    #[arg(long, default_value_t = 900)]
    seconds: u64,
    /// Probability of an injected InternalError per EC2 call.
    #[arg(long, default_value_t = 0.3)]
    error_rate: f64,
    /// Probability of an injected RequestLimitExceeded per EC2 call (on top of the buckets).
    #[arg(long, default_value_t = 0.1)]
    throttle_rate: f64,
    /// Instance type of the node.
    #[arg(long, default_value = "m5.xlarge")]
    instance_type: String,
    /// Concurrent plugin-like clients.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Period of the live-pod wave.
    #[arg(long, default_value_t = 120)]
    wave_seconds: u64,
    /// Prefix delegation instead of secondary IPs.
    #[arg(long)]
    prefix: bool,
    /// The vpc-cni binary (default: the one built beside this example).
    #[arg(long)]
    vpc_cni: Option<PathBuf>,
}

/// What the churn saw.
#[derive(Default)]
struct Tally {
    live: BTreeMap<String, String>,
    /// Most pods live at once since the last progress line.
    peak: usize,
    next: u64,
    adds: u64,
    refused: u64,
    dels: u64,
    duplicates: Vec<String>,
    lost: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let table = vpc_cni_limits::LimitsTable::resolve(
        None,
        std::env::var(vpc_cni_limits::DATA_DIR_ENV).ok().as_deref(),
    )?;
    let itype = table.get(&args.instance_type)?.clone();
    let max_pods = itype.limits.eni_limit * (itype.limits.ipv4_limit - 1);
    let cfg = EmulatorConfig {
        instances: vec![itype],
        subnet: "10.0.0.0/20".parse()?,
        extra_subnets: Vec::new(),
        security_groups: Vec::new(),
        seed: 7,
        latency_scale: 0.05,
        error_rate: args.error_rate,
        throttle_rate: args.throttle_rate,
        ipv6_cidr: None,
        region: "us-east-1".into(),
    };
    let loopback = "127.0.0.1:0".parse()?;
    let emu = start(&cfg, loopback, loopback)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = tempfile::tempdir()?;
    let (daemon, introspection) = spawn_daemon(&args, &emu, dir.path())?;
    let pid = daemon.0.id();
    let sock = dir.path().join("ipamd.sock");
    wait_socket(&sock, dir.path()).await?;
    println!(
        "soak: {} s, {} (max pods {max_pods}), {} workers, faults {:.0} %, throttling {:.0} %, daemon pid {pid}",
        args.seconds,
        args.instance_type,
        args.workers,
        args.error_rate * 100.0,
        args.throttle_rate * 100.0
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for w in 0..args.workers {
        let c = connect(&sock).await?;
        let (t, wave) = (tally.clone(), args.wave_seconds as f64);
        tasks.push(tokio::spawn(async move {
            churn(w as u64, c, t, started, deadline, wave, max_pods).await
        }));
    }
    let samples = sample(pid, &emu, &tally, started, deadline).await;
    for t in tasks {
        t.await??;
    }
    let mut c = connect(&sock).await?;
    let rest: Vec<_> = std::mem::take(&mut tally.lock().unwrap().live)
        .into_iter()
        .collect();
    for (id, ip) in rest {
        del(&mut c, &tally, &id, &ip).await?;
    }
    let leaks = settle(&emu, introspection).await;
    let ok = report(&tally.lock().unwrap(), &samples, &leaks);
    if !ok {
        println!("daemon log, last lines:\n{}", log_tail(dir.path()));
        drop(daemon);
        bail!("the soak failed (above)");
    }
    Ok(())
}

/// Start the daemon; it and its introspection port.
fn spawn_daemon(args: &Args, emu: &Running, dir: &Path) -> anyhow::Result<(Reaped, u16)> {
    let introspection = free_port()?;
    let exe = vpc_cni_exe(args.vpc_cni.as_ref())?;
    let child = aws_daemon(&exe, dir, emu, free_port()?, introspection)
        .args(["--cycle-ms", "1000"])
        .env("CLUSTER_NAME", "soak")
        // Upstream's 30 s cooldown (cooling addresses count as available, so the pool does not
        // grow for them) would cap churn at one pool's worth per 30 s: 2 s keeps the pool, not
        // the cooldown, the thing under test.
        .env("IP_COOLDOWN_PERIOD", "2")
        .env(
            "ENABLE_PREFIX_DELEGATION",
            if args.prefix { "true" } else { "false" },
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log"))?)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    Ok((Reaped(child), introspection))
}

async fn wait_socket(sock: &Path, dir: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the daemon's socket never answered; log:\n{}",
                log_tail(dir)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("ipamd.log")).unwrap_or_default()
        + &std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
    let lines: Vec<_> = log.lines().rev().take(20).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// One plugin-like client: ADD while fewer pods live than the wave asks, DEL otherwise.
async fn churn(
    w: u64,
    mut c: CniBackendClient<Channel>,
    tally: Arc<Mutex<Tally>>,
    started: Instant,
    deadline: Instant,
    wave: f64,
    max_pods: u32,
) -> anyhow::Result<()> {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (w + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
    while Instant::now() < deadline {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let phase = started.elapsed().as_secs_f64() / wave * std::f64::consts::TAU;
        let want = (f64::from(max_pods) * (0.5 - 0.5 * phase.cos())) as usize;
        let pick = {
            let mut t = tally.lock().unwrap();
            let live = t.live.len();
            // Mostly follow the wave; one step in six goes the other way (churn at a plateau).
            let add = (live < want) != rng.is_multiple_of(6);
            if add || live == 0 {
                t.next += 1;
                Err(format!("{:016x}{:048x}", w, t.next))
            } else {
                let k = t
                    .live
                    .keys()
                    .nth((rng as usize / 4) % live)
                    .unwrap()
                    .clone();
                let ip = t.live.remove(&k).unwrap();
                Ok((k, ip))
            }
        };
        match pick {
            Err(id) => add(&mut c, &tally, id).await?,
            Ok((id, ip)) => del(&mut c, &tally, &id, &ip).await?,
        }
        // About 5 operations a second per client: a busy node, not a benchmark.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn add(
    c: &mut CniBackendClient<Channel>,
    tally: &Mutex<Tally>,
    id: String,
) -> anyhow::Result<()> {
    let r = c
        .add_network(add_request("soak", &format!("pod-{}", &id[48..]), &id))
        .await?
        .into_inner();
    let ip = r
        .ip_allocation_metadata
        .first()
        .map(|m| m.i_pv4_addr.clone());
    let got = {
        let mut t = tally.lock().unwrap();
        match ip.filter(|_| r.success) {
            Some(ip) => {
                t.adds += 1;
                if t.live.values().any(|v| *v == ip) {
                    t.duplicates.push(format!("{ip} to {id}"));
                }
                t.live.insert(id, ip);
                t.peak = t.peak.max(t.live.len());
                true
            }
            None => {
                t.refused += 1;
                false
            }
        }
    };
    if !got {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// DEL `id`, retried as a container runtime retries it; the address it frees must be `ip`.
async fn del(
    c: &mut CniBackendClient<Channel>,
    tally: &Mutex<Tally>,
    id: &str,
    ip: &str,
) -> anyhow::Result<()> {
    for _ in 0..20 {
        let r = c
            .del_network(DelNetworkRequest {
                k8s_pod_name: format!("pod-{}", &id[48..]),
                k8s_pod_namespace: "soak".into(),
                container_id: id.into(),
                if_name: "eth0".into(),
                network_name: "aws-cni".into(),
                client_version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        if r.success {
            let freed = r
                .ip_allocation_metadata
                .first()
                .map(|m| m.i_pv4_addr.as_str());
            let mut t = tally.lock().unwrap();
            t.dels += 1;
            if freed != Some(ip) {
                t.lost
                    .push(format!("{id}: added {ip}, DEL freed {freed:?}"));
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tally
        .lock()
        .unwrap()
        .lost
        .push(format!("{id}: DEL of {ip} failed 20 times"));
    Ok(())
}

/// One reading of the daemon process.
struct Sample {
    at: f64,
    rss_kib: u64,
    fds: usize,
}

fn read_proc(pid: u32) -> (u64, usize) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss_kib(pid), fds)
}

/// RSS and descriptors every 5 s, a progress line every 60 s, until `deadline`.
async fn sample(
    pid: u32,
    emu: &Running,
    tally: &Mutex<Tally>,
    started: Instant,
    deadline: Instant,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut last_line = 0u64;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (rss_kib, fds) = read_proc(pid);
        let at = started.elapsed().as_secs_f64();
        out.push(Sample { at, rss_kib, fds });
        if at as u64 / 60 > last_line {
            last_line = at as u64 / 60;
            let (peak, adds, dels, refused) = {
                let mut t = tally.lock().unwrap();
                (std::mem::take(&mut t.peak), t.adds, t.dels, t.refused)
            };
            let (enis, calls, errors) = ec2_view(emu);
            println!(
                "  {:>4} s  peak live {peak:>3}  adds {adds:>6}  dels {dels:>6}  refused {refused:>6}  ENIs {enis}  EC2 calls {calls} ({errors} failed)  RSS {:.1} MiB  fds {fds}",
                at as u64,
                rss_kib as f64 / 1024.0
            );
        }
    }
    out
}

/// (ENIs attached to the node, EC2 calls, failed EC2 calls).
fn ec2_view(emu: &Running) -> (usize, u64, u64) {
    let vpc = emu.shared.vpc.lock().unwrap();
    let enis = vpc.attached(&emu.imds[0].0).count();
    let stats = serde_json::to_value(vpc.stats()).unwrap_or_default();
    let sum = |k: &str| {
        stats[k]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum())
    };
    (enis, sum("calls"), sum("errors"))
}

/// After the churn: wait (up to 3 minutes) until what EC2 holds for the node is what the daemon
/// holds; the differences left (ENIs or addresses only one side knows).
async fn settle(emu: &Running, introspection: u16) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let diff = compare(emu, introspection);
        if diff.is_empty() || Instant::now() > deadline {
            return diff;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn compare(emu: &Running, introspection: u16) -> Vec<String> {
    let ours = daemon_enis(introspection);
    let vpc = emu.shared.vpc.lock().unwrap();
    let node = &emu.imds[0].0;
    let mut diff = Vec::new();
    for e in vpc.enis() {
        let mine = e
            .attachment
            .as_ref()
            .is_some_and(|a| &a.instance_id == node);
        let created = e.description.starts_with("aws-K8S-");
        if !mine && created {
            diff.push(format!("{} detached but not deleted", e.id));
            continue;
        }
        if !mine {
            continue;
        }
        let ec2: BTreeSet<String> = e
            .secondary_ips
            .iter()
            .map(|ip| format!("{ip}/32"))
            .chain(e.prefixes.iter().map(|p| p.to_string()))
            .collect();
        match ours.get(&e.id) {
            None => diff.push(format!("{} attached, unknown to the daemon", e.id)),
            Some(d) if *d != ec2 => diff.push(format!(
                "{}: EC2 holds {} addresses, the daemon {}",
                e.id,
                ec2.len(),
                d.len()
            )),
            Some(_) => {}
        }
    }
    diff
}

/// The daemon's ENIs and their CIDRs (/32 per secondary IP, /28 per prefix), from introspection.
fn daemon_enis(port: u16) -> BTreeMap<String, BTreeSet<String>> {
    let body = http_get(port, "/v1/enis");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["0"]["ENIs"].as_object().map_or_else(BTreeMap::new, |m| {
        m.iter()
            .map(|(id, e)| {
                let cidrs = e["AvailableIPv4Cidrs"]
                    .as_object()
                    .map(|c| c.keys().cloned().collect())
                    .unwrap_or_default();
                (id.clone(), cidrs)
            })
            .collect()
    })
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// Print the figures; whether every check held.
fn report(t: &Tally, samples: &[Sample], leaks: &[String]) -> bool {
    // The first minute is warm-up (runtime threads, first ENIs) when the run is long enough:
    // the peaks of the first and last thirds of the rest.
    let warm: Vec<&Sample> = samples.iter().filter(|s| s.at >= 60.0).collect();
    let warm = if warm.len() >= 3 {
        warm
    } else {
        samples.iter().collect()
    };
    let n = warm.len() / 3;
    let peak = |s: &[&Sample]| s.iter().map(|x| x.rss_kib).max().unwrap_or(0);
    let (first, last) = (peak(&warm[..n]), peak(&warm[warm.len() - n..]));
    let fds: Vec<usize> = samples.iter().map(|s| s.fds).collect();
    let (fd_min, fd_max) = (
        fds.iter().copied().min().unwrap_or(0),
        fds.iter().copied().max().unwrap_or(0),
    );
    println!(
        "result: {} ADDs, {} DELs, {} refusals (pool empty, retried); duplicates {}, lost {}, EC2/daemon differences after settling {}",
        t.adds,
        t.dels,
        t.refused,
        t.duplicates.len(),
        t.lost.len(),
        leaks.len()
    );
    println!(
        "daemon RSS peak: {:.1} MiB in the first third, {:.1} MiB in the last third; descriptors {fd_min}..{fd_max}",
        first as f64 / 1024.0,
        last as f64 / 1024.0
    );
    for line in t.duplicates.iter().chain(&t.lost).chain(leaks).take(20) {
        println!("  {line}");
    }
    let rss_flat = last <= first + first / 10 + 1024;
    let fds_flat = fd_max - fd_min <= 16;
    if !rss_flat {
        println!("RSS grew");
    }
    if !fds_flat {
        println!("descriptor count grew");
    }
    t.duplicates.is_empty() && t.lost.is_empty() && leaks.is_empty() && rss_flat && fds_flat
}
