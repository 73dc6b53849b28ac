//! The gRPC services ipamd serves on its unix socket: `rpc.CNIBackend` (AddNetwork, DelNetwork,
//! with the client-version handshake) and `rpc.ConfigServerBackend`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tonic::{Request, Response, Status};
use vpc_cni_cloud::Cloud;
use vpc_cni_ipam::policy::PoolPolicy;
use vpc_cni_ipam::{Assignment, DatastoreError, IpamKey, PodMetadata};
use vpc_cni_proto::rpc::{
    self, AddNetworkReply, AddNetworkRequest, DelNetworkReply, DelNetworkRequest,
    IpAllocationMetadata, NetworkPolicyAgentConfigReply,
};

use vpc_cni_proto::vpccni::{self, CheckNetworkReply, CheckNetworkRequest, GcReply, GcRequest};

use crate::state::{Shared, now};

/// Upstream's message for a DEL of a key it does not know (the plugin treats it as success).
pub const UNKNOWN_POD: &str = "datastore: unknown pod";

/// `rpc.CNIBackend` and `rpc.ConfigServerBackend` over the shared daemon state.
pub struct Service<C: Cloud> {
    shared: Arc<Shared<C>>,
}

impl<C: Cloud> Service<C> {
    /// Serve `shared`.
    pub fn new(shared: Arc<Shared<C>>) -> Self {
        Service { shared }
    }

    fn check_version(&self, client: &str) -> Result<(), Status> {
        let server = &self.shared.cfg.version;
        if client != server {
            return Err(Status::failed_precondition(format!(
                "wrong client version {client:?} (!= {server:?})"
            )));
        }
        Ok(())
    }

