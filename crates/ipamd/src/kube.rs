//! The daemon's Kubernetes side (spec A.2–A.11 of the surface document): the Node's max pods and
//! cordon state feed each pool cycle; the startup taint goes once the conflist exists; pod-IP
//! annotations, Warning Events (missing IAM permission, pods waiting for addresses with the
//! cause) are queued here and sent by one worker on the main runtime, so the plugin's socket
//! never waits for the API server.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use vpc_cni_cloud::{Cloud, CloudError, ErrorKind};
use vpc_cni_k8s::{Kube, Regarding, Warning};

use crate::state::{Node, Shared};

/// The annotation upstream writes with `ANNOTATE_POD_IP`.
pub const POD_IPS_ANNOTATION: &str = "vpc.amazonaws.com/pod-ips";
/// The default startup taint (`VPC_CNI_STARTUP_TAINT`).
pub const DEFAULT_STARTUP_TAINT: &str = "node.vpc-cni.io/agent-not-ready";

/// Settings of the Kubernetes side.
#[derive(Debug, Clone, Default)]
pub struct KubeSettings {
    /// `ANNOTATE_POD_IP`.
    pub annotate_pod_ip: bool,
    /// `VPC_CNI_STARTUP_TAINT` (None: blank, no taint handling).
    pub startup_taint: Option<String>,
    /// The conflist whose presence means the node's network is ready.
    pub conflist: PathBuf,
    /// `--max-pods` given: the Node's capacity does not override it.
    pub max_pods_pinned: bool,
    /// The enabled variables that need the API server at start-up.
    pub needs_api: Vec<&'static str>,
}

/// Work for the API server.
#[derive(Debug)]
enum Job {
    Annotate {
        namespace: String,
        name: String,
        value: String,
        only_if: Option<String>,
    },
    Warn(Warning),
    /// CNINode `spec.features` to merge.
    Features(Vec<(String, String)>),
}

/// The Kubernetes state shared by the daemon's tasks.
#[derive(Default)]
pub struct KubeSide {
    client: OnceLock<Arc<dyn Kube>>,
    /// Settings (set before serving).
    pub settings: Mutex<KubeSettings>,
    queue: OnceLock<mpsc::Sender<Job>>,
    /// ADDs answered without an address since the last pool cycle.
    pub waiting: AtomicU64,
    /// Last EC2 error of the pool (kind, API, message), for the waiting-pods Event.
    pub last_ec2_error: Mutex<Option<(ErrorKind, String, String)>>,
    warned: Mutex<HashMap<String, Instant>>,
    /// Where max pods came from (`--max-pods`, `Node.status.capacity.pods`, `instance table`).
    pub max_pods_source: Mutex<&'static str>,
    /// Per-node settings: the annotations last seen and those applied.
    pub overrides: Mutex<Overrides>,
    /// The instance's ENI limit (`vpc-cni.io/max-eni` is bounded by it, as `MAX_ENI` is).
    pub eni_limit: std::sync::atomic::AtomicU32,
    /// The CNINode features are written (no more patches).
    pub features_done: std::sync::atomic::AtomicBool,
    /// A CNINode patch is queued or running.
    features_pending: std::sync::atomic::AtomicBool,
}

/// The per-node annotations as last processed.
#[derive(Debug, Default)]
pub struct Overrides {
    /// The overriding annotations on the Node when last read.
    pub seen: BTreeMap<String, String>,
    /// Those in force.
    pub applied: BTreeMap<String, String>,
}

impl KubeSide {
    /// The client, once connected.
    pub fn client(&self) -> Option<&Arc<dyn Kube>> {
        self.client.get()
    }

    /// Install the client (once).
    pub fn set_client(&self, c: Arc<dyn Kube>) {
        let _ = self.client.set(c);
    }

    /// Whether work can be sent (a client and the worker).
    fn ready(&self) -> bool {
        self.client.get().is_some() && self.queue.get().is_some()
    }

    fn send(&self, job: Job) {
        if self.client.get().is_none() {
            return;
        }
        if let Some(q) = self.queue.get()
            && q.try_send(job).is_err()
        {
            tracing::warn!("Kubernetes work queue full; dropping an annotation or Event");
        }
    }

    /// True at most once per `every` for `key`.
    fn due(&self, key: &str, every: Duration) -> bool {
        let mut w = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match w.get(key) {
            Some(t) if now.duration_since(*t) < every => false,
            _ => {
                w.insert(key.into(), now);
                true
            }
        }
    }
}

