//! Daemon restarts on a node in a network namespace: pods wired by the real `aws-cni` keep their
//! addresses, CHECK asks the daemon, and no new pod is ever given an address a live pod holds —
//! also when the cloud's state was lost. A DEL never removes another pod's route and rules.
//! Runs as root (CI does); a missing precondition fails the test.

#[allow(dead_code)]
#[path = "support/grpc.rs"]
mod grpc;
#[allow(dead_code)]
#[path = "support/netns.rs"]
mod netns;

#[allow(dead_code)]
#[path = "support/cninode.rs"]
mod cninode;

use std::collections::BTreeSet;

use cninode::{Node, pod_ip, with_prev};
use netns::Ns;
use serde_json::Value;

const ENV: &[(&str, &str)] = &[("MINIMUM_IP_TARGET", "32"), ("WARM_IP_TARGET", "2")];

/// ADD with a runtime's retries while the pool grows.
fn add(node: &Node, conf: &Value, i: usize, tag: &str) -> (Ns, String, String, Value) {
    let ns = Ns::new(&format!("{tag}{i}"));
    let (id, pod) = (format!("{tag}{i:02}"), format!("{tag}-{i}"));
    let mut r = node.cni("ADD", &id, &ns.path(), &pod, conf);
    for _ in 0..100 {
        if r.code == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        r = node.cni("ADD", &id, &ns.path(), &pod, conf);
    }
    assert_eq!(r.code, 0, "ADD {pod}: {} {}", r.stdout, r.stderr);
    (ns, id, pod, r.json)
}

fn host_routes(node: &Node) -> String {
    node.ns.sh("ip -4 route show table main")
}

#[test]
fn a_restarted_daemon_keeps_thirty_pods_and_never_reuses_their_addresses() {
    // The walkthrough's way: no state flag; the simulated VPC is kept beside the checkpoint.
    let mut node = Node::start("m5.xlarge", ENV);
    let conf = node.conf();
    let pods: Vec<_> = (0..30).map(|i| add(&node, &conf, i, "p")).collect();
    let old: BTreeSet<String> = pods.iter().map(|p| pod_ip(&p.3)).collect();
    assert_eq!(old.len(), 30);
    assert!(
        node.daemon.dir.join("sim-vpc.json").exists(),
        "VPC state kept by default"
    );

    node.restart(ENV, &[]);
    let log = node.daemon.log();
    assert!(log.contains("\"restored\":30"), "{log}");
    assert!(!log.contains("dropped (stale/dead)"), "{log}");
    for (ns, id, pod, r) in &pods {
        let c = node.cni("CHECK", id, &ns.path(), pod, &with_prev(&conf, r));
        assert_eq!(c.code, 0, "CHECK {pod} after restart: {}", c.stdout);
    }
    let new: Vec<_> = (0..5).map(|i| add(&node, &conf, i, "n")).collect();
    for p in &new {
        let ip = pod_ip(&p.3);
        assert!(!old.contains(&ip), "new pod {} got {ip}, a live pod's", p.2);
    }
    for (ns, id, pod, r) in pods.iter().chain(new.iter()) {
        let d = node.cni("DEL", id, &ns.path(), pod, &with_prev(&conf, r));
        assert_eq!(d.code, 0, "DEL {pod}: {}", d.stdout);
    }
    assert!(
        !host_routes(&node).contains("dev eni"),
        "{}",
        host_routes(&node)
    );
}

#[test]
fn with_the_cloud_state_lost_the_daemon_refuses_held_addresses() {
    // --sim-ephemeral: a new VPC at every start (same seed, so it hands out the same addresses
    // again), as if EC2's memory of the node were gone.
    let mut node = Node::start_with("m5.xlarge", ENV, &["--sim-ephemeral"]);
    let conf = node.conf();
    let pods: Vec<_> = (0..12).map(|i| add(&node, &conf, i, "p")).collect();
    let old: BTreeSet<String> = pods.iter().map(|p| pod_ip(&p.3)).collect();

    node.restart(ENV, &["--sim-ephemeral"]);
    let log = node.daemon.log();
    assert!(
        log.contains("a live pod still routes the address: kept out of the pool"),
        "{log}"
    );
    // CHECK passes for the kept pods: the daemon still names their addresses.
    for (ns, id, pod, r) in &pods {
        let c = node.cni("CHECK", id, &ns.path(), pod, &with_prev(&conf, r));
        assert_eq!(c.code, 0, "CHECK {pod}: {}", c.stdout);
    }
    let new: Vec<_> = (0..12).map(|i| add(&node, &conf, i, "n")).collect();
    for p in &new {
        let ip = pod_ip(&p.3);
        assert!(!old.contains(&ip), "new pod {} got {ip}, a live pod's", p.2);
    }
    let kept = log
        .matches("a live pod still routes the address: kept out of the pool")
        .count();
    assert_eq!(kept, 12, "{log}");
    // Both generations still reach each other: every address is wired once.
    let (a, b) = (&pods[0], &new[0]);
    a.0.sh(&format!("ping -c1 -W2 {}", pod_ip(&b.3)));
}

