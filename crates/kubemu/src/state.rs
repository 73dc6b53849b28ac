//! What the request handlers share: the store behind its lock, the token, injected faults, the
//! request counters, and the request vocabulary both the plain handlers and the watch use (the
//! parsed target, selectors, error replies, the storage a resource lives in).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use serde_json::Value;

use crate::resources::Resource;
use crate::select::Selector;
use crate::store::{ApiError, Store};

/// Faults injected into API requests (not into `/version` or `/_emulator`).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct Faults {
    /// Probability of a 500 InternalError per request.
    pub error_rate: f64,
    /// Latency added to every request, in milliseconds.
    pub latency_ms: u64,
    /// The next this many writes (PUT, PATCH) fail with 409 Conflict.
    pub conflicts: u32,
    /// Every request fails with 401 (as with a revoked token).
    pub unauthorized: bool,
}

/// State shared by the handlers.
pub struct Shared {
    /// The objects.
    pub store: Mutex<Store>,
    /// The bearer token clients must present.
    pub token: String,
    /// Injected faults.
    pub faults: Mutex<Faults>,
    rng: Mutex<u64>,
    /// Requests served, by verb and resource (for request-rate figures).
    pub requests: Mutex<HashMap<String, u64>>,
}

impl Shared {
    /// A new store behind `token`.
    pub fn new(token: &str) -> Arc<Self> {
        Arc::new(Shared {
            store: Mutex::new(Store::new()),
            token: token.into(),
            faults: Mutex::new(Faults::default()),
            rng: Mutex::new(0x2545_f491_4f6c_dd1d),
            requests: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn chance(&self, p: f64) -> bool {
        let mut r = self.rng.lock().unwrap();
        *r ^= *r << 13;
        *r ^= *r >> 7;
        *r ^= *r << 17;
        ((*r >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// A reply of `content_type`.
pub(crate) fn response(code: u16, content_type: &str, body: Vec<u8>) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("valid response")
}

pub(crate) fn json_response(code: u16, v: &Value) -> Response {
    response(code, "application/json", v.to_string().into_bytes())
}

pub(crate) fn error(e: &ApiError) -> Response {
    json_response(e.code, &e.status())
}

/// What a resource path names.
pub(crate) struct Target {
    pub(crate) res: Resource,
    pub(crate) ns: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) sub: Option<String>,
}

/// Core Events live in events.k8s.io storage.
pub(crate) fn storage(store: &Store, r: &Resource) -> (Resource, bool) {
    if r.group.is_empty() && r.plural == "events" {
        (
            store
                .find("events.k8s.io", "v1", "events")
                .expect("built in"),
            true,
        )
    } else {
        (r.clone(), false)
    }
}

pub(crate) fn selectors(q: &HashMap<String, String>) -> Result<(Selector, Selector), ApiError> {
    let bad = |e| ApiError::new(400, "BadRequest", e);
    Ok((
        Selector::labels(q.get("labelSelector").map_or("", String::as_str)).map_err(bad)?,
        Selector::fields(q.get("fieldSelector").map_or("", String::as_str)).map_err(bad)?,
    ))
}
