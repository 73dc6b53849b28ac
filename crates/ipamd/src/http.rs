//! The HTTP endpoints: Prometheus metrics (`/metrics`) and introspection with upstream's paths
//! and JSON shapes (spec g.2).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use vpc_cni_cloud::Cloud;
use vpc_cni_ipam::Time;

use crate::state::Shared;

/// Introspection paths.
pub const PATHS: [&str; 5] = [
    "/v1/enis",
    "/v1/eni-configs",
    "/v1/networkutils-env-settings",
    "/v1/ipamd-env-settings",
    "/v1/kubernetes",
];

/// The metrics router.
pub fn metrics_router<C: Cloud>(s: Arc<Shared<C>>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<Arc<Shared<C>>>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    s.metrics.render(),
                )
            }),
        )
        .with_state(s)
}

/// The introspection router.
pub fn introspection_router<C: Cloud>(s: Arc<Shared<C>>) -> Router {
    Router::new()
        .route("/v1/enis", get(enis::<C>))
        .route("/v1/eni-configs", get(eni_configs::<C>))
        .route("/v1/kubernetes", get(kubernetes::<C>))
        .route("/v1/networkutils-env-settings", get(network_env::<C>))
        .route("/v1/ipamd-env-settings", get(ipamd_env::<C>))
        .fallback(|| async { Json(json!({ "AvailableCommands": PATHS })) })
        .with_state(s)
}

/// Upstream's `/v1/eni-configs`: the spec of the ENIConfig this node selects.
async fn eni_configs<C: Cloud>(State(s): State<Arc<Shared<C>>>) -> Response {
    let Some(k) = s.kube.client() else {
        return (StatusCode::NOT_FOUND, "no Kubernetes API server configured").into_response();
    };
    let name = crate::kube::eniconfig_name(k.as_ref());
    match k.eniconfig(&name) {
        None => (
            StatusCode::NOT_FOUND,
            format!("ENIConfig {name:?} not found"),
        )
            .into_response(),
        Some(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Some(Ok(c)) => {
            Json(json!({"securityGroups": c.security_groups, "subnet": c.subnet})).into_response()
        }
    }
}

/// The node's Kubernetes view (this project's): connection, max pods and its source, cordon,
/// taints, the ENIConfig it selects.
async fn kubernetes<C: Cloud>(State(s): State<Arc<Shared<C>>>) -> Response {
    let max_pods = s.lock().policy.limits().max_pods;
    let source = *s.kube.max_pods_source.lock().unwrap();
    let mut doc = json!({"connected": false, "maxPods": max_pods, "maxPodsSource": source});
    if let Some(k) = s.kube.client() {
        doc["connected"] = json!(true);
        if let Some(n) = k.node() {
            doc["node"] = json!(n.name);
            doc["cordoned"] = json!(n.cordoned);
            doc["taints"] = json!(n.taints);
            doc["eniConfig"] = json!(crate::kube::eniconfig_name(k.as_ref()));
            if let Some(Err(e)) = &n.max_pods {
                doc["capacityError"] = json!(e.to_string());
            }
        }
    }
    let settings = s.lock().policy.settings().clone();
    let applied = s.kube.overrides.lock().unwrap().applied.clone();
    doc["settings"] = json!(crate::overrides::sources(&settings, &applied));
    doc["customNetworking"] = json!(s.cfg.settings.custom_networking);
    if let Some(p) = s.custom.problem.lock().unwrap().as_ref() {
        doc["eniConfigProblem"] = json!(p.to_string());
    }
    Json(doc).into_response()
}

/// Serve `router` on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, router: Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router).await
}

fn env_map<C: Cloud>(s: &Shared<C>, keys: &[&str]) -> Value {
    let mut m = Map::new();
    for k in keys {
        let v = s
            .cfg
            .env_snapshot
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        m.insert((*k).to_string(), Value::String(v));
    }
    Value::Object(m)
}

/// Upstream's map of variables; a variable a Node annotation overrides shows the value in force,
/// and `VPC_CNI_NODE_OVERRIDES` names the overrides (`VAR=value (annotation)`, comma-separated).
async fn ipamd_env<C: Cloud>(State(s): State<Arc<Shared<C>>>) -> Response {
    let mut v = env_map(&s, crate::config::IPAMD_ENV);
    let settings = s.lock().policy.settings().clone();
    let applied = s.kube.overrides.lock().unwrap().applied.clone();
    let mut named = Vec::new();
    for src in crate::overrides::sources(&settings, &applied) {
        if let Some(ann) = src.source.strip_prefix("annotation ") {
            named.push(format!("{}={} ({ann})", src.variable, src.value));
            v[src.variable] = json!(src.value);
        }
    }
    v["VPC_CNI_NODE_OVERRIDES"] = json!(named.join(", "));
    Json(v).into_response()
}

