//! A Kubernetes API emulator: the part of the API vpc-cni's daemon uses (nodes, pods, events,
//! CRDs with ENIConfig and CNINode), served over HTTP on loopback with bearer-token auth, so
//! `kubectl`, the Python `kubernetes` client and kube-rs can be pointed at it through a
//! kubeconfig file. No kube-apiserver can be installed where this project is built and tested;
//! this is the project's own, as the EC2/IMDS emulator is.

pub mod events;
pub mod openapi;
pub mod patch;
pub mod resources;
pub mod select;
pub mod server;
pub mod state;
pub mod store;
pub mod table;
pub mod tls;
mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

pub use state::{Faults, Shared};
pub use store::{ApiError, Store, UNSCHEDULABLE_TAINT};

/// A running emulator.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state (objects, faults).
    pub shared: Arc<Shared>,
    /// PEM of its (self-signed) certificate: the CA clients trust.
    pub ca_pem: String,
}

impl Running {
    /// `https://addr`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kubeconfig for this server and `token`.
    pub fn kubeconfig(&self, token: &str) -> String {
        kubeconfig(&self.url(), &self.ca_pem, token)
    }
}

/// Bind `addr` (loopback) and serve over TLS in the background.
pub async fn start(addr: SocketAddr, token: &str) -> std::io::Result<Running> {
    start_with(addr, token, None).await
}

/// [`start`], keeping the certificate in `tls_dir` (see [`tls::identity`]).
pub async fn start_with(
    addr: SocketAddr,
    token: &str,
    tls_dir: Option<&std::path::Path>,
) -> std::io::Result<Running> {
    let id = tls::identity(tls_dir).map_err(std::io::Error::other)?;
    let shared = Shared::new(token);
    let s = shared.clone();
    let router = axum::Router::new().fallback(move |method, uri, headers, body| {
        server::handle(s.clone(), method, uri, headers, body)
    });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(tls::serve(listener, id.config, router));
    Ok(Running {
        addr,
        shared,
        ca_pem: id.cert_pem,
    })
}

/// A kubeconfig naming `server`, its CA and `token` (context `vpc-cni-emulator`).
pub fn kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: vpc-cni-emulator\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n- name: vpc-cni-emulator\n  user:\n    token: {token}\n\
         contexts:\n- name: vpc-cni-emulator\n  context:\n    cluster: vpc-cni-emulator\n    user: vpc-cni-emulator\n    namespace: default\n\
         current-context: vpc-cni-emulator\n"
    )
}
