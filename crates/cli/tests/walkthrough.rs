//! The README's "node in a network namespace" walkthrough, literally: the daemon with the flags
//! the README gives (no state flag, no log variables), `vpc-cni init`, then a pod through the
//! conflist `init` wrote. The pod reaches an address outside the VPC through the subnet router,
//! SNATed to the node's address; nothing is written outside the paths the user gave. Runs as
//! root (CI does).

#[allow(dead_code)]
#[path = "support/netns.rs"]
mod netns;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netns::{Ns, cni_env, exec_plugin, require_root};
use serde_json::{Value, json};

const OUTSIDE: &str = "198.51.100.7";

/// Paths upstream would write to by default; the walkthrough must not create them.
const FOREIGN: &[&str] = &[
    "/var/log/aws-routed-eni",
    "/host/var/log/aws-routed-eni",
    "/var/run/aws-node",
];

#[test]
fn the_walkthrough_pod_reaches_outside_snatted_and_writes_only_where_told() {
    require_root();
    let existed: Vec<bool> = FOREIGN.iter().map(|p| Path::new(p).exists()).collect();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let node = Ns::new("wnode");
    let bin = env!("CARGO_BIN_EXE_vpc-cni");
    let mut daemon = Command::new("ip")
        .args(["netns", "exec", &node.name, bin, "daemon", "--host-network"])
        .args(["--instance-type", "m5.large", "--sim-latency-scale", "0"])
        .arg("--socket")
        .arg(run.join("ipamd.sock"))
        .arg("--checkpoint")
        .arg(run.join("ipam.json"))
        .env_remove("AWS_VPC_K8S_CNI_LOG_FILE")
        .env_remove("AWS_VPC_K8S_PLUGIN_LOG_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (bin_dir, conf_dir) = (dir.path().join("cni/bin"), dir.path().join("cni/net.d"));
    let init = Command::new("ip")
        .args([
            "netns",
            "exec",
            &node.name,
            bin,
            "init",
            "--wait-timeout",
            "60",
        ])
        .arg("--socket")
        .arg(run.join("ipamd.sock"))
        .arg("--cni-bin-dir")
        .arg(&bin_dir)
        .arg("--cni-conf-dir")
        .arg(&conf_dir)
        .env_remove("AWS_VPC_K8S_PLUGIN_LOG_FILE")
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let list: Value =
        serde_json::from_str(&std::fs::read_to_string(conf_dir.join("10-aws.conflist")).unwrap())
            .unwrap();
    let plugin_log = run.join("plugin.log");
    assert_eq!(list["plugins"][0]["pluginLogFile"], json!(plugin_log));

    // The subnet router, with an address outside the VPC behind it.
    let router = Ns::new("wrouter");
    let (a, b) = (
        format!("wr{}a", std::process::id() % 100000),
        format!("wr{}b", std::process::id() % 100000),
    );
    node.sh(&format!("ip link add {a} type veth peer name {b}"));
    node.sh(&format!("ip link set {b} netns {}", router.name));
    node.sh(&format!("ip link set {a} master eth0 up"));
    router.sh(&format!(
        "ip addr add 10.0.0.1/20 dev {b} && ip link set {b} up && ip link set lo up"
    ));
    router.sh(&format!("ip addr add {OUTSIDE}/32 dev lo"));
    let routes = node.sh("ip -4 route show table main");
    assert!(routes.contains("default via 10.0.0.1 dev eth0"), "{routes}");

    // The pod, with the walkthrough's netconf.
    let pod = Ns::new("wpod");
    let netconf = json!({"cniVersion": "0.4.0", "name": "aws-cni", "type": "aws-cni",
        "ipamdSocket": run.join("ipamd.sock"), "pluginLogFile": plugin_log});
    let mut r = exec_plugin(
        Some(&node),
        &bin_dir.join("aws-cni"),
        &cni_env("ADD", "c1", &pod.path(), "web"),
        &netconf,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.code != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        r = exec_plugin(
            Some(&node),
            &bin_dir.join("aws-cni"),
            &cni_env("ADD", "c1", &pod.path(), "web"),
            &netconf,
        );
    }
    assert_eq!(r.code, 0, "{}", r.stdout);

    // A listener outside sees the node's address, not the pod's.
    let listener = Command::new("ip")
        .args(["netns", "exec", &router.name, "python3", "-c"])
        .arg(format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{OUTSIDE}',8080))\ns.listen()\nprint('ready',flush=True)\nc,a=s.accept()\nprint(a[0],flush=True)"
        ))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    pod.sh(&format!("ping -c1 -W2 {OUTSIDE}"));
    pod.sh(&format!(
        "python3 -c \"import socket; socket.create_connection(('{OUTSIDE}', 8080), timeout=5).close()\""
    ));
    let out = listener.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    let node_ip = node.sh("ip -4 -o addr show dev eth0");
    let node_ip = node_ip
        .split_whitespace()
        .nth(3)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(
        seen.lines().last() == Some(node_ip),
        "outside saw {seen:?}, node is {node_ip}"
    );

    // Logs went beside the socket; nothing upstream's defaults name was created.
    assert!(run.join("ipamd.log").exists());
    assert!(plugin_log.exists());
    for (p, before) in FOREIGN.iter().zip(existed) {
        assert!(before || !Path::new(p).exists(), "{p} was created");
    }
    // The node holds 27 pod addresses (3 ENIs × 9); the 28th waits, and the log says why.
    let plugin = bin_dir.join("aws-cni");
    let add = |i: usize, ns: &Ns, patience: Duration| {
        let env = cni_env("ADD", &format!("c{i}"), &ns.path(), &format!("web{i}"));
        let deadline = Instant::now() + patience;
        loop {
            let r = exec_plugin(Some(&node), &plugin, &env, &netconf);
            if r.code == 0 || Instant::now() > deadline {
                return r.code;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let more: Vec<Ns> = (2..=28).map(|i| Ns::new(&format!("wp{i}"))).collect();
    for (i, ns) in (2..=27).zip(&more) {
        assert_eq!(add(i, ns, Duration::from_secs(60)), 0, "pod {i} of 27");
    }
    assert_ne!(
        add(28, &more[26], Duration::from_secs(8)),
        0,
        "the 28th waits"
    );
    let log = std::fs::read_to_string(run.join("ipamd.log")).unwrap();
    assert!(
        log.contains("no room: every ENI is full and the ENI limit is reached"),
        "{log}"
    );
    let d = exec_plugin(
        Some(&node),
        &bin_dir.join("aws-cni"),
        &cni_env("DEL", "c1", &pod.path(), "web"),
        &netconf,
    );
    assert_eq!(d.code, 0, "{}", d.stdout);
    let _ = daemon.kill();
    let _ = daemon.wait();
}