/// Start the worker that sends queued annotations and Events (on the calling runtime).
pub fn start_worker<C: Cloud>(s: &Arc<Shared<C>>) {
    let (tx, mut rx) = mpsc::channel::<Job>(1024);
    if s.kube.queue.set(tx).is_err() {
        return;
    }
    let s = s.clone();
    tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            let Some(k) = s.kube.client() else { continue };
            match job {
                Job::Annotate {
                    namespace,
                    name,
                    value,
                    only_if,
                } => {
                    let r = k.annotate_pod(
                        &namespace,
                        &name,
                        POD_IPS_ANNOTATION,
                        &value,
                        only_if.as_deref(),
                    );
                    if let Err(e) = r.await {
                        tracing::warn!(error = %e, "pod-ips annotation not written");
                    }
                }
                Job::Warn(w) => {
                    let reason = w.reason.clone();
                    if let Err(e) = k.warn(w).await {
                        tracing::warn!(error = %e, reason, "Event not published");
                    }
                }
                Job::Features(f) => {
                    match k.patch_cninode_features(&f).await {
                        Ok(changed) => {
                            tracing::info!(features = ?f, changed, "CNINode features written");
                            s.kube.features_done.store(true, Ordering::SeqCst);
                        }
                        // A missing CNINode (the VPC resource controller makes it) is retried
                        // at the next pool cycle, as upstream.
                        Err(e) if s.kube.due("cninode", Duration::from_secs(60)) => {
                            tracing::warn!(error = %e, "CNINode features not written yet; retrying every pool cycle");
                        }
                        Err(_) => {}
                    }
                    s.kube.features_pending.store(false, Ordering::SeqCst);
                }
            }
        }
    });
}

/// AddNetwork gave `ip` to a pod.
pub fn pod_ip_added<C: Cloud>(s: &Shared<C>, namespace: &str, name: &str, ip: &str) {
    if s.kube.settings.lock().unwrap().annotate_pod_ip {
        s.kube.send(Job::Annotate {
            namespace: namespace.into(),
            name: name.into(),
            value: ip.into(),
            only_if: None,
        });
    }
}

/// DelNetwork released `ip`: clear the annotation only while it still names it.
pub fn pod_ip_released<C: Cloud>(s: &Shared<C>, namespace: &str, name: &str, ip: &str) {
    if s.kube.settings.lock().unwrap().annotate_pod_ip && !name.is_empty() {
        s.kube.send(Job::Annotate {
            namespace: namespace.into(),
            name: name.into(),
            value: String::new(),
            only_if: Some(ip.into()),
        });
    }
}

/// AddNetwork found no address.
pub fn pod_waiting<C: Cloud>(s: &Shared<C>) {
    s.kube.waiting.fetch_add(1, Ordering::Relaxed);
}

/// An EC2 call of the pool failed: remember it, and publish upstream's `MissingIAMPermissions`
/// Event for `UnauthorizedOperation` (once per API per 10 minutes).
pub fn ec2_failed<C: Cloud>(s: &Shared<C>, api: &str, e: &CloudError) {
    *s.kube.last_ec2_error.lock().unwrap() = Some((e.kind(), api.into(), e.message.clone()));
    if e.kind() == ErrorKind::Unauthorized
        && s.kube.due(&format!("iam/{api}"), Duration::from_secs(600))
    {
        s.kube.send(Job::Warn(Warning {
            regarding: Regarding::OwnPod,
            reason: "MissingIAMPermissions".into(),
            action: api.into(),
            note: format!(
                "Unauthorized operation: failed to call {api} due to missing permissions. Please refer https://github.com/aws/amazon-vpc-cni-k8s/blob/master/docs/iam-policy.md to attach relevant policy to IAM role"
            ),
        }));
    }
}

/// CNINode features (surface A.5): with `ENABLE_POD_ENI`, `SecurityGroupsForPods` (empty value),
/// and with custom networking too, `CustomNetworking=<ENIConfig>` unless the name is `default`.
/// Queued every pool cycle until a patch succeeds (upstream exits on a missing CNINode at init;
/// here the node keeps serving and retries).
pub fn cninode_features<C: Cloud>(s: &Shared<C>) {
    let settings = &s.cfg.settings;
    if !settings.enable_pod_eni || s.kube.features_done.load(Ordering::SeqCst) || !s.kube.ready() {
        return;
    }
    let Some(k) = s.kube.client() else { return };
    if !k.synced() {
        return;
    }
    let mut features = vec![("SecurityGroupsForPods".to_string(), String::new())];
    if settings.custom_networking {
        let name = eniconfig_name(k.as_ref());
        if name != "default" {
            features.push(("CustomNetworking".to_string(), name));
        }
    }
    if !s.kube.features_pending.swap(true, Ordering::SeqCst) {
        s.kube.send(Job::Features(features));
    }
}

