//! The object store: every object as JSON, one resourceVersion counter for the whole store,
//! a bounded log of changes for watches (older positions get 410 Gone), optimistic concurrency,
//! CRDs that register their kinds, and what the node controllers of a real cluster add: a
//! cordoned Node (`spec.unschedulable`) carries the `node.kubernetes.io/unschedulable` taint.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::resources::{Resource, builtin, cninode_crd};

/// How many changes the watch log keeps.
pub const LOG_LEN: usize = 1000;

/// The taint a cordoned node carries.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// An API error, answered as a `Status` document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub code: u16,
    /// Status reason (`NotFound`, `AlreadyExists`, `Conflict`, …).
    pub reason: &'static str,
    /// Message.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }

    /// The `Status` body.
    pub fn status(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code})
    }

    fn not_found(r: &Resource, name: &str) -> Self {
        let what = if r.group.is_empty() {
            r.plural.clone()
        } else {
            format!("{}.{}", r.plural, r.group)
        };
        Self::new(404, "NotFound", format!("{what} \"{name}\" not found"))
    }
}

/// One change, as a watch sends it.
#[derive(Debug, Clone)]
pub struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// `group/plural` of the object.
    pub rkey: String,
    /// Its namespace ("" for cluster scoped).
    pub namespace: String,
    /// ADDED, MODIFIED or DELETED.
    pub kind: &'static str,
    /// The object after the change (before it, for DELETED).
    pub object: Value,
}

type Key = (String, String, String);

/// The store.
pub struct Store {
    resources: Vec<Resource>,
    objects: BTreeMap<Key, Value>,
    rv: u64,
    serial: u64,
    log: VecDeque<Change>,
    /// Live changes for watches.
    pub tx: broadcast::Sender<Change>,
}

/// `group/plural`: the storage key of a resource (versions share it).
pub fn rkey(r: &Resource) -> String {
    format!("{}/{}", r.group, r.plural)
}

