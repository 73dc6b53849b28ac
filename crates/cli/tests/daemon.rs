//! End to end: the real `vpc-cni daemon` (sim backend, temp dirs) driven over its unix socket.

#[path = "support/grpc.rs"]
mod grpc;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use grpc::{Daemon, add_req, connect};
use support::plan_json;
use tonic::Code;
use vpc_cni_proto::rpc::DelNetworkRequest;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn del_req(i: u32) -> DelNetworkRequest {
    DelNetworkRequest {
        k8s_pod_name: format!("pod-{i}"),
        k8s_pod_namespace: "default".into(),
        container_id: format!("{i:064x}"),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        reason: "PodDeleted".into(),
        client_version: VERSION.into(),
        ..Default::default()
    }
}

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(line_prefix)
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("metric {line_prefix} missing in:\n{text}"))
}

/// Total IPs and ENIs from introspection.
fn pool(d: &Daemon) -> (u64, u64, u64) {
    let v: serde_json::Value = serde_json::from_str(&d.get(d.introspection, "/v1/enis")).unwrap();
    let card = &v["0"];
    (
        card["TotalIPs"].as_u64().unwrap(),
        card["AssignedIPs"].as_u64().unwrap(),
        card["ENIs"].as_object().unwrap().len() as u64,
    )
}