/// A Warning Event on the Node, at most once per `every` for `key`.
pub fn node_warning<C: Cloud>(
    s: &Shared<C>,
    key: &str,
    every: Duration,
    reason: &str,
    action: &str,
    note: String,
) {
    if s.kube.ready() && s.kube.due(key, every) {
        s.kube.send(Job::Warn(Warning {
            regarding: Regarding::Node,
            reason: reason.into(),
            action: action.into(),
            note,
        }));
    }
}

/// Before a pool cycle: max pods from the Node's capacity (unless pinned), and whether the node
/// is cordoned.
pub fn before_cycle<C: Cloud>(s: &Shared<C>, node: &mut Node) -> bool {
    let Some(view) = s.kube.client().and_then(|k| k.node()) else {
        return false;
    };
    apply_overrides(s, node, &view);
    let pinned = s.kube.settings.lock().unwrap().max_pods_pinned;
    match view.max_pods {
        Some(Ok(m)) if !pinned => {
            let mut limits = *node.policy.limits();
            if limits.max_pods != m {
                tracing::info!(from = limits.max_pods, to = m, node = %view.name, "max pods from Node.status.capacity.pods");
                limits.max_pods = m;
                node.policy.set_limits(limits);
            }
            // Also when the value is the table's: it is the Node's that holds from now on.
            *s.kube.max_pods_source.lock().unwrap() = "Node.status.capacity.pods";
            if s.cfg.settings.custom_networking {
                warn_unaddressable(s, &view.name, m, &limits);
            }
        }
        Some(Err(e)) => {
            let keep = node.policy.limits().max_pods;
            if s.kube.due("capacity", Duration::from_secs(600)) {
                tracing::warn!(error = %e, max_pods = keep, "keeping max pods from the instance table");
            }
            node_warning(
                s,
                "capacity-event",
                Duration::from_secs(3600),
                "InvalidNodeCapacity",
                "ReadMaxPods",
                format!("{e}; the pool keeps max pods {keep}"),
            );
        }
        _ => {}
    }
    view.cordoned
}

/// Per-node settings from the Node's annotations, applied when they changed.
fn apply_overrides<C: Cloud>(s: &Shared<C>, node: &mut Node, view: &vpc_cni_k8s::NodeView) {
    let raw: BTreeMap<String, String> = crate::overrides::ANNOTATIONS
        .iter()
        .filter_map(|(a, _)| view.annotations.get(*a).map(|v| (a.to_string(), v.clone())))
        .collect();
    let mut st = s.kube.overrides.lock().unwrap();
    if st.seen == raw {
        return;
    }
    let r = crate::overrides::resolve(&s.cfg.settings, &raw, &st.applied);
    for x in &r.refused {
        let note = format!(
            "annotation {}={:?} refused: {}; the previous setting stays",
            x.annotation, x.value, x.reason
        );
        tracing::warn!(node = %view.name, "{note}");
        node_warning(
            s,
            &format!("override/{}/{}", x.annotation, x.value),
            Duration::from_secs(600),
            "InvalidNodeSetting",
            "ReadNodeAnnotations",
            note,
        );
    }
    if r.settings != *node.policy.settings() {
        tracing::info!(node = %view.name, applied = ?r.applied, "per-node settings from the Node's annotations");
        let eni_limit = s.kube.eni_limit.load(Ordering::Relaxed);
        let mut limits = *node.policy.limits();
        limits.max_eni = match r.settings.max_eni {
            Some(n) if n >= 1 && n < eni_limit => n,
            _ => eni_limit,
        };
        node.policy.set_limits(limits);
        node.policy.set_settings(r.settings);
    }
    st.seen = raw;
    st.applied = r.applied;
}

/// Custom networking: the primary ENI gives no pod addresses, so a kubelet `--max-pods` from
/// the plain formula promises pods the node cannot address (upstream leaves that to the user).
fn warn_unaddressable<C: Cloud>(
    s: &Shared<C>,
    node: &str,
    capacity: u32,
    l: &vpc_cni_ipam::PoolLimits,
) {
    let enis = l.max_eni.saturating_sub(l.unmanaged_enis + 1);
    // The formula's +2: host-network pods (aws-node, kube-proxy) need no address.
    let addressable = enis * l.max_ips_per_eni + 2;
    if capacity > addressable {
        let note = format!(
            "Node.status.capacity.pods is {capacity} but with custom networking this node can address {addressable} pods ({enis} ENIs besides the primary × {} addresses + 2 host-network pods): set kubelet --max-pods to {addressable} (vpc-cni max-pods --cni-custom-networking-enabled)",
            l.max_ips_per_eni
        );
        if s.kube.due("unaddressable-log", Duration::from_secs(600)) {
            tracing::warn!(node, capacity, addressable, "{note}");
        }
        node_warning(
            s,
            "unaddressable",
            Duration::from_secs(3600),
            "MaxPodsExceedAddresses",
            "ReadMaxPods",
            note,
        );
    }
}

