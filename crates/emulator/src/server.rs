//! The HTTP side: one loopback listener for the EC2 Query API (form-encoded POST, XML answers
//! and error documents) and one per simulated instance for IMDSv2 (token PUT with a TTL header,
//! token-checked GETs). Time is wall-clock milliseconds since start; the simulated VPC's
//! latencies are waited after each mutating call, outside the lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use vpc_cni_ipam::Time;
use vpc_cni_sim::Vpc;

use crate::ec2::{Ctx, handle};
use crate::imds::metadata;
use crate::params::Params;
use crate::xml;

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// A listener could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// State shared by the listeners.
pub struct Shared {
    /// The VPC.
    pub vpc: Arc<Mutex<Vpc>>,
    start: Instant,
    epoch: u64,
    region: String,
    requests: AtomicU64,
    tokens: Mutex<HashMap<String, Instant>>,
}

impl Shared {
    /// Serve `vpc` (its latencies are waited as they are: scale them first).
    pub fn new(vpc: Vpc, region: &str) -> Arc<Self> {
        Arc::new(Shared {
            vpc: Arc::new(Mutex::new(vpc)),
            start: Instant::now(),
            epoch: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            region: region.to_string(),
            requests: AtomicU64::new(0),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Simulated now.
    pub fn now(&self) -> Time {
        Time(self.start.elapsed().as_millis() as u64)
    }

    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        format!("00000000-0000-4000-8000-{n:012x}")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vpc> {
        self.vpc.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn xml_response(status: u16, body: String) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (code, [("content-type", "text/xml;charset=UTF-8")], body).into_response()
}

/// Largest request body accepted (EC2's own limit is far larger than anything the CNI sends).
const MAX_BODY: usize = 1 << 20;

/// The form body of an EC2 Query request, or the XML error EC2 gives for a body it cannot take.
async fn form(headers: &HeaderMap, body: axum::body::Body, rid: &str) -> Result<Params, Response> {
    let ctype = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with("application/x-www-form-urlencoded") {
        return Err(xml_response(
            415,
            xml::error(
                "UnsupportedMediaType",
                &format!(
                    "Content-Type {ctype:?} is not supported: expected application/x-www-form-urlencoded"
                ),
                rid,
            ),
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        xml_response(
            413,
            xml::error(
                "RequestEntityTooLarge",
                &format!("The request body is larger than {MAX_BODY} bytes"),
                rid,
            ),
        )
    })?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
    Ok(Params::new(pairs))
}

async fn ec2(State(s): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let rid = s.request_id();
    let p = match form(&headers, body, &rid).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let action = p.get("Action").unwrap_or("").to_string();
    let (result, wait_ms) = {
        let mut vpc = s.lock();
        let wait = match action.as_str() {
            "AssignPrivateIpAddresses" | "CreateNetworkInterface" => vpc.latency.assign_ms,
            "DetachNetworkInterface" => vpc.latency.detach_ms,
            _ => 0,
        };
        let mut ctx = Ctx {
            vpc: &mut vpc,
            now: s.now(),
            epoch: s.epoch,
        };
        (handle(&mut ctx, &action, &p), wait)
    };
    if wait_ms > 0 {
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    }
    match result {
        Ok(body) => xml_response(200, xml::response(&action, &rid, &body)),
        Err(e) => xml_response(e.status, xml::error(&e.code, &e.message, &rid)),
    }
}

async fn stats(State(s): State<Arc<Shared>>) -> Response {
    let body = serde_json::to_string(s.lock().stats()).unwrap_or_default();
    ([("content-type", "application/json")], body).into_response()
}

/// Build the EC2 router (plus `GET /_emulator/stats`: calls by action, errors by code).
pub fn ec2_router(s: Arc<Shared>) -> Router {
    Router::new()
        .route("/", post(ec2))
        .route("/_emulator/stats", get(stats))
        .with_state(s)
}

const TOKEN_TTL: &str = "x-aws-ec2-metadata-token-ttl-seconds";
/// Live IMDSv2 tokens kept at most.
const MAX_TOKENS: usize = 10_000;
const TOKEN: &str = "x-aws-ec2-metadata-token";

async fn token(State((s, _)): State<(Arc<Shared>, String)>, headers: HeaderMap) -> Response {
    let ttl = headers
        .get(TOKEN_TTL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(ttl) = ttl.filter(|t| (1..=21_600).contains(t)) else {
        return (
            StatusCode::BAD_REQUEST,
            "missing or invalid X-aws-ec2-metadata-token-ttl-seconds (1-21600)",
        )
            .into_response();
    };
    let value = format!("emu-token-{}", s.requests.fetch_add(1, Ordering::Relaxed));
    let mut tokens = s.tokens.lock().unwrap_or_else(|p| p.into_inner());
    // Expired tokens go; a client minting tokens without end cannot grow the map without bound.
    let now = Instant::now();
    tokens.retain(|_, exp| *exp > now);
    if tokens.len() >= MAX_TOKENS {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live IMDSv2 tokens; reuse one until it expires",
        )
            .into_response();
    }
    tokens.insert(value.clone(), now + Duration::from_secs(ttl));
    drop(tokens);
    ([(TOKEN_TTL, ttl.to_string())], value).into_response()
}

fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
    let Some(t) = headers.get(TOKEN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    s.tokens
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(t)
        .is_some_and(|exp| *exp > Instant::now())
}

async fn meta(
    State((s, instance)): State<(Arc<Shared>, String)>,
    headers: HeaderMap,
    path: Option<Path<String>>,
) -> Response {
    if !authorized(&s, &headers) {
        return (StatusCode::UNAUTHORIZED, "IMDSv2 token required").into_response();
    }
    let path = path.map(|p| p.0).unwrap_or_default();
    let vpc = s.lock();
    match metadata(&vpc, &instance, &s.region, &path, s.now()) {
        Some(text) => text.into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

async fn identity(
    State((s, instance)): State<(Arc<Shared>, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&s, &headers) {
        return (StatusCode::UNAUTHORIZED, "IMDSv2 token required").into_response();
    }
    let vpc = s.lock();
    let Some(i) = vpc.imds_instance(&instance) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let doc = format!(
        "{{\"accountId\":\"{}\",\"availabilityZone\":\"{}\",\"instanceId\":\"{}\",\"instanceType\":\"{}\",\"privateIp\":\"{}\",\"region\":\"{}\"}}",
        crate::ec2::OWNER,
        i.availability_zone,
        i.instance_id,
        i.instance_type,
        i.local_ipv4,
        s.region
    );
    ([("content-type", "application/json")], doc).into_response()
}

/// Build the IMDS router of one instance.
pub fn imds_router(s: Arc<Shared>, instance_id: &str) -> Router {
    Router::new()
        .route("/latest/api/token", put(token))
        .route("/latest/meta-data/", get(meta))
        .route("/latest/meta-data", get(meta))
        .route("/latest/meta-data/{*path}", get(meta))
        .route("/latest/dynamic/instance-identity/document", get(identity))
        .with_state((s, instance_id.to_string()))
}

/// Bind `addr` and serve `router` in the background; the bound address.
pub async fn serve(addr: SocketAddr, router: Router) -> Result<SocketAddr, EmulatorError> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| EmulatorError::Bind { addr, source })?;
    let bound = l
        .local_addr()
        .map_err(|source| EmulatorError::Bind { addr, source })?;
    tokio::spawn(async move { axum::serve(l, router).await });
    Ok(bound)
}
