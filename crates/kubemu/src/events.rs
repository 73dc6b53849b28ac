//! Events are stored once, as `events.k8s.io/v1`; `core/v1` Events (what `kubectl get events`
//! reads, and what older recorders write) are the same objects converted field by field, as the
//! API server does.

use serde_json::{Map, Value, json};

/// `events.k8s.io/v1` field → `core/v1` field (the same name in both when unchanged).
const FIELDS: [(&str, &str); 15] = [
    ("metadata", "metadata"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("related", "related"),
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("deprecatedSource", "source"),
];

/// Move every non-null field of `from` to its name on the other side.
fn renamed(mut from: Value, to_core: bool) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(o) = from.as_object_mut() {
        for (new, old) in FIELDS {
            let (src, dst) = if to_core { (new, old) } else { (old, new) };
            if let Some(v) = o.remove(src).filter(|v| !v.is_null()) {
                out.insert(dst.into(), v);
            }
        }
    }
    out
}

/// An `events.k8s.io/v1` Event as `core/v1` shows it (source, timestamps and count filled from
/// the new fields when the deprecated ones are absent).
pub fn to_core(e: Value) -> Value {
    if !e.is_object() {
        return e;
    }
    let mut c = renamed(e, true);
    if !c.contains_key("source")
        && let Some(rc) = c.get("reportingComponent").cloned()
    {
        c.insert("source".into(), json!({"component": rc}));
    }
    let when = c.get("eventTime").cloned();
    for k in ["firstTimestamp", "lastTimestamp"] {
        if !c.contains_key(k)
            && let Some(t) = &when
        {
            c.insert(k.into(), t.clone());
        }
    }
    if !c.contains_key("count") {
        let n = c
            .get("series")
            .and_then(|s| s["count"].as_u64())
            .unwrap_or(1);
        c.insert("count".into(), json!(n));
    }
    c.insert("apiVersion".into(), json!("v1"));
    c.insert("kind".into(), json!("Event"));
    Value::Object(c)
}

/// A `core/v1` Event as stored (`events.k8s.io/v1`).
pub fn from_core(c: Value) -> Value {
    if !c.is_object() {
        return c;
    }
    Value::Object(renamed(c, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_style_event_reads_as_an_old_one_and_back() {
        let e = json!({
            "metadata": {"name": "x", "namespace": "kube-system"},
            "regarding": {"kind": "Pod", "name": "aws-node-1"},
            "note": "no ec2:CreateNetworkInterface", "reason": "MissingIAMPermissions",
            "type": "Warning", "reportingController": "vpc-cni", "eventTime": "2026-12-02T00:00:00Z"
        });
        let c = to_core(e.clone());
        assert_eq!(c["involvedObject"]["name"], "aws-node-1");
        assert_eq!(c["message"], "no ec2:CreateNetworkInterface");
        assert_eq!(c["source"]["component"], "vpc-cni");
        assert_eq!(c["lastTimestamp"], "2026-12-02T00:00:00Z");
        assert_eq!(c["count"], 1);
        let back = from_core(c);
        assert_eq!(back["regarding"], e["regarding"]);
        assert_eq!(back["note"], e["note"]);
    }
}
