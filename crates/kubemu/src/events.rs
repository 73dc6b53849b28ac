//! Events are stored once, as `events.k8s.io/v1`; `core/v1` Events (what `kubectl get events`
//! reads, and what older recorders write) are the same objects converted field by field, as the
//! API server does.

use serde_json::{Map, Value, json};

/// An `events.k8s.io/v1` Event as `core/v1` shows it.
pub fn to_core(mut e: Value) -> Value {
    let Some(o) = e.as_object_mut() else {
        return e;
    };
    let mut c = Map::new();
    let mut take = |from: &str, to: &str| {
        if let Some(v) = o.remove(from).filter(|v| !v.is_null()) {
            c.insert(to.into(), v);
        }
    };
    for k in [
        "metadata",
        "reason",
        "type",
        "action",
        "eventTime",
        "series",
        "related",
    ] {
        take(k, k);
    }
    take("regarding", "involvedObject");
    take("note", "message");
    take("reportingController", "reportingComponent");
    take("reportingInstance", "reportingInstance");
    take("deprecatedFirstTimestamp", "firstTimestamp");
    take("deprecatedLastTimestamp", "lastTimestamp");
    take("deprecatedCount", "count");
    take("deprecatedSource", "source");
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
pub fn from_core(mut c: Value) -> Value {
    let Some(o) = c.as_object_mut() else {
        return c;
    };
    let mut e = Map::new();
    let mut take = |from: &str, to: &str| {
        if let Some(v) = o.remove(from).filter(|v| !v.is_null()) {
            e.insert(to.into(), v);
        }
    };
    for k in [
        "metadata",
        "reason",
        "type",
        "action",
        "eventTime",
        "series",
        "related",
    ] {
        take(k, k);
    }
    take("involvedObject", "regarding");
    take("message", "note");
    take("reportingComponent", "reportingController");
    take("reportingInstance", "reportingInstance");
    take("firstTimestamp", "deprecatedFirstTimestamp");
    take("lastTimestamp", "deprecatedLastTimestamp");
    take("count", "deprecatedCount");
    take("source", "deprecatedSource");
    Value::Object(e)
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