async fn network_env<C: Cloud>(State(s): State<Arc<Shared<C>>>) -> Response {
    let mut v = env_map(&s, crate::config::NETWORK_ENV);
    // Upstream reports the SNAT randomisation as a number: 0 none, 1 hashrandom, 2 prng.
    let mode = match v["AWS_VPC_K8S_CNI_RANDOMIZESNAT"].as_str() {
        Some("none") => 0,
        Some("hashrandom") => 1,
        _ => 2,
    };
    v["AWS_VPC_K8S_CNI_RANDOMIZESNAT"] = json!(mode);
    Json(v).into_response()
}

/// Go's `net.IPNet` JSON: IP string and base64 mask.
fn ipnet_json(net: &ipnet::Ipv4Net) -> Value {
    json!({ "IP": net.network().to_string(), "Mask": base64(&u32::from(net.netmask()).to_be_bytes()) })
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 3339 UTC from Unix milliseconds (Go's zero time when absent).
pub fn rfc3339(t: Option<Time>) -> String {
    let Some(t) = t else {
        return "0001-01-01T00:00:00Z".into();
    };
    t.rfc3339(false)
}

/// The /80 of an IPv6 node as upstream's `IPv6Cidrs` map.
fn v6_cidrs(p: &vpc_cni_ipam::V6Pool) -> serde_json::Value {
    let net = p.prefix();
    let mut addrs = Map::new();
    for (k, ip, a) in p.assignments() {
        addrs.insert(
            ip.to_string(),
            json!({
                "Address": ip.to_string(),
                "IPAMKey": { "networkName": k.network_name, "containerID": "", "ifName": "" },
                "IPAMMetadata": a.metadata,
                "AssignedTime": rfc3339(Some(a.assigned_at)),
                "UnassignedTime": rfc3339(a.unassigned_at),
            }),
        );
    }
    json!({ net.to_string(): {
        "Cidr": { "IP": net.network().to_string(), "Mask": base64(&net.netmask().octets()) },
        "IPAddresses": addrs,
        "IsPrefix": true,
        "AddressFamily": "6",
    }})
}

async fn enis<C: Cloud>(State(s): State<Arc<Shared<C>>>) -> Response {
    let origins = s.custom.origins.lock().unwrap().clone();
    let node = s.lock();
    let (total, assigned, _) = node.ds.counters();
    let mut enis = Map::new();
    for e in node.ds.enis() {
        let mut cidrs = Map::new();
        for c in e.cidrs.values() {
            let mut addrs = Map::new();
            for (ip, a) in &c.addresses {
                // containerID and ifName are blanked since v1.23.0 (they allowed forging DELs).
                let key = a.key.as_ref().map_or(
                    json!({}),
                    |k| json!({ "networkName": k.network_name, "containerID": "", "ifName": "" }),
                );
                addrs.insert(
                    ip.to_string(),
                    json!({
                        "Address": ip.to_string(),
                        "IPAMKey": key,
                        "IPAMMetadata": a.metadata,
                        "AssignedTime": rfc3339(Some(a.assigned_at)),
                        "UnassignedTime": rfc3339(a.unassigned_at),
                    }),
                );
            }
            cidrs.insert(
                c.net.to_string(),
                json!({
                    "Cidr": ipnet_json(&c.net),
                    "IPAddresses": addrs,
                    "IsPrefix": c.is_prefix,
                    "AddressFamily": "4",
                }),
            );
        }
        enis.insert(
            e.id.clone(),
            json!({
                "ID": e.id,
                "IsPrimary": e.is_primary,
                "IsTrunk": e.is_trunk,
                "IsEFA": e.is_efa,
                "DeviceNumber": e.device_number,
                "AvailableIPv4Cidrs": cidrs,
                "IPv6Cidrs": node.ds.v6().filter(|p| p.eni() == e.id).map_or(json!({}), v6_cidrs),
                "IsExcludedForPodIPs": e.excluded,
                "RouteTableID": e.route_table_id,
                "SubnetID": e.subnet_id,
                // This project's: the ENIConfig an ENI of this run was made from.
                "ENIConfig": origins.get(&e.id).cloned().unwrap_or_default(),
            }),
        );
    }
    Json(json!({ "0": { "TotalIPs": total, "AssignedIPs": assigned, "ENIs": enis } }))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_shapes() {
        assert_eq!(base64(&[255, 255, 255, 255]), "/////w==");
        assert_eq!(base64(&[255, 255, 255, 240]), "////8A==");
        assert_eq!(rfc3339(None), "0001-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Some(Time(1_724_000_000_000))),
            "2024-08-18T16:53:20Z"
        );
        assert_eq!(rfc3339(Some(Time(951_782_400_000))), "2000-02-29T00:00:00Z");
    }
}