fn wait_for(what: &str, d: &Daemon, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log tail: {}",
            d.log().lines().rev().take(5).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_pods_over_the_socket() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let env = [
        ("WARM_IP_TARGET", "5"),
        ("MINIMUM_IP_TARGET", "10"),
        ("IP_COOLDOWN_PERIOD", "0"),
    ];
    let d = Daemon::start(&dir, &env, &["--instance-type", "p3dn.24xlarge"]);
    let mut c = connect(&d.socket()).await;

    // The version handshake.
    let mut bad = add_req(0);
    bad.client_version = "0.0.0-other".into();
    let e = c.add_network(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.message(),
        format!("wrong client version \"0.0.0-other\" (!= \"{VERSION}\")")
    );

    // 250 ADDs, each retried like kubelet until the pool has an address.
    let mut ips = BTreeMap::new();
    for i in 0..250 {
        loop {
            let r = c.add_network(add_req(i)).await.unwrap().into_inner();
            if r.success {
                ips.insert(i, r.ip_allocation_metadata[0].i_pv4_addr.clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        ips.values().collect::<BTreeSet<_>>().len(),
        250,
        "no address is handed out twice"
    );
    // ADD is idempotent per key.
    let again = c.add_network(add_req(7)).await.unwrap().into_inner();
    assert_eq!(again.ip_allocation_metadata[0].i_pv4_addr, ips[&7]);
    assert_eq!(again.vp_cv4_cid_rs, vec!["10.0.0.0/20".to_string()]);

    // Pool growth settles where the policy's planner says it does.
    let plan = plan_json(&[
        "--instance-type",
        "p3dn.24xlarge",
        "--warm-ip-target",
        "5",
        "--minimum-ip-target",
        "10",
        "--pods",
        "250,0",
    ]);
    let want_total = plan["rows"][0]["ips_attached"].as_u64().unwrap();
    wait_for("pool growth", &d, || pool(&d).0 == want_total);
    assert_eq!(pool(&d).1, 250);

    // The checkpoint holds exactly the acknowledged assignments.
    let ck: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ipam.json")).unwrap()).unwrap();
    assert_eq!(ck["version"], "vpc-cni-ipam/1");
    let saved: BTreeMap<String, String> = ck["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["containerID"].as_str().unwrap().to_string(),
                a["ipv4"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(saved.len(), 250);
    for (i, ip) in &ips {
        assert_eq!(&saved[&format!("{i:064x}")], ip);
    }
    assert_eq!(
        ck["allocations"][0]["metadata"]["k8sPodNamespace"],
        "default"
    );

    // Metrics and introspection.
    let m = d.get(d.metrics, "/metrics");
    assert_eq!(metric(&m, "awscni_assigned_ip_addresses "), 250.0);
    assert!(metric(&m, "awscni_add_ip_req_count ") >= 251.0);
    let enis = d.get(d.introspection, "/v1/enis");
    assert!(
        !enis.contains(&format!("{:064x}", 7)),
        "containerID is blanked in introspection"
    );

    // 250 DELs return the same addresses; a second DEL is "unknown pod".
    for i in 0..250 {
        let r = c.del_network(del_req(i)).await.unwrap().into_inner();
        assert!(r.success);
        assert_eq!(r.ip_allocation_metadata[0].i_pv4_addr, ips[&i]);
    }
    let e = c.del_network(del_req(0)).await.unwrap_err();
    assert!(e.message().contains("datastore: unknown pod"), "{e:?}");
    let want_after = plan["rows"][1]["ips_attached"].as_u64().unwrap();
    wait_for("pool shrink", &d, || pool(&d).0 == want_after);
    let m = d.get(d.metrics, "/metrics");
    assert_eq!(
        metric(&m, "awscni_del_ip_req_count{reason=\"PodDeleted\"} "),
        251.0
    );
    let ck: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ipam.json")).unwrap()).unwrap();
    assert_eq!(ck["allocations"].as_array().unwrap().len(), 0);

    // promtool validates the exposition (Debian's prometheus package; CI installs it).
    let metrics_file = dir.join("metrics.txt");
    std::fs::write(&metrics_file, &m).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&metrics_file).unwrap())
        .output()
        .expect("promtool must be installed (apt-get install prometheus)");
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // Upstream's names (counters without `_total`, `*_count` counters, the `_ms` of
    // awscni_aws_api_latency_ms) trip three naming lints; any other finding, or a parse error,
    // fails.
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let naming = line.contains("should have \"_total\" suffix")
            || line.contains("should not have \"_count\" suffix")
            || line.starts_with(
                "awscni_aws_api_latency_ms metric names should not contain abbreviated units",
            );
        assert!(naming, "promtool: {line}");
    }
    // The check can fail: a malformed exposition is rejected.
    let garbage = dir.join("garbage.txt");
    std::fs::write(&garbage, "awscni_x{a=\"1 1\n").unwrap();
    let bad = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&garbage).unwrap())
        .output()
        .unwrap();
    assert!(
        !bad.status.success(),
        "promtool accepted a malformed exposition"
    );

    // SIGTERM: stop, flush, exit 0, socket removed.
    let pid = d.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut d = d;
    let status = d.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(!dir.join("ipamd.sock").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kill -9 during a burst of AddNetwork calls, restart: every address acknowledged before the
/// kill is still assigned to the same key, and no address is assigned twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-kill9-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("vpc.json");
    let args = [
        "--instance-type",
        "p3dn.24xlarge",
        "--sim-state",
        state.to_str().unwrap(),
    ];
    let env = [("WARM_IP_TARGET", "10"), ("MINIMUM_IP_TARGET", "20")];
    let mut d = Daemon::start(&dir, &env, &args);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<u32, String>::new()));
    let mut tasks = Vec::new();
    for worker in 0..8u32 {
        let socket = d.socket();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&socket).await;
            for k in 0..40u32 {
                let i = worker * 1000 + k;
                loop {
                    match c.add_network(add_req(i)).await {
                        Ok(r) if r.get_ref().success => {
                            acked.lock().unwrap().insert(
                                i,
                                r.into_inner().ip_allocation_metadata[0].i_pv4_addr.clone(),
                            );
                            break;
                        }
                        Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        Err(_) => return, // the daemon is gone
                    }
                }
            }
        }));
    }
    // Kill once a good part of the burst is acknowledged.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 100 {
        assert!(
            Instant::now() < deadline,
            "burst too slow; log: {}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 100);
    drop(d);

    let d = Daemon::start(&dir, &env, &args);
    let ck: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ipam.json")).unwrap()).unwrap();
    let allocations = ck["allocations"].as_array().unwrap();
    let ips: Vec<&str> = allocations
        .iter()
        .map(|a| a["ipv4"].as_str().unwrap())
        .collect();
    assert_eq!(
        ips.iter().collect::<BTreeSet<_>>().len(),
        ips.len(),
        "an address is assigned twice"
    );
    let mut c = connect(&d.socket()).await;
    for (i, ip) in &acked {
        let r = c.add_network(add_req(*i)).await.unwrap().into_inner();
        assert!(r.success);
        assert_eq!(
            &r.ip_allocation_metadata[0].i_pv4_addr, ip,
            "pod {i} lost its address over the restart"
        );
    }
    assert!(d.log().contains("checkpoint restored"));
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An independent gRPC implementation (Python grpcio, stubs generated from proto/rpc.proto)
/// talks to the daemon: AddNetwork, the version handshake, DelNetwork, health, config server.
#[test]
fn python_grpcio_client_is_wire_compatible() {
    let python = std::env::var("VPC_CNI_PYTHON")
        .expect("VPC_CNI_PYTHON must name a Python with grpcio, grpcio-tools and grpcio-health-checking (scripts/check sets it up)");
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::temp_dir().join(format!("vpc-cni-py-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let stubs = dir.join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let protoc = std::process::Command::new(&python)
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(root.join("proto"))
        .arg(format!("--python_out={}", stubs.display()))
        .arg(format!("--grpc_python_out={}", stubs.display()))
        .arg(root.join("proto/rpc.proto"))
        .output()
        .unwrap();
    assert!(
        protoc.status.success(),
        "protoc: {}",
        String::from_utf8_lossy(&protoc.stderr)
    );
    let d = Daemon::start(&dir.join("node"), &[], &["--instance-type", "m5.large"]);
    let out = std::process::Command::new(&python)
        .arg(root.join("tests/python/wire_check.py"))
        .arg(&stubs)
        .arg(d.socket())
        .arg(VERSION)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wire_check.py failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        seen["add_ip"].as_str().unwrap().starts_with("10.0."),
        "{seen}"
    );
    assert_eq!(seen["vpc_cidrs"], serde_json::json!(["10.0.0.0/20"]));
    assert_eq!(seen["route_table"], 254);
    assert!(
        seen["bad_version"]
            .as_str()
            .unwrap()
            .starts_with("wrong client version \"bogus\"")
    );
    assert_eq!(seen["second_del"], "datastore: unknown pod");
    assert_eq!(seen["health"], "SERVING");
    assert_eq!(seen["health_aws_node"], "SERVING");
    assert!(seen["node_ip"].as_str().unwrap().starts_with("10.0."));
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `vpc-cni inspect` reads the introspection endpoint; bad daemon settings stop it with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_and_config_errors() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-inspect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = Daemon::start(
        &dir,
        &[("WARM_IP_TARGET", "3")],
        &["--instance-type", "m5.large"],
    );
    let mut c = connect(&d.socket()).await;
    loop {
        if c.add_network(add_req(1))
            .await
            .unwrap()
            .into_inner()
            .success
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addr = format!("127.0.0.1:{}", d.introspection);
    let r = support::run_builtin(&["inspect", "--addr", &addr, "--addresses"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Network card 0:"), "{}", r.stdout);
    assert!(r.stdout.contains("default/pod-1"), "{}", r.stdout);
    let j = support::run_builtin(&["inspect", "--addr", &addr, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["0"]["AssignedIPs"], 1);
    let env: serde_json::Value =
        serde_json::from_str(&d.get(d.introspection, "/v1/ipamd-env-settings")).unwrap();
    assert_eq!(env["WARM_IP_TARGET"], "3");
    drop(d);
    let r = support::run_builtin(&["inspect", "--addr", &addr]);
    assert!(
        r.code == 1 && r.stderr.contains("cannot reach the daemon"),
        "{}",
        r.stderr
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(["daemon", "--socket"])
        .arg(dir.join("x.sock"))
        .env("WARM_IP_TARGET", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid WARM_IP_TARGET=\"lots\": expected an integer ≥ 0"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A corrupt checkpoint stops the daemon with the file named; nothing is overwritten.
#[test]
fn corrupt_checkpoint_stops_the_daemon() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-corrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ipam.json"),
        "{\"version\":\"vpc-cni-ipam/1\",\"allocations\":[{\"ipv4\":",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(["daemon", "--sim-latency-scale", "0", "--socket"])
        .arg(dir.join("ipamd.sock"))
        .arg("--checkpoint")
        .arg(dir.join("ipam.json"))
        .env("AWS_VPC_K8S_CNI_LOG_FILE", "stderr")
        .env("DISABLE_METRICS", "true")
        .env("DISABLE_INTROSPECTION", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ipam.json is corrupt") && err.contains("refusing to start"),
        "{err}"
    );
    assert!(
        std::fs::read_to_string(dir.join("ipam.json"))
            .unwrap()
            .ends_with("\"ipv4\":"),
        "the file is left as it was"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
