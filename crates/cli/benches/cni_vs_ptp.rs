//! Plugin benchmark, IPv4 and then IPv6 (`BENCH_FAMILIES=ipv4,ipv6`, the default; the IPv6 node
//! runs in `ENABLE_IPv6` mode, the reference on an IPv6 range): ADD and DEL of 100 pods, sequentially and 10 at a time, through the real
//! `aws-cni` (daemon with `--host-network` in a node namespace, simulated VPC) and Debian's
//! reference `ptp` + `host-local` doing the same job (veth, /32 address, routes), alternating pod
//! by pod in one run (a tight loop of each in turn flatters whichever runs warm); `BENCH_ROUNDS`
//! rounds (default 3), the ratio of ADD p50s per round and its median. Each operation is one exec of the plugin from inside the node namespace, timed from
//! spawn to exit; pod namespaces exist beforehand, as a runtime creates them first.
//! State lives where it does on a real node: ipamd's checkpoint on tmpfs (/var/run there,
//! /dev/shm here), host-local's leases on disk (/var/lib/cni there, a temp dir here).
//! Needs root, iproute2 and containernetworking-plugins. Run with `scripts/bench-cni`.

#[path = "../tests/support/grpc.rs"]
#[allow(dead_code)]
mod grpc;
#[path = "../tests/support/netns.rs"]
#[allow(dead_code)]
mod netns;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use grpc::Daemon;
use netns::{Ns, aws_cni_bin, cni_env, require_root};
use serde_json::{Value, json};

const PODS: usize = 100;
const PARALLEL: usize = 10;

struct Plugin {
    name: &'static str,
    bin: PathBuf,
    conf: Value,
}

/// Enter `ns` on this thread: children forked from it start there.
fn enter(ns: &Ns) {
    let f = std::fs::File::open(ns.path()).expect("open node netns");
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("setns into the node namespace");
}

/// One exec; its duration and stdout (panics on a failed operation: the numbers would lie).
fn exec(p: &Plugin, command: &str, id: &str, pod: &Ns, prev: Option<&Value>) -> (Duration, Value) {
    let mut conf = p.conf.clone();
    if let Some(pr) = prev {
        conf["prevResult"] = pr.clone();
    }
    let input = conf.to_string();
    let start = Instant::now();
    let mut child = Command::new(&p.bin)
        .env_clear()
        .envs(cni_env(command, id, &pod.path(), id))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{} {command} {id}: {}{}",
        p.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        took,
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
    )
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Times of one plugin in one round.
#[derive(Default)]
struct Times {
    add: Vec<f64>,
    del: Vec<f64>,
}

