//! The daemon's start-up with Kubernetes (upstream v1.20+): when a feature needs the API server
//! (`ANNOTATE_POD_IP`, custom networking; later security groups for pods) wait for `GET
//! /version` every 2 s (5 s timeout each; any other error stops the daemon naming the endpoint);
//! otherwise try for 30 s, start without it, and keep trying every 5 s in the background. The
//! Node watch is given 3 s to answer before the first pool cycle, so max pods comes from it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use vpc_cni_cloud::Cloud;
use vpc_cni_ipam::settings::EnvReader;
use vpc_cni_ipamd::kube::{DEFAULT_STARTUP_TAINT, KubeSettings};
use vpc_cni_ipamd::state::Shared;
use vpc_cni_k8s::client::{KubeClient, Options};
use vpc_cni_k8s::{Kube, KubeError};

/// What start-up decided.
pub enum Plan {
    /// No Kubernetes configured (a laptop, the simulated VPC): nothing to do.
    None,
    /// Connected, watches started.
    Ready(Arc<KubeClient>),
    /// Configured but not answering: keep trying in the background.
    Later(Arc<KubeClient>),
}

/// The settings of the Kubernetes side from the environment.
pub fn settings(max_pods_pinned: bool) -> anyhow::Result<KubeSettings> {
    let r = EnvReader::new(|k| std::env::var(k).ok());
    let annotate_pod_ip = r.boolean("ANNOTATE_POD_IP", false)?;
    let mut needs_api = Vec::new();
    for var in [
        "ANNOTATE_POD_IP",
        "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
        "ENABLE_POD_ENI",
    ] {
        if r.boolean(var, false)? {
            needs_api.push(var);
        }
    }
    let startup_taint = match std::env::var("VPC_CNI_STARTUP_TAINT") {
        Ok(t) if t.trim().is_empty() => None,
        Ok(t) => Some(t),
        Err(_) => Some(DEFAULT_STARTUP_TAINT.to_string()),
    };
    let dir =
        std::env::var("HOST_CNI_CONFDIR_PATH").unwrap_or_else(|_| "/host/etc/cni/net.d".into());
    Ok(KubeSettings {
        annotate_pod_ip,
        startup_taint,
        conflist: PathBuf::from(dir).join("10-aws.conflist"),
        max_pods_pinned,
        needs_api,
    })
}

fn is_timeout(e: &KubeError) -> bool {
    matches!(e, KubeError::Unreachable { message, .. } if message.contains("timed out") || message.contains("elapsed"))
}

async fn version(c: &KubeClient) -> Result<String, KubeError> {
    match tokio::time::timeout(Duration::from_secs(5), c.version()).await {
        Ok(r) => r,
        Err(_) => Err(KubeError::Unreachable {
            endpoint: String::new(),
            message: "GET /version timed out after 5 s".into(),
        }),
    }
}

/// Connect as upstream does; `wait` is the optional mode's first window (30 s upstream).
pub async fn connect(
    kubeconfig: Option<PathBuf>,
    ks: &KubeSettings,
    version_string: &str,
    wait: Duration,
) -> anyhow::Result<Plan> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let configured = kubeconfig.is_some() || std::env::var_os("KUBECONFIG").is_some() || in_cluster;
    if !configured {
        if let Some(var) = ks.needs_api.first() {
            bail!(
                "{var}=true needs the Kubernetes API: give --kubeconfig, KUBECONFIG, or run in a pod"
            );
        }
        tracing::info!(
            "no Kubernetes configuration (--kubeconfig, KUBECONFIG, in-cluster): running without the API server; max pods from the instance table"
        );
        return Ok(Plan::None);
    }
    let node_name = std::env::var("MY_NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .context("MY_NODE_NAME: required with Kubernetes (the Node this daemon serves; the DaemonSet sets it from spec.nodeName)")?;
    let client = KubeClient::new(Options {
        kubeconfig,
        cluster_endpoint: std::env::var("CLUSTER_ENDPOINT").ok(),
        node_name,
        pod_name: std::env::var("MY_POD_NAME").ok().filter(|n| !n.is_empty()),
        pod_namespace: "kube-system".into(),
        version: version_string.into(),
    })
    .await?;
    let client = Arc::new(client);
    let required = !ks.needs_api.is_empty();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match version(&client).await {
            Ok(v) => {
                tracing::info!(version = %v, "API server answers");
                ready(&client).await;
                return Ok(Plan::Ready(client));
            }
            Err(e) if required && !is_timeout(&e) => {
                bail!(
                    "the API server is needed ({}=true) and failed: {e}",
                    ks.needs_api.join("=true, ")
                );
            }
            Err(e) if required => tracing::warn!(error = %e, "waiting for the API server"),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(error = %e, "API server not answering: starting without it (max pods from the instance table), retrying every 5 s");
                return Ok(Plan::Later(client));
            }
            Err(e) => tracing::info!(error = %e, "API server not answering yet"),
        }
        tokio::time::sleep(
            Duration::from_secs(if required { 2 } else { 5 })
                .min(wait.max(Duration::from_millis(200))),
        )
        .await;
    }
}

/// Start the watches and give the Node watch 3 s (upstream's GetNode timeout).
async fn ready(c: &KubeClient) {
    c.start_watches();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !c.synced() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match c.node() {
        Some(n) => {
            tracing::info!(node = %n.name, max_pods = ?n.max_pods, cordoned = n.cordoned, "Node watched")
        }
        None => tracing::warn!("the Node watch has not answered yet (MY_NODE_NAME names no Node?)"),
    }
}

/// Hand the plan to the daemon.
pub fn install<C: Cloud>(shared: &Arc<Shared<C>>, plan: Plan, ks: KubeSettings) {
    *shared.kube.settings.lock().unwrap() = ks;
    match plan {
        Plan::None => {}
        Plan::Ready(c) => shared.kube.set_client(c),
        Plan::Later(c) => {
            let s = shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    if let Ok(v) = version(&c).await {
                        tracing::info!(version = %v, "API server answers now: watching the Node (max pods, cordon)");
                        ready(&c).await;
                        s.kube.set_client(c);
                        return;
                    }
                }
            });
        }
    }
}
