//! The gRPC services ipamd serves on its unix socket: `rpc.CNIBackend` (AddNetwork, DelNetwork,
//! with the client-version handshake) and `rpc.ConfigServerBackend`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tonic::{Request, Response, Status};
use vpc_cni_cloud::Cloud;
use vpc_cni_ipam::{DatastoreError, IpamKey, PodMetadata};
use vpc_cni_proto::rpc::{
    self, AddNetworkReply, AddNetworkRequest, DelNetworkReply, DelNetworkRequest,
    IpAllocationMetadata, NetworkPolicyAgentConfigReply,
};

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

fn key(network: &str, container: &str, if_name: &str) -> IpamKey {
    IpamKey::new(network, container, if_name)
}

#[tonic::async_trait]
impl<C: Cloud> rpc::cni_backend_server::CniBackend for Service<C> {
    async fn add_network(
        &self,
        request: Request<AddNetworkRequest>,
    ) -> Result<Response<AddNetworkReply>, Status> {
        let r = request.into_inner();
        self.check_version(&r.client_version)?;
        let s = &self.shared;
        s.metrics.inc("awscni_add_ip_req_count", &[]);
        if s.terminating.load(Ordering::SeqCst) {
            return Err(Status::unavailable("ipamd is shutting down"));
        }
        for (name, v) in [
            ("ContainerID", &r.container_id),
            ("IfName", &r.if_name),
            ("NetworkName", &r.network_name),
        ] {
            if v.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "AddNetwork: {name} is empty"
                )));
            }
        }
        if r.requires_multi_nic_attachment {
            return Err(Status::invalid_argument(
                "AddNetwork: multi-NIC attachment requested but ENABLE_MULTI_NIC is not enabled",
            ));
        }
        let k = key(&r.network_name, &r.container_id, &r.if_name);
        let meta = PodMetadata {
            namespace: r.k8s_pod_namespace.clone(),
            name: r.k8s_pod_name.clone(),
            interfaces_count: 1,
        };
        let assigned = {
            let mut node = s.lock();
            let had = node.ds.lookup(&k).is_some();
            match node.ds.assign(&k, meta, now()) {
                Ok(a) => {
                    if !had && let Err(e) = s.checkpoint.write(&node.ds) {
                        node.ds.unassign(&k, now());
                        tracing::error!(error = %e, "checkpoint write failed; assignment rolled back");
                        return Err(Status::internal(format!(
                            "failed to persist the assignment: {e}"
                        )));
                    }
                    s.update_gauges(&node);
                    Some(a)
                }
                Err(DatastoreError::NoAvailableAddress) => None,
                Err(e) => return Err(Status::internal(e.to_string())),
            }
        };
        let mut reply = AddNetworkReply {
            use_external_snat: s.cfg.external_snat,
            vp_cv4_cid_rs: self.vpc_cidrs(),
            network_policy_mode: s.cfg.network_policy_mode.clone(),
            ..Default::default()
        };
        match assigned {
            Some(a) => {
                tracing::info!(ip = %a.ip, eni = %a.eni_id, pod = %r.k8s_pod_name, namespace = %r.k8s_pod_namespace, container = %r.container_id, "AddNetwork assigned");
                reply.success = true;
                reply.ip_allocation_metadata.push(IpAllocationMetadata {
                    i_pv4_addr: a.ip.to_string(),
                    device_number: a.device_number as i32,
                    route_table_id: a.route_table_id as i32,
                    ..Default::default()
                });
            }
            None => {
                s.metrics.inc("awscni_no_available_ip_addresses", &[]);
                tracing::error!(container = %r.container_id, "AssignPodIPv4Address: no available IP/Prefix addresses");
            }
        }
        Ok(Response::new(reply))
    }

    async fn del_network(
        &self,
        request: Request<DelNetworkRequest>,
    ) -> Result<Response<DelNetworkReply>, Status> {
        let r = request.into_inner();
        self.check_version(&r.client_version)?;
        let s = &self.shared;
        s.metrics
            .inc("awscni_del_ip_req_count", &[("reason", r.reason.as_str())]);
        let k = key(&r.network_name, &r.container_id, &r.if_name);
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
                let _ = node.ds.restore(k.clone(), rel.ip, meta, now());
                tracing::error!(error = %e, "checkpoint write failed; release rolled back");
                return Err(Status::internal(format!(
                    "failed to persist the release: {e}"
                )));
            }
            s.update_gauges(&node);
            rel
        };
        tracing::info!(ip = %released.ip, container = %r.container_id, reason = %r.reason, "DelNetwork released");
        Ok(Response::new(DelNetworkReply {
            success: true,
            ip_allocation_metadata: vec![IpAllocationMetadata {
                i_pv4_addr: released.ip.to_string(),
                device_number: released.device_number as i32,
                route_table_id: released.route_table_id as i32,
                ..Default::default()
            }],
            network_policy_mode: s.cfg.network_policy_mode.clone(),
            ..Default::default()
        }))
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
