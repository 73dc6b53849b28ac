//! End to end on real network namespaces: a "node" namespace runs `vpc-cni daemon
//! --host-network` (simulated VPC), pods are added and deleted by exec'ing the real `aws-cni`
//! binary the way a runtime does, and the kernel state is read back with iproute2/iptables.
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
use std::path::Path;

use cninode::{Node, pod_ip, with_prev};
use grpc::Daemon;
use netns::{Ns, aws_cni_bin, cni_env, exec_plugin, require_root};
use serde_json::json;

#[test]
fn thirty_pods_on_several_enis_ping_and_leave_nothing_behind() {
    // m5.xlarge: 14 addresses per ENI, so 30 pods need three ENIs.
    let node = Node::start(
        "m5.xlarge",
        &[("MINIMUM_IP_TARGET", "32"), ("WARM_IP_TARGET", "2")],
    );
    let conf = node.conf();
    let mut pods = Vec::new();
    for i in 0..30 {
        let ns = Ns::new(&format!("pod{i}"));
        let id = format!("c{i:02}");
        let pod = format!("web-{i}");
        let mut r = node.cni("ADD", &id, &ns.path(), &pod, &conf);
        // A runtime retries while the pool grows.
        for _ in 0..100 {
            if r.code == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            r = node.cni("ADD", &id, &ns.path(), &pod, &conf);
        }
        assert_eq!(r.code, 0, "ADD {pod}: {} {}", r.stdout, r.stderr);
        assert!(
            r.stderr.is_empty(),
            "nothing on stderr with a log file: {}",
            r.stderr
        );
        pods.push((ns, id, pod, r.json));
    }
    let ips: BTreeSet<String> = pods.iter().map(|p| pod_ip(&p.3)).collect();
    assert_eq!(ips.len(), 30, "distinct addresses");
    let tables: BTreeSet<String> = pods
        .iter()
        .map(|p| p.3["interfaces"][1]["mac"].as_str().unwrap().to_string())
        .collect();
    assert!(
        tables.len() >= 2,
        "pods on at least two ENIs (route tables {tables:?})"
    );
    assert!(
        tables.iter().any(|t| t != "254"),
        "some pods on a secondary ENI: {tables:?}"
    );

    // Host side: /32 route, to-pod rule, from-pod rule for secondary ENIs.
    let rules = node.ns.sh("ip rule");
    for (_, _, _, r) in &pods {
        let ip = pod_ip(r);
        assert!(
            rules.contains(&format!("512:\tfrom all to {ip} lookup main")),
            "{ip}: {rules}"
        );
        let table = r["interfaces"][1]["mac"].as_str().unwrap();
        if table != "254" {
            assert!(
                rules.contains(&format!("1536:\tfrom {ip} lookup {table}")),
                "{ip}: {rules}"
            );
        }
    }
    // Pod to pod across ENIs, and pod to node.
    let node_ip = node.node_ip();
    let main = pods
        .iter()
        .find(|p| p.3["interfaces"][1]["mac"] == "254")
        .unwrap();
    let secondary = pods
        .iter()
        .find(|p| p.3["interfaces"][1]["mac"] != "254")
        .unwrap();
    assert!(
        main.0.ping(&pod_ip(&secondary.3)),
        "pod on the primary ENI → pod on a secondary ENI"
    );
    assert!(secondary.0.ping(&pod_ip(&main.3)), "secondary → primary");
    for (ns, _, _, r) in pods.iter().step_by(5) {
        assert!(ns.ping(&node_ip), "pod {} → node {node_ip}", pod_ip(r));
        assert!(
            ns.ping(&pod_ip(&pods[29].3)),
            "pod {} → last pod",
            pod_ip(r)
        );
    }
    // CHECK passes on a wired pod and names what is missing once a rule is removed.
    let (ns0, id0, pod0, r0) = &pods[0];
    let c = node.cni("CHECK", id0, &ns0.path(), pod0, &with_prev(&conf, r0));
    assert_eq!(c.code, 0, "CHECK: {}", c.stdout);
    node.ns
        .sh(&format!("ip rule del to {} prio 512", pod_ip(r0)));
    let c = node.cni("CHECK", id0, &ns0.path(), pod0, &with_prev(&conf, r0));
    assert_eq!(c.code, 1);
    assert!(
        c.json["details"]
            .as_str()
            .unwrap()
            .contains("host rule prio 512"),
        "{}",
        c.stdout
    );

    for (ns, id, pod, r) in &pods {
        let d = node.cni("DEL", id, &ns.path(), pod, &with_prev(&conf, r));
        assert_eq!(
            (d.code, d.stdout.as_str()),
            (0, ""),
            "DEL {pod}: {}",
            d.stderr
        );
    }
    let links = node.ns.sh("ip -o link");
    assert!(!links.contains(": eni"), "no host veth left: {links}");
    let rules = node.ns.sh("ip rule");
    assert!(
        !rules.contains("512:") && !rules.contains("1536:"),
        "no pod rules left: {rules}"
    );
    let routes = node.ns.sh("ip route show table main");
    for ip in &ips {
        assert!(
            !routes.contains(&format!("{ip} dev")),
            "route to {ip} left: {routes}"
        );
    }
    assert!(
        node.checkpoint_ips().is_empty(),
        "no assignment left: {:?}",
        node.checkpoint_ips()
    );
    let (ns, id, pod, r) = &pods[3];
    let again = node.cni("DEL", id, &ns.path(), pod, &with_prev(&conf, r));
    assert_eq!(again.code, 0, "second DEL succeeds: {}", again.stdout);
}

