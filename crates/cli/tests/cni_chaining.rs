//! Chaining and installation on real network namespaces: `vpc-cni init` waits for the daemon
//! before writing `10-aws.conflist`, and that conflist run the way libcni runs it (`aws-cni` →
//! Debian's `portmap`) gives a host port that reaches the pod. Runs as root (CI does).

#[allow(dead_code)]
#[path = "support/cninode.rs"]
mod cninode;
#[allow(dead_code)]
#[path = "support/grpc.rs"]
mod grpc;
#[allow(dead_code)]
#[path = "support/netns.rs"]
mod netns;

use std::path::Path;

use cninode::{Node, pod_ip};
use grpc::Daemon;
use netns::{Ns, aws_cni_bin, cni_env, exec_plugin, require_root};
use serde_json::{Value, json};

/// `vpc-cni init` inside `node`, with its own bin and conf dirs.
fn init_cmd(node: &Ns, dir: &Path, socket: &Path, timeout: &str) -> std::process::Command {
    let mut c = std::process::Command::new("ip");
    c.args([
        "netns",
        "exec",
        &node.name,
        env!("CARGO_BIN_EXE_vpc-cni"),
        "init",
        "--wait-timeout",
        timeout,
    ])
    .arg("--cni-bin-dir")
    .arg(dir.join("bin"))
    .arg("--cni-conf-dir")
    .arg(dir.join("net.d"))
    .arg("--socket")
    .arg(socket)
    .arg("--plugin")
    .arg(aws_cni_bin())
    .env("POD_MTU", "1500");
    c
}

/// Run a conflist's plugins in order (ADD) or reverse (DEL) the way libcni does.
fn run_conflist(
    node: &Node,
    list: &Value,
    command: &str,
    netns: &Ns,
    bin_dir: &Path,
    prev: Option<&Value>,
) -> Value {
    let mut plugins: Vec<Value> = list["plugins"].as_array().unwrap().clone();
    if command == "DEL" {
        plugins.reverse();
    }
    let mut prev = prev.cloned();
    for p in plugins {
        let mut conf = p.clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        conf["name"] = list["name"].clone();
        if p["capabilities"]["portMappings"] == true {
            conf["runtimeConfig"] = json!({"portMappings": [{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}]});
        }
        if let Some(pr) = &prev {
            conf["prevResult"] = pr.clone();
        }
        let ty = p["type"].as_str().unwrap();
        let bin = if ty == "aws-cni" || ty == "egress-cni" {
            bin_dir.join(ty)
        } else {
            Path::new("/usr/lib/cni").join(ty)
        };
        assert!(
            bin.exists(),
            "{} missing: apt-get install containernetworking-plugins",
            bin.display()
        );
        let mut env = cni_env(command, "chain1", &netns.path(), "web");
        env.push(("CNI_PATH", format!("{}:/usr/lib/cni", bin_dir.display())));
        let r = exec_plugin(Some(&node.ns), &bin, &env, &conf);
        assert_eq!(r.code, 0, "{command} {ty}: {} {}", r.stdout, r.stderr);
        if command == "ADD" {
            prev = Some(r.json);
        }
    }
    prev.unwrap_or(Value::Null)
}

#[test]
fn init_waits_for_ipamd_then_chains_aws_cni_with_portmap() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let ns = Ns::new("node");
    let socket = dir.path().join("ipamd.sock");
    // No daemon: init gives up without writing the conflist.
    let out = init_cmd(&ns, dir.path(), &socket, "1").output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was not SERVING within 1 s"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dir.path().join("bin/aws-cni").exists(),
        "plugin installed first"
    );
    assert!(!dir.path().join("net.d/10-aws.conflist").exists());
    // Started before the daemon, init writes the conflist once the daemon is healthy.
    let mut init = init_cmd(&ns, dir.path(), &socket, "60")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !dir.path().join("net.d/10-aws.conflist").exists(),
        "no conflist before ipamd is healthy"
    );
    let daemon = Daemon::start_in(
        Some(&ns.name),
        dir.path(),
        &[],
        &["--host-network", "--instance-type", "m5.large"],
    );
    assert!(init.wait().unwrap().success());
    assert_eq!(
        ns.sh("cat /proc/sys/net/ipv4/conf/eth0/rp_filter").trim(),
        "2"
    );
    let list: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("net.d/10-aws.conflist")).unwrap(),
    )
    .unwrap();
    assert_eq!(list["plugins"][0]["mtu"], "1500");
    assert_eq!(list["plugins"][1]["type"], "egress-cni");
    assert_eq!(list["plugins"][1]["enabled"], "false", "IPv4 cluster");
    assert_eq!(list["plugins"][2]["type"], "portmap");
    assert!(
        dir.path().join("bin/egress-cni").exists(),
        "init installs egress-cni beside aws-cni"
    );
    let node = Node {
        ns,
        daemon,
        _dir: dir,
        instance: "m5.large".into(),
    };

    let pod = Ns::new("web");
    let result = run_conflist(
        &node,
        &list,
        "ADD",
        &pod,
        &node._dir.path().join("bin"),
        None,
    );
    let ip = pod_ip(&result);
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", &pod.name, "python3", "-c"])
        .arg("import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',8080))\ns.listen(4)\nwhile True:\n  c,_=s.accept(); c.sendall(b'hello from pod'); c.close()")
        .spawn()
        .unwrap();
    let server = KillOnDrop(server);
    let node_ip = node.node_ip();
    let client = format!(
        "python3 -c \"import socket; s=socket.create_connection(('{node_ip}',18080),timeout=3); print(s.recv(100).decode())\""
    );
    let mut answer = String::new();
    for _ in 0..50 {
        let o = node.ns.run(&client);
        answer = String::from_utf8_lossy(&o.stdout).into_owned();
        if answer.contains("hello") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        answer.trim(),
        "hello from pod",
        "node {node_ip}:18080 → pod {ip}:8080 through portmap"
    );
    assert!(
        node.ns
            .sh("iptables-save -t nat")
            .contains("CNI-HOSTPORT-DNAT")
    );
    drop(server);
    run_conflist(
        &node,
        &list,
        "DEL",
        &pod,
        &node._dir.path().join("bin"),
        Some(&result),
    );
    let nat = node.ns.sh("iptables-save -t nat");
    assert!(
        !nat.contains(&format!("{ip}:8080")),
        "portmap DNAT removed: {nat}"
    );
    assert!(!node.ns.sh("ip -o link").contains(": eni"), "veth removed");
    assert!(node.checkpoint_ips().is_empty());
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
