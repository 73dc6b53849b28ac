//! Assignments whose pod is gone. CNI GC (CNI 1.1): the runtime names the network's valid
//! attachments and every other assignment of that network is released. With `--host-network`,
//! a sweep as well: an assignment whose pod's host `/32` route has been gone for a grace period
//! (and which is older than it) belongs to a pod deleted while the daemon was unreachable, a DEL
//! that never arrived: it is released. Both are logged per entry and counted in
//! `awscni_stale_assignments_released_count{by}`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use vpc_cni_cloud::Cloud;
use vpc_cni_ipam::{HOST_HELD_NETWORK, IpamKey, Released};

use crate::state::{Shared, now};

/// Release every assignment of `network` whose (container, interface) is not in `valid`.
pub fn release_invalid<C: Cloud>(
    s: &Shared<C>,
    network: &str,
    valid: &BTreeSet<(String, String)>,
) -> Result<Vec<Released>, crate::checkpoint::CheckpointError> {
    let mut node = s.lock();
    let stale: Vec<IpamKey> = node
        .ds
        .assignments()
        .filter(|(k, _, _)| {
            k.network_name == network
                && !valid.contains(&(k.container_id.clone(), k.if_name.clone()))
        })
        .map(|(k, _, _)| k.clone())
        .collect();
    let mut out = Vec::new();
    for k in &stale {
        if let Some(r) = node.ds.unassign(k, now()) {
            tracing::warn!(key = %k, ip = %r.ip, "GC: not a valid attachment; released");
            out.push(r);
        }
    }
    if !out.is_empty() {
        s.checkpoint.write(&node.ds)?;
        s.metrics.inc_by(
            "awscni_stale_assignments_released_count",
            &[("by", "gc")],
            out.len() as f64,
        );
        s.update_gauges(&node);
    }
    Ok(out)
}

/// The sweep: release assignments unrouted on the host for `cfg.stale_grace`.
pub fn sweep_unrouted<C: Cloud>(s: &Shared<C>, live: &BTreeMap<Ipv4Addr, String>) {
    let grace = s.cfg.stale_grace;
    let t = now();
    let mut node = s.lock();
    let mut unrouted = s.unrouted.lock().unwrap_or_else(|p| p.into_inner());
    let mut due = Vec::new();
    let mut seen = BTreeSet::new();
    for (k, ip, info) in node.ds.assignments() {
        if k.network_name == HOST_HELD_NETWORK || live.contains_key(&ip) {
            continue;
        }
        seen.insert(k.clone());
        let first = *unrouted.entry(k.clone()).or_insert(t);
        if t.since(first) >= grace && t.since(info.assigned_at) >= grace {
            due.push((k.clone(), ip));
        }
    }
    unrouted.retain(|k, _| seen.contains(k));
    for (k, ip) in &due {
        node.ds.unassign(k, t);
        unrouted.remove(k);
        tracing::warn!(key = %k, ip = %ip, grace_s = grace.as_secs(),
            "no host route to the pod for the grace period (its DEL never arrived): released");
    }
    if !due.is_empty() {
        if let Err(e) = s.checkpoint.write(&node.ds) {
            tracing::error!(error = %e, "checkpoint write after the stale sweep failed");
        }
        s.metrics.inc_by(
            "awscni_stale_assignments_released_count",
            &[("by", "sweep")],
            due.len() as f64,
        );
        s.update_gauges(&node);
    }
}
