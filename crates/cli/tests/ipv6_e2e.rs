//! IPv6 clusters end to end on real network namespaces (issue 17): a node namespace runs
//! `vpc-cni daemon --host-network` in IPv6 mode on a dual-stack simulated subnet, and 30 pods
//! are added the way a runtime runs upstream's conflist: `aws-cni`, then `egress-cni` with its
//! `prevResult`. Pods get distinct addresses of the node's /80, reach each other and the node
//! over IPv6, and reach an IPv4 listener outside the node through the egress interface,
//! SNATed to the node's IPv4 address; DEL (in reverse order) leaves nothing behind. A second
//! test runs the IPv4 cluster with `ENABLE_V6_EGRESS=true`, a third the IPv6 node with the AWS
//! backend against `vpc-cni emulate --ipv6-cidr`. Root required (CI runs as root).

#[allow(dead_code)]
#[path = "support/grpc.rs"]
mod grpc;
#[allow(dead_code)]
#[path = "support/netns.rs"]
mod netns;

#[allow(dead_code)]
#[path = "support/cninode.rs"]
mod cninode;
#[allow(dead_code)]
#[path = "support/emu.rs"]
mod emu;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use cninode::{Node, with_prev};
use netns::{CniRun, Ns, aws_cni_bin, cni_env, exec_plugin};
use serde_json::{Value, json};

const SUBNET_V6: &str = "2600:1f14:abc:de00::/56";

fn egress_bin() -> PathBuf {
    let p = aws_cni_bin().with_file_name("egress-cni");
    assert!(
        p.exists(),
        "{} missing: cargo build -p aws-cni",
        p.display()
    );
    p
}

/// `egress-cni`'s conf as upstream's conflist renders it (network name `aws-cni`).
fn egress_conf(node_ip: &str, v6: bool, data_dir: &Path, log: &Path) -> Value {
    let (subnet, dst) = if v6 {
        ("fd00::ac:00/118", "::/0")
    } else {
        ("169.254.172.0/22", "0.0.0.0/0")
    };
    json!({"cniVersion": "0.4.0", "name": "aws-cni", "type": "egress-cni", "mtu": "9001",
           "enabled": "true", "randomizeSNAT": "prng", "nodeIP": node_ip,
           "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": dst}], "dataDir": data_dir},
           "pluginLogFile": log, "pluginLogLevel": "Debug"})
}

fn egress(node: &Node, cmd: &str, id: &str, ns: &Ns, pod: &str, conf: &Value) -> CniRun {
    exec_plugin(
        Some(&node.ns),
        &egress_bin(),
        &cni_env(cmd, id, &ns.path(), pod),
        conf,
    )
}

