//! A "node" network namespace running `vpc-cni daemon --host-network` (simulated VPC), and the
//! `aws-cni` binary exec'd in it the way a runtime does.

use serde_json::{Value, json};

use super::grpc::Daemon;
use super::netns::{CniRun, Ns, aws_cni_bin, cni_env, exec_plugin, require_root};

/// A node namespace with its daemon.
pub struct Node {
    pub ns: Ns,
    pub daemon: Daemon,
    pub _dir: tempfile::TempDir,
    pub instance: String,
}

impl Node {
    pub fn start(instance: &str, env: &[(&str, &str)]) -> Node {
        Self::start_with(instance, env, &[])
    }

    /// [`Node::start`] with more daemon flags.
    pub fn start_with(instance: &str, env: &[(&str, &str)], extra: &[&str]) -> Node {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let ns = Ns::new("node");
        let daemon = Daemon::start_in(
            Some(&ns.name),
            dir.path(),
            env,
            &Self::args(instance, extra),
        );
        Node {
            ns,
            daemon,
            _dir: dir,
            instance: instance.to_string(),
        }
    }

    fn args<'a>(instance: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--host-network", "--instance-type", instance];
        args.extend(["--subnet", "10.0.0.0/20"]);
        args.extend(extra);
        args
    }

    /// SIGTERM the daemon, wait for it, and start it again the same way (same directory).
    pub fn restart(&mut self, env: &[(&str, &str)], extra: &[&str]) {
        let pid = self.daemon.child.id().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(ok.success());
        let st = self.daemon.child.wait().unwrap();
        assert!(st.success(), "daemon exit after SIGTERM: {st:?}");
        let dir = self.daemon.dir.clone();
        let instance = self.instance.clone();
        self.daemon = Daemon::start_in(
            Some(&self.ns.name),
            &dir,
            env,
            &Self::args(&instance, extra),
        );
    }

    pub fn conf(&self) -> Value {
        json!({
            "cniVersion": "0.4.0",
            "name": "aws-cni",
            "type": "aws-cni",
            "vethPrefix": "eni",
            "mtu": "9001",
            "pluginLogFile": self.daemon.dir.join("plugin.log"),
            "pluginLogLevel": "Debug",
            "ipamdSocket": self.daemon.socket(),
        })
    }

    pub fn cni(
        &self,
        command: &str,
        container: &str,
        netns: &str,
        pod: &str,
        conf: &Value,
    ) -> CniRun {
        exec_plugin(
            Some(&self.ns),
            &aws_cni_bin(),
            &cni_env(command, container, netns, pod),
            conf,
        )
    }

    pub fn node_ip(&self) -> String {
        let out = self.ns.sh("ip -4 -o addr show dev eth0");
        out.split_whitespace()
            .nth(3)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string()
    }

    pub fn checkpoint_ips(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.daemon.dir.join("ipam.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        v["allocations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["ipv4"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

pub fn pod_ip(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_string()
}
