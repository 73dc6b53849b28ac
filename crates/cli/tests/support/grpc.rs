//! A gRPC client of the daemon over its unix socket, and a daemon process under test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use vpc_cni_proto::rpc::cni_backend_client::CniBackendClient;

/// Connect to the daemon's socket.
pub async fn connect(socket: &Path) -> CniBackendClient<Channel> {
    let path = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect to the daemon socket");
    CniBackendClient::new(channel)
}

/// A free loopback TCP port.
/// A kubelet-like AddNetwork for pod `i` (name `pod-i`, container ID `i` in hex).
#[allow(dead_code)]
pub fn add_req(i: u32) -> vpc_cni_proto::rpc::AddNetworkRequest {
    vpc_cni_proto::rpc::AddNetworkRequest {
        k8s_pod_name: format!("pod-{i}"),
        k8s_pod_namespace: "default".into(),
        container_id: format!("{i:064x}"),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        netns: format!("/proc/{i}/ns/net"),
        client_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon process with its own directory and ports.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Working directory (socket, checkpoint, log).
    pub dir: PathBuf,
    /// Metrics port.
    pub metrics: u16,
    /// Introspection port.
    pub introspection: u16,
}

impl Daemon {
    /// Start `vpc-cni daemon` with `env` and extra `args`, and wait until its socket answers.
    pub fn start(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Daemon {
        Self::start_in(None, dir, env, args)
    }

    /// Like [`Daemon::start`], inside the network namespace `netns` when given.
    #[allow(dead_code)]
    pub fn start_in(
        netns: Option<&str>,
        dir: &Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Daemon {
        std::fs::create_dir_all(dir).unwrap();
        let (metrics, introspection) = (free_port(), free_port());
        let mut cmd = match netns {
            None => Command::new(env!("CARGO_BIN_EXE_vpc-cni")),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vpc-cni")]);
                c
            }
        };
        cmd.arg("daemon")
            .args(["--sim-latency-scale", "0", "--cycle-ms", "100"])
            .arg("--socket")
            .arg(dir.join("ipamd.sock"))
            .arg("--checkpoint")
            .arg(dir.join("ipam.json"))
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics}"))
            .arg("--introspection-addr")
            .arg(format!("127.0.0.1:{introspection}"))
            .args(args)
            .env("AWS_VPC_K8S_CNI_LOG_FILE", dir.join("ipamd.log"))
            .env("AWS_VPC_K8S_CNI_LOGLEVEL", "info")
            .env_remove("VPC_CNI_DATA_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // A killed daemon leaves its socket file behind: wait for a live one.
        let _ = std::fs::remove_file(dir.join("ipamd.sock"));
        let child = cmd.spawn().expect("start the daemon");
        let d = Daemon {
            child,
            dir: dir.to_path_buf(),
            metrics,
            introspection,
        };
        // Start-up includes one synchronous pool top-up (upstream), which retries through
        // injected faults and throttling: allow it time.
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::os::unix::net::UnixStream::connect(d.dir.join("ipamd.sock")).is_err() {
            assert!(
                Instant::now() < deadline,
                "daemon socket did not answer; log: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("ipamd.log")).unwrap_or_default()
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("ipamd.sock")
    }

    /// GET a path of the metrics or introspection server over plain HTTP/1.0.
    pub fn get(&self, port: u16, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