/// ADD then DEL every pod with `workers` threads, the two plugins alternating pod by pod on every
/// thread (which goes first alternates too), so both see the same machine state: warm caches,
/// RTNL contention, the other's processes. Returns (aws times, reference times, wall s).
fn round(
    plugins: [&Plugin; 2],
    node: &Ns,
    pods: [&[Ns]; 2],
    tag: &str,
    workers: usize,
) -> (Times, Times, f64) {
    let start = Instant::now();
    let n = pods[0].len();
    let chunks: Vec<Vec<usize>> = (0..workers)
        .map(|w| (0..n).filter(|i| i % workers == w).collect())
        .collect();
    // (plugin, pod, ms, result)
    let run = |phase: &str, results: &[Vec<Value>; 2]| -> Vec<(usize, usize, f64, Value)> {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    s.spawn(move || {
                        enter(node);
                        let mut out = Vec::new();
                        for &i in chunk {
                            let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
                            for k in order {
                                let id = format!("{tag}{k}-{i}");
                                let prev = results[k].get(i);
                                let (d, v) = exec(plugins[k], phase, &id, &pods[k][i], prev);
                                out.push((k, i, d.as_secs_f64() * 1e3, v));
                            }
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        })
    };
    let mut added = run("ADD", &[Vec::new(), Vec::new()]);
    added.sort_by_key(|a| (a.0, a.1));
    let results: [Vec<Value>; 2] = [0, 1].map(|k| {
        added
            .iter()
            .filter(|a| a.0 == k)
            .map(|a| a.3.clone())
            .collect()
    });
    let deleted = run("DEL", &results);
    let mut t = [Times::default(), Times::default()];
    for a in &added {
        t[a.0].add.push(a.2);
    }
    for d in &deleted {
        t[d.0].del.push(d.2);
    }
    let [a, b] = t;
    (a, b, start.elapsed().as_secs_f64())
}

fn wait_for_pool(node: &Ns, enis: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rules = node.sh("ip rule");
        if rules.matches("32765:").count() >= enis {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the pool did not reach {enis} secondary ENIs: {rules}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The node's set-up per address family: daemon variables and flags, the reference's range.
struct Family {
    name: &'static str,
    env: Vec<(&'static str, &'static str)>,
    args: Vec<&'static str>,
    ptp_subnet: &'static str,
}

fn families() -> Vec<Family> {
    // m5.4xlarge: 8 ENIs × 29 addresses, all attached up front; a 1 s cooldown lets every round
    // reuse the previous round's addresses. IPv6: one /80 on the primary ENI, nothing to wait for.
    let v4 = Family {
        name: "ipv4",
        env: vec![
            ("MINIMUM_IP_TARGET", "225"),
            ("WARM_IP_TARGET", "5"),
            ("IP_COOLDOWN_PERIOD", "1"),
        ],
        args: vec!["--host-network", "--instance-type", "m5.4xlarge"],
        ptp_subnet: "10.200.0.0/16",
    };
    let v6 = Family {
        name: "ipv6",
        env: vec![
            ("ENABLE_IPv6", "true"),
            ("ENABLE_IPv4", "false"),
            ("ENABLE_PREFIX_DELEGATION", "true"),
            ("WARM_PREFIX_TARGET", "1"),
            ("IP_COOLDOWN_PERIOD", "1"),
        ],
        args: vec![
            "--host-network",
            "--instance-type",
            "m5.4xlarge",
            "--subnet-ipv6",
            "2600:1f14:abc:de00::/56",
        ],
        ptp_subnet: "fd00:200::/64",
    };
    let want = std::env::var("BENCH_FAMILIES").unwrap_or_else(|_| "ipv4,ipv6".into());
    [v4, v6]
        .into_iter()
        .filter(|f| want.split(',').any(|w| w.trim() == f.name))
        .collect()
}

fn main() {
    require_root();
    let ptp = Path::new("/usr/lib/cni/ptp");
    assert!(
        ptp.exists(),
        "{} missing: apt-get install containernetworking-plugins",
        ptp.display()
    );
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!(
        "{PODS} pods per plugin per round, the two plugins alternating pod by pod in one run; one \
         exec per operation from inside the node namespace; times in ms"
    );
    let mut summary = Vec::new();
    for f in families() {
        summary.extend(bench_family(&f, ptp, rounds));
    }
    println!("\nADD p50 per family (median over rounds), aws-cni beside the reference:");
    for (family, mode, aws, reference, ratio) in &summary {
        println!(
            "  {family:<5} {mode:<13} aws-cni {aws:>6.2} ms   ptp+host-local {reference:>6.2} ms   ratio {ratio:.3}"
        );
    }
}

/// Rounds of one family; (family, mode, aws ADD p50, reference ADD p50, ratio) medians.
fn bench_family(f: &Family, ptp: &Path, rounds: usize) -> Vec<(String, String, f64, f64, f64)> {
    // Each plugin keeps its state where it lives on a real node: ipamd's checkpoint under
    // /var/run (tmpfs on EKS AMIs; /dev/shm here), host-local's leases under /var/lib (disk).
    let dir = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    let leases = tempfile::tempdir().unwrap();
    let node = Ns::new("benchnode");
    let daemon = Daemon::start_in(Some(&node.name), dir.path(), &f.env, &f.args);
    if f.name == "ipv4" {
        wait_for_pool(&node, 7);
    }
    let aws = Plugin {
        name: "aws-cni",
        bin: aws_cni_bin(),
        conf: json!({"cniVersion": "0.4.0", "name": "aws-cni", "type": "aws-cni", "mtu": "9001",
            "pluginLogFile": dir.path().join("plugin.log"), "pluginLogLevel": "Info", "ipamdSocket": daemon.socket()}),
    };
    let reference = Plugin {
        name: "ptp+host-local",
        bin: ptp.to_path_buf(),
        conf: json!({"cniVersion": "0.4.0", "name": "ptpnet", "type": "ptp", "ipMasq": false, "mtu": 9001,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": f.ptp_subnet}]], "dataDir": leases.path()}}),
    };
    let pods_a: Vec<Ns> = (0..PODS).map(|i| Ns::new(&format!("a{i}"))).collect();
    let pods_p: Vec<Ns> = (0..PODS).map(|i| Ns::new(&format!("p{i}"))).collect();
    println!("\n== {} ==", f.name);
    println!(
        "{:<6} {:<16} {:<12} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "round", "plugin", "mode", "ADD p50", "ADD p99", "DEL p50", "DEL p99", "ratio"
    );
    let mut ratios: Vec<(&str, f64, f64, f64)> = Vec::new();
    for r in 0..rounds {
        for (workers, mode) in [(1, "sequential"), (PARALLEL, "10 at a time")] {
            let tag = format!("r{r}w{workers}");
            let (mut a, mut p, _) =
                round([&aws, &reference], &node, [&pods_a, &pods_p], &tag, workers);
            let (a50, p50) = (pct(&mut a.add, 0.5), pct(&mut p.add, 0.5));
            let ratio = a50 / p50;
            for (t, name) in [(&mut a, aws.name), (&mut p, reference.name)] {
                println!(
                    "{:<6} {:<16} {:<12} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8}",
                    r + 1,
                    name,
                    mode,
                    pct(&mut t.add, 0.5),
                    pct(&mut t.add, 0.99),
                    pct(&mut t.del, 0.5),
                    pct(&mut t.del, 0.99),
                    if name == aws.name {
                        format!("{ratio:.3}")
                    } else {
                        String::new()
                    }
                );
            }
            ratios.push((mode, ratio, a50, p50));
        }
    }
    let out = summarize(f.name, &ratios, rounds);
    let leftover = node.sh("ip -o link");
    assert!(
        !leftover.contains(": eni") && !leftover.contains(": veth"),
        "every veth removed: {leftover}"
    );
    out
}

/// Per mode, the medians over rounds of one family: (family, mode, aws ADD p50, reference ADD
/// p50, ratio); the ratio's range is printed against the goal.
fn summarize(
    family: &str,
    ratios: &[(&str, f64, f64, f64)],
    rounds: usize,
) -> Vec<(String, String, f64, f64, f64)> {
    let mut out = Vec::new();
    for (mode, goal) in [("sequential", 0.35), ("10 at a time", 0.45)] {
        let pick = |k: usize| -> Vec<f64> {
            ratios
                .iter()
                .filter(|r| r.0 == mode)
                .map(|r| [r.1, r.2, r.3][k])
                .collect()
        };
        let mut v = pick(0);
        let (lo, hi) = (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(0.0, f64::max),
        );
        let med = pct(&mut v, 0.5);
        println!(
            "{}: {mode}: aws-cni ADD p50 / reference ADD p50 over {rounds} round(s): median {med:.3}, range {lo:.3}–{hi:.3} (goal ≤ {goal})",
            family
        );
        out.push((
            family.to_string(),
            mode.to_string(),
            pct(&mut pick(1), 0.5),
            pct(&mut pick(2), 0.5),
            med,
        ));
    }
    out
}
