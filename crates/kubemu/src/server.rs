//! HTTP: discovery, `/version`, the resource paths (get, list, watch, create, update, patch,
//! delete, `/status`), bearer-token authentication, `Status` error bodies, `Table` answers for
//! kubectl's human output, and injected faults and latency.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::resources::{self, Resource};
use crate::state::{Faults, Shared, Target, error, json_response, response, selectors, storage};
use crate::store::{ApiError, Store};
use crate::{events, patch, table};

/// Route one request.
pub async fn handle(
    s: Arc<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    let q: HashMap<String, String> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let auth = headers.get(header::AUTHORIZATION);
    let bearer = auth
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let faults = s.faults.lock().unwrap().clone();
    let public = matches!(
        path.as_str(),
        "/version" | "/healthz" | "/livez" | "/readyz"
    );
    // As an API server: anonymous requests may read the public paths, but credentials that do
    // not authenticate are refused everywhere.
    let authenticated = bearer == Some(s.token.as_str())
        && (!faults.unauthorized || path.starts_with("/_emulator"));
    if !authenticated && (auth.is_some() || !public) {
        return error(&ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    match path.as_str() {
        "/version" => return json_response(200, &version()),
        "/healthz" | "/livez" | "/readyz" => return Response::new(Body::from("ok")),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/_emulator") {
        return admin(&s, &method, rest, &body);
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if faults.error_rate > 0.0 && s.chance(faults.error_rate) {
        return error(&ApiError::new(500, "InternalError", "injected fault"));
    }
    *s.requests
        .lock()
        .unwrap()
        .entry(format!("{method} {}", strip_names(&path)))
        .or_default() += 1;
    if let Some(doc) = discovery(&s, &path, &headers) {
        return doc;
    }
    let target = {
        let store = s.store.lock().unwrap();
        match parse_target(&store, &path) {
            Ok(t) => t,
            Err(e) => return error(&e),
        }
    };
    // Go parses booleans loosely: the Python client sends `watch=True`.
    let watching = q
        .get("watch")
        .is_some_and(|w| w.eq_ignore_ascii_case("true") || w == "1" || w == "t");
    match (&method, &target.name) {
        (&Method::GET, None) if watching => crate::watch::watch(s, target, &q).await,
        (&Method::GET, None) => list(&s, &target, &q, &headers),
        (&Method::GET, Some(name)) => read(&s, &target, name, &headers),
        (&Method::POST, None) => write(&s, &target, &method, &headers, &body),
        (&Method::PUT | &Method::PATCH | &Method::DELETE, Some(_)) => {
            write(&s, &target, &method, &headers, &body)
        }
        _ => error(&ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        )),
    }
}

/// The path with object names replaced, for request counts.
fn strip_names(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').collect();
    let mut out = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let after_plural = i >= 2 && !["api", "apis", "namespaces"].contains(&segs[i - 1]);
        out.push(if after_plural && i + 1 == segs.len() && i > 3 {
            "{name}"
        } else {
            s
        });
    }
    out.join("/")
}

fn version() -> Value {
    json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-vpc-cni-emulator",
           "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
           "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc",
           "platform": "linux/amd64"})
}

fn discovery(s: &Shared, path: &str, headers: &HeaderMap) -> Option<Response> {
    if path == "/openapi/v2" {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (ty, body) = crate::openapi::v2(accept);
        return Some(response(200, ty, body));
    }
    let store = s.store.lock().unwrap();
    let all = store.resources();
    if path == "/openapi/v3" {
        return Some(json_response(
            200,
            &crate::openapi::root(all, store.resource_version()),
        ));
    }
    if let Some(gv) = path.strip_prefix("/openapi/v3/") {
        return Some(match crate::openapi::document(all, gv) {
            Some(doc) => json_response(200, &doc),
            None => error(&ApiError::new(
                404,
                "NotFound",
                format!("no OpenAPI document for {gv}"),
            )),
        });
    }
    let doc = match path.split('/').skip(1).collect::<Vec<_>>().as_slice() {
        ["api"] => json!({"kind": "APIVersions", "versions": ["v1"],
                          "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ["api", "v1"] => resources::resource_list(all, "", "v1")?,
        ["apis"] => resources::group_list(all),
        ["apis", g] => resources::group(all, g).unwrap_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
            .status()
        }),
        ["apis", g, v] => resources::resource_list(all, g, v).unwrap_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
            .status()
        }),
        _ => return None,
    };
    let code = doc["code"].as_u64().unwrap_or(200) as u16;
    Some(json_response(code, &doc))
}

fn parse_target(store: &Store, path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found()),
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, more @ ..] => (Some(ns.to_string()), {
            let mut r = vec![*plural];
            r.extend_from_slice(more);
            r
        }),
        other => (None, other.to_vec()),
    };
    let plural = rest.first().ok_or_else(not_found)?;
    let res = store.find(group, version, plural).ok_or_else(not_found)?;
    if ns.is_some() && !res.namespaced {
        return Err(not_found());
    }
    let sub = rest.get(2).map(|s| s.to_string());
    if rest.len() > 3 || sub.as_deref().is_some_and(|s| s != "status" || !res.status) {
        return Err(not_found());
    }
    Ok(Target {
        res,
        ns,
        name: rest.get(1).map(|s| s.to_string()),
        sub,
    })
}

