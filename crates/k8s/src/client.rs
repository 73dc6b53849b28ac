//! [`Kube`] over kube-rs: configuration as upstream (`--kubeconfig`, `KUBECONFIG`, in-cluster;
//! `CLUSTER_ENDPOINT` replaces the host; user agent `vpc-cni/<version>`), watches of the local
//! Node (`metadata.name`) and of every ENIConfig kept in memory, and direct writes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

use crate::{EniConfig, Kube, KubeError, NodeView, Regarding, Warning};

/// How to reach the API server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--kubeconfig`; else `KUBECONFIG`, else in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// `CLUSTER_ENDPOINT`: replaces the server URL.
    pub cluster_endpoint: Option<String>,
    /// `MY_NODE_NAME`.
    pub node_name: String,
    /// `MY_POD_NAME` (Events regarding the daemon's pod).
    pub pod_name: Option<String>,
    /// Namespace of the daemon's pod.
    pub pod_namespace: String,
    /// For the user agent.
    pub version: String,
}

#[derive(Default)]
struct Cache {
    node: Option<Value>,
    eniconfigs: BTreeMap<String, Value>,
    node_synced: bool,
    eniconfigs_synced: bool,
    /// (namespace, name) of the pods bound to this node → whether it has a branch ENI
    /// (`vpc.amazonaws.com/pod-eni`); nothing else of a pod is kept.
    pods: BTreeMap<(String, String), bool>,
    pods_synced: bool,
}

/// The kube-rs implementation.
pub struct KubeClient {
    client: kube::Client,
    opts: Options,
    endpoint: String,
    cache: Arc<Mutex<Cache>>,
    eniconfig_watch: std::sync::Once,
    recorder: Recorder,
}

fn cninode_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("vpcresources.k8s.aws", "v1alpha1", "CNINode"),
        "cninodes",
    )
}

/// The annotation the VPC resource controller puts on a pod with a branch ENI.
pub const POD_ENI_ANNOTATION: &str = "vpc.amazonaws.com/pod-eni";

fn eniconfig_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("crd.k8s.amazonaws.com", "v1alpha1", "ENIConfig"),
        "eniconfigs",
    )
}

