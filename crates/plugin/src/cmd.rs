//! ADD, DEL, CHECK and STATUS of `aws-cni` (spec e.3/e.4), generic over the daemon
//! ([`Ipamd`]) and the kernel ([`PodNetwork`]) so that every path runs against fakes too.

use std::net::IpAddr;

use serde_json::Value;
use vpc_cni_cni::{
    CniEnv, CniError, Code, NetConf, PodIp, add_result, dummy_name, host_veth_name, parse_prev,
};
use vpc_cni_dataplane::pod::{PodNetwork, PodSpec};
use vpc_cni_proto::rpc::{AddNetworkRequest, DelNetworkRequest, IpAllocationMetadata};
use vpc_cni_proto::vpccni::{Attachment, CheckNetworkRequest, GcRequest};

use crate::ipamd::{Ipamd, IpamdError};
use crate::log::{Level, Logger};

/// Substring of the daemon's error for a pod it does not know (DEL is then a success).
pub const UNKNOWN_POD: &str = "datastore: unknown pod";
/// The version this plugin sends in `ClientVersion` (the daemon insists on its own).
pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything a command needs.
pub struct Ctx<'a, I, N> {
    /// Network configuration.
    pub conf: &'a NetConf,
    /// `CNI_*` environment.
    pub env: &'a CniEnv,
    /// The daemon.
    pub ipamd: &'a I,
    /// The kernel.
    pub net: &'a N,
    /// The log.
    pub log: &'a Logger,
}

fn internal(msg: impl Into<String>) -> CniError {
    CniError::new(Code::Internal, msg)
}

/// The pod address of one reply entry: `IPv4Addr`, or `IPv6Addr` from an IPv6 node.
fn reply_ip(m: &IpAllocationMetadata) -> Result<IpAddr, CniError> {
    let (family, text) = if m.i_pv4_addr.is_empty() && !m.i_pv6_addr.is_empty() {
        ("IPv6", &m.i_pv6_addr)
    } else {
        ("IPv4", &m.i_pv4_addr)
    };
    let ip: Option<IpAddr> = match family {
        "IPv6" => text.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        _ => text.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    };
    ip.ok_or_else(|| {
        internal(format!(
            "ipamd returned an invalid {family} address {text:?}"
        ))
    })
}

