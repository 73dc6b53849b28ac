//! The daemon with `--cloud aws` (aws-sdk-ec2 + the SDK's IMDSv2 client) against `vpc-cni
//! emulate`: pods get addresses up to the instance's limits, and what EC2 holds afterwards (ENIs,
//! addresses, tags, DeleteOnTermination) is what the daemon's datastore holds.

#[allow(dead_code)]
#[path = "support/emu.rs"]
mod emu;
#[allow(dead_code)]
#[path = "support/grpc.rs"]
mod grpc;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use emu::emulator;
use grpc::{Daemon, connect};
use serde_json::Value;
use vpc_cni_proto::rpc::AddNetworkRequest;

fn python() -> String {
    std::env::var("VPC_CNI_PYTHON")
        .expect("VPC_CNI_PYTHON must name a Python with boto3 (scripts/check sets it up)")
}

/// Run `tests/python/<script> EC2_ENDPOINT INSTANCE_ID args…` and parse its JSON answer.
fn python_json(script: &str, ep: &Value, args: &[&str]) -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python")
        .join(script);
    let out = Command::new(python())
        .arg(path)
        .arg(ep["ec2"].as_str().unwrap())
        .arg(ep["imds"][0]["instance_id"].as_str().unwrap())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// EC2's view through boto3.
fn ec2_state(ep: &Value) -> Value {
    python_json("emulator_state.py", ep, &[])
}

/// The daemon's view: ENI → CIDRs (/32 per secondary IP, /28 per prefix).
fn daemon_state(d: &Daemon) -> BTreeMap<String, BTreeSet<String>> {
    let v: Value = serde_json::from_str(&d.get(d.introspection, "/v1/enis")).unwrap();
    v["0"]["ENIs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, e)| {
            (
                id.clone(),
                e["AvailableIPv4Cidrs"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect(),
            )
        })
        .collect()
}

/// GET a JSON document from the emulator.
fn http_get(base: &str, path: &str) -> Value {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    serde_json::from_str(text.split_once("\r\n\r\n").map_or("", |x| x.1)).unwrap()
}

/// `vpc-cni daemon --cloud aws` pointed at the emulator `ep` (first instance), plus `env`/`args`.
fn aws_daemon(ep: &Value, dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Daemon {
    let ec2 = ep["ec2"].as_str().unwrap();
    let imds = ep["imds"][0]["endpoint"].as_str().unwrap();
    let mut all = vec![
        ("AWS_ENDPOINT_URL_EC2", ec2),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds),
        ("AWS_ACCESS_KEY_ID", "emulator"),
        ("AWS_SECRET_ACCESS_KEY", "emulator"),
        ("AWS_REGION", "us-east-1"),
    ];
    all.extend_from_slice(env);
    let mut a = vec!["--cloud", "aws"];
    a.extend_from_slice(args);
    Daemon::start(dir, &all, &a)
}

