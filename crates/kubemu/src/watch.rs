//! Watch requests: the change log from a resourceVersion (or every object as ADDED without one;
//! an ERROR event with 410 Expired past the log's start), then live changes, filtered by
//! namespace and selectors, as newline-delimited JSON until `timeoutSeconds`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::events;
use crate::state::{Shared, Target, error, selectors, storage};
use crate::store::{ApiError, rkey, with_type};

/// Answer a watch of `t`.
pub(crate) async fn watch(s: Arc<Shared>, t: Target, q: &HashMap<String, String>) -> Response {
    let (labels, fields) = match selectors(q) {
        Ok(x) => x,
        Err(e) => return error(&e),
    };
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let from = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0");
    let (rx, backlog, res, core) = {
        let store = s.store.lock().unwrap();
        let (res, core) = storage(&store, &t.res);
        let rx = store.tx.subscribe();
        let backlog = match from.map(|v| v.parse::<u64>()) {
            Some(Ok(rv)) if rv < store.oldest_watchable() => {
                let gone = ApiError::new(
                    410,
                    "Expired",
                    format!(
                        "too old resource version: {rv} ({})",
                        store.oldest_watchable()
                    ),
                );
                let line = json!({"type": "ERROR", "object": gone.status()});
                return stream_response(futures::stream::iter(vec![line]).boxed_lines());
            }
            Some(Ok(rv)) => store
                .changes_since(rv)
                .into_iter()
                .filter(|c| c.rkey == rkey(&res))
                .map(|c| (c.rv, c.namespace, c.kind, c.object))
                .collect::<Vec<_>>(),
            Some(Err(_)) => {
                return error(&ApiError::new(
                    400,
                    "BadRequest",
                    "resourceVersion: not a number",
                ));
            }
            None => store
                .list(&res, t.ns.as_deref())
                .into_iter()
                .map(|o| (store.resource_version(), String::new(), "ADDED", o))
                .collect(),
        };
        (rx, backlog, res, core)
    };
    let ns = t.ns.clone();
    let key = rkey(&res);
    let keep = move |namespace: &str, o: &Value| {
        ns.as_deref()
            .is_none_or(|n| n == namespace || n == o["metadata"]["namespace"])
            && labels.matches(o)
            && fields.matches(o)
    };
    let keep = Arc::new(keep);
    let last = backlog.iter().map(|b| b.0).max().unwrap_or(0);
    let conv = move |o: Value| {
        if core {
            events::to_core(o)
        } else {
            with_type(&res, o)
        }
    };
    let conv = Arc::new(conv);
    let (k1, c1) = (keep.clone(), conv.clone());
    let first: Vec<Value> = backlog
        .into_iter()
        .filter(|(_, ns, _, o)| k1(ns, o))
        .map(|(_, _, kind, o)| json!({"type": kind, "object": c1(o)}))
        .collect();
    use futures::StreamExt;
    let live = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(c) => return Some((c, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    })
    .filter(move |c| {
        let ok = c.rkey == key && c.rv > last && keep(&c.namespace, &c.object);
        async move { ok }
    })
    .map(move |c| json!({"type": c.kind, "object": conv(c.object)}));
    let all = futures::stream::iter(first).chain(live);
    let bounded = tokio_stream_timeout(all, timeout);
    stream_response(bounded.boxed_lines())
}

/// End a stream after `d`.
fn tokio_stream_timeout(
    s: impl futures::Stream<Item = Value> + Send + 'static,
    d: Duration,
) -> impl futures::Stream<Item = Value> + Send + 'static {
    use futures::StreamExt;
    s.take_until(tokio::time::sleep(d))
}

trait Lines {
    fn boxed_lines(self) -> futures::stream::BoxStream<'static, Result<Bytes, Infallible>>;
}

impl<S: futures::Stream<Item = Value> + Send + 'static> Lines for S {
    fn boxed_lines(self) -> futures::stream::BoxStream<'static, Result<Bytes, Infallible>> {
        use futures::StreamExt;
        self.map(|v| Ok(Bytes::from(format!("{v}\n")))).boxed()
    }
}

fn stream_response(s: futures::stream::BoxStream<'static, Result<Bytes, Infallible>>) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(s))
        .expect("valid response")
}
