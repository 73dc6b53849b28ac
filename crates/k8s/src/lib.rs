//! The daemon's Kubernetes seam: what ipamd reads from and writes to the API server (the Node's
//! max pods, cordon state, ENIConfig selection; the startup taint; pod-IP annotations; CNINode
//! features; Events), as one narrow object-safe trait, [`Kube`], implemented with kube-rs
//! ([`client::KubeClient`]: watches filtered to the local node, direct writes) and in memory
//! ([`fake::FakeKube`]) for the daemon's tests.

#[cfg(feature = "client")]
pub mod client;
pub mod fake;
pub mod node;

use futures::future::BoxFuture;

pub use node::{EniConfig, NodeView};

/// Errors of the Kubernetes side.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KubeError {
    /// Configuration (kubeconfig, in-cluster files, CLUSTER_ENDPOINT) is unusable.
    #[error("Kubernetes configuration: {0}")]
    Config(String),
    /// The API server could not be reached or did not answer in time.
    #[error("API server {endpoint}: {message}")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// The API server answered with an error status.
    #[error("{what}: {code} {reason}: {message}")]
    Api {
        /// The object or request.
        what: String,
        /// HTTP status.
        code: u16,
        /// Status reason.
        reason: String,
        /// Message.
        message: String,
    },
    /// An object the daemon needs is malformed.
    #[error("{object}: {field}: {message}")]
    Invalid {
        /// The object (kind/name).
        object: String,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl KubeError {
    /// 409 Conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, KubeError::Api { code: 409, .. })
    }

    /// 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        matches!(self, KubeError::Api { code: 404, .. })
    }
}

/// What an Event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Regarding {
    /// The daemon's own pod (`MY_POD_NAME` in kube-system).
    OwnPod,
    /// The local Node.
    Node,
}

/// A Warning Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Object.
    pub regarding: Regarding,
    /// Reason (`MissingIAMPermissions`, `PodsWaitingForAddresses`, …).
    pub reason: String,
    /// Action (e.g. the EC2 API name).
    pub action: String,
    /// Human text.
    pub note: String,
}

/// The daemon's Kubernetes operations.
pub trait Kube: Send + Sync + 'static {
    /// The local Node as last seen by the watch (None until the first answer).
    fn node(&self) -> Option<NodeView>;
    /// An ENIConfig as last seen by the watch.
    fn eniconfig(&self, name: &str) -> Option<Result<EniConfig, KubeError>>;
    /// `GET /version` (gitVersion).
    fn version(&self) -> BoxFuture<'_, Result<String, KubeError>>;
    /// Remove taint `key` from the local Node; whether it was there.
    fn remove_node_taint<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, KubeError>>;
    /// Set annotation `key` of a pod to `value`; with `only_if`, only when it holds that value
    /// now (retried on conflict). Whether it was written.
    fn annotate_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        key: &'a str,
        value: &'a str,
        only_if: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, KubeError>>;
    /// Merge `features` (name → value) into the local CNINode's `spec.features`, with the
    /// resourceVersion lock (retried on conflict). Whether anything changed.
    fn patch_cninode_features<'a>(
        &'a self,
        features: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<bool, KubeError>>;
    /// Publish a Warning Event.
    fn warn(&self, w: Warning) -> BoxFuture<'_, Result<(), KubeError>>;
    /// Whether the watches have answered at least once (the cache is usable).
    fn synced(&self) -> bool;
    /// Whether a pod of this node exists in the API (the Pod watch's cache); None until the
    /// watch has answered, or without one.
    fn pod_exists(&self, _namespace: &str, _name: &str) -> Option<bool> {
        None
    }
    /// Whether a pod of this node carries `vpc.amazonaws.com/pod-eni` (a branch ENI of security
    /// groups for pods), as the Pod watch last saw it.
    fn pod_has_branch_eni(&self, _namespace: &str, _name: &str) -> bool {
        false
    }
    /// Whether the ENIConfig list has been read once (before that, a missing ENIConfig may
    /// only be not yet seen). Starts the ENIConfig watch.
    fn eniconfigs_synced(&self) -> bool {
        true
    }
}
