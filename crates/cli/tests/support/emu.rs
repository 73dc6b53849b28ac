//! Child processes for tests: killed on drop; `vpc-cni emulate` started on free ports.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A child process killed (and reaped) on drop.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `vpc-cni emulate` (no latency, free ports) with `extra` flags; its endpoints line.
pub fn emulator(extra: &[&str]) -> (Kill, serde_json::Value) {
    emulator_in(None, extra)
}

/// [`emulator`] inside the network namespace `netns` (its loopback), when given.
pub fn emulator_in(netns: Option<&str>, extra: &[&str]) -> (Kill, serde_json::Value) {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vpc-cni")]);
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_vpc-cni")),
    };
    let mut child = cmd
        .args([
            "emulate",
            "--ec2-addr",
            "127.0.0.1:0",
            "--imds-addr",
            "127.0.0.1:0",
            "--latency-scale",
            "0",
            "--output",
            "json",
        ])
        .args(extra)
        .env_remove("VPC_CNI_DATA_DIR")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("endpoints line {line:?}: {e}"));
    (Kill(child), v)
}