/// RFC 3339 time in UTC, seconds precision.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    vpc_cni_ipam::Time::from_secs(secs).rfc3339(false)
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// The built-in kinds, the CNINode CRD, and namespaces `default` and `kube-system`.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        let mut s = Store {
            resources: builtin(),
            objects: BTreeMap::new(),
            rv: 1,
            serial: 0,
            log: VecDeque::new(),
            tx,
        };
        let crd = s.find("apiextensions.k8s.io", "v1", "customresourcedefinitions");
        s.create(&crd.expect("built in"), "", cninode_crd())
            .expect("the CNINode CRD is valid");
        let ns = s.find("", "v1", "namespaces").expect("built in");
        for name in ["default", "kube-system"] {
            s.create(&ns, "", json!({"metadata": {"name": name}}))
                .expect("new store");
        }
        s
    }

    /// Served resources.
    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// The resource `plural` of `group/version`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Resource> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The oldest resourceVersion a watch may start from.
    pub fn oldest_watchable(&self) -> u64 {
        self.log.front().map_or(self.rv, |c| c.rv - 1)
    }

    /// Changes after `rv` (the caller checked it is not older than the log).
    pub fn changes_since(&self, rv: u64) -> Vec<Change> {
        self.log.iter().filter(|c| c.rv > rv).cloned().collect()
    }

    fn key(r: &Resource, ns: &str, name: &str) -> Key {
        (
            rkey(r),
            if r.namespaced { ns } else { "" }.into(),
            name.into(),
        )
    }

    /// Get one object.
    pub fn get(&self, r: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::key(r, ns, name))
            .map(|o| with_type(r, o.clone()))
            .ok_or_else(|| ApiError::not_found(r, name))
    }

    /// Objects of `r` (in `ns` when given).
    pub fn list(&self, r: &Resource, ns: Option<&str>) -> Vec<Value> {
        let k = rkey(r);
        self.objects
            .iter()
            .filter(|((rk, n, _), _)| *rk == k && ns.is_none_or(|ns| ns == n))
            .map(|(_, o)| with_type(r, o.clone()))
            .collect()
    }

    fn record(&mut self, r: &Resource, ns: &str, kind: &'static str, object: Value) {
        let c = Change {
            rv: self.rv,
            rkey: rkey(r),
            namespace: ns.into(),
            kind,
            object: with_type(r, object),
        };
        self.log.push_back(c.clone());
        while self.log.len() > LOG_LEN {
            self.log.pop_front();
        }
        let _ = self.tx.send(c);
    }

    fn bump(&mut self, obj: &mut Value) {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
    }

    /// Create an object (name or generateName; 409 AlreadyExists).
    pub fn create(&mut self, r: &Resource, ns: &str, mut obj: Value) -> Result<Value, ApiError> {
        if !obj.is_object() || !obj["metadata"].is_object() && !obj["metadata"].is_null() {
            return Err(ApiError::new(
                400,
                "BadRequest",
                "the body is not an object",
            ));
        }
        let name = match (
            obj["metadata"]["name"].as_str(),
            obj["metadata"]["generateName"].as_str(),
        ) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(g)) if !g.is_empty() => {
                self.serial += 1;
                format!("{g}{:05x}", self.serial.wrapping_mul(0x9e37) & 0xfffff)
            }
            _ => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{} \"\": metadata.name: Required value: name or generateName is required",
                        r.kind
                    ),
                ));
            }
        };
        check_name(r, &name)?;
        let key = Self::key(r, ns, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", r.plural),
            ));
        }
        let registered = self.register_crd(r, &obj)?;
        self.serial += 1;
        let m = &mut obj["metadata"];
        m["name"] = json!(name);
        if r.namespaced {
            m["namespace"] = json!(if ns.is_empty() { "default" } else { ns });
        }
        m["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.serial));
        m["creationTimestamp"] = json!(now_rfc3339());
        if let Some(o) = obj.as_object_mut() {
            o.remove("apiVersion");
            o.remove("kind");
        }
        node_rules(r, &mut obj);
        self.bump(&mut obj);
        self.objects.insert(key, obj.clone());
        if let Some(res) = registered {
            self.resources.push(res);
        }
        self.record(r, ns, "ADDED", obj.clone());
        Ok(with_type(r, obj))
    }

    fn register_crd(&self, r: &Resource, obj: &Value) -> Result<Option<Resource>, ApiError> {
        if r.plural != "customresourcedefinitions" {
            return Ok(None);
        }
        let res = Resource::from_crd(obj)
            .map_err(|e| ApiError::new(422, "Invalid", format!("CustomResourceDefinition: {e}")))?;
        let want = format!("{}.{}", res.plural, res.group);
        if obj["metadata"]["name"].as_str() != Some(want.as_str()) {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "CustomResourceDefinition metadata.name: must be spec.names.plural+\".\"+spec.group ({want})"
                ),
            ));
        }
        Ok(Some(res))
    }

    /// Replace an object (status kept unless `status`; 409 on a stale resourceVersion).
    pub fn update(
        &mut self,
        r: &Resource,
        ns: &str,
        name: &str,
        mut obj: Value,
        status: bool,
    ) -> Result<Value, ApiError> {
        let key = Self::key(r, ns, name);
        let old = self
            .objects
            .get(&key)
            .ok_or_else(|| ApiError::not_found(r, name))?
            .clone();
        if let Some(rv) = obj["metadata"]["resourceVersion"].as_str()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    r.plural
                ),
            ));
        }
        if obj["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::new(
                400,
                "BadRequest",
                format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    obj["metadata"]["name"]
                ),
            ));
        }
        if let Some(o) = obj.as_object_mut() {
            o.remove("apiVersion");
            o.remove("kind");
        }
        if r.status {
            // The main resource never changes status, the subresource nothing else.
            if status {
                let st = obj["status"].take();
                obj = old.clone();
                obj["status"] = st;
            } else {
                obj["status"] = old["status"].clone();
                if obj["status"].is_null() {
                    obj.as_object_mut().map(|o| o.remove("status"));
                }
            }
        }
        for k in ["uid", "creationTimestamp", "name", "namespace"] {
            obj["metadata"][k] = old["metadata"][k].clone();
        }
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.retain(|_, v| !v.is_null());
        }
        node_rules(r, &mut obj);
        if strip_rv(&obj) == strip_rv(&old) {
            return Ok(with_type(r, old));
        }
        self.bump(&mut obj);
        self.objects.insert(key, obj.clone());
        self.record(r, ns, "MODIFIED", obj.clone());
        Ok(with_type(r, obj))
    }

    /// Delete an object; it is returned.
    pub fn delete(&mut self, r: &Resource, ns: &str, name: &str) -> Result<Value, ApiError> {
        let key = Self::key(r, ns, name);
        let mut obj = self
            .objects
            .remove(&key)
            .ok_or_else(|| ApiError::not_found(r, name))?;
        self.bump(&mut obj);
        if r.plural == "customresourcedefinitions"
            && let Ok(res) = Resource::from_crd(&obj)
        {
            self.resources.retain(|x| *x != res);
            let k = rkey(&res);
            self.objects.retain(|(rk, _, _), _| *rk != k);
        }
        self.record(r, ns, "DELETED", obj.clone());
        Ok(with_type(r, obj))
    }
}

fn strip_rv(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    v
}

/// Names as the API server validates them (DNS subdomain, at most 253 characters).
fn check_name(r: &Resource, name: &str) -> Result<(), ApiError> {
    let ok = name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: metadata.name: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                r.kind
            ),
        ))
    }
}

