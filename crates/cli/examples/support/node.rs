//! Shared by the examples that run a daemon: a child killed on drop, its resident memory, a
//! gRPC client on its socket.

use std::path::Path;
use std::process::Child;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use vpc_cni_proto::rpc::cni_backend_client::CniBackendClient;

/// A child process killed on drop.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// VmRSS of `pid` in KiB (0 when gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A gRPC client on the daemon's unix socket.
pub async fn connect(sock: &Path) -> anyhow::Result<CniBackendClient<Channel>> {
    let path = sock.to_path_buf();
    let ch = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await?;
    Ok(CniBackendClient::new(ch))
}

/// The vpc-cni binary: `given`, else the one built beside this example.
pub fn vpc_cni_exe(given: Option<&std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    match given {
        Some(p) => Ok(p.clone()),
        None => Ok(std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("locating the target directory")?
            .join("vpc-cni")),
    }
}

/// `vpc-cni daemon --cloud aws` pointed at the emulator `emu` (first instance), its socket,
/// checkpoint and log in `dir`, listeners on `metrics` and `introspection`.
pub fn aws_daemon(
    exe: &Path,
    dir: &Path,
    emu: &vpc_cni_emulator::Running,
    metrics: u16,
    introspection: u16,
) -> std::process::Command {
    let mut c = std::process::Command::new(exe);
    c.args(["daemon", "--cloud", "aws", "--socket"])
        .arg(dir.join("ipamd.sock"))
        .arg("--checkpoint")
        .arg(dir.join("ipam.json"))
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args([
            "--introspection-addr",
            &format!("127.0.0.1:{introspection}"),
        ])
        .env("AWS_ENDPOINT_URL_EC2", format!("http://{}", emu.ec2))
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{}", emu.imds[0].1),
        )
        .env("AWS_ACCESS_KEY_ID", "emulator")
        .env("AWS_SECRET_ACCESS_KEY", "emulator")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_VPC_K8S_CNI_LOG_FILE", dir.join("ipamd.log"))
        .env("AWS_VPC_K8S_CNI_LOGLEVEL", "info");
    c
}

/// A free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// An AddNetwork request as the plugin sends it for pod `namespace/name` in sandbox `container`.
pub fn add_request(
    namespace: &str,
    name: &str,
    container: &str,
) -> vpc_cni_proto::rpc::AddNetworkRequest {
    vpc_cni_proto::rpc::AddNetworkRequest {
        k8s_pod_name: name.into(),
        k8s_pod_namespace: namespace.into(),
        container_id: container.into(),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        netns: format!("/var/run/netns/{container}"),
        client_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}
