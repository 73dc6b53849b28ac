//! The daemon with `--cloud aws` (aws-sdk-ec2 + the SDK's IMDSv2 client) against `vpc-cni
//! emulate`: pods get addresses up to the instance's limits, and what EC2 holds afterwards (ENIs,
//! addresses, tags, DeleteOnTermination) is what the daemon's datastore holds.

#[allow(dead_code)]
#[path = "support/awsd.rs"]
mod awsd;
#[allow(dead_code)]
#[path = "support/emu.rs"]
mod emu;
#[allow(dead_code)]
#[path = "support/grpc.rs"]
mod grpc;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use awsd::{aws_daemon, daemon_state, ec2_state, http_get, python, req};
use emu::emulator;
use grpc::connect;
use serde_json::Value;

async fn run(prefix_mode: bool, pods: u32, max_pods: &str) {
    let (_emu, ep) = emulator(&["--instance-type", "m5.large"]);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("CLUSTER_NAME", "emu"),
        (
            "ADDITIONAL_ENI_TAGS",
            r#"{"team":"net","node.k8s.amazonaws.com/no_manage":"true"}"#,
        ),
        (
            "ENABLE_PREFIX_DELEGATION",
            if prefix_mode { "true" } else { "false" },
        ),
        // The upstream manifest's value; prefix mode with every target at 0 is refused.
        ("WARM_PREFIX_TARGET", "1"),
    ];
    let d = aws_daemon(&ep, dir.path(), &env, &["--max-pods", max_pods]);
    let mut c = connect(&d.socket()).await;
    for i in 0..pods {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = c
                .add_network(req(i))
                .await
                .expect("AddNetwork")
                .into_inner();
            if r.success {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pod {i} got no address; log: {}",
                d.log().lines().rev().take(8).collect::<Vec<_>>().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let ours = daemon_state(&d);
    let theirs = ec2_state(&ep);
    let attached = theirs["attached"].as_object().unwrap();
    assert_eq!(
        ours.keys().collect::<BTreeSet<_>>(),
        attached.keys().collect::<BTreeSet<_>>(),
        "same ENIs"
    );
    for (id, e) in attached {
        let mut cidrs: BTreeSet<String> = e["ips"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| format!("{}/32", i.as_str().unwrap()))
            .collect();
        cidrs.extend(
            e["prefixes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string()),
        );
        assert_eq!(ours[id], cidrs, "addresses of {id}");
        // Every managed ENI carries this node's tags, the primary included (tagged at start).
        assert_eq!(
            e["tags"]["node.k8s.amazonaws.com/instance_id"], ep["imds"][0]["instance_id"],
            "{e}"
        );
        assert_eq!(
            (
                e["tags"]["cluster.k8s.amazonaws.com/name"].as_str(),
                e["tags"]["eks:eni:owner"].as_str(),
                e["tags"]["team"].as_str()
            ),
            (Some("emu"), Some("amazon-vpc-cni"), Some("net")),
            "{e}"
        );
        assert!(
            e["tags"].get("node.k8s.amazonaws.com/no_manage").is_none(),
            "reserved ADDITIONAL_ENI_TAGS key dropped: {e}"
        );
        if e["device"] != 0 {
            assert_eq!(e["delete_on_termination"], true, "{e}");
            assert!(
                e["tags"]["node.k8s.amazonaws.com/createdAt"]
                    .as_str()
                    .is_some_and(|t| t.ends_with('Z')),
                "{e}"
            );
        }
    }
    assert!(
        theirs["available"].as_array().unwrap().is_empty(),
        "no leaked ENI: {theirs}"
    );
    if !prefix_mode {
        // 3 ENIs × 9 secondary addresses: the 28th pod cannot have one.
        assert_eq!(ours.len(), 3);
        let r = c.add_network(req(pods)).await.unwrap().into_inner();
        assert!(!r.success, "no address beyond the instance's limits");
        let m = d.get(d.metrics, "/metrics");
        let created = m
            .lines()
            .find_map(|l| l.strip_prefix("awscni_aws_api_latency_ms_count{api=\"CreateNetworkInterface\",error=\"false\",status=\"200\"} "))
            .unwrap_or_else(|| panic!("no latency series for CreateNetworkInterface in:\n{m}"));
        assert_eq!(created, "2", "two ENIs created");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_ip_mode_27_pods_on_an_m5_large() {
    run(false, 27, "29").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_mode_110_pods_on_an_m5_large() {
    run(true, 110, "110").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_injected_errors_and_throttling_converge_and_leak_nothing() {
    let (_emu, ep) = emulator(&[
        "--instance-type",
        "m5.large",
        "--error-rate",
        "0.3",
        "--throttle-rate",
        "0.1",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("IP_COOLDOWN_PERIOD", "0"),
        ("WARM_ENI_TARGET", "0"),
        ("WARM_IP_TARGET", "1"),
    ];
    let d = aws_daemon(&ep, dir.path(), &env, &["--max-pods", "29"]);
    let mut c = connect(&d.socket()).await;
    for i in 0..27 {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !c
            .add_network(req(i))
            .await
            .expect("AddNetwork")
            .into_inner()
            .success
        {
            assert!(
                Instant::now() < deadline,
                "pod {i} never got an address; log: {}",
                d.log().lines().rev().take(8).collect::<Vec<_>>().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        daemon_state(&d).len(),
        3,
        "three ENIs for 27 pods despite the errors"
    );
    let stats = http_get(ep["ec2"].as_str().unwrap(), "/_emulator/stats");
    let injected = stats["errors"]["InternalError"].as_u64().unwrap_or(0);
    assert!(injected > 0, "errors were injected: {stats}");
    let throttled = stats["errors"]["RequestLimitExceeded"]
        .as_u64()
        .unwrap_or(0);
    assert!(throttled > 0, "calls were throttled: {stats}");
    // The figures the README reports (visible with --nocapture).
    println!("faults injected while placing 27 pods: {stats}");
    for i in 0..27 {
        let mut del = vpc_cni_proto::rpc::DelNetworkRequest {
            k8s_pod_name: format!("pod-{i}"),
            k8s_pod_namespace: "default".into(),
            container_id: format!("{i:064x}"),
            if_name: "eth0".into(),
            network_name: "aws-cni".into(),
            reason: "PodDeleted".into(),
            client_version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        };
        del.k8s_pod_uid = String::new();
        c.del_network(del).await.expect("DelNetwork");
    }
    // The pool frees the secondary ENIs; whatever EC2 refused on the way, none is left behind.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let theirs = ec2_state(&ep);
        let attached = theirs["attached"].as_object().unwrap().len();
        if attached == 1 && theirs["available"].as_array().unwrap().is_empty() {
            assert_eq!(daemon_state(&d).len(), 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ENIs not freed cleanly: {theirs}; log: {}",
            d.log().lines().rev().take(8).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[test]
fn node_termination_and_the_leak_sweep() {
    let (_emu, ep) = emulator(&["--instance-type", "m5.large", "--instance-type", "m5.large"]);
    let ec2 = ep["ec2"].as_str().unwrap();
    let me = ep["imds"][0]["instance_id"].as_str().unwrap();
    let other = ep["imds"][1]["instance_id"].as_str().unwrap();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python/leak_setup.py");
    let out = Command::new(python())
        .arg(script)
        .args([ec2, me, other])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let enis: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (enis["dot_gone"].as_bool(), enis["kept_left"].as_bool()),
        (Some(true), Some(true)),
        "termination: {enis}"
    );

    let sweep = |delete: bool| -> Value {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpc-cni"));
        cmd.args(["leaked-enis", "--output", "json"])
            .env("AWS_ENDPOINT_URL_EC2", ec2)
            .env(
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                ep["imds"][0]["endpoint"].as_str().unwrap(),
            )
            .env("AWS_ACCESS_KEY_ID", "emulator")
            .env("AWS_SECRET_ACCESS_KEY", "emulator")
            .env("AWS_REGION", "us-east-1");
        if delete {
            cmd.arg("--delete");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let ids = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    let one = |k: &str| -> BTreeSet<String> { [enis[k].as_str().unwrap().to_string()].into() };
    let dry = sweep(false);
    assert_eq!(ids(&dry["deleted"]), one("old"), "{dry}");
    let r = sweep(true);
    assert_eq!(ids(&r["deleted"]), one("old"), "{r}");
    assert_eq!(ids(&r["young"]), one("young"), "{r}");
    let tagged: BTreeSet<String> = [
        enis["untagged"].as_str().unwrap().to_string(),
        enis["kept"].as_str().unwrap().to_string(),
    ]
    .into();
    assert_eq!(ids(&r["tagged"]), tagged, "{r}");
    // Afterwards: the old leak is gone; everything else is still there, the first sightings tagged.
    let again = sweep(false);
    assert!(
        ids(&again["deleted"]).is_empty() && ids(&again["tagged"]).is_empty(),
        "{again}"
    );
    assert_eq!(
        ids(&again["young"]).len(),
        3,
        "young + the two first seen: {again}"
    );
    let stats = http_get(ec2, "/_emulator/stats");
    assert_eq!(
        stats["calls"]["DeleteNetworkInterface"].as_u64(),
        Some(1),
        "only the old leak was deleted: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_missing_from_the_table_comes_from_describe_instance_types() {
    // The emulator knows m6a.large from the reference data; the daemon only has its 21 built-ins.
    let data = std::env::var("VPC_CNI_TEST_DATA_DIR")
        .expect("VPC_CNI_TEST_DATA_DIR (scripts/check sets it)");
    let (_emu, ep) = emulator(&["--instance-type", "m6a.large", "--data-dir", &data]);
    let dir = tempfile::tempdir().unwrap();
    let d = aws_daemon(&ep, dir.path(), &[], &[]);
    assert!(
        d.log().contains("limits from DescribeInstanceTypes"),
        "{}",
        d.log()
    );
    let mut c = connect(&d.socket()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.add_network(req(0)).await.unwrap().into_inner().success {
        assert!(Instant::now() < deadline, "no address on m6a.large");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = d.get(d.metrics, "/metrics");
    assert!(m.contains("awscni_eni_max 3"), "m6a.large: 3 ENIs\n{m}");
}