fn node_addr(node: &Node, family: &str) -> String {
    let out = node
        .ns
        .sh(&format!("ip {family} -o addr show dev eth0 scope global"));
    out.split_whitespace()
        .nth(3)
        .unwrap_or_else(|| panic!("no {family} address on the node's eth0: {out}"))
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// An "outside" namespace wired to the node by a veth pair, routing the node's subnet back.
fn outside(node: &Node, v6: bool) -> (Ns, String) {
    let out = Ns::new("outside");
    let sh = |c: &str| {
        let o = Command::new("sh").arg("-c").arg(c).output().unwrap();
        assert!(
            o.status.success(),
            "{c}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    sh(&format!(
        "ip link add ext0 netns {} type veth peer name ext1 netns {}",
        node.ns.name, out.name
    ));
    if v6 {
        node.ns
            .sh("ip -6 addr add 2001:db8:ff::1/64 dev ext0 nodad");
        out.sh("ip -6 addr add 2001:db8:ff::2/64 dev ext1 nodad");
        out.sh("ip link set ext1 up");
        out.sh("ip -6 route add 2600:1f14:abc:de00::/56 via 2001:db8:ff::1");
    } else {
        node.ns.sh("ip addr add 198.51.100.1/24 dev ext0");
        out.sh("ip addr add 198.51.100.2/24 dev ext1");
        out.sh("ip link set ext1 up");
        out.sh("ip route add 10.0.0.0/20 via 198.51.100.1");
    }
    node.ns.sh("ip link set ext0 up");
    let target = if v6 { "2001:db8:ff::2" } else { "198.51.100.2" };
    (out, target.to_string())
}

/// A listener in `ns` on `addr`:8080 that writes each peer's address to stdout.
fn listener(ns: &Ns, addr: &str, n: usize) -> Child {
    let family = if addr.contains(':') {
        "AF_INET6"
    } else {
        "AF_INET"
    };
    let code = format!(
        "import socket,sys\ns=socket.socket(socket.{family})\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{addr}',8080))\ns.listen(64)\ns.settimeout(60)\nfor _ in range({n}):\n  c,a=s.accept(); print(a[0], flush=True); c.close()\n"
    );
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3", "-c", &code])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    child
}

fn connect_from(ns: &Ns, addr: &str) -> String {
    let code = format!(
        "import socket\ns=socket.create_connection(('{addr}',8080),timeout=5)\nprint(s.getsockname()[0])"
    );
    ns.sh(&format!("python3 -c \"{code}\"")).trim().to_string()
}

fn ip_of(result: &Value) -> String {
    let a = result["ips"][0]["address"].as_str().unwrap();
    a.split('/').next().unwrap().to_string()
}

#[test]
fn thirty_ipv6_pods_reach_each_other_and_ipv4_outside_and_leave_nothing() {
    let env = [
        ("ENABLE_IPv6", "true"),
        ("ENABLE_IPv4", "false"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
        // As upstream's manifest sets it; IPv6 mode has no warm pool to use it for.
        ("WARM_PREFIX_TARGET", "1"),
    ];
    let node = Node::start_with("m5.large", &env, &["--subnet-ipv6", SUBNET_V6]);
    let node_v4 = node_addr(&node, "-4");
    let node_v6 = node_addr(&node, "-6");
    let data = node.daemon.dir.join("egress-v4-ipam");
    let econf = egress_conf(&node_v4, false, &data, &node.daemon.dir.join("egress.log"));
    let conf = node.conf();
    let (out, target) = outside(&node, false);
    let mut pods = Vec::new();
    for i in 0..30 {
        let ns = Ns::new(&format!("p6{i}"));
        let (id, pod) = (format!("v6c{i:02}"), format!("web6-{i}"));
        let r = node.cni("ADD", &id, &ns.path(), &pod, &conf);
        assert_eq!(r.code, 0, "ADD {pod}: {} {}", r.stdout, r.stderr);
        assert_eq!(r.json["ips"][0]["version"], "6", "{}", r.stdout);
        let e = egress(&node, "ADD", &id, &ns, &pod, &with_prev(&econf, &r.json));
        assert_eq!(e.code, 0, "egress ADD {pod}: {} {}", e.stdout, e.stderr);
        let ifs = e.json["interfaces"].as_array().unwrap();
        assert_eq!(
            ifs.len(),
            5,
            "aws-cni's three and the egress pair: {}",
            e.stdout
        );
        assert_eq!(ifs[4]["name"], "v4if0");
        pods.push((ns, id, pod, e.json));
    }
    let ips: BTreeSet<String> = pods.iter().map(|p| ip_of(&p.3)).collect();
    assert_eq!(ips.len(), 30, "distinct addresses: {ips:?}");
    let slash80 = |ip: &str| ip.parse::<std::net::Ipv6Addr>().unwrap().segments()[..5].to_vec();
    let first = slash80(ips.iter().next().unwrap());
    assert!(
        ips.iter().all(|ip| slash80(ip) == first),
        "one /80: {ips:?}"
    );
    let v6_prefix = node_v6.parse::<std::net::Ipv6Addr>().unwrap().segments()[..4].to_vec();
    assert_eq!(first[..4], v6_prefix[..], "the /80 is of the node's subnet");

    // Pod ↔ pod and pod → node over IPv6.
    let last = ip_of(&pods[29].3);
    for (ns, _, _, r) in pods.iter().step_by(5) {
        assert!(ns.ping(&last), "{} → {last}", ip_of(r));
        assert!(ns.ping(&node_v6), "{} → node {node_v6}", ip_of(r));
    }
    assert!(pods[29].0.ping(&ip_of(&pods[0].3)), "last → first");

    // Every pod reaches an IPv4 listener outside the node, seen as the node's IPv4 address.
    let l = listener(&out, &target, pods.len());
    for (ns, _, _, _) in &pods {
        let local = connect_from(ns, &target);
        assert!(local.starts_with("169.254.17"), "egress source {local}");
    }
    let seen = l.wait_with_output().unwrap();
    let peers: Vec<String> = String::from_utf8_lossy(&seen.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(peers.len(), 30, "{peers:?}");
    assert!(
        peers.iter().all(|p| *p == node_v4),
        "SNATed to {node_v4}: {peers:?}"
    );

    // CHECK with the chain's final result as prevResult passes, and names a removed rule.
    let (ns0, id0, pod0, r0) = &pods[0];
    let c = node.cni("CHECK", id0, &ns0.path(), pod0, &with_prev(&conf, r0));
    assert_eq!(c.code, 0, "CHECK: {} {}", c.stdout, c.stderr);
    node.ns
        .sh(&format!("ip -6 rule del to {} prio 512", ip_of(r0)));
    let c = node.cni("CHECK", id0, &ns0.path(), pod0, &with_prev(&conf, r0));
    assert_eq!(c.code, 1, "{}", c.stdout);
    assert!(
        c.json["details"]
            .as_str()
            .unwrap_or_default()
            .contains("host rule prio 512"),
        "{}",
        c.stdout
    );

    let chains = node.ns.sh("iptables -t nat -S");
    assert_eq!(chains.matches("-N E4-").count(), 30, "{chains}");
    assert!(
        node.ns
            .sh("iptables -S FORWARD")
            .contains("169.254.172.0/22"),
        "new connections to the egress range are rejected"
    );
    for (ns, id, pod, r) in &pods {
        let e = egress(&node, "DEL", id, ns, pod, &with_prev(&econf, r));
        assert_eq!(e.code, 0, "egress DEL {pod}: {}", e.stdout);
        let d = node.cni("DEL", id, &ns.path(), pod, &with_prev(&conf, r));
        assert_eq!(d.code, 0, "DEL {pod}: {}", d.stdout);
    }
    let links = node.ns.sh("ip -o link");
    assert!(
        !links.contains(": eni") && !links.contains(": veth"),
        "veths left: {links}"
    );
    let rules = node.ns.sh("ip -6 rule");
    assert!(!rules.contains("512:"), "pod rules left: {rules}");
    let routes = node.ns.sh("ip -6 route; ip -4 route");
    for ip in &ips {
        assert!(
            !routes.contains(ip.as_str()),
            "route to {ip} left: {routes}"
        );
    }
    assert!(
        !routes.contains("169.254.172."),
        "egress routes left: {routes}"
    );
    assert!(
        !node.ns.sh("iptables -t nat -S").contains("E4-"),
        "SNAT chains left"
    );
    let leases: Vec<String> = std::fs::read_dir(data.join("aws-cni"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert!(leases.is_empty(), "egress leases left: {leases:?}");
    let ckpt: Value =
        serde_json::from_str(&std::fs::read_to_string(node.daemon.dir.join("ipam.json")).unwrap())
            .unwrap();
    assert_eq!(ckpt["allocations"], json!([]), "no assignment left: {ckpt}");
}

#[test]
fn ipv4_pod_with_v6_egress_reaches_an_ipv6_listener() {
    let node = Node::start_with(
        "m5.large",
        &[("ENABLE_V6_EGRESS", "true")],
        &["--subnet-ipv6", SUBNET_V6],
    );
    let node_v6 = node_addr(&node, "-6");
    assert!(
        node.ns
            .sh("ip6tables -S FORWARD")
            .contains("fd00::ac:0/118"),
        "the daemon blocks new connections to the IPv6 egress range"
    );
    let data = node.daemon.dir.join("egress-v6-ipam");
    let econf = egress_conf(&node_v6, true, &data, &node.daemon.dir.join("egress6.log"));
    let (out, target) = outside(&node, true);
    let ns = Ns::new("p4v6");
    let r = node.cni("ADD", "v4c1", &ns.path(), "web4", &node.conf());
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let e = egress(
        &node,
        "ADD",
        "v4c1",
        &ns,
        "web4",
        &with_prev(&econf, &r.json),
    );
    assert_eq!(e.code, 0, "egress ADD: {} {}", e.stdout, e.stderr);
    let addrs = ns.sh("ip -6 -o addr show dev v6if0 scope global");
    assert!(addrs.contains("fd00::ac:2/118"), "{addrs}");
    assert_eq!(
        ns.sh("cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6")
            .trim(),
        "1",
        "IPv6 off on the pod's main interface"
    );
    let l = listener(&out, &target, 1);
    assert_eq!(connect_from(&ns, &target), "fd00::ac:2");
    let seen = l.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&seen.stdout).trim(),
        node_v6,
        "SNATed to the node IPv6"
    );
    let e = egress(
        &node,
        "DEL",
        "v4c1",
        &ns,
        "web4",
        &with_prev(&econf, &e.json),
    );
    assert_eq!(e.code, 0, "{}", e.stdout);
    assert!(
        !node.ns.sh("ip6tables -t nat -S").contains("E6-"),
        "chain left"
    );
    assert!(
        !ns.sh("ip -o link").contains("v6if0"),
        "egress interface left"
    );
    assert!(
        !node.ns.sh("ip -6 route").contains("fd00::ac:2"),
        "host route left"
    );
}

/// `tests/python/<script> args…` run inside `ns` with the test Python; its stdout.
fn python_in(ns: &Ns, script: &str, args: &[&str]) -> String {
    let py = std::env::var("VPC_CNI_PYTHON")
        .expect("VPC_CNI_PYTHON must name a Python with boto3 (scripts/check sets it up)");
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python")
        .join(script);
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, &py])
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn ipv6_pods_with_the_aws_backend_against_the_emulator() {
    // EC2 and IMDS (`vpc-cni emulate --ipv6-cidr`) and the daemon (`--cloud aws`) share a node
    // namespace; its `eth0` is a stand-in link carrying the primary ENI's MAC and addresses, as
    // the instance's own interface would.
    netns::require_root();
    let node = Ns::new("awsnode");
    let (_emu, ep) = emu::emulator_in(
        Some(&node.name),
        &[
            "--instance-type",
            "m5.large",
            "--ipv6-cidr",
            "2600:1f14:abc:de00::/56",
        ],
    );
    let imds = ep["imds"][0]["endpoint"].as_str().unwrap().to_string();
    let md = |path: &str| python_in(&node, "imds_get.py", &[&imds, path]);
    let mac = md("mac");
    let v4 = md("local-ipv4");
    let v6 = md("ipv6");
    let subnet = md(&format!(
        "network/interfaces/macs/{mac}/subnet-ipv4-cidr-block"
    ));
    let len = subnet.split('/').nth(1).unwrap();
    // An empty bridge: kernels without the dummy module have it (the simulated VPC does the same).
    node.sh(&format!("ip link add eth0 address {mac} type bridge"));
    node.sh(&format!("ip addr add {v4}/{len} dev eth0"));
    node.sh(&format!("ip -6 addr add {v6}/64 dev eth0 nodad"));
    node.sh("ip link set eth0 up");
    let dir = tempfile::tempdir().unwrap();
    let ec2_url = ep["ec2"].as_str().unwrap();
    let env = [
        ("ENABLE_IPv6", "true"),
        ("ENABLE_IPv4", "false"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
        ("WARM_PREFIX_TARGET", "1"),
        ("AWS_ENDPOINT_URL_EC2", ec2_url),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.as_str()),
        ("AWS_ACCESS_KEY_ID", "emulator"),
        ("AWS_SECRET_ACCESS_KEY", "emulator"),
        ("AWS_REGION", "us-east-1"),
    ];
    let daemon = grpc::Daemon::start_in(
        Some(&node.name),
        dir.path(),
        &env,
        &["--cloud", "aws", "--host-network"],
    );
    // The /80 in EC2 (boto3) and in IMDS.
    let instance = ep["imds"][0]["instance_id"].as_str().unwrap();
    let state: Value =
        serde_json::from_str(&python_in(&node, "emulator_state.py", &[ec2_url, instance])).unwrap();
    let primary = state["attached"]
        .as_object()
        .unwrap()
        .values()
        .find(|e| e["device"] == 0)
        .unwrap()
        .clone();
    let net: ipnet::Ipv6Net = primary["ipv6_prefixes"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(net.prefix_len(), 80, "{primary}");
    assert_eq!(
        md(&format!("network/interfaces/macs/{mac}/ipv6-prefix")),
        net.to_string()
    );
    let n = Node {
        ns: node,
        daemon,
        _dir: dir,
        instance: "m5.large".into(),
    };
    let conf = n.conf();
    let mut pods = Vec::new();
    for i in 0..4 {
        let ns = Ns::new(&format!("aw{i}"));
        let id = format!("aw{i}");
        let r = n.cni("ADD", &id, &ns.path(), &id, &conf);
        assert_eq!(r.code, 0, "ADD {id}: {} {}", r.stdout, r.stderr);
        let ip: std::net::Ipv6Addr = ip_of(&r.json).parse().unwrap();
        assert!(net.contains(&ip), "{ip} outside {net}");
        pods.push((ns, id, r.json));
    }
    assert!(pods[0].0.ping(&ip_of(&pods[3].2)), "pod → pod over IPv6");
    assert!(pods[3].0.ping(&v6), "pod → node {v6}");
    for (ns, id, r) in &pods {
        let d = n.cni("DEL", id, &ns.path(), id, &with_prev(&conf, r));
        assert_eq!(d.code, 0, "DEL {id}: {}", d.stdout);
    }
    assert!(!n.ns.sh("ip -o link").contains(": eni"), "veths left");
}
