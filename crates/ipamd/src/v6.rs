//! IPv6 mode (`ENABLE_IPv6=true`) at start-up: the node must have an IPv6 address, and its
//! primary ENI one /80 prefix (assigned with `AssignIpv6Addresses` when IMDS shows none). Pods
//! then get addresses from that prefix; there is no warm pool to manage.

use tonic::Status;
use vpc_cni_cloud::{Cloud, Interface};
use vpc_cni_ipam::{IpamKey, PodMetadata, V6Pool};
use vpc_cni_proto::rpc::{AddNetworkReply, DelNetworkReply, IpAllocationMetadata};

use crate::calls::timed;
use crate::daemon::DaemonError;
use crate::state::{Shared, now};

/// Refuse an IPv6 node without an IPv6 address in IMDS (before anything on the host changes).
pub fn require_node_address<C: Cloud>(s: &Shared<C>) -> Result<(), DaemonError> {
    if s.meta.ipv6.is_none() {
        return Err(DaemonError::Config(
            "ENABLE_IPv6=true, but IMDS gives this node no IPv6 address (meta-data/ipv6): its subnet needs an IPv6 CIDR block and the instance an IPv6 address".into(),
        ));
    }
    Ok(())
}

/// Give the datastore the primary ENI's /80 (assigning one if needed).
pub async fn setup<C: Cloud>(s: &Shared<C>, interfaces: &[Interface]) -> Result<(), DaemonError> {
    require_node_address(s)?;
    let Some(primary) = interfaces.iter().find(|i| i.device_number == 0) else {
        return Err(DaemonError::Config(
            "IPv6 mode: IMDS lists no primary interface (device 0)".into(),
        ));
    };
    let prefix = match primary.ipv6_prefixes.first() {
        Some(p) => *p,
        None => {
            let got = timed(
                s,
                "AssignIpv6Addresses",
                s.cloud.assign_ipv6_prefixes(&primary.id, 1),
            )
            .await?;
            *got.first().ok_or_else(|| {
                DaemonError::Config(format!(
                    "IPv6 mode: AssignIpv6Addresses on {} returned no prefix",
                    primary.id
                ))
            })?
        }
    };
    tracing::info!(eni = %primary.id, %prefix, "IPv6 mode: pods get addresses from this prefix");
    s.lock()
        .ds
        .set_v6(V6Pool::new(&primary.id, prefix, s.cfg.settings.ip_cooldown));
    Ok(())
}

/// AddNetwork in IPv6 mode: an address of the /80, persisted before it is answered.
pub fn add<C: Cloud>(
    s: &Shared<C>,
    k: &IpamKey,
    meta: PodMetadata,
) -> Result<AddNetworkReply, Status> {
    let mut node = s.lock();
    let pool = node
        .ds
        .v6_mut()
        .ok_or_else(|| Status::internal("IPv6 mode without a /80 prefix"))?;
    let had = pool.lookup(k).is_some();
    let a = pool.assign(k, meta, now());
    if !had && let Err(e) = s.checkpoint.write(&node.ds) {
        if let Some(pool) = node.ds.v6_mut() {
            pool.forget(k);
        }
        tracing::error!(error = %e, "checkpoint write failed; assignment rolled back");
        return Err(Status::internal(format!(
            "failed to persist the assignment: {e}"
        )));
    }
    s.update_gauges(&node);
    Ok(AddNetworkReply {
        success: true,
        ip_allocation_metadata: vec![IpAllocationMetadata {
            i_pv6_addr: a.ip.to_string(),
            device_number: 0,
            route_table_id: MAIN_TABLE,
            ..Default::default()
        }],
        vp_cv6_cid_rs: s
            .meta
            .vpc_ipv6_cidrs
            .iter()
            .map(ToString::to_string)
            .collect(),
        network_policy_mode: s.cfg.network_policy_mode.clone(),
        ..Default::default()
    })
}

/// DelNetwork in IPv6 mode; `None` for a pod the pool does not know.
pub fn del<C: Cloud>(s: &Shared<C>, k: &IpamKey) -> Result<Option<DelNetworkReply>, Status> {
    let mut node = s.lock();
    let Some(pool) = node.ds.v6_mut() else {
        return Ok(None);
    };
    let Some(ip) = pool.unassign(k, now()) else {
        return Ok(None);
    };
    if let Err(e) = s.checkpoint.write(&node.ds) {
        return Err(Status::internal(format!(
            "failed to persist the release of {ip}: {e}"
        )));
    }
    s.update_gauges(&node);
    Ok(Some(DelNetworkReply {
        success: true,
        ip_allocation_metadata: vec![IpAllocationMetadata {
            i_pv6_addr: ip.to_string(),
            device_number: 0,
            route_table_id: MAIN_TABLE,
            ..Default::default()
        }],
        network_policy_mode: s.cfg.network_policy_mode.clone(),
        ..Default::default()
    }))
}

/// Reconcile the /80 with IMDS (every reconcile period). A prefix IMDS no longer lists for the
/// primary ENI twice in a row is gone from EC2 (someone unassigned it): like a /28 that left an
/// ENI in IPv4 mode, its assignments are force-removed (their pods have no working address any
/// more), and pods from now on get addresses of the /80 the ENI has, or of a new one assigned
/// with `AssignIpv6Addresses` when it has none.
pub async fn reconcile<C: Cloud>(s: &Shared<C>, attached: &[Interface]) {
    let Some(primary) = attached.iter().find(|i| i.device_number == 0) else {
        return;
    };
    let gone = {
        let mut node = s.lock();
        let Some(pool) = node.ds.v6_mut() else {
            return;
        };
        let listed = primary.ipv6_prefixes.contains(&pool.prefix());
        pool.note_imds(listed).then(|| pool.prefix())
    };
    let Some(old) = gone else { return };
    let next = match primary.ipv6_prefixes.first() {
        Some(p) => *p,
        None => {
            let got = timed(
                s,
                "AssignIpv6Addresses",
                s.cloud.assign_ipv6_prefixes(&primary.id, 1),
            )
            .await;
            match got.map(|v| v.first().copied()) {
                Ok(Some(p)) => p,
                Ok(None) => {
                    tracing::error!(eni = %primary.id, "AssignIpv6Addresses returned no prefix; retried at the next reconcile");
                    return;
                }
                Err(e) => {
                    tracing::error!(eni = %primary.id, code = %e.code, "the /80 is gone and a new one could not be assigned; retried at the next reconcile");
                    return;
                }
            }
        }
    };
    let mut node = s.lock();
    let dropped = node.ds.v6().map(|p| p.holders()).unwrap_or_default();
    node.ds
        .set_v6(V6Pool::new(&primary.id, next, s.cfg.settings.ip_cooldown));
    for _ in &dropped {
        s.metrics.inc("awscni_force_removed_ips", &[]);
    }
    s.metrics.inc(
        "awscni_reconcile_count",
        &[("fn", "eniIPv6PrefixReconcile")],
    );
    if let Err(e) = s.checkpoint.write(&node.ds) {
        tracing::error!(error = %e, "checkpoint write after the IPv6 reconcile failed");
    }
    s.update_gauges(&node);
    tracing::error!(
        eni = %primary.id,
        %old,
        new = %next,
        pods = dropped.len(),
        "the /80 is no longer on the primary ENI (IMDS twice, EC2 unassigned it): its pods lost their addresses and were removed; new pods get addresses of the new /80"
    );
}

/// Pods on the primary ENI route through the main table.
const MAIN_TABLE: i32 = 254;
