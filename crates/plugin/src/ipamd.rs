//! The plugin's side of the ipamd gRPC contract: a narrow [`Ipamd`] trait (what the command
//! logic needs) and its implementation over the daemon's unix socket.

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};
use vpc_cni_proto::rpc::cni_backend_client::CniBackendClient;
use vpc_cni_proto::rpc::{AddNetworkReply, AddNetworkRequest, DelNetworkReply, DelNetworkRequest};
use vpc_cni_proto::vpccni::pod_addresses_client::PodAddressesClient;
use vpc_cni_proto::vpccni::{CheckNetworkReply, CheckNetworkRequest};

/// Default socket of the daemon.
pub const DEFAULT_SOCKET: &str = "/var/run/aws-node/ipamd.sock";

/// Why a call to ipamd failed.
#[derive(Debug, thiserror::Error)]
pub enum IpamdError {
    /// The socket could not be reached.
    #[error("ipamd is unreachable at {socket}: {reason}")]
    Unreachable {
        /// The socket path.
        socket: String,
        /// The connect error.
        reason: String,
    },
    /// The daemon answered with a gRPC error.
    #[error("rpc error: code = {:?} desc = {}", .0.code(), .0.message())]
    Rpc(tonic::Status),
}

/// What the command logic asks of ipamd.
#[allow(async_fn_in_trait)]
pub trait Ipamd {
    /// `AddNetwork`.
    async fn add(&self, req: AddNetworkRequest) -> Result<AddNetworkReply, IpamdError>;
    /// `DelNetwork`.
    async fn del(&self, req: DelNetworkRequest) -> Result<DelNetworkReply, IpamdError>;
    /// Whether the daemon answers (STATUS).
    async fn reachable(&self) -> Result<(), IpamdError>;
    /// Whether the daemon still holds an address for the pod (CHECK; this project's service).
    async fn check(&self, req: CheckNetworkRequest) -> Result<CheckNetworkReply, IpamdError>;
}

/// ipamd over its unix socket.
#[derive(Debug, Clone)]
pub struct UdsIpamd {
    socket: PathBuf,
}

impl UdsIpamd {
    /// A client of the daemon at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        UdsIpamd {
            socket: socket.into(),
        }
    }

    async fn client(&self) -> Result<CniBackendClient<tonic::transport::Channel>, IpamdError> {
        Ok(CniBackendClient::new(self.channel().await?))
    }

    async fn channel(&self) -> Result<tonic::transport::Channel, IpamdError> {
        let path = self.socket.clone();
        let channel = Endpoint::from_static("http://localhost")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(s))
                }
            }))
            .await
            .map_err(|e| IpamdError::Unreachable {
                socket: self.socket.display().to_string(),
                reason: source_chain(&e),
            })?;
        Ok(channel)
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Ipamd for UdsIpamd {
    async fn add(&self, req: AddNetworkRequest) -> Result<AddNetworkReply, IpamdError> {
        let mut c = self.client().await?;
        c.add_network(req)
            .await
            .map(|r| r.into_inner())
            .map_err(IpamdError::Rpc)
    }

    async fn del(&self, req: DelNetworkRequest) -> Result<DelNetworkReply, IpamdError> {
        let mut c = self.client().await?;
        c.del_network(req)
            .await
            .map(|r| r.into_inner())
            .map_err(IpamdError::Rpc)
    }

    async fn reachable(&self) -> Result<(), IpamdError> {
        self.client().await.map(|_| ())
    }

    async fn check(&self, req: CheckNetworkRequest) -> Result<CheckNetworkReply, IpamdError> {
        let mut c = PodAddressesClient::new(self.channel().await?);
        c.check_network(req)
            .await
            .map(|r| r.into_inner())
            .map_err(IpamdError::Rpc)
    }
}