/// Env of the daemon, lines iptables-save must show (NODE = node IP), strings it must not.
type SnatCase<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);

fn iptables_save(node: &Node) -> String {
    node.ns.sh("iptables-save")
}

#[test]
fn snat_rules_for_each_setting() {
    let cases: &[SnatCase] = &[
        (
            &[],
            &[
                "--random-fully",
                "-A POSTROUTING -m comment --comment \"AWS SNAT CHAIN\" -j AWS-SNAT-CHAIN-0",
                "-A PREROUTING -m comment --comment \"AWS, CONNMARK\" -j CONNMARK --restore-mark --nfmask 0x80 --ctmask 0x80",
            ],
            &[],
        ),
        (
            &[("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "hashrandom")],
            &["--to-source NODE --random\n"],
            &["--random-fully"],
        ),
        (
            &[("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "none")],
            &["--to-source NODE\n"],
            &["--random"],
        ),
        (
            &[
                (
                    "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS",
                    "192.168.0.0/16,172.16.0.0/12",
                ),
                ("AWS_VPC_K8S_CNI_CONNMARK", "0x100"),
                ("AWS_EXTERNAL_SERVICE_CIDRS", "100.64.0.0/16"),
            ],
            &[
                "-A AWS-SNAT-CHAIN-0 -d 192.168.0.0/16 -m comment --comment \"AWS SNAT CHAIN EXCLUSION\" -j RETURN",
                "-A AWS-SNAT-CHAIN-0 -d 172.16.0.0/12",
                "--set-xmark 0x100/0x100",
            ],
            &[],
        ),
        (
            &[
                ("AWS_VPC_K8S_CNI_EXTERNALSNAT", "true"),
                ("AWS_VPC_CNI_NODE_PORT_SUPPORT", "false"),
            ],
            &[],
            &["AWS-SNAT-CHAIN-0", "AWS-CONNMARK-CHAIN-0", "AWS"],
        ),
    ];
    for (env, present, absent) in cases {
        let node = Node::start("m5.large", env);
        let ip = node.node_ip();
        let saved = iptables_save(&node);
        for p in *present {
            let p = p.replace("NODE", &ip);
            assert!(saved.contains(&p), "{env:?}: missing {p:?} in\n{saved}");
        }
        for a in *absent {
            assert!(!saved.contains(a), "{env:?}: unexpected {a:?} in\n{saved}");
        }
        let rules = node.ns.sh("ip rule");
        let external = env
            .iter()
            .any(|(k, v)| *k == "AWS_VPC_K8S_CNI_EXTERNALSNAT" && *v == "true");
        let mark = env
            .iter()
            .find(|(k, _)| *k == "AWS_VPC_K8S_CNI_CONNMARK")
            .map_or("0x80", |(_, v)| v);
        assert_eq!(
            rules.contains(&format!("1024:\tfrom all fwmark {mark}/{mark} lookup main")),
            !external,
            "{env:?}: fwmark rule iff node-port support or SNAT on: {rules}"
        );
        if env.iter().any(|(k, _)| *k == "AWS_EXTERNAL_SERVICE_CIDRS") {
            assert!(
                rules.contains("1535:\tfrom all to 100.64.0.0/16 lookup main"),
                "{rules}"
            );
        }
        if env.is_empty() {
            let chain: Vec<&str> = saved
                .lines()
                .filter(|l| l.starts_with("-A AWS-SNAT-CHAIN-0"))
                .collect();
            assert_eq!(chain.len(), 2, "VPC CIDR RETURN, then SNAT: {chain:?}");
            assert!(
                chain[0].contains("-d 10.0.0.0/20")
                    && chain[1].contains(&format!("-j SNAT --to-source {ip}")),
                "{chain:?}"
            );
        }
    }
    // A restart with another setting replaces the rules instead of adding to them.
    let dir = tempfile::tempdir().unwrap();
    let ns = Ns::new("node");
    let args = [
        "--host-network",
        "--instance-type",
        "m5.large",
        "--sim-state",
    ];
    let state = dir.path().join("vpc.json");
    let mut a: Vec<&str> = args.to_vec();
    a.push(state.to_str().unwrap());
    drop(Daemon::start_in(Some(&ns.name), dir.path(), &[], &a));
    drop(Daemon::start_in(
        Some(&ns.name),
        dir.path(),
        &[("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "none")],
        &a,
    ));
    let saved = ns.sh("iptables-save");
    let snat: Vec<&str> = saved.lines().filter(|l| l.contains("-j SNAT")).collect();
    assert_eq!(snat.len(), 1, "{snat:?}");
    assert!(!snat[0].contains("--random"), "{snat:?}");
    assert_eq!(
        saved.matches("-j AWS-SNAT-CHAIN-0").count(),
        1,
        "one jump: {saved}"
    );
}

#[test]
fn failure_paths_give_cni_errors_or_clean_up() {
    require_root();
    let bin = aws_cni_bin();
    let dir = tempfile::tempdir().unwrap();
    let pod = Ns::new("lonely");
    let conf = json!({"cniVersion": "1.0.0", "name": "aws-cni", "type": "aws-cni", "ipamdSocket": dir.path().join("none.sock")});
    // Daemon down on ADD.
    let r = exec_plugin(None, &bin, &cni_env("ADD", "x", &pod.path(), "p"), &conf);
    assert_eq!(
        (r.code, r.json["code"].as_u64()),
        (1, Some(11)),
        "{}",
        r.stdout
    );
    assert!(
        r.json["msg"]
            .as_str()
            .unwrap()
            .contains("ipamd is unreachable at"),
        "{}",
        r.stdout
    );
    assert_eq!(r.json["cniVersion"], "1.0.0");
    // Malformed stdin, missing CNI_NETNS.
    let mut bad = exec_plugin(
        None,
        &bin,
        &cni_env("ADD", "x", &pod.path(), "p"),
        &json!("{not json"),
    );
    assert_eq!(bad.json["code"], 6, "{}", bad.stdout);
    bad = exec_plugin(None, &bin, &cni_env("ADD", "x", "", "p"), &conf);
    assert_eq!(bad.json["code"], 4);
    assert!(
        bad.json["msg"].as_str().unwrap().contains("CNI_NETNS"),
        "{}",
        bad.stdout
    );
    let v = exec_plugin(
        None,
        &bin,
        &[("CNI_COMMAND", "VERSION".into())],
        &json!({"cniVersion": "0.4.0"}),
    );
    assert_eq!(
        v.json["supportedVersions"].as_array().unwrap().len(),
        7,
        "{}",
        v.stdout
    );

    let node = Node::start("m5.large", &[]);
    let conf = node.conf();
    // A netns that vanished: a CNI error, and the address goes back to the pool.
    let gone = Ns::new("gone");
    let gone_path = gone.path();
    drop(gone);
    let r = node.cni("ADD", "vanished", &gone_path, "ghost", &conf);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.json["msg"]
            .as_str()
            .unwrap()
            .starts_with("add command: failed to setup network"),
        "{}",
        r.stdout
    );
    assert!(
        node.checkpoint_ips().is_empty(),
        "rolled back with DelNetwork(SetupNSFailed)"
    );
    assert!(
        node.daemon.log().contains("SetupNSFailed"),
        "{}",
        node.daemon.log()
    );

    // A pod re-created under the same name while its old veth lingers: the old one is replaced.
    let old = Ns::new("old");
    let first = node.cni("ADD", "c0", &old.path(), "web", &conf);
    assert_eq!(first.code, 0, "{}", first.stdout);
    let p = Ns::new("p");
    let added = node.cni("ADD", "c1", &p.path(), "web", &conf);
    assert_eq!(added.code, 0, "{}", added.stdout);
    assert!(
        !old.sh("ip -o link").contains("eth0"),
        "the old pod's pair was replaced"
    );
    assert!(p.ping(&node.node_ip()), "the new pod is wired");
    let released = node.cni(
        "DEL",
        "c0",
        &old.path(),
        "web",
        &with_prev(&conf, &first.json),
    );
    assert_eq!(released.code, 0);
    assert!(
        p.ping(&node.node_ip()),
        "the old pod's DEL leaves the new pod's veth alone"
    );

    // Daemon down on DEL: teardown from prevResult, success.
    let ip = pod_ip(&added.json);
    let Node {
        ns,
        mut daemon,
        _dir,
        ..
    } = node;
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let d = exec_plugin(
        Some(&ns),
        &bin,
        &cni_env("DEL", "c1", &p.path(), "web"),
        &with_prev(&conf, &added.json),
    );
    assert_eq!((d.code, d.stdout.as_str()), (0, ""), "{}", d.stderr);
    assert!(!ns.sh("ip rule").contains(&ip), "rules of {ip} removed");
    assert!(
        !ns.sh("ip route").contains(&format!("{ip} dev")),
        "route of {ip} removed"
    );
    assert!(!ns.sh("ip -o link").contains(": eni"), "veth removed");
    let log = std::fs::read_to_string(Path::new(&daemon.dir).join("plugin.log")).unwrap();
    assert!(log.contains("tearing down from prevResult"), "{log}");
}
