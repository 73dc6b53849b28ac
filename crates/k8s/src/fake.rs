//! An in-memory [`Kube`] for the daemon's tests: set the Node and ENIConfigs, read back what the
//! daemon wrote (taints removed, annotations, CNINode features, warnings).

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::{EniConfig, Kube, KubeError, NodeView, Warning};

/// What the fake holds.
#[derive(Debug, Default)]
pub struct FakeState {
    /// The Node.
    pub node: Option<NodeView>,
    /// ENIConfigs by name.
    pub eniconfigs: BTreeMap<String, Result<EniConfig, KubeError>>,
    /// Pod annotations by (namespace, name, key).
    pub annotations: BTreeMap<(String, String, String), String>,
    /// CNINode features.
    pub features: BTreeMap<String, String>,
    /// Warnings published.
    pub warnings: Vec<Warning>,
    /// Pods of the node (namespace, name); None: the Pod watch has not answered.
    pub pods: Option<std::collections::BTreeSet<(String, String)>>,
    /// Error every call returns, when set.
    pub fail: Option<KubeError>,
}

/// The fake.
#[derive(Debug, Default)]
pub struct FakeKube {
    /// Its state.
    pub state: Mutex<FakeState>,
}

impl FakeKube {
    fn check(&self) -> Result<(), KubeError> {
        match &self.state.lock().unwrap().fail {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

impl Kube for FakeKube {
    fn node(&self) -> Option<NodeView> {
        self.state.lock().unwrap().node.clone()
    }

    fn eniconfig(&self, name: &str) -> Option<Result<EniConfig, KubeError>> {
        self.state.lock().unwrap().eniconfigs.get(name).cloned()
    }

    fn version(&self) -> BoxFuture<'_, Result<String, KubeError>> {
        Box::pin(async move {
            self.check()?;
            Ok("v1.33.0-fake".into())
        })
    }

    fn remove_node_taint<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, KubeError>> {
        Box::pin(async move {
            self.check()?;
            let mut s = self.state.lock().unwrap();
            let Some(n) = s.node.as_mut() else {
                return Ok(false);
            };
            let before = n.taints.len();
            n.taints.retain(|t| t != key);
            Ok(n.taints.len() != before)
        })
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
            self.check()?;
            let mut s = self.state.lock().unwrap();
            let k = (namespace.to_string(), name.to_string(), key.to_string());
            if let Some(want) = only_if
                && s.annotations.get(&k).map(String::as_str) != Some(want)
            {
                return Ok(false);
            }
            s.annotations.insert(k, value.into());
            Ok(true)
        })
    }

    fn patch_cninode_features<'a>(
        &'a self,
        features: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<bool, KubeError>> {
        Box::pin(async move {
            self.check()?;
            let mut s = self.state.lock().unwrap();
            let mut changed = false;
            for (k, v) in features {
                changed |= s.features.insert(k.clone(), v.clone()).as_ref() != Some(v);
            }
            Ok(changed)
        })
    }

    fn warn(&self, w: Warning) -> BoxFuture<'_, Result<(), KubeError>> {
        Box::pin(async move {
            self.check()?;
            self.state.lock().unwrap().warnings.push(w);
            Ok(())
        })
    }

    fn pod_exists(&self, namespace: &str, name: &str) -> Option<bool> {
        let s = self.state.lock().unwrap();
        s.pods
            .as_ref()
            .map(|p| p.contains(&(namespace.to_string(), name.to_string())))
    }

    fn synced(&self) -> bool {
        self.state.lock().unwrap().node.is_some()
    }
}
