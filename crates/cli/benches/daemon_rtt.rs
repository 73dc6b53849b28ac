//! Daemon benchmark: AddNetwork / DelNetwork round trips over the unix socket with a warm pool,
//! and the daemon's resident memory with 250 pods assigned (goal: under 20 MiB).
//! Run with `cargo bench -p vpc-cni --bench daemon_rtt`.

#[path = "../tests/support/grpc.rs"]
#[allow(dead_code)]
mod grpc;

use std::time::{Duration, Instant};

use grpc::{Daemon, connect};
use vpc_cni_proto::rpc::{AddNetworkRequest, DelNetworkRequest};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let env = [("MINIMUM_IP_TARGET", "300"), ("WARM_IP_TARGET", "50")];
    let d = Daemon::start(&dir, &env, &["--instance-type", "p3dn.24xlarge"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: serde_json::Value =
            serde_json::from_str(&d.get(d.introspection, "/v1/enis")).unwrap();
        if v["0"]["TotalIPs"].as_u64().unwrap_or(0) >= 300 {
            break;
        }
        assert!(Instant::now() < deadline, "pool never warmed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = connect(&d.socket()).await;
    let rss_idle = rss_kib(d.child.id());
    let mut add = Vec::new();
    for i in 0..250u32 {
        let req = AddNetworkRequest {
            k8s_pod_name: format!("pod-{i}"),
            k8s_pod_namespace: "bench".into(),
            container_id: format!("{i:064x}"),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            client_version: VERSION.into(),
            ..Default::default()
        };
        let t = Instant::now();
        let r = c.add_network(req).await.unwrap().into_inner();
        add.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(r.success, "warm pool must serve pod {i}");
    }
    let rss_250 = rss_kib(d.child.id());
    let mut del = Vec::new();
    for i in 0..250u32 {
        let req = DelNetworkRequest {
            container_id: format!("{i:064x}"),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            reason: "PodDeleted".into(),
            client_version: VERSION.into(),
            ..Default::default()
        };
        let t = Instant::now();
        c.del_network(req).await.unwrap();
        del.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!(
        "AddNetwork round trip over the socket, warm pool, 250 sequential: p50 {:.0} µs, p99 {:.0} µs",
        pct(&mut add, 0.5),
        pct(&mut add, 0.99)
    );
    println!(
        "DelNetwork round trip, 250 sequential: p50 {:.0} µs, p99 {:.0} µs",
        pct(&mut del, 0.5),
        pct(&mut del, 0.99)
    );
    println!(
        "daemon RSS: {:.1} MiB idle with a 300-address pool, {:.1} MiB with 250 pods assigned (goal < 20 MiB)",
        rss_idle as f64 / 1024.0,
        rss_250 as f64 / 1024.0
    );
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
    if rss_250 >= 20 * 1024 {
        eprintln!("FAILED: RSS goal missed");
        std::process::exit(1);
    }
}
