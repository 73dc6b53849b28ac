//! Throwaway network namespaces and the `aws-cni` binary exec'd the way a container runtime
//! does it (CNI_* env + stdin JSON) from inside a "node" namespace. Needs root: a test using
//! this fails (never skips) when it is missing.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Fail loudly unless this runs as root with iproute2 (CI runs as root).
pub fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "this test creates network namespaces and must run as root (CI does)"
    );
    let ip = Command::new("ip").arg("-V").output();
    assert!(
        ip.is_ok_and(|o| o.status.success()),
        "iproute2 (`ip`) is required: apt-get install iproute2"
    );
}

/// A network namespace deleted on drop.
pub struct Ns {
    /// Its name under /var/run/netns.
    pub name: String,
}

impl Ns {
    /// A fresh namespace tagged `tag`.
    pub fn new(tag: &str) -> Ns {
        let name = format!(
            "vcni{}-{}-{tag}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Ns { name };
        ns.sh("ip link set lo up");
        ns
    }

    /// Its path (CNI_NETNS).
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Run a shell command inside it.
    pub fn run(&self, cmd: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .output()
            .expect("run ip netns exec")
    }

    /// Run a shell command inside it; it must succeed; its stdout.
    pub fn sh(&self, cmd: &str) -> String {
        let o = self.run(cmd);
        assert!(
            o.status.success(),
            "[{}] {cmd}: {}{}",
            self.name,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Whether one ping to `ip` from here gets an answer.
    pub fn ping(&self, ip: &str) -> bool {
        self.run(&format!("ping -c 1 -W 2 {ip}")).status.success()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The `aws-cni` binary: `VPC_CNI_AWS_CNI_BIN` when set (the benchmark measures the shipped
/// build), else the one built beside `vpc-cni`.
pub fn aws_cni_bin() -> PathBuf {
    let p = std::env::var_os("VPC_CNI_AWS_CNI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vpc-cni")).with_file_name("aws-cni"));
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build -p aws-cni` (cargo test --workspace does)",
        p.display()
    );
    p
}

/// The result of one plugin invocation.
#[derive(Debug)]
pub struct CniRun {
    /// Exit code.
    pub code: i32,
    /// stdout parsed as JSON (Null when empty).
    pub json: Value,
    /// stdout as text.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

/// Exec a CNI plugin binary in `node` (or the test's own namespace when `None`).
pub fn exec_plugin(
    node: Option<&Ns>,
    bin: &std::path::Path,
    env: &[(&str, String)],
    stdin: &Value,
) -> CniRun {
    let mut cmd = match node {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &n.name]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    CniRun {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// CNI_* variables for one pod.
pub fn cni_env(
    command: &str,
    container: &str,
    netns: &str,
    pod: &str,
) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", container.to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_PATH", "/usr/lib/cni".to_string()),
        (
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={container}"
            ),
        ),
    ];
    if !netns.is_empty() {
        v.push(("CNI_NETNS", netns.to_string()));
    }
    v
}
