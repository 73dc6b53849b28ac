//! A minimal OpenAPI v3 surface: the root index and one document per group/version listing,
//! for each kind, its object path with a PATCH operation that accepts `fieldValidation`. That is
//! what kubectl reads to decide the server validates fields itself (it then sends
//! `fieldValidation=Strict` instead of downloading schemas to validate on its side).

use serde_json::{Value, json};

use crate::resources::Resource;

fn gv_path(r: &Resource) -> String {
    if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    }
}

/// `GET /openapi/v3`.
pub fn root(all: &[Resource], rv: u64) -> Value {
    let mut paths = serde_json::Map::new();
    for r in all {
        let p = gv_path(r);
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={rv:016X}")}),
        );
    }
    json!({"paths": paths})
}

/// `GET /openapi/v3/<api/v1 | apis/g/v>`, or None for an unknown group/version.
pub fn document(all: &[Resource], gv: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for r in all.iter().filter(|r| gv_path(r) == gv) {
        let ns = if r.namespaced {
            "namespaces/{namespace}/"
        } else {
            ""
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let params = json!([
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}}
        ]);
        let op = json!({"operationId": format!("patch{}", r.kind), "parameters": params,
                        "x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk,
                        "responses": {"200": {"description": "OK"}}});
        paths.insert(
            format!("/{gv}/{ns}{}/{{name}}", r.plural),
            json!({"patch": op}),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
                "paths": paths, "components": {"schemas": {}}}),
    )
}
