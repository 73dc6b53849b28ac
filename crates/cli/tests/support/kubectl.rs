//! `kubectl` (Debian's kubernetes-client) for the tests against the Kubernetes API emulator.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// `kubectl` with `kc`, whatever it answers.
fn run(kc: &Path, args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kc)
        .output()
        .expect("kubectl (Debian kubernetes-client) must be installed: scripts/check installs it")
}

/// `kubectl` with `kc`; its stdout (a failure fails the test, naming the command).
pub fn kubectl(kc: &Path, args: &[&str]) -> String {
    let out = run(kc, args);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Merge-patch a node's `status` as kubelet would (`patch` is the JSON of the patch). kubectl
/// writes subresources from 1.24 on (`--subresource=status`); with an older one (Debian
/// bookworm's 1.20) the Python kubernetes client sends the same PATCH.
pub fn patch_node_status(kc: &Path, node: &str, patch: &str) {
    let args = [
        "patch",
        "node",
        node,
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ];
    let out = run(kc, &args);
    if out.status.success() {
        return;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown flag: --subresource"),
        "kubectl {args:?}: {err}"
    );
    let python = std::env::var("VPC_CNI_PYTHON").expect(
        "VPC_CNI_PYTHON must name a Python with the kubernetes client (scripts/check sets it up)",
    );
    let script = "import json, sys, kubernetes\n\
                  kubernetes.config.load_kube_config(sys.argv[1])\n\
                  kubernetes.client.CoreV1Api().patch_node_status(sys.argv[2], json.loads(sys.argv[3]))\n";
    let out = Command::new(python)
        .args(["-c", script, kc.to_str().unwrap(), node, patch])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "patch_node_status {node} {patch}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn json(kc: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(kc, &a)).unwrap()
}

pub fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn events(kc: &Path, reason: &str) -> Vec<Value> {
    json(kc, &["get", "events", "-A"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == reason)
        .cloned()
        .collect()
}