/// Add apiVersion and kind (the store keeps objects without them).
pub fn with_type(r: &Resource, mut obj: Value) -> Value {
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), json!(r.api_version()));
        o.insert("kind".into(), json!(r.kind));
    }
    obj
}

/// A cordoned Node gets the unschedulable taint; an uncordoned one loses it.
fn node_rules(r: &Resource, obj: &mut Value) {
    if !(r.group.is_empty() && r.plural == "nodes") {
        return;
    }
    let cordoned = obj["spec"]["unschedulable"].as_bool().unwrap_or(false);
    let taints = obj["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let has = taints.iter().any(|t| t["key"] == UNSCHEDULABLE_TAINT);
    if cordoned && !has {
        let mut t = taints;
        t.push(
            json!({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule", "timeAdded": now_rfc3339()}),
        );
        obj["spec"]["taints"] = json!(t);
    } else if !cordoned && has {
        let t: Vec<Value> = taints
            .into_iter()
            .filter(|t| t["key"] != UNSCHEDULABLE_TAINT)
            .collect();
        if t.is_empty() {
            obj["spec"].as_object_mut().map(|s| s.remove("taints"));
        } else {
            obj["spec"]["taints"] = json!(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(s: &Store) -> Resource {
        s.find("", "v1", "nodes").unwrap()
    }

    #[test]
    fn cordon_adds_the_taint_and_uncordon_removes_it() {
        let mut s = Store::new();
        let r = nodes(&s);
        s.create(&r, "", json!({"metadata": {"name": "n1"}, "spec": {}}))
            .unwrap();
        let mut n = s.get(&r, "", "n1").unwrap();
        n["spec"]["unschedulable"] = json!(true);
        let n = s.update(&r, "", "n1", n, false).unwrap();
        assert_eq!(n["spec"]["taints"][0]["key"], UNSCHEDULABLE_TAINT);
        let mut n2 = n.clone();
        n2["spec"]["unschedulable"] = json!(false);
        let n2 = s.update(&r, "", "n1", n2, false).unwrap();
        assert!(n2["spec"]["taints"].is_null());
        // The first copy is stale now.
        let e = s.update(&r, "", "n1", n, false).unwrap_err();
        assert_eq!((e.code, e.reason), (409, "Conflict"));
    }

    #[test]
    fn a_crd_registers_its_kind_and_deleting_it_drops_its_objects() {
        let mut s = Store::new();
        let crd = s
            .find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        let mut eni = cninode_crd();
        eni["metadata"]["name"] = json!("eniconfigs.crd.k8s.amazonaws.com");
        eni["spec"]["group"] = json!("crd.k8s.amazonaws.com");
        eni["spec"]["names"] = json!({"kind": "ENIConfig", "plural": "eniconfigs"});
        s.create(&crd, "", eni).unwrap();
        let r = s
            .find("crd.k8s.amazonaws.com", "v1alpha1", "eniconfigs")
            .unwrap();
        s.create(
            &r,
            "",
            json!({"metadata": {"name": "us-east-1a"}, "spec": {"subnet": "s"}}),
        )
        .unwrap();
        assert_eq!(s.list(&r, None).len(), 1);
        s.delete(&crd, "", "eniconfigs.crd.k8s.amazonaws.com")
            .unwrap();
        assert!(
            s.find("crd.k8s.amazonaws.com", "v1alpha1", "eniconfigs")
                .is_none()
        );
        assert!(s.list(&r, None).is_empty());
    }

    #[test]
    fn status_changes_only_through_the_subresource() {
        let mut s = Store::new();
        let r = nodes(&s);
        s.create(
            &r,
            "",
            json!({"metadata": {"name": "n"}, "status": {"capacity": {"pods": "20"}}}),
        )
        .unwrap();
        let mut n = s.get(&r, "", "n").unwrap();
        n["status"]["capacity"]["pods"] = json!("30");
        let kept = s.update(&r, "", "n", n.clone(), false).unwrap();
        assert_eq!(kept["status"]["capacity"]["pods"], "20");
        let set = s.update(&r, "", "n", n, true).unwrap();
        assert_eq!(set["status"]["capacity"]["pods"], "30");
    }

    #[test]
    fn the_watch_log_is_bounded_and_names_are_validated() {
        let mut s = Store::new();
        let r = s.find("", "v1", "pods").unwrap();
        for i in 0..(LOG_LEN + 10) {
            s.create(
                &r,
                "default",
                json!({"metadata": {"name": format!("p{i}")}}),
            )
            .unwrap();
        }
        assert!(s.oldest_watchable() > 10);
        assert_eq!(s.changes_since(s.resource_version() - 3).len(), 3);
        let e = s
            .create(&r, "default", json!({"metadata": {"name": "Bad_Name"}}))
            .unwrap_err();
        assert_eq!(e.code, 422);
        assert!(now_rfc3339().ends_with('Z'));
    }
}
