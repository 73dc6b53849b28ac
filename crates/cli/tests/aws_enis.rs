//! ENIs the daemon did not make, and EC2 as the truth, with `--cloud aws` against `vpc-cni
//! emulate`: tags decide which attached ENIs are managed (and managed ones get this node's tags),
//! security-group changes follow the primary ENI, an ENI full at EC2 is imported.

#[allow(dead_code)]
#[path = "support/awsd.rs"]
mod awsd;
#[allow(dead_code)]
#[path = "support/emu.rs"]
mod emu;
#[allow(dead_code)]
#[path = "support/grpc.rs"]
mod grpc;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use awsd::{attach_by_hand, aws_daemon, daemon_state, ec2_state, fill, python_json};
use emu::emulator;
use grpc::connect;
use serde_json::Value;

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
    let (_emu, ep) = emulator(&[
        "--instance-type",
        "m5.large",
        "--security-group",
        "sg-0new",
        "--security-group",
        "sg-0extra",
    ]);
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
