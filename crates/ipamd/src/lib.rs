//! ipamd: the node daemon. Serves the upstream gRPC contract on a unix socket, keeps the
//! checkpoint, runs the warm-pool loop of the `ipam` brain against a [`vpc_cni_cloud::Cloud`]
//! backend, and exposes metrics and introspection.

pub mod calls;
pub mod checkpoint;
pub mod config;
pub mod custom;
pub mod daemon;
pub mod gc;
pub mod host;
pub mod hostnet;
pub mod http;
pub mod kube;
pub mod listen;
pub mod metrics;
pub mod overrides;
pub mod owners;
pub mod pool;
pub mod reconcile;
pub mod rpc;
pub mod state;
pub mod v6;

pub use config::DaemonConfig;
pub use daemon::{DaemonError, init, init_with_host, serve};