#[test]
fn check_fails_for_a_pod_the_daemon_lost() {
    let mut node = Node::start_with("m5.xlarge", ENV, &["--sim-ephemeral"]);
    let conf = node.conf();
    let (ns, id, pod, r) = add(&node, &conf, 0, "p");
    // The pod's wiring disappears while the daemon is down (its route goes with its veth), so
    // the restarted daemon has no reason to keep it.
    node.ns.sh(&format!("ip route del {}/32", pod_ip(&r)));
    node.restart(ENV, &["--sim-ephemeral"]);
    node.ns.sh(&format!(
        "ip route add {}/32 dev {} scope link",
        pod_ip(&r),
        host_veth(&node, &pod_ip(&r), &ns)
    ));
    let c = node.cni("CHECK", &id, &ns.path(), &pod, &with_prev(&conf, &r));
    assert_ne!(c.code, 0, "{}", c.stdout);
    assert!(
        c.stdout.contains("ipamd holds no address for container"),
        "{}",
        c.stdout
    );
}

/// The host veth of the pod in `ns` (the peer of its eth0).
fn host_veth(node: &Node, _ip: &str, ns: &Ns) -> String {
    let idx = ns.sh("cat /sys/class/net/eth0/iflink");
    let out = node.ns.sh("ip -o link show");
    out.lines()
        .find(|l| l.starts_with(&format!("{}:", idx.trim())))
        .and_then(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .expect("host veth")
}

#[test]
fn a_del_leaves_another_pods_route_and_rules_alone() {
    let node = Node::start("m5.large", &[("WARM_IP_TARGET", "2")]);
    let conf = node.conf();
    let (ns, id, pod, r) = add(&node, &conf, 0, "a");
    let ip = pod_ip(&r);
    // A stale sandbox whose prevResult names the same address (the daemon does not know it):
    // its DEL tears down from prevResult, but the route points at the live pod's veth.
    let stale = Ns::new("stale");
    let d = node.cni(
        "DEL",
        "stale-sandbox",
        &stale.path(),
        "old-pod",
        &with_prev(&conf, &r),
    );
    assert_eq!(d.code, 0, "{}", d.stdout);
    let routes = host_routes(&node);
    assert!(routes.contains(&format!("{ip} dev eni")), "{routes}");
    let rules = node.ns.sh("ip rule show");
    assert!(rules.contains(&format!("to {ip} lookup main")), "{rules}");
    let c = node.cni("CHECK", &id, &ns.path(), &pod, &with_prev(&conf, &r));
    assert_eq!(c.code, 0, "the live pod is intact: {}", c.stdout);
    let log = std::fs::read_to_string(node.daemon.dir.join("plugin.log")).unwrap();
    assert!(log.contains("another pod owns the address"), "{log}");
}

/// The check at assignment time, on the real kernel: an address the daemon is about to hand out
/// that a veth on the host already routes is held, and the pod gets another.
#[test]
fn an_address_routed_behind_the_daemons_back_is_not_handed_out() {
    let node = Node::start("m5.xlarge", ENV);
    let conf = node.conf();
    let first = add(&node, &conf, 0, "p");
    // The lowest free address of the lowest device (the daemon's next pick).
    let port = node.daemon.introspection;
    let enis: Value = serde_json::from_str(&node.ns.sh(&format!(
        "python3 -c \"import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:{port}/v1/enis').read().decode())\""
    )))
    .unwrap();
    let mut by_device: Vec<(u64, Vec<String>)> = enis["0"]["ENIs"]
        .as_object()
        .unwrap()
        .values()
        .map(|e| {
            let free: Vec<String> = e["AvailableIPv4Cidrs"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, c)| c["IPAddresses"].as_object().unwrap().is_empty())
                .map(|(k, _)| k.trim_end_matches("/32").to_string())
                .collect();
            (e["DeviceNumber"].as_u64().unwrap(), free)
        })
        .collect();
    by_device.sort();
    let next = by_device
        .iter()
        .find_map(|(_, f)| {
            let mut f: Vec<std::net::Ipv4Addr> = f.iter().map(|s| s.parse().unwrap()).collect();
            f.sort();
            f.first().copied()
        })
        .expect("a free address");
    // A veth of some pod the daemon never heard of routes it.
    node.ns
        .sh("ip link add enistranger01 type veth peer name strangerpeer");
    node.ns
        .sh("ip link set enistranger01 up; ip link set strangerpeer up");
    node.ns.sh(&format!(
        "ip route add {next}/32 dev enistranger01 scope link"
    ));
    let second = add(&node, &conf, 1, "p");
    assert_ne!(pod_ip(&second.3), next.to_string());
    assert_ne!(pod_ip(&second.3), pod_ip(&first.3));
    let log = node.daemon.log();
    assert!(
        log.contains("the address picked for a new pod is routed to a live pod's veth"),
        "{log}"
    );
}
