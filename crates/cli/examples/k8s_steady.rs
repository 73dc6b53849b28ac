//! Benchmark: the daemon (`--cloud aws`, with the Kubernetes client) on a node with 250 pods, in
//! steady state. EC2/IMDS and the Kubernetes API emulator run in this process; the Node says
//! `capacity.pods: 250`. After the pods are assigned the API server's request counters are reset
//! and the daemon is left alone for `--seconds`: printed are its RSS and every request it made
//! in that window (goal: the watches only), with the hourly rate.
//!
//! `cargo run --release -p vpc-cni --example k8s_steady -- --seconds 600`

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[path = "support/node.rs"]
mod node;

use anyhow::{Context, bail};
use clap::Parser;
use node::{Reaped, add_request, aws_daemon, connect, free_port, rss_kib, vpc_cni_exe};
use serde_json::json;
use vpc_cni_emulator::{EmulatorConfig, start};

fn rss_mib(pid: u32) -> f64 {
    rss_kib(pid) as f64 / 1024.0
}

#[derive(Debug, Parser)]
struct Args {
    /// Length of the steady-state window.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Pods assigned before the window.
    #[arg(long, default_value_t = 250)]
    pods: u32,
    /// The vpc-cni binary (default: the one built beside this example).
    #[arg(long)]
    vpc_cni: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    // m5.16xlarge (15 ENIs × 50 addresses) is in the reference data, not the built-in table.
    let env = std::env::var(vpc_cni_limits::DATA_DIR_ENV).ok();
    let table = vpc_cni_limits::LimitsTable::resolve(None, env.as_deref())?;
    let itype = table.get("m5.16xlarge")?.clone();
    let cfg = EmulatorConfig {
        instances: vec![itype],
        subnet: "10.0.0.0/16".parse()?,
        extra_subnets: Vec::new(),
        security_groups: Vec::new(),
        seed: 3,
        latency_scale: 0.0,
        error_rate: 0.0,
        throttle_rate: 0.0,
        ipv6_cidr: None,
        region: "us-east-1".into(),
    };
    let lo = "127.0.0.1:0".parse()?;
    let ec2 = start(&cfg, lo, lo)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let k8s = vpc_cni_kubemu::start(lo, "bench").await?;
    let node = "ip-10-0-0-1.ec2.internal";
    {
        let mut st = k8s.shared.store.lock().unwrap();
        let nodes = st.find("", "v1", "nodes").context("nodes")?;
        let body = json!({"metadata": {"name": node},
                          "status": {"capacity": {"pods": args.pods.to_string()}}});
        st.create(&nodes, "", body)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // The pods exist in the API, as on a cluster (the Pod watch sees them).
        let pods = st.find("", "v1", "pods").context("pods")?;
        for i in 0..args.pods {
            let pod = json!({"metadata": {"name": format!("pod-{i}")}, "spec": {"nodeName": node}});
            st.create(&pods, "default", pod)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let dir = tempfile::tempdir()?;
    let kc = dir.path().join("kubeconfig");
    std::fs::write(&kc, k8s.kubeconfig("bench"))?;
    let exe = vpc_cni_exe(args.vpc_cni.as_ref())?;
    let sock = dir.path().join("ipamd.sock");
    let child = aws_daemon(&exe, dir.path(), &ec2, free_port()?, free_port()?)
        .arg("--kubeconfig")
        .arg(&kc)
        .env("MY_NODE_NAME", node)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let d = Reaped(child);
    let pid = d.0.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        if Instant::now() > deadline {
            bail!("daemon socket never answered");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = connect(&sock).await?;
    let started = Instant::now();
    for i in 0..args.pods {
        loop {
            let r = c
                .add_network(add_request(
                    "default",
                    &format!("pod-{i}"),
                    &format!("{i:064x}"),
                ))
                .await?
                .into_inner();
            if r.success {
                break;
            }
            if started.elapsed() > Duration::from_secs(300) {
                bail!("pod {i} got no address in 300 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    println!(
        "{} pods assigned in {:.1} s; daemon RSS {:.1} MiB",
        args.pods,
        started.elapsed().as_secs_f64(),
        rss_mib(pid)
    );
    k8s.shared.requests.lock().unwrap().clear();
    let mut peak = 0f64;
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        peak = peak.max(rss_mib(pid));
    }
    let reqs = k8s.shared.requests.lock().unwrap().clone();
    let total: u64 = reqs.values().sum();
    println!(
        "steady state, {} s: daemon RSS {:.1} MiB (peak {peak:.1}); {total} API requests ({:.0}/hour):",
        args.seconds,
        rss_mib(pid),
        total as f64 * 3600.0 / args.seconds as f64
    );
    let mut lines: Vec<_> = reqs.into_iter().collect();
    lines.sort();
    for (k, n) in lines {
        println!("  {n:>5}  {k}");
    }
    Ok(())
}
