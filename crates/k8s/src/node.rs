//! What the daemon reads from the Node and ENIConfig objects, parsed once with errors that name
//! the object and field.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::KubeError;

/// The taint a cordoned Node carries.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// The local Node, as ipamd uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeView {
    /// Name.
    pub name: String,
    /// `status.capacity.pods`: None when absent, an error naming the field when malformed.
    pub max_pods: Option<Result<u32, KubeError>>,
    /// Whether it carries the unschedulable taint (cordoned).
    pub cordoned: bool,
    /// Taint keys.
    pub taints: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

fn strings(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl NodeView {
    /// From a Node object (JSON).
    pub fn from_json(v: &Value) -> NodeView {
        let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
        let max_pods = match &v["status"]["capacity"]["pods"] {
            Value::Null => None,
            p => Some(
                p.as_str()
                    .and_then(|s| s.parse::<u32>().ok())
                    .or_else(|| p.as_u64().and_then(|n| u32::try_from(n).ok()))
                    .filter(|n| *n > 0)
                    .ok_or_else(|| KubeError::Invalid {
                        object: format!("Node/{name}"),
                        field: "status.capacity.pods".into(),
                        message: format!("{p}: expected a positive whole number"),
                    }),
            ),
        };
        let taints: Vec<String> = v["spec"]["taints"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["key"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        NodeView {
            cordoned: taints.iter().any(|t| t == UNSCHEDULABLE_TAINT),
            taints,
            labels: strings(&v["metadata"]["labels"]),
            annotations: strings(&v["metadata"]["annotations"]),
            name,
            max_pods,
        }
    }

    /// The ENIConfig name upstream picks: label `vpc.amazonaws.com/externalEniConfig`, else the
    /// annotation `annotation_key`, else the label `label_key`, else `default`.
    pub fn eniconfig_name(&self, annotation_key: &str, label_key: &str) -> String {
        self.labels
            .get("vpc.amazonaws.com/externalEniConfig")
            .or_else(|| self.annotations.get(annotation_key))
            .or_else(|| self.labels.get(label_key))
            .cloned()
            .unwrap_or_else(|| "default".into())
    }
}

/// An ENIConfig's spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EniConfig {
    /// Name.
    pub name: String,
    /// `spec.subnet` (required).
    pub subnet: String,
    /// `spec.securityGroups`.
    pub security_groups: Vec<String>,
}

impl EniConfig {
    /// From an ENIConfig object (JSON); a missing subnet or a non-string group is an error
    /// naming the field.
    pub fn from_json(v: &Value) -> Result<EniConfig, KubeError> {
        let name = v["metadata"]["name"].as_str().unwrap_or("").to_string();
        let invalid = |field: &str, message: String| KubeError::Invalid {
            object: format!("ENIConfig/{name}"),
            field: field.into(),
            message,
        };
        let subnet = v["spec"]["subnet"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("spec.subnet", format!("{}: required", v["spec"]["subnet"])))?
            .to_string();
        let security_groups = match &v["spec"]["securityGroups"] {
            Value::Null => Vec::new(),
            Value::Array(a) => a
                .iter()
                .map(|g| {
                    g.as_str().map(String::from).ok_or_else(|| {
                        invalid("spec.securityGroups", format!("{g}: expected a string"))
                    })
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(invalid(
                    "spec.securityGroups",
                    format!("{other}: expected a list"),
                ));
            }
        };
        Ok(EniConfig {
            name,
            subnet,
            security_groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_capacity_taints_and_eniconfig_selection() {
        let n = NodeView::from_json(&json!({
            "metadata": {"name": "n1", "labels": {"k8s.amazonaws.com/eniConfig": "from-label"},
                         "annotations": {"k8s.amazonaws.com/eniConfig": "from-annotation"}},
            "spec": {"taints": [{"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}]},
            "status": {"capacity": {"pods": "20"}}
        }));
        assert_eq!(n.max_pods, Some(Ok(20)));
        assert!(n.cordoned);
        let key = "k8s.amazonaws.com/eniConfig";
        assert_eq!(n.eniconfig_name(key, key), "from-annotation");
        assert_eq!(n.eniconfig_name("other", key), "from-label");
        assert_eq!(n.eniconfig_name("other", "other"), "default");
    }

    #[test]
    fn malformed_objects_name_the_field() {
        for pods in [json!("lots"), json!("0"), json!(-3)] {
            let n = NodeView::from_json(
                &json!({"metadata": {"name": "n"}, "status": {"capacity": {"pods": pods}}}),
            );
            let e = n.max_pods.unwrap().unwrap_err();
            assert!(
                e.to_string().contains("Node/n: status.capacity.pods"),
                "{e}"
            );
        }
        assert_eq!(
            NodeView::from_json(&json!({"metadata": {"name": "n"}})).max_pods,
            None
        );
        let e = EniConfig::from_json(&json!({"metadata": {"name": "a"}, "spec": {}})).unwrap_err();
        assert!(e.to_string().starts_with("ENIConfig/a: spec.subnet"), "{e}");
        let e = EniConfig::from_json(
            &json!({"metadata": {"name": "a"}, "spec": {"subnet": "s", "securityGroups": [1]}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("spec.securityGroups"), "{e}");
    }
}