impl KubeClient {
    /// Build the client (no request is made).
    pub async fn new(opts: Options) -> Result<KubeClient, KubeError> {
        // Another crate of the binary (the AWS SDK) may enable rustls's other provider: with
        // two, none is picked automatically. Ours is ring; an already installed one is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg_err = |e: &dyn std::fmt::Display| KubeError::Config(e.to_string());
        let mut config = match &opts.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| KubeError::Config(format!("{}: {e}", path.display())))?
            }
            None => kube::Config::infer().await.map_err(|e| cfg_err(&e))?,
        };
        if let Some(ep) = opts.cluster_endpoint.as_deref().filter(|e| !e.is_empty()) {
            config.cluster_url = ep
                .parse()
                .map_err(|e| KubeError::Config(format!("CLUSTER_ENDPOINT={ep:?}: {e}")))?;
        }
        let agent = format!("vpc-cni/{}", opts.version);
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_str(&agent).map_err(|e| cfg_err(&e))?,
        ));
        let endpoint = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| cfg_err(&e))?;
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "aws-node".into(),
                instance: opts.pod_name.clone(),
            },
        );
        Ok(KubeClient {
            client,
            opts,
            endpoint,
            cache: Arc::default(),
            eniconfig_watch: std::sync::Once::new(),
            recorder,
        })
    }

    fn err(&self, what: &str, e: kube::Error) -> KubeError {
        match e {
            kube::Error::Api(s) => KubeError::Api {
                what: what.into(),
                code: s.code,
                reason: s.reason.clone(),
                message: s.message.clone(),
            },
            other => KubeError::Unreachable {
                endpoint: self.endpoint.clone(),
                message: format!("{what}: {other}"),
            },
        }
    }

    /// Start the Node watch (by name) in the background; it retries with kube-rs's default
    /// backoff. The ENIConfig watch starts on the first [`Kube::eniconfig`] (as upstream's lazy
    /// informer): a cluster without custom networking, often without the CRD, costs nothing.
    pub fn start_watches(&self) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let by_name =
            watcher::Config::default().fields(&format!("metadata.name={}", self.opts.node_name));
        let cache = self.cache.clone();
        tokio::spawn(async move {
            let mut s = watcher(nodes, by_name).default_backoff().boxed();
            while let Some(ev) = s.next().await {
                let mut c = cache.lock().unwrap();
                match ev {
                    Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                        c.node = serde_json::to_value(&n).ok();
                    }
                    Ok(watcher::Event::Delete(_)) => c.node = None,
                    Ok(watcher::Event::InitDone) => c.node_synced = true,
                    Ok(watcher::Event::Init) => {}
                    Err(e) => tracing::warn!(error = %e, "Node watch failed; retrying"),
                }
            }
        });
        self.watch_pods();
    }

    /// Watch the pods bound to this node (`spec.nodeName`), keeping only their names: the
    /// stale sweep asks whether an assignment's pod still exists.
    fn watch_pods(&self) {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let on_node =
            watcher::Config::default().fields(&format!("spec.nodeName={}", self.opts.node_name));
        let cache = self.cache.clone();
        tokio::spawn(async move {
            let key = |p: &Pod| {
                (
                    p.metadata.namespace.clone().unwrap_or_default(),
                    p.metadata.name.clone().unwrap_or_default(),
                )
            };
            let branch = |p: &Pod| {
                p.metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(POD_ENI_ANNOTATION))
            };
            let mut fresh = BTreeMap::new();
            let mut s = watcher(pods, on_node).default_backoff().boxed();
            while let Some(ev) = s.next().await {
                let mut c = cache.lock().unwrap();
                match ev {
                    Ok(watcher::Event::Init) => fresh.clear(),
                    Ok(watcher::Event::InitApply(p)) => {
                        fresh.insert(key(&p), branch(&p));
                    }
                    Ok(watcher::Event::InitDone) => {
                        c.pods = std::mem::take(&mut fresh);
                        c.pods_synced = true;
                    }
                    Ok(watcher::Event::Apply(p)) => {
                        c.pods.insert(key(&p), branch(&p));
                    }
                    Ok(watcher::Event::Delete(p)) => {
                        c.pods.remove(&key(&p));
                    }
                    Err(e) => tracing::warn!(error = %e, "Pod watch failed; retrying"),
                }
            }
        });
    }

    /// Watch every ENIConfig into the cache (once).
    fn watch_eniconfigs(&self) {
        let enis: Api<DynamicObject> = Api::all_with(self.client.clone(), &eniconfig_resource());
        let cache = self.cache.clone();
        tokio::spawn(async move {
            let mut fresh = BTreeMap::new();
            let mut s = watcher(enis, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(ev) = s.next().await {
                let mut c = cache.lock().unwrap();
                match ev {
                    Ok(watcher::Event::Init) => fresh.clear(),
                    Ok(watcher::Event::InitApply(o)) => {
                        if let Ok(v) = serde_json::to_value(&o) {
                            fresh.insert(o.metadata.name.clone().unwrap_or_default(), v);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        c.eniconfigs = std::mem::take(&mut fresh);
                        c.eniconfigs_synced = true;
                    }
                    Ok(watcher::Event::Apply(o)) => {
                        if let Ok(v) = serde_json::to_value(&o) {
                            c.eniconfigs
                                .insert(o.metadata.name.clone().unwrap_or_default(), v);
                        }
                    }
                    Ok(watcher::Event::Delete(o)) => {
                        c.eniconfigs
                            .remove(&o.metadata.name.clone().unwrap_or_default());
                    }
                    // No ENIConfig CRD (no custom networking in this cluster) is not an error
                    // worth more than a debug line per retry.
                    Err(e) => tracing::debug!(error = %e, "ENIConfig watch failed; retrying"),
                }
            }
        });
    }

    async fn taints_patch(&self, key: &str) -> Result<bool, KubeError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let what = format!("Node/{}", self.opts.node_name);
        self.locked_patch(&api, &self.opts.node_name, &what, |n: &Node| {
            let v = serde_json::to_value(n).unwrap_or_default();
            let taints: Vec<Value> = v["spec"]["taints"].as_array().cloned().unwrap_or_default();
            let kept: Vec<Value> = taints.iter().filter(|t| t["key"] != key).cloned().collect();
            (kept.len() != taints.len()).then(|| json!({"spec": {"taints": kept}}))
        })
        .await
    }

    /// Read, decide, merge-patch with the resourceVersion lock; on 409 read again (5 attempts).
    /// `plan` gives the patch for the object as read, or None when nothing is to change.
    async fn locked_patch<K>(
        &self,
        api: &Api<K>,
        name: &str,
        what: &str,
        plan: impl Fn(&K) -> Option<Value>,
    ) -> Result<bool, KubeError>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        for _ in 0..5 {
            let obj = api.get(name).await.map_err(|e| self.err(what, e))?;
            let Some(mut p) = plan(&obj) else {
                return Ok(false);
            };
            p["metadata"]["resourceVersion"] = json!(obj.meta().resource_version);
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&p))
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) => {
                    let e = self.err(what, e);
                    if !e.is_conflict() {
                        return Err(e);
                    }
                    tracing::info!(what, "changed meanwhile; reading it again");
                }
            }
        }
        Err(KubeError::Api {
            what: what.into(),
            code: 409,
            reason: "Conflict".into(),
            message: "still conflicting after 5 attempts".into(),
        })
    }
}