impl<I: Ipamd, N: PodNetwork> Ctx<'_, I, N> {
    fn pod(&self) -> (&str, &str) {
        (
            self.env.arg("K8S_POD_NAMESPACE"),
            self.env.arg("K8S_POD_NAME"),
        )
    }

    fn spec(&self, i: usize, ip: IpAddr, table: i32) -> PodSpec {
        let (ns, name) = self.pod();
        PodSpec {
            ip,
            route_table: u32::try_from(table).unwrap_or(0),
            host_veth: host_veth_name(&self.conf.veth_prefix, ns, name, i),
            container_if: if i == 0 {
                self.env.if_name.clone()
            } else {
                format!("mNicIf{i}")
            },
            mtu: self.conf.mtu,
            index: i,
        }
    }

    fn specs(&self, ips: &[IpAllocationMetadata]) -> Result<Vec<PodSpec>, CniError> {
        ips.iter()
            .enumerate()
            .map(|(i, m)| Ok(self.spec(i, reply_ip(m)?, m.route_table_id)))
            .collect()
    }

    fn del_request(&self, reason: &str) -> DelNetworkRequest {
        let (ns, name) = self.pod();
        DelNetworkRequest {
            k8s_pod_name: name.into(),
            k8s_pod_namespace: ns.into(),
            k8s_pod_infra_container_id: self.env.arg("K8S_POD_INFRA_CONTAINER_ID").into(),
            reason: reason.into(),
            if_name: self.env.if_name.clone(),
            network_name: self.conf.name.clone(),
            container_id: self.env.container_id.clone(),
            client_version: CLIENT_VERSION.into(),
            k8s_pod_uid: self.env.arg("K8S_POD_UID").into(),
        }
    }

    /// ADD: an address from ipamd, the pod wired, the result in the conflist's version.
    pub async fn add(&self) -> Result<Value, CniError> {
        let (ns, name) = self.pod();
        let req = AddNetworkRequest {
            k8s_pod_name: name.into(),
            k8s_pod_namespace: ns.into(),
            k8s_pod_infra_container_id: self.env.arg("K8S_POD_INFRA_CONTAINER_ID").into(),
            netns: self.env.netns.clone(),
            if_name: self.env.if_name.clone(),
            network_name: self.conf.name.clone(),
            container_id: self.env.container_id.clone(),
            client_version: CLIENT_VERSION.into(),
            requires_multi_nic_attachment: self.conf.multi_nic(),
        };
        let started = std::time::Instant::now();
        let reply = self.ipamd.add(req).await.map_err(|e| {
            let code = match e {
                IpamdError::Unreachable { .. } => Code::TryAgainLater,
                IpamdError::Rpc(_) => Code::Internal,
            };
            CniError::new(
                code,
                format!("add cmd: Error received from AddNetwork gRPC call: {e}"),
            )
        })?;
        if !reply.success || reply.ip_allocation_metadata.is_empty() {
            self.log.log(
                Level::Error,
                &format!(
                    "Failed to assign an IP address to container {}",
                    self.env.container_id
                ),
            );
            return Err(internal(
                "add cmd: failed to assign an IP address to container",
            ));
        }
        let specs = self.specs(&reply.ip_allocation_metadata)?;
        let rpc_done = started.elapsed();
        if let Err(e) = self.net.setup(&self.env.netns, &specs).await {
            self.log.log(
                Level::Error,
                &format!(
                    "setup of {} failed: {e}; rolling back",
                    self.env.container_id
                ),
            );
            for t in self.net.teardown(Some(&self.env.netns), &specs).await {
                self.log.log(Level::Warn, &format!("rollback: {t}"));
            }
            if let Err(d) = self.ipamd.del(self.del_request("SetupNSFailed")).await {
                self.log
                    .log(Level::Error, &format!("rollback: DelNetwork failed: {d}"));
            }
            return Err(internal(format!(
                "add command: failed to setup network: {e}"
            )));
        }
        if !reply.network_policy_mode.is_empty() {
            self.log.log(Level::Warn, &format!(
                "NetworkPolicyMode {:?} requested but no network policy agent is supported; pod left unenforced",
                reply.network_policy_mode
            ));
        }
        let ips: Vec<PodIp> = specs
            .iter()
            .zip(&reply.ip_allocation_metadata)
            .map(|(s, m)| PodIp {
                ip: s.ip,
                route_table: m.route_table_id,
                device_number: m.device_number,
                host_veth: s.host_veth.clone(),
                container_if: s.container_if.clone(),
                dummy: dummy_name(self.pod().0, self.pod().1, s.index),
                vlan_id: 0,
            })
            .collect();
        self.log.log(
            Level::Info,
            &format!(
                "ADD {} {}/{}: {} (ipamd {:.2} ms, wiring {:.2} ms)",
                self.env.container_id,
                ns,
                name,
                ips.iter()
                    .map(|p| p.ip.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                rpc_done.as_secs_f64() * 1e3,
                (started.elapsed() - rpc_done).as_secs_f64() * 1e3,
            ),
        );
        Ok(add_result(&self.conf.cni_version, &self.env.netns, &ips))
    }

    fn prev_specs(&self) -> Vec<PodSpec> {
        self.conf
            .prev_result
            .as_ref()
            .map(parse_prev)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, p)| self.spec(i, p.ip, p.route_table))
            .collect()
    }

    async fn teardown_logged(&self, specs: &[PodSpec]) {
        for e in self.net.teardown(Some(&self.env.netns), specs).await {
            self.log
                .log(Level::Warn, &format!("DEL {}: {e}", self.env.container_id));
        }
    }

    /// DEL: release through ipamd and unwire; idempotent and best-effort.
    pub async fn del(&self) -> Result<(), CniError> {
        match self.ipamd.del(self.del_request("PodDeleted")).await {
            Ok(reply) if reply.success => {
                let specs = self.specs(&reply.ip_allocation_metadata)?;
                self.teardown_logged(&specs).await;
                Ok(())
            }
            Ok(_) => Err(internal("del cmd: failed to process delete request")),
            Err(IpamdError::Rpc(s)) if s.message().contains(UNKNOWN_POD) => {
                self.log.log(
                    Level::Info,
                    &format!(
                        "DEL {}: unknown to ipamd; nothing to release",
                        self.env.container_id
                    ),
                );
                self.teardown_logged(&self.prev_specs()).await;
                Ok(())
            }
            Err(e) => {
                // Kubelet may never retry a failed DEL; ipamd reclaims the address from its
                // checkpoint later, so unwire what prevResult describes and succeed.
                self.log.log(
                    Level::Error,
                    &format!(
                        "DEL {}: {e}; tearing down from prevResult",
                        self.env.container_id
                    ),
                );
                self.teardown_logged(&self.prev_specs()).await;
                Ok(())
            }
        }
    }

    /// CHECK: the interface, address, routes, neighbour and host rules of prevResult exist.
    pub async fn check(&self) -> Result<(), CniError> {
        let old = matches!(
            self.conf.cni_version.as_str(),
            "0.1.0" | "0.2.0" | "0.3.0" | "0.3.1"
        );
        if old {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "config version {:?} does not allow CHECK",
                    self.conf.cni_version
                ),
            ));
        }
        let specs = self.prev_specs();
        if specs.is_empty() {
            return Err(CniError::new(
                Code::InvalidNetworkConfig,
                "invalid network configuration: prevResult: CHECK needs the ADD result with at least one address",
            ));
        }
        let missing = self
            .net
            .check(&self.env.netns, &specs)
            .await
            .map_err(|e| internal(format!("check cmd: {e}")))?;
        if !missing.is_empty() {
            return Err(internal("check cmd: the pod network is incomplete")
                .with_details(missing.join("; ")));
        }
        self.check_with_ipamd(&specs).await
    }

    /// CHECK's second half: the daemon still holds the pod's address for this pod. A daemon
    /// without the call (upstream's) answers UNIMPLEMENTED: logged and passed.
    async fn check_with_ipamd(&self, specs: &[PodSpec]) -> Result<(), CniError> {
        let want = specs[0].ip.to_string();
        let req = CheckNetworkRequest {
            network_name: self.conf.name.clone(),
            container_id: self.env.container_id.clone(),
            if_name: self.env.if_name.clone(),
            i_pv4_addr: want.clone(),
            client_version: CLIENT_VERSION.into(),
        };
        match self.ipamd.check(req).await {
            Ok(r) if r.assigned && r.i_pv4_addr == want => Ok(()),
            Ok(r) if r.assigned => Err(internal(format!(
                "check cmd: ipamd holds {} for container {}, not {want} as prevResult says",
                r.i_pv4_addr, self.env.container_id
            ))),
            Ok(_) => Err(internal(format!(
                "check cmd: ipamd holds no address for container {} ({}/{}): the pod's address {want} \
                 is no longer assigned to it (lost by the daemon, e.g. across a restart); delete and \
                 re-create the pod",
                self.env.container_id, self.conf.name, self.env.if_name
            ))),
            Err(IpamdError::Rpc(s)) if s.code() == tonic::Code::Unimplemented => {
                self.log.log(
                    Level::Info,
                    "CHECK: this ipamd cannot answer CheckNetwork; address ownership not checked",
                );
                Ok(())
            }
            Err(e) => Err(CniError::new(
                Code::TryAgainLater,
                format!("check cmd: asking ipamd: {e}"),
            )),
        }
    }

    /// GC (CNI 1.1): the daemon releases every assignment of this network that is not among
    /// `cni.dev/valid-attachments`; their host rules go too (their veths and routes went with
    /// their namespaces). Without the list there is nothing to judge by: success.
    pub async fn gc(&self) -> Result<(), CniError> {
        let Some(valid) = &self.conf.valid_attachments else {
            return Ok(());
        };
        let req = GcRequest {
            network_name: self.conf.name.clone(),
            valid: valid
                .iter()
                .map(|(c, i)| Attachment {
                    container_id: c.clone(),
                    if_name: i.clone(),
                })
                .collect(),
            client_version: CLIENT_VERSION.into(),
        };
        match self.ipamd.gc(req).await {
            Ok(reply) => {
                let mut specs = Vec::new();
                for m in &reply.released {
                    specs.extend(self.specs(std::slice::from_ref(m))?);
                }
                self.log.log(
                    Level::Info,
                    &format!("GC: {} stale assignment(s) released", specs.len()),
                );
                for e in self.net.teardown(None, &specs).await {
                    self.log.log(Level::Warn, &format!("GC: {e}"));
                }
                Ok(())
            }
            Err(IpamdError::Rpc(s)) if s.code() == tonic::Code::Unimplemented => {
                self.log.log(
                    Level::Info,
                    "GC: this ipamd has no GarbageCollect; nothing done",
                );
                Ok(())
            }
            Err(e) => Err(CniError::new(Code::TryAgainLater, format!("gc: {e}"))),
        }
    }

    /// STATUS: ready when ipamd answers on its socket.
    pub async fn status(&self) -> Result<(), CniError> {
        self.ipamd
            .reachable()
            .await
            .map_err(|e| CniError::new(Code::PluginNotAvailable, format!("status: {e}")))
    }
}