fn wants_table(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

fn list(s: &Shared, t: &Target, q: &HashMap<String, String>, h: &HeaderMap) -> Response {
    let (labels, fields) = match selectors(q) {
        Ok(x) => x,
        Err(e) => return error(&e),
    };
    let store = s.store.lock().unwrap();
    let (res, core) = storage(&store, &t.res);
    let items: Vec<Value> = store
        .list(&res, t.ns.as_deref())
        .into_iter()
        .map(|o| if core { events::to_core(o) } else { o })
        .filter(|o| labels.matches(o) && fields.matches(o))
        .collect();
    let rv = store.resource_version().to_string();
    if wants_table(h) {
        return json_response(200, &table::table(&t.res, &items, &rv));
    }
    json_response(
        200,
        &json!({
            "kind": format!("{}List", t.res.kind), "apiVersion": t.res.api_version(),
            "metadata": {"resourceVersion": rv}, "items": items,
        }),
    )
}

fn read(s: &Shared, t: &Target, name: &str, h: &HeaderMap) -> Response {
    let store = s.store.lock().unwrap();
    let (res, core) = storage(&store, &t.res);
    match store.get(&res, t.ns.as_deref().unwrap_or(""), name) {
        Ok(o) => {
            let o = if core { events::to_core(o) } else { o };
            if wants_table(h) {
                let rv = store.resource_version().to_string();
                return json_response(200, &table::table(&t.res, &[o], &rv));
            }
            json_response(200, &o)
        }
        Err(e) => error(&e),
    }
}

fn content_type(h: &HeaderMap) -> &str {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or("application/json", |c| {
            c.split(';').next().unwrap_or(c).trim()
        })
}

fn write(s: &Shared, t: &Target, method: &Method, h: &HeaderMap, body: &Bytes) -> Response {
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => Some(v),
            Err(e) => {
                return error(&ApiError::new(
                    400,
                    "BadRequest",
                    format!("the request body is not JSON ({e}); this server speaks JSON only"),
                ));
            }
        }
    };
    if matches!(*method, Method::PUT | Method::PATCH) {
        let mut f = s.faults.lock().unwrap();
        if f.conflicts > 0 {
            f.conflicts -= 1;
            return error(&ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again (injected)",
                    t.res.plural,
                    t.name.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    let mut store = s.store.lock().unwrap();
    let (res, core) = storage(&store, &t.res);
    let ns = t.ns.clone().unwrap_or_default();
    let status = t.sub.is_some();
    let to_store = |v: Value| if core { events::from_core(v) } else { v };
    let result = match (method, &t.name, parsed) {
        (&Method::POST, None, Some(obj)) => {
            store.create(&res, &ns, to_store(obj)).map(|o| (201, o))
        }
        (&Method::PUT, Some(name), Some(obj)) => store
            .update(&res, &ns, name, to_store(obj), status)
            .map(|o| (200, o)),
        (&Method::PATCH, Some(name), Some(p)) => patch_object(
            &mut store,
            &res,
            &ns,
            name,
            content_type(h),
            &p,
            status,
            core,
        )
        .map(|o| (200, o)),
        (&Method::DELETE, Some(name), _) => store.delete(&res, &ns, name).map(|o| (200, o)),
        _ => Err(ApiError::new(
            400,
            "BadRequest",
            "a request body is required",
        )),
    };
    match result {
        Ok((code, o)) => json_response(code, &if core { events::to_core(o) } else { o }),
        Err(e) => error(&e),
    }
}

#[allow(clippy::too_many_arguments)]
fn patch_object(
    store: &mut Store,
    res: &Resource,
    ns: &str,
    name: &str,
    ctype: &str,
    p: &Value,
    status: bool,
    core: bool,
) -> Result<Value, ApiError> {
    let current = store.get(res, ns, name)?;
    let mut obj = if core {
        events::to_core(current.clone())
    } else {
        current.clone()
    };
    match ctype {
        "application/merge-patch+json" => patch::merge(&mut obj, p),
        "application/strategic-merge-patch+json" => patch::strategic(&mut obj, p),
        "application/json-patch+json" => patch::json_patch(&mut obj, p)
            .map_err(|e| ApiError::new(422, "Invalid", format!("JSON patch: {e}")))?,
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other})"
                ),
            ));
        }
    }
    let obj = if core { events::from_core(obj) } else { obj };
    // A patch that carries metadata.resourceVersion is an optimistic lock (upstream's CNINode
    // patch); one without it applies to whatever is current.
    store.update(res, ns, name, obj, status)
}

/// `/_emulator/faults` (GET, PUT) and `/_emulator/requests` (GET).
fn admin(s: &Shared, method: &Method, rest: &str, body: &Bytes) -> Response {
    match (method, rest) {
        (&Method::GET, "/faults") => json_response(200, &json!(*s.faults.lock().unwrap())),
        (&Method::PUT, "/faults") => match serde_json::from_slice::<Faults>(body) {
            Ok(f) if (0.0..=1.0).contains(&f.error_rate) => {
                *s.faults.lock().unwrap() = f.clone();
                json_response(200, &json!(f))
            }
            Ok(f) => error(&ApiError::new(
                400,
                "BadRequest",
                format!(
                    "error_rate {}: expected a probability from 0 to 1",
                    f.error_rate
                ),
            )),
            Err(e) => error(&ApiError::new(
                400,
                "BadRequest",
                format!("faults: {e} (fields: error_rate, latency_ms, conflicts, unauthorized)"),
            )),
        },
        (&Method::GET, "/requests") => json_response(200, &json!(*s.requests.lock().unwrap())),
        _ => error(&ApiError::new(
            404,
            "NotFound",
            format!("/_emulator{rest}: unknown"),
        )),
    }
}
