//! Pods whose DEL never reached the daemon: CNI GC (the runtime names the valid attachments)
//! releases the rest and removes their host rules; without a GC, the daemon's sweep releases an
//! assignment whose pod has had no host route for the grace period. Live pods are untouched.
//! Runs as root (CI does).

#[allow(dead_code)]
#[path = "support/grpc.rs"]
mod grpc;
#[allow(dead_code)]
#[path = "support/netns.rs"]
mod netns;

#[allow(dead_code)]
#[path = "support/cninode.rs"]
mod cninode;

use std::time::{Duration, Instant};

use cninode::{Node, pod_ip, with_prev};
use netns::Ns;
use serde_json::Value;

fn add(node: &Node, conf: &Value, id: &str) -> (Ns, Value) {
    let ns = Ns::new(id);
    let mut r = node.cni("ADD", id, &ns.path(), id, conf);
    for _ in 0..100 {
        if r.code == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        r = node.cni("ADD", id, &ns.path(), id, conf);
    }
    assert_eq!(r.code, 0, "ADD {id}: {}", r.stdout);
    (ns, r.json)
}

#[test]
fn gc_releases_what_the_runtime_no_longer_knows() {
    let node = Node::start("m5.large", &[("WARM_IP_TARGET", "4")]);
    let mut conf = node.conf();
    conf["cniVersion"] = "1.1.0".into();
    let (ns0, r0) = add(&node, &conf, "g0");
    let (ns1, r1) = add(&node, &conf, "g1");
    let (ns2, r2) = add(&node, &conf, "g2");
    // Two sandboxes vanish without a DEL (their veths and routes go with their namespaces).
    drop(ns1);
    drop(ns2);
    // The kernel destroys a deleted namespace's links asynchronously: wait for their routes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while [&r1, &r2].iter().any(|r| {
        node.ns
            .sh("ip -4 route show table main")
            .contains(&format!("{} dev", pod_ip(r)))
    }) {
        assert!(Instant::now() < deadline, "veths still there");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = serde_json::json!([{"containerID": "g0", "ifname": "eth0"}]);
    let r = node.cni("GC", "", "", "", &gc);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let kept = node.checkpoint_ips();
    assert_eq!(kept, vec![pod_ip(&r0)], "only the valid attachment stays");
    let rules = node.ns.sh("ip rule show");
    let plugin_log =
        std::fs::read_to_string(node.daemon.dir.join("plugin.log")).unwrap_or_default();
    for gone in [pod_ip(&r1), pod_ip(&r2)] {
        assert!(
            !rules.contains(&format!("to {gone} ")),
            "{rules}\n{plugin_log}"
        );
    }
    assert!(rules.contains(&format!("to {} ", pod_ip(&r0))), "{rules}");
    let c = node.cni("CHECK", "g0", &ns0.path(), "g0", &with_prev(&conf, &r0));
    assert_eq!(c.code, 0, "{}", c.stdout);
    let log = node.daemon.log();
    assert_eq!(
        log.matches("GC: not a valid attachment; released").count(),
        2,
        "{log}"
    );
}

#[test]
fn the_sweep_releases_a_pod_whose_del_never_arrived() {
    let node = Node::start_with(
        "m5.large",
        &[("WARM_IP_TARGET", "4")],
        &["--reconcile-ms", "300", "--stale-grace-ms", "1500"],
    );
    let conf = node.conf();
    let (_live, r0) = add(&node, &conf, "s0");
    // A pod wired with another veth prefix than the daemon's is just as alive.
    let mut other = conf.clone();
    other["vethPrefix"] = "pod".into();
    let (_other, r2) = add(&node, &other, "s2");
    let (gone, r1) = add(&node, &conf, "s1");
    drop(gone);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ips = node.checkpoint_ips();
        if !ips.contains(&pod_ip(&r1)) {
            let mut want = vec![pod_ip(&r0), pod_ip(&r2)];
            let mut got = ips.clone();
            want.sort();
            got.sort();
            assert_eq!(got, want, "the live pods keep their addresses");
            break;
        }
        assert!(Instant::now() < deadline, "not released: {ips:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = node.daemon.log();
    assert!(log.contains("its DEL never arrived"), "{log}");
    // Two more grace periods: the live pods are still there.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(node.checkpoint_ips().len(), 2);
}
