//! The kinds the emulator serves and their discovery documents: built-in nodes, pods and
//! events (core/v1 and events.k8s.io/v1), CustomResourceDefinitions, the kinds the project's
//! manifest installs (ServiceAccount, ConfigMap, DaemonSet, ClusterRole, ClusterRoleBinding; stored,
//! not acted on), and every custom resource a CRD registers (the CNINode CRD is installed from the
//! start, as on EKS).

use serde_json::{Value, json};

/// One served resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural name (URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster scoped.
    pub namespaced: bool,
    /// Short names (`kubectl get cnd`).
    pub short_names: Vec<String>,
    /// Whether a `/status` subresource exists.
    pub status: bool,
}

impl Resource {
    fn new(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Resource {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced,
            short_names: Vec::new(),
            status: false,
        }
    }

    /// `apiVersion` of its objects.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The resource a CRD object declares (its first served version), if well formed.
    pub fn from_crd(crd: &Value) -> Result<Resource, String> {
        let spec = &crd["spec"];
        let field = |v: &Value, name: &str| {
            v.as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("spec.{name}: required"))
        };
        let group = field(&spec["group"], "group")?;
        let plural = field(&spec["names"]["plural"], "names.plural")?;
        let kind = field(&spec["names"]["kind"], "names.kind")?;
        let scope = field(&spec["scope"], "scope")?;
        let versions = spec["versions"].as_array().cloned().unwrap_or_default();
        let v = versions
            .iter()
            .find(|v| v["served"].as_bool().unwrap_or(true))
            .ok_or("spec.versions: at least one served version is required")?;
        let version = field(&v["name"], "versions[].name")?;
        let mut r = Resource::new(&group, &version, &plural, &kind, scope == "Namespaced");
        if let Some(s) = spec["names"]["singular"].as_str() {
            r.singular = s.into();
        }
        r.short_names = spec["names"]["shortNames"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        r.status = v["subresources"]["status"].is_object();
        Ok(r)
    }
}

/// The built-in kinds.
pub fn builtin() -> Vec<Resource> {
    let mut node = Resource::new("", "v1", "nodes", "Node", false);
    node.short_names = vec!["no".into()];
    node.status = true;
    let mut pod = Resource::new("", "v1", "pods", "Pod", true);
    pod.short_names = vec!["po".into()];
    pod.status = true;
    let mut ev = Resource::new("", "v1", "events", "Event", true);
    ev.short_names = vec!["ev".into()];
    let mut ns = Resource::new("", "v1", "namespaces", "Namespace", false);
    ns.short_names = vec!["ns".into()];
    let mut crd = Resource::new(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    );
    crd.short_names = vec!["crd".into(), "crds".into()];
    // What the project's manifest and chart install (kubectl apply of them is tested).
    let mut sa = Resource::new("", "v1", "serviceaccounts", "ServiceAccount", true);
    sa.short_names = vec!["sa".into()];
    let mut cm = Resource::new("", "v1", "configmaps", "ConfigMap", true);
    cm.short_names = vec!["cm".into()];
    let mut ds = Resource::new("apps", "v1", "daemonsets", "DaemonSet", true);
    ds.short_names = vec!["ds".into()];
    ds.status = true;
    let rbac = "rbac.authorization.k8s.io";
    vec![
        node,
        pod,
        ev,
        ns,
        Resource::new("events.k8s.io", "v1", "events", "Event", true),
        crd,
        sa,
        cm,
        ds,
        Resource::new(rbac, "v1", "clusterroles", "ClusterRole", false),
        Resource::new(
            rbac,
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
    ]
}

/// The CNINode CRD as the VPC resource controller installs it (group vpcresources.k8s.aws).
pub fn cninode_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "cninodes.vpcresources.k8s.aws"},
        "spec": {
            "group": "vpcresources.k8s.aws",
            "names": {"kind": "CNINode", "listKind": "CNINodeList", "plural": "cninodes",
                      "singular": "cninode", "shortNames": ["cnd"]},
            "scope": "Cluster",
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                          "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": {"type": "object",
                              "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    })
}

/// `GET /api/v1` or `/apis/<group>/<version>`.
pub fn resource_list(all: &[Resource], group: &str, version: &str) -> Option<Value> {
    let mine: Vec<&Resource> = all
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let verbs = json!([
        "create", "delete", "get", "list", "patch", "update", "watch"
    ]);
    let mut resources = Vec::new();
    for r in &mine {
        resources.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": verbs, "shortNames": r.short_names,
        }));
        if r.status {
            resources.push(json!({
                "name": format!("{}/status", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": mine[0].api_version(),
        "resources": resources,
    }))
}

/// `GET /apis`.
pub fn group_list(all: &[Resource]) -> Value {
    let mut groups: Vec<(String, String)> = all
        .iter()
        .filter(|r| !r.group.is_empty())
        .map(|r| (r.group.clone(), r.version.clone()))
        .collect();
    groups.sort();
    groups.dedup();
    let groups: Vec<Value> = groups
        .iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>`.
pub fn group(all: &[Resource], name: &str) -> Option<Value> {
    group_list(all)["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == name)
        .map(|g| {
            let mut g = g.clone();
            g["kind"] = json!("APIGroup");
            g["apiVersion"] = json!("v1");
            g
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cninode_crd_declares_the_upstream_group_and_short_name() {
        let r = Resource::from_crd(&cninode_crd()).unwrap();
        assert_eq!(r.api_version(), "vpcresources.k8s.aws/v1alpha1");
        assert_eq!(r.plural, "cninodes");
        assert!(!r.namespaced);
        assert_eq!(r.short_names, vec!["cnd"]);
        assert!(r.status);
    }

    #[test]
    fn a_crd_without_a_group_is_refused_naming_the_field() {
        let mut crd = cninode_crd();
        crd["spec"]["group"] = json!("");
        assert_eq!(
            Resource::from_crd(&crd).unwrap_err(),
            "spec.group: required"
        );
    }

    #[test]
    fn discovery_lists_each_group_once() {
        let mut all = builtin();
        all.push(Resource::from_crd(&cninode_crd()).unwrap());
        let g = group_list(&all);
        let names: Vec<&str> = g["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "apiextensions.k8s.io",
                "apps",
                "events.k8s.io",
                "rbac.authorization.k8s.io",
                "vpcresources.k8s.aws"
            ]
        );
        let core = resource_list(&all, "", "v1").unwrap();
        assert!(
            core["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "nodes/status")
        );
    }
}
