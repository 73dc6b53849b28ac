//! Plugin benchmark: ADD and DEL of 100 pods, sequentially and 10 at a time, through the real
//! `aws-cni` (daemon with `--host-network` in a node namespace, simulated VPC) and, in the same
//! run, through Debian's reference `ptp` + `host-local` doing the same job (veth, /32 address,
//! routes). Each operation is one exec of the plugin from inside the node namespace, timed from
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

/// ADD then DEL every pod with `workers` threads; (add ms, del ms, wall s).
fn round(
    p: &Plugin,
    node: &Ns,
    pods: &[Ns],
    tag: &str,
    workers: usize,
) -> (Vec<f64>, Vec<f64>, f64) {
    let start = Instant::now();
    let chunks: Vec<Vec<(usize, &Ns)>> = (0..workers)
        .map(|w| {
            pods.iter()
                .enumerate()
                .filter(|(i, _)| i % workers == w)
                .collect()
        })
        .collect();
    let run = |phase: &str, results: &[Value]| -> Vec<(usize, f64, Value)> {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    s.spawn(move || {
                        enter(node);
                        chunk
                            .iter()
                            .map(|(i, pod)| {
                                let id = format!("{tag}{i}");
                                let (d, v) = exec(p, phase, &id, pod, results.get(*i));
                                (*i, d.as_secs_f64() * 1e3, v)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        })
    };
    let mut added = run("ADD", &[]);
    added.sort_by_key(|a| a.0);
    let results: Vec<Value> = added.iter().map(|a| a.2.clone()).collect();
    let deleted = run("DEL", &results);
    (
        added.iter().map(|a| a.1).collect(),
        deleted.iter().map(|a| a.1).collect(),
        start.elapsed().as_secs_f64(),
    )
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

fn main() {
    require_root();
    let ptp = Path::new("/usr/lib/cni/ptp");
    assert!(
        ptp.exists(),
        "{} missing: apt-get install containernetworking-plugins",
        ptp.display()
    );
    // Each plugin keeps its state where it lives on a real node: ipamd's checkpoint under
    // /var/run (tmpfs on EKS AMIs; /dev/shm here), host-local's leases under /var/lib (disk).
    let dir = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    let leases = tempfile::tempdir().unwrap();
    let node = Ns::new("benchnode");
    // m5.4xlarge: 8 ENIs × 29 addresses; 200 fresh addresses cover both rounds despite the
    // 30 s cooldown of released ones.
    let env = [("MINIMUM_IP_TARGET", "225"), ("WARM_IP_TARGET", "5")];
    let daemon = Daemon::start_in(
        Some(&node.name),
        dir.path(),
        &env,
        &["--host-network", "--instance-type", "m5.4xlarge"],
    );
    wait_for_pool(&node, 7);
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
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.200.0.0/16"}]], "dataDir": leases.path()}}),
    };
    let pods: Vec<Ns> = (0..PODS).map(|i| Ns::new(&format!("b{i}"))).collect();
    println!(
        "{PODS} pods per round; one exec per operation from inside the node namespace; times in ms\n"
    );
    println!(
        "{:<16} {:<12} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "plugin", "mode", "ADD p50", "ADD p99", "DEL p50", "DEL p99", "wall s"
    );
    let mut add_p50 = Vec::new();
    for (workers, mode) in [(1, "sequential"), (PARALLEL, "10 at a time")] {
        for (k, p) in [&aws, &reference].into_iter().enumerate() {
            let tag = format!("{}{workers}x", ["a", "p"][k]);
            let (mut add, mut del, wall) = round(p, &node, &pods, &tag, workers);
            let a50 = pct(&mut add, 0.5);
            println!(
                "{:<16} {:<12} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8.2}",
                p.name,
                mode,
                a50,
                pct(&mut add, 0.99),
                pct(&mut del, 0.5),
                pct(&mut del, 0.99),
                wall
            );
            add_p50.push((p.name, mode, a50));
        }
    }
    for pair in add_p50.chunks(2) {
        println!(
            "\n{}: aws-cni ADD p50 is {:.2}× the reference's (goal ≤ 0.5)",
            pair[0].1,
            pair[0].2 / pair[1].2
        );
    }
    let leftover = node.sh("ip -o link");
    assert!(
        !leftover.contains(": eni") && !leftover.contains(": veth"),
        "every veth removed: {leftover}"
    );
}