fn req(i: u32) -> AddNetworkRequest {
    AddNetworkRequest {
        k8s_pod_name: format!("pod-{i}"),
        k8s_pod_namespace: "default".into(),
        container_id: format!("{i:064x}"),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        netns: format!("/proc/{i}/ns/net"),
        client_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

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

/// Attach ENIs by hand (boto3) as another tool would; returns their IDs.
fn attach_by_hand(ep: &Value, spec: &str) -> Vec<String> {
    serde_json::from_value(python_json("attach_enis.py", ep, &[spec])).unwrap()
}

/// Pods that get an address before the first refusal (each AddNetwork retried for 5 s).
async fn fill(
    c: &mut vpc_cni_proto::rpc::cni_backend_client::CniBackendClient<tonic::transport::Channel>,
    limit: u32,
) -> u32 {
    for i in 0..limit {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.add_network(req(i)).await.unwrap().into_inner().success {
            if Instant::now() > deadline {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    limit
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_enis_are_left_alone_and_untagged_ones_adopted_and_tagged() {
    let (_emu, ep) = emulator(&["--instance-type", "m5.large"]);
    let me = ep["imds"][0]["instance_id"].as_str().unwrap().to_string();
    let ids = attach_by_hand(
        &ep,
        r#"[{"device": 1, "ips": 2, "tags": {"node.k8s.amazonaws.com/no_manage": "true"}},
            {"device": 2, "ips": 2, "tags": {}}]"#,
    );
    let (no_manage, untagged) = (&ids[0], &ids[1]);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("CLUSTER_NAME", "emu"),
        ("WARM_ENI_TARGET", "1"),
        ("IP_COOLDOWN_PERIOD", "0"),
    ];
    let d = aws_daemon(&ep, dir.path(), &env, &["--max-pods", "29"]);
    let mut c = connect(&d.socket()).await;
    let ours = daemon_state(&d);
    assert!(
        !ours.contains_key(no_manage),
        "no_manage ENI not in the datastore: {ours:?}"
    );
    assert!(
        ours.contains_key(untagged),
        "untagged ENI adopted: {ours:?}"
    );
    let theirs = ec2_state(&ep);
    let tags = |id: &str| theirs["attached"][id]["tags"].clone();
    assert_eq!(
        tags(untagged)["node.k8s.amazonaws.com/instance_id"],
        me.as_str()
    );
    assert_eq!(tags(untagged)["cluster.k8s.amazonaws.com/name"], "emu");
    assert_eq!(
        tags(no_manage).as_object().unwrap().len(),
        1,
        "the unmanaged ENI's tags are untouched: {}",
        tags(no_manage)
    );
    // One of the m5.large's 3 ENIs is not ours: 2 × 9 addresses for pods.
    assert_eq!(fill(&mut c, 30).await, 18);
    let m = d.get(d.metrics, "/metrics");
    assert!(
        m.lines().any(|l| l == "awscni_eni_max 2"),
        "eni_max counts the unmanaged ENI out"
    );
    let ours = daemon_state(&d);
    assert_eq!(ours.len(), 2);
    assert!(!ours.contains_key(no_manage));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_untagged_eni_false_and_reconcile_classifies_new_enis() {
    let (_emu, ep) = emulator(&["--instance-type", "m5.xlarge"]);
    let me = ep["imds"][0]["instance_id"].as_str().unwrap().to_string();
    let first = attach_by_hand(&ep, r#"[{"device": 1, "ips": 1, "tags": {}}]"#);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("MANAGE_UNTAGGED_ENI", "false"),
        ("WARM_ENI_TARGET", "0"),
        ("WARM_IP_TARGET", "1"),
    ];
    let d = aws_daemon(
        &ep,
        dir.path(),
        &env,
        &["--max-pods", "58", "--reconcile-ms", "500"],
    );
    let ours = daemon_state(&d);
    assert!(
        !ours.contains_key(&first[0]),
        "untagged ENI unmanaged: {ours:?}"
    );
    // Attached after start: one untagged (stays out), one carrying this node's tag (adopted).
    let later = attach_by_hand(
        &ep,
        &format!(
            r#"[{{"device": 2, "ips": 1, "tags": {{}}}},
                {{"device": 3, "ips": 3, "tags": {{"node.k8s.amazonaws.com/instance_id": "{me}"}}}}]"#
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon_state(&d).contains_key(&later[1]) {
        assert!(
            Instant::now() < deadline,
            "tagged ENI never adopted; log: {}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ours = daemon_state(&d);
    // Adopted with its addresses in one reconcile (the pool may release them right after).
    assert!(
        d.log().contains("added: 3, removed: 0, enis_added: 1"),
        "its 3 addresses imported with it: {}",
        d.log()
    );
    assert!(
        !ours.contains_key(&first[0]) && !ours.contains_key(&later[0]),
        "{ours:?}"
    );
    let theirs = ec2_state(&ep);
    for id in [&first[0], &later[0]] {
        assert!(
            theirs["attached"][id]["tags"]
                .as_object()
                .unwrap()
                .is_empty(),
            "unmanaged ENIs are not tagged: {theirs}"
        );
    }
    let m = d.get(d.metrics, "/metrics");
    assert!(
        m.lines().any(|l| l == "awscni_eni_max 2"),
        "4 ENIs, 2 unmanaged:\n{m}"
    );
    // One unmanaged ENI is detached: its slot comes back at the next reconcile.
    python_json("detach_eni.py", &ep, &[&first[0]]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d
        .get(d.metrics, "/metrics")
        .lines()
        .any(|l| l == "awscni_eni_max 3")
    {
        assert!(Instant::now() < deadline, "eni_max never rose to 3");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_group_change_reaches_managed_and_new_enis() {
    let (_emu, ep) = emulator(&["--instance-type", "m5.large"]);
    let dir = tempfile::tempdir().unwrap();
    let d = aws_daemon(
        &ep,
        dir.path(),
        &[("WARM_ENI_TARGET", "1")],
        &["--max-pods", "29", "--sg-refresh-ms", "300"],
    );
    let mut c = connect(&d.socket()).await;
    let groups = |state: &Value| -> BTreeMap<String, Value> {
        state["attached"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, e)| (id.clone(), e["groups"].clone()))
            .collect()
    };
    // Nine pods fill the primary ENI; keeping one ENI's worth warm makes the pool add a second.
    assert_eq!(fill(&mut c, 9).await, 9);
    let deadline = Instant::now() + Duration::from_secs(20);
    while groups(&ec2_state(&ep)).len() < 2 {
        assert!(Instant::now() < deadline, "no second ENI; log: {}", d.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let primary: String =
        serde_json::from_value(python_json("set_groups.py", &ep, &["sg-0new", "sg-0extra"]))
            .unwrap();
    let want = serde_json::json!(["sg-0extra", "sg-0new"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while groups(&ec2_state(&ep)).values().any(|g| *g != want) {
        assert!(
            Instant::now() < deadline,
            "groups never followed the primary's: {:?}; log: {}",
            groups(&ec2_state(&ep)),
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Filling the second ENI makes the pool create a third: it gets the new groups too.
    assert_eq!(fill(&mut c, 18).await, 18);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = groups(&ec2_state(&ep));
        if now.len() == 3 {
            assert!(now.values().all(|g| *g == want), "{now:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no third ENI: {now:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(d.log().contains("security groups refreshed"), "{primary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eni_full_at_ec2_is_imported_not_retried_blindly() {
    let (_emu, ep) = emulator(&["--instance-type", "m5.large"]);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("MAX_ENI", "1"),
        ("WARM_ENI_TARGET", "0"),
        ("WARM_IP_TARGET", "1"),
    ];
    // Reconciliation far away: only the import can bring the addresses in.
    let args = ["--max-pods", "29", "--reconcile-ms", "600000"];
    let d = aws_daemon(&ep, dir.path(), &env, &args);
    let mut c = connect(&d.socket()).await;
    assert_eq!(fill(&mut c, 1).await, 1);
    // Someone else fills the primary ENI (10 addresses on an m5.large ENI, primary included).
    let taken: Vec<String> =
        serde_json::from_value(python_json("assign_behind.py", &ep, &["7"])).unwrap();
    assert_eq!(taken.len(), 7);
    // The pool's next assign is refused with PrivateIpAddressLimitExceeded: EC2's addresses
    // are imported, and pods get them at once.
    assert_eq!(fill(&mut c, 9).await, 9, "log: {}", d.log());
    assert!(
        d.log().contains("ENI full at EC2: imported its addresses"),
        "{}",
        d.log()
    );
    let ours = daemon_state(&d);
    assert_eq!(
        ours.values().map(BTreeSet::len).sum::<usize>(),
        9,
        "{ours:?}"
    );
}
