//! `Table` answers (`Accept: …;as=Table`): what kubectl prints without `-o`. Name and age for
//! every kind; type, reason, object and message for Events; status for Nodes.

use serde_json::{Value, json};

use crate::resources::Resource;

fn col(name: &str, format: &str) -> Value {
    json!({"name": name, "type": "string", "format": format, "description": "", "priority": 0})
}

/// A Table of `items` of `r`.
pub fn table(r: &Resource, items: &[Value], rv: &str) -> Value {
    let events = r.plural == "events";
    let nodes = r.group.is_empty() && r.plural == "nodes";
    let columns: Vec<Value> = if events {
        ["Last Seen", "Type", "Reason", "Object", "Message"]
            .iter()
            .map(|n| col(n, ""))
            .collect()
    } else if nodes {
        vec![col("Name", "name"), col("Status", ""), col("Created", "")]
    } else {
        vec![col("Name", "name"), col("Created", "")]
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            let cells = if events {
                let reg = if o["involvedObject"].is_object() {
                    &o["involvedObject"]
                } else {
                    &o["regarding"]
                };
                json!([
                    o["lastTimestamp"]
                        .as_str()
                        .or(o["eventTime"].as_str())
                        .unwrap_or(""),
                    o["type"],
                    o["reason"],
                    format!(
                        "{}/{}",
                        reg["kind"].as_str().unwrap_or("").to_lowercase(),
                        reg["name"].as_str().unwrap_or("")
                    ),
                    o["message"].as_str().or(o["note"].as_str()).unwrap_or(""),
                ])
            } else if nodes {
                let cordoned = o["spec"]["unschedulable"].as_bool().unwrap_or(false);
                json!([
                    m["name"],
                    if cordoned {
                        "SchedulingDisabled"
                    } else {
                        "Ready"
                    },
                    m["creationTimestamp"]
                ])
            } else {
                json!([m["name"], m["creationTimestamp"]])
            };
            json!({"cells": cells, "object": o})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
           "columnDefinitions": columns, "rows": rows})
}