/// After a pool cycle: if pods waited for an address, a Warning on the Node naming the cause the
/// daemon knows (once per cause per minute).
pub fn after_cycle<C: Cloud>(s: &Shared<C>, node: &Node, cordoned: bool) {
    cninode_features(s);
    let waited = s.kube.waiting.swap(0, Ordering::Relaxed);
    if waited == 0 || !s.kube.ready() {
        return;
    }
    let stats = node.ds.stats(crate::state::now());
    let limits = node.policy.limits();
    let manage = s.cfg.settings.manage_enis_non_schedulable;
    let (key, cause) = if cordoned && !manage {
        ("cordoned", "the node is cordoned (node.kubernetes.io/unschedulable) and AWS_MANAGE_ENIS_NON_SCHEDULABLE=false: no ENI is allocated".to_string())
    } else if stats.total_ips >= limits.max_pods {
        (
            "max-pods",
            format!(
                "max pods {} reached ({} addresses held)",
                limits.max_pods, stats.total_ips
            ),
        )
    } else if let Some((kind, api, msg)) = s.kube.last_ec2_error.lock().unwrap().clone() {
        match kind {
            ErrorKind::InsufficientCidrBlocks => (
                "cidr",
                format!("{api}: InsufficientCidrBlocks: the subnet has no free /28 ({msg})"),
            ),
            ErrorKind::InsufficientFreeAddressesInSubnet => {
                ("subnet-full", format!("{api}: the subnet is full ({msg})"))
            }
            ErrorKind::AttachmentLimitExceeded => (
                "eni-limit",
                format!("{api}: the instance's ENI limit is reached ({msg})"),
            ),
            ErrorKind::Throttled => (
                "throttled",
                format!("{api}: EC2 throttled the request ({msg})"),
            ),
            ErrorKind::Unauthorized => ("iam", format!("{api}: missing IAM permission ({msg})")),
            _ => ("ec2", format!("{api} failed: {msg}")),
        }
    } else if node.ds.enis().len() as u32 >= limits.max_eni {
        (
            "max-eni",
            format!(
                "all {} ENIs (instance limit or MAX_ENI) are attached and full",
                limits.max_eni
            ),
        )
    } else {
        (
            "growing",
            "the pool is growing (an ENI or addresses are being allocated)".to_string(),
        )
    };
    if s.kube
        .due(&format!("waiting/{key}"), Duration::from_secs(60))
    {
        s.kube.send(Job::Warn(Warning {
            regarding: Regarding::Node,
            reason: "PodsWaitingForAddresses".into(),
            action: "AssignPodIP".into(),
            note: format!("{waited} pod sandbox(es) got no IPv4 address: {cause}"),
        }));
    }
    // The error belongs to this cycle only.
    *s.kube.last_ec2_error.lock().unwrap() = None;
}

/// The ENIConfig the local Node selects (label `vpc.amazonaws.com/externalEniConfig`, the
/// annotation `ENI_CONFIG_ANNOTATION_DEF`, the label `ENI_CONFIG_LABEL_DEF`, else `default`;
/// an empty variable means the default key `k8s.amazonaws.com/eniConfig`).
pub fn eniconfig_name(k: &dyn Kube) -> String {
    let key = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "k8s.amazonaws.com/eniConfig".into())
    };
    k.node().map_or_else(
        || "default".into(),
        |n| {
            n.eniconfig_name(
                &key("ENI_CONFIG_ANNOTATION_DEF"),
                &key("ENI_CONFIG_LABEL_DEF"),
            )
        },
    )
}

/// Remove the startup taint once the daemon serves and the conflist exists (retried every 2 s).
pub async fn startup_taint_task<C: Cloud>(s: Arc<Shared<C>>) {
    let (taint, conflist) = {
        let st = s.kube.settings.lock().unwrap();
        match &st.startup_taint {
            Some(t) => (t.clone(), st.conflist.clone()),
            None => return,
        }
    };
    let mut told = false;
    loop {
        if let Some(k) = s.kube.client()
            && conflist.exists()
        {
            match k.remove_node_taint(&taint).await {
                Ok(true) => {
                    tracing::info!(taint, conflist = %conflist.display(), "network ready: startup taint removed");
                    return;
                }
                Ok(false) => {
                    tracing::info!(taint, "network ready: no startup taint on the Node");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, taint, "startup taint not removed yet"),
            }
        } else if !told {
            told = true;
            tracing::info!(taint, conflist = %conflist.display(), "startup taint stays until the conflist exists and the API server answers");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
