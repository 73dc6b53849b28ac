//! The daemon with `VPC_CNI_POOL_POLICY=adaptive` (sim backend, temp dirs), driven over its unix
//! socket like kubelet: a starting node fills its primary ENI in one call, a burst of pods gets
//! addresses from the refill each miss triggers at once, and a bad policy name stops the daemon
//! with the variable named.

#[path = "support/grpc.rs"]
mod grpc;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use grpc::{Daemon, add_req, connect};

fn total_ips(d: &Daemon) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&d.get(d.introspection, "/v1/enis")).unwrap();
    v["0"]["TotalIPs"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_daemon_boots_small_and_refills_on_a_miss() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-adaptive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A 60 s pool period: only a refill on a miss can serve the burst within the test.
    let d = Daemon::start(
        &dir,
        &[
            ("VPC_CNI_POOL_POLICY", "adaptive"),
            ("IP_COOLDOWN_PERIOD", "0"),
        ],
        &["--instance-type", "m5.large", "--cycle-ms", "60000"],
    );
    // The first cycle runs at start: one ENI's worth on the primary (9 on an m5.large), not
    // upstream's primary plus a warm ENI.
    let deadline = Instant::now() + Duration::from_secs(20);
    while total_ips(&d) != 9 {
        assert!(
            Instant::now() < deadline,
            "boot fill never came; log: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = d.get(d.metrics, "/metrics");
    assert!(metrics.contains("awscni_total_ip_addresses 9"), "{metrics}");
    let env: serde_json::Value =
        serde_json::from_str(&d.get(d.introspection, "/v1/ipamd-env-settings")).unwrap();
    assert_eq!(env["VPC_CNI_POOL_POLICY"], "adaptive");

    // 20 pods, each retried like kubelet: 9 fit, the rest need a new ENI that the misses ask
    // for long before the next 60 s period.
    let mut c = connect(&d.socket()).await;
    let started = Instant::now();
    let mut ips = BTreeSet::new();
    for i in 0..20 {
        loop {
            let r = c.add_network(add_req(i)).await.unwrap().into_inner();
            if r.success {
                ips.insert(r.ip_allocation_metadata[0].i_pv4_addr.clone());
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "pod {i} never got an address; log: {}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(ips.len(), 20, "no address is handed out twice");
    assert!(started.elapsed() < Duration::from_secs(30));
    let log = d.log();
    assert!(
        log.contains("adaptive: need"),
        "decisions carry the adaptive reason: {log}"
    );
    assert!(total_ips(&d) >= 20);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_pool_policy_stops_the_daemon_naming_the_variable() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-adaptive-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(["daemon", "--socket"])
        .arg(dir.join("x.sock"))
        .env("VPC_CNI_POOL_POLICY", "smart")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid VPC_CNI_POOL_POLICY=\"smart\": expected aws or adaptive"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