/// The merged feature list, or None when nothing changes.
fn merged_features(current: &Value, want: &[(String, String)]) -> Option<Vec<Value>> {
    let mut list: Vec<Value> = current.as_array().cloned().unwrap_or_default();
    let mut changed = false;
    for (name, value) in want {
        match list.iter_mut().find(|f| f["name"] == name.as_str()) {
            Some(f) if f["value"].as_str().unwrap_or("") == value => {}
            Some(f) => {
                f["value"] = json!(value);
                changed = true;
            }
            None => {
                list.push(if value.is_empty() {
                    json!({"name": name})
                } else {
                    json!({"name": name, "value": value})
                });
                changed = true;
            }
        }
    }
    changed.then_some(list)
}

impl Kube for KubeClient {
    fn node(&self) -> Option<NodeView> {
        self.cache
            .lock()
            .unwrap()
            .node
            .as_ref()
            .map(NodeView::from_json)
    }

    fn eniconfig(&self, name: &str) -> Option<Result<EniConfig, KubeError>> {
        self.eniconfig_watch.call_once(|| self.watch_eniconfigs());
        self.cache
            .lock()
            .unwrap()
            .eniconfigs
            .get(name)
            .map(EniConfig::from_json)
    }

    fn version(&self) -> BoxFuture<'_, Result<String, KubeError>> {
        Box::pin(async move {
            let v = self
                .client
                .apiserver_version()
                .await
                .map_err(|e| self.err("GET /version", e))?;
            Ok(v.git_version)
        })
    }

    fn remove_node_taint<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, KubeError>> {
        Box::pin(self.taints_patch(key))
    }

    fn annotate_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        key: &'a str,
        value: &'a str,
        only_if: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, KubeError>> {
        Box::pin(async move {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let what = format!("Pod {namespace}/{name}");
            self.locked_patch(&api, name, &what, |pod: &Pod| {
                let current = pod.metadata.annotations.as_ref().and_then(|a| a.get(key));
                let wanted = only_if.is_none_or(|want| current.map(String::as_str) == Some(want));
                wanted.then(|| json!({"metadata": {"annotations": {key: value}}}))
            })
            .await
        })
    }

    fn patch_cninode_features<'a>(
        &'a self,
        features: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<bool, KubeError>> {
        Box::pin(async move {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &cninode_resource());
            let what = format!("CNINode/{}", self.opts.node_name);
            self.locked_patch(&api, &self.opts.node_name, &what, |o: &DynamicObject| {
                merged_features(&o.data["spec"]["features"], features)
                    .map(|list| json!({"spec": {"features": list}}))
            })
            .await
        })
    }

    fn warn(&self, w: Warning) -> BoxFuture<'_, Result<(), KubeError>> {
        Box::pin(async move {
            let reference = match w.regarding {
                Regarding::OwnPod => ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: self.opts.pod_name.clone(),
                    namespace: Some(self.opts.pod_namespace.clone()),
                    ..Default::default()
                },
                Regarding::Node => ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(self.opts.node_name.clone()),
                    ..Default::default()
                },
            };
            let ev = Event {
                type_: EventType::Warning,
                reason: w.reason,
                note: Some(w.note),
                action: w.action,
                secondary: None,
            };
            self.recorder
                .publish(&ev, &reference)
                .await
                .map_err(|e| self.err("Event", e))
        })
    }

    fn synced(&self) -> bool {
        self.cache.lock().unwrap().node_synced
    }

    fn pod_exists(&self, namespace: &str, name: &str) -> Option<bool> {
        let c = self.cache.lock().unwrap();
        c.pods_synced.then(|| {
            c.pods
                .contains_key(&(namespace.to_string(), name.to_string()))
        })
    }

    fn pod_has_branch_eni(&self, namespace: &str, name: &str) -> bool {
        let c = self.cache.lock().unwrap();
        c.pods
            .get(&(namespace.to_string(), name.to_string()))
            .copied()
            .unwrap_or(false)
    }

    fn eniconfigs_synced(&self) -> bool {
        self.eniconfig_watch.call_once(|| self.watch_eniconfigs());
        self.cache.lock().unwrap().eniconfigs_synced
    }
}

#[cfg(test)]
mod tests {
    use super::merged_features;
    use serde_json::json;

    #[test]
    fn features_merge_by_name() {
        let cur =
            json!([{"name": "SecurityGroupsForPods"}, {"name": "CustomNetworking", "value": "a"}]);
        let want = vec![("CustomNetworking".to_string(), "b".to_string())];
        let got = merged_features(&cur, &want).unwrap();
        assert_eq!(got[1], json!({"name": "CustomNetworking", "value": "b"}));
        assert!(merged_features(&json!(got), &want).is_none());
        let add = vec![("SecurityGroupsForPods".to_string(), String::new())];
        assert_eq!(
            merged_features(&json!(null), &add).unwrap(),
            vec![json!({"name": "SecurityGroupsForPods"})]
        );
    }
}
