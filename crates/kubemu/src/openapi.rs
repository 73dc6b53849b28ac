//! A minimal OpenAPI surface. v3: the root index and one document per group/version listing,
//! for each kind, its object path with a PATCH operation that accepts `fieldValidation`. That is
//! what kubectl reads to decide the server validates fields itself (it then sends
//! `fieldValidation=Strict` instead of downloading schemas to validate on its side).
//! v2: a document without definitions, in protobuf (gnostic's `openapi.v2.Document`) or JSON.
//! Older kubectl (Debian bookworm's 1.20) reads it before every `apply` and fails without it;
//! with no schema for a kind it skips client-side validation and computes strategic merge
//! patches from its compiled-in types, as against any server that publishes no definitions.

use serde_json::{Value, json};

use crate::resources::Resource;

/// The title and version both documents give (the version `/version` reports).
const TITLE: &str = "Kubernetes";
const VERSION: &str = "v1.33.0";

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
        json!({"openapi": "3.0.0", "info": {"title": TITLE, "version": VERSION},
                "paths": paths, "components": {"schemas": {}}}),
    )
}

/// gnostic's `openapi.v2.Document`, the fields served (`swagger` = 1, `info` = 2).
#[derive(Clone, PartialEq, prost::Message)]
struct DocumentV2 {
    #[prost(string, tag = "1")]
    swagger: String,
    #[prost(message, optional, tag = "2")]
    info: Option<InfoV2>,
}

/// gnostic's `openapi.v2.Info` (`title` = 1, `version` = 2).
#[derive(Clone, PartialEq, prost::Message)]
struct InfoV2 {
    #[prost(string, tag = "1")]
    title: String,
    #[prost(string, tag = "2")]
    version: String,
}

/// The media type kubectl asks `/openapi/v2` for.
pub const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// `GET /openapi/v2`: (content type, body); protobuf when `accept` names it, else JSON.
pub fn v2(accept: &str) -> (&'static str, Vec<u8>) {
    if accept.contains("protobuf") {
        let doc = DocumentV2 {
            swagger: "2.0".into(),
            info: Some(InfoV2 {
                title: TITLE.into(),
                version: VERSION.into(),
            }),
        };
        // As kube-openapi answers: Go's media-type parser, which client-go runs on every
        // reply, refuses the '@' of the asked type.
        return (
            "application/octet-stream",
            prost::Message::encode_to_vec(&doc),
        );
    }
    let doc = json!({"swagger": "2.0", "info": {"title": TITLE, "version": VERSION},
                     "paths": {}, "definitions": {}});
    ("application/json", doc.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_protobuf_is_the_document_with_version_and_info() {
        let (ty, body) = v2(V2_PROTOBUF);
        assert_eq!(ty, "application/octet-stream");
        // Field 1 (swagger), length 3, "2.0"; field 2 (info) holding field 1 (title), field 2.
        let doc: DocumentV2 = prost::Message::decode(body.as_slice()).unwrap();
        assert_eq!(doc.swagger, "2.0");
        assert_eq!(doc.info.unwrap().title, "Kubernetes");
        assert_eq!(&body[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert_eq!(body[5], 0x12);
    }

    #[test]
    fn v2_json_when_protobuf_is_not_asked() {
        let (ty, body) = v2("application/json");
        assert_eq!(ty, "application/json");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["swagger"], "2.0");
        assert!(v["definitions"].as_object().unwrap().is_empty());
    }
}