    /// Assign and persist: a failed checkpoint write undoes the assignment without cooldown
    /// (the retried ADD gets the same address, as upstream). `Ok(None)`: no free address.
    fn assign_persisted(
        &self,
        k: &IpamKey,
        meta: &PodMetadata,
    ) -> Result<Option<(Assignment, bool)>, Status> {
        let s = &self.shared;
        let mut node = s.lock();
        let had = node.ds.lookup(k).is_some();
        match node.ds.assign(k, meta.clone(), now()) {
            Ok(a) => {
                if !had && let Err(e) = s.checkpoint.write(&node.ds) {
                    node.ds.unassign_without_cooldown(k);
                    tracing::error!(error = %e, "checkpoint write failed; assignment rolled back");
                    return Err(Status::internal(format!(
                        "failed to persist the assignment: {e}"
                    )));
                }
                s.update_gauges(&node);
                Ok(Some((a, !had)))
            }
            Err(DatastoreError::NoAvailableAddress) => {
                if node.policy.refill_on_miss() {
                    s.refill.notify_one();
                }
                Ok(None)
            }
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }

    /// [`Service::assign_persisted`], then make sure no live pod on the host routes the new
    /// address; one that does keeps it (held for its veth) and the pod gets another.
    async fn assign_checked(
        &self,
        k: &IpamKey,
        meta: PodMetadata,
    ) -> Result<Option<Assignment>, Status> {
        let s = &self.shared;
        for _ in 0..8 {
            let Some((a, fresh)) = self.assign_persisted(k, &meta)? else {
                return Ok(None);
            };
            if !fresh {
                return Ok(Some(a));
            }
            let Some(veth) = crate::owners::taken_on_host(s, a.ip).await else {
                return Ok(Some(a));
            };
            let mut node = s.lock();
            node.ds.unassign_without_cooldown(k);
            let _ = node.ds.hold(
                crate::owners::host_key(&veth),
                a.ip,
                PodMetadata::default(),
                now(),
            );
            if let Err(e) = s.checkpoint.write(&node.ds) {
                return Err(Status::internal(format!(
                    "failed to persist a held address: {e}"
                )));
            }
            s.update_gauges(&node);
        }
        Err(Status::internal(
            "every address tried is routed to a live pod on the host",
        ))
    }

    fn vpc_cidrs(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .shared
            .meta
            .vpc_cidrs
            .iter()
            .map(|c| c.to_string())
            .collect();
        if !self.shared.cfg.external_snat {
            v.extend(
                self.shared
                    .cfg
                    .exclude_snat_cidrs
                    .iter()
                    .map(|c| c.to_string()),
            );
        }
        v
    }
}

/// Refuse what neither the CNI spec nor Kubernetes can produce, so a hostile or broken client
/// cannot store (and rewrite into every later checkpoint) megabytes per entry: container IDs of
/// up to 256 characters of `[A-Za-z0-9_.-]` (runtimes use 64 hex digits), network names of up
/// to 253 such characters, interface names of up to 15 bytes without `/` or whitespace (the
/// kernel's limit), pod names of up to 253 and namespaces of up to 63 bytes.
fn check_key(
    call: &str,
    network: &str,
    container: &str,
    if_name: &str,
    namespace: &str,
    pod: &str,
) -> Result<(), Status> {
    let plain = |v: &str| {
        v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    };
    let checks: [(&str, &str, usize, bool, &str); 5] = [
        (
            "ContainerID",
            container,
            256,
            plain(container),
            "[A-Za-z0-9_.-]",
        ),
        (
            "NetworkName",
            network,
            253,
            plain(network),
            "[A-Za-z0-9_.-]",
        ),
        (
            "IfName",
            if_name,
            15,
            !if_name
                .bytes()
                .any(|b| b == b'/' || b.is_ascii_whitespace()),
            "no '/' or whitespace",
        ),
        ("K8S_POD_NAMESPACE", namespace, 63, true, ""),
        ("K8S_POD_NAME", pod, 253, true, ""),
    ];
    for (name, v, max, chars_ok, rule) in checks {
        let required = !name.starts_with("K8S");
        if required && v.is_empty() {
            return Err(Status::invalid_argument(format!("{call}: {name} is empty")));
        }
        if v.len() > max {
            return Err(Status::invalid_argument(format!(
                "{call}: {name} is {} bytes long; at most {max}",
                v.len()
            )));
        }
        if !chars_ok {
            return Err(Status::invalid_argument(format!(
                "{call}: {name} {:?} has characters outside {rule}",
                v.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// The address a reply carries: IPv4, or IPv6 on an IPv6 node.
fn reply_ip(m: &IpAllocationMetadata) -> &str {
    if m.i_pv4_addr.is_empty() {
        &m.i_pv6_addr
    } else {
        &m.i_pv4_addr
    }
}

fn key(network: &str, container: &str, if_name: &str) -> IpamKey {
    IpamKey::new(network, container, if_name)
}

#[tonic::async_trait]
impl<C: Cloud> rpc::cni_backend_server::CniBackend for Service<C> {
    async fn add_network(
        &self,
        request: Request<AddNetworkRequest>,
    ) -> Result<Response<AddNetworkReply>, Status> {
        let started = std::time::Instant::now();
        let r = request.into_inner();
        let out = self.add_inner(&r).await;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match &out {
            Ok(reply) if reply.success => {
                let ip = reply_ip(&reply.ip_allocation_metadata[0]);
                tracing::info!(ip = %ip, pod = %r.k8s_pod_name, namespace = %r.k8s_pod_namespace, container = %r.container_id, ms, "AddNetwork assigned");
                crate::kube::pod_ip_added(&self.shared, &r.k8s_pod_namespace, &r.k8s_pod_name, ip);
            }
            Ok(_) => {
                crate::kube::pod_waiting(&self.shared);
                let pool = {
                    let node = self.shared.lock();
                    node.policy.describe(&node.ds, now())
                };
                tracing::error!(pod = %r.k8s_pod_name, namespace = %r.k8s_pod_namespace, container = %r.container_id, ms, pool = %pool, "AddNetwork: no available IP/Prefix addresses");
            }
            Err(st) => {
                tracing::warn!(pod = %r.k8s_pod_name, container = %r.container_id, code = ?st.code(), error = %st.message(), ms, "AddNetwork failed");
            }
        }
        out.map(Response::new)
    }

    async fn del_network(
        &self,
        request: Request<DelNetworkRequest>,
    ) -> Result<Response<DelNetworkReply>, Status> {
        let started = std::time::Instant::now();
        let r = request.into_inner();
        let out = self.del_inner(&r);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match &out {
            Ok(reply) => {
                let ip = reply_ip(&reply.ip_allocation_metadata[0]);
                tracing::info!(ip = %ip, container = %r.container_id, reason = %r.reason, ms, "DelNetwork released");
                crate::kube::pod_ip_released(
                    &self.shared,
                    &r.k8s_pod_namespace,
                    &r.k8s_pod_name,
                    ip,
                );
            }
            Err(st) if st.message() == UNKNOWN_POD => {
                tracing::info!(container = %r.container_id, reason = %r.reason, ms, "DelNetwork: unknown pod");
            }
            Err(st) => {
                tracing::warn!(container = %r.container_id, code = ?st.code(), error = %st.message(), ms, "DelNetwork failed");
            }
        }
        out.map(Response::new)
    }
}

impl<C: Cloud> Service<C> {
    async fn add_inner(&self, r: &AddNetworkRequest) -> Result<AddNetworkReply, Status> {
        self.check_version(&r.client_version)?;
        let s = &self.shared;
        s.metrics.inc("awscni_add_ip_req_count", &[]);
        if s.terminating.load(Ordering::SeqCst) {
            return Err(Status::unavailable("ipamd is shutting down"));
        }
        check_key(
            "AddNetwork",
            &r.network_name,
            &r.container_id,
            &r.if_name,
            &r.k8s_pod_namespace,
            &r.k8s_pod_name,
        )?;
        if r.requires_multi_nic_attachment {
            return Err(Status::invalid_argument(
                "AddNetwork: multi-NIC attachment requested but ENABLE_MULTI_NIC is not enabled",
            ));
        }
        if s.cfg.settings.enable_pod_eni
            && s.kube
                .client()
                .is_some_and(|c| c.pod_has_branch_eni(&r.k8s_pod_namespace, &r.k8s_pod_name))
        {
            // Its security groups live on a branch ENI; an address of the node's would bypass
            // them. Refused, not downgraded.
            return Err(Status::failed_precondition(format!(
                "AddNetwork: pod {}/{} has a branch ENI (vpc.amazonaws.com/pod-eni, security groups for pods): this daemon does not set up branch ENIs yet",
                r.k8s_pod_namespace, r.k8s_pod_name
            )));
        }
        let k = key(&r.network_name, &r.container_id, &r.if_name);
        let meta = PodMetadata {
            namespace: r.k8s_pod_namespace.clone(),
            name: r.k8s_pod_name.clone(),
            interfaces_count: 1,
        };
        if s.cfg.ipv6 {
            return crate::v6::add(s, &k, meta);
        }
        let assigned = self.assign_checked(&k, meta).await?;
        let mut reply = AddNetworkReply {
            use_external_snat: s.cfg.external_snat,
            vp_cv4_cid_rs: self.vpc_cidrs(),
            network_policy_mode: s.cfg.network_policy_mode.clone(),
            ..Default::default()
        };
        match assigned {
            Some(a) => {
                reply.success = true;
                reply.ip_allocation_metadata.push(IpAllocationMetadata {
                    i_pv4_addr: a.ip.to_string(),
                    device_number: a.device_number as i32,
                    route_table_id: a.route_table_id as i32,
                    ..Default::default()
                });
            }
            None => s.metrics.inc("awscni_no_available_ip_addresses", &[]),
        }
        Ok(reply)
    }

    fn del_inner(&self, r: &DelNetworkRequest) -> Result<DelNetworkReply, Status> {
        self.check_version(&r.client_version)?;
        check_key(
            "DelNetwork",
            &r.network_name,
            &r.container_id,
            &r.if_name,
            &r.k8s_pod_namespace,
            &r.k8s_pod_name,
        )?;
        let s = &self.shared;
        s.metrics
            .inc("awscni_del_ip_req_count", &[("reason", r.reason.as_str())]);
        let k = key(&r.network_name, &r.container_id, &r.if_name);
        if s.cfg.ipv6 {
            return crate::v6::del(s, &k)?.ok_or_else(|| Status::unknown(UNKNOWN_POD));
        }
        let released = {
            let mut node = s.lock();
            let Some(rel) = node.ds.unassign(&k, now()) else {
                return Err(Status::unknown(UNKNOWN_POD));
            };
            if let Err(e) = s.checkpoint.write(&node.ds) {
                let meta = PodMetadata {
                    namespace: r.k8s_pod_namespace.clone(),
                    name: r.k8s_pod_name.clone(),
                    interfaces_count: 1,
                };
                let _ = node.ds.hold(k.clone(), rel.ip, meta, now());
                tracing::error!(error = %e, "checkpoint write failed; release rolled back");
                return Err(Status::internal(format!(
                    "failed to persist the release: {e}"
                )));
            }
            s.update_gauges(&node);
            rel
        };
        Ok(DelNetworkReply {
            success: true,
            ip_allocation_metadata: vec![IpAllocationMetadata {
                i_pv4_addr: released.ip.to_string(),
                device_number: released.device_number as i32,
                route_table_id: released.route_table_id as i32,
                ..Default::default()
            }],
            network_policy_mode: s.cfg.network_policy_mode.clone(),
            ..Default::default()
        })
    }
}

#[tonic::async_trait]
impl<C: Cloud> rpc::config_server_backend_server::ConfigServerBackend for Service<C> {
    async fn get_network_policy_configs(
        &self,
        _: Request<()>,
    ) -> Result<Response<NetworkPolicyAgentConfigReply>, Status> {
        let s = &self.shared;
        Ok(Response::new(NetworkPolicyAgentConfigReply {
            network_policy_mode: s.cfg.network_policy_mode.clone(),
            multi_nic_enabled: false,
            node_i_pv4: s.meta.primary_ip.to_string(),
            node_i_pv6: String::new(),
            instance_id: s.meta.instance_id.clone(),
            region: s.meta.region.clone(),
        }))
    }
}

#[tonic::async_trait]
impl<C: Cloud> vpccni::pod_addresses_server::PodAddresses for Service<C> {
    async fn check_network(
        &self,
        request: Request<CheckNetworkRequest>,
    ) -> Result<Response<CheckNetworkReply>, Status> {
        let r = request.into_inner();
        self.check_version(&r.client_version)?;
        check_key(
            "CheckNetwork",
            &r.network_name,
            &r.container_id,
            &r.if_name,
            "",
            "",
        )?;
        let k = key(&r.network_name, &r.container_id, &r.if_name);
        let node = self.shared.lock();
        // An IPv6 node answers with the pod's IPv6 address (in the same field).
        let ip = match node.ds.v6() {
            Some(v6) => v6.lookup(&k).map(std::net::IpAddr::V6),
            None => node.ds.address_of(&k).map(std::net::IpAddr::V4),
        };
        Ok(Response::new(CheckNetworkReply {
            assigned: ip.is_some(),
            i_pv4_addr: ip.map(|ip| ip.to_string()).unwrap_or_default(),
        }))
    }
}

#[tonic::async_trait]
impl<C: Cloud> vpccni::pod_gc_server::PodGc for Service<C> {
    async fn garbage_collect(
        &self,
        request: Request<GcRequest>,
    ) -> Result<Response<GcReply>, Status> {
        let r = request.into_inner();
        self.check_version(&r.client_version)?;
        check_key("GarbageCollect", &r.network_name, "gc", "eth0", "", "")?;
        let mut valid = std::collections::BTreeSet::new();
        for a in &r.valid {
            check_key(
                "GarbageCollect",
                &r.network_name,
                &a.container_id,
                &a.if_name,
                "",
                "",
            )?;
            valid.insert((a.container_id.clone(), a.if_name.clone()));
        }
        let released = crate::gc::release_invalid(&self.shared, &r.network_name, &valid)
            .map_err(|e| Status::internal(format!("failed to persist the release: {e}")))?;
        Ok(Response::new(GcReply {
            released: released
                .iter()
                .map(|x| IpAllocationMetadata {
                    i_pv4_addr: x.ip.to_string(),
                    device_number: x.device_number as i32,
                    route_table_id: x.route_table_id as i32,
                    ..Default::default()
                })
                .collect(),
        }))
    }
}
