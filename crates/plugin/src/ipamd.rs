//! The plugin's side of the ipamd gRPC contract: a narrow [`Ipamd`] trait (what the command
//! logic needs) and its implementation over the daemon's unix socket (one unary call per
//! process, see [`crate::grpc`]).

use std::path::PathBuf;

use vpc_cni_proto::rpc::{AddNetworkReply, AddNetworkRequest, DelNetworkReply, DelNetworkRequest};
use vpc_cni_proto::vpccni::{CheckNetworkReply, CheckNetworkRequest, GcReply, GcRequest};

/// Default socket of the daemon.
pub const DEFAULT_SOCKET: &str = "/var/run/aws-node/ipamd.sock";

pub use crate::grpc::IpamdError;

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
    /// CNI GC: release what is not a valid attachment (this project's service).
    async fn gc(&self, req: GcRequest) -> Result<GcReply, IpamdError>;
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
}

impl Ipamd for UdsIpamd {
    async fn add(&self, req: AddNetworkRequest) -> Result<AddNetworkReply, IpamdError> {
        crate::grpc::unary(&self.socket, "/rpc.CNIBackend/AddNetwork", &req).await
    }

    async fn del(&self, req: DelNetworkRequest) -> Result<DelNetworkReply, IpamdError> {
        crate::grpc::unary(&self.socket, "/rpc.CNIBackend/DelNetwork", &req).await
    }

    async fn reachable(&self) -> Result<(), IpamdError> {
        crate::grpc::connect(&self.socket).await.map(|_| ())
    }

    async fn check(&self, req: CheckNetworkRequest) -> Result<CheckNetworkReply, IpamdError> {
        crate::grpc::unary(&self.socket, "/vpccni.v1.PodAddresses/CheckNetwork", &req).await
    }

    async fn gc(&self, req: GcRequest) -> Result<GcReply, IpamdError> {
        crate::grpc::unary(&self.socket, "/vpccni.v1.PodGc/GarbageCollect", &req).await
    }
}
