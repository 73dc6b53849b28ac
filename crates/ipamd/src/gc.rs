//! Assignments whose pod is gone. CNI GC (CNI 1.1): the runtime names the network's valid
//! attachments and every other assignment of that network is released. With `--host-network`,
//! a sweep as well: an assignment whose pod's host `/32` route has been gone for a grace period
//! (and which is older than it) belongs to a pod deleted while the daemon was unreachable, a DEL
//! that never arrived: it is released. With the Kubernetes Pod watch, a pod absent from the API
//! is a second witness: unrouted and absent for [`ABSENT_GRACE`] is enough; without host
//! networking, absent for the grace period. All are logged per entry and counted in
//! `awscni_stale_assignments_released_count{by}` (`gc`, `sweep`, `api`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use std::time::Duration;
use vpc_cni_cloud::Cloud;

use vpc_cni_ipam::{AddressInfo, HOST_HELD_NETWORK, IpamKey, Released};

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

/// Unrouted and absent from the API this long: the pod is gone.
pub const ABSENT_GRACE: Duration = Duration::from_secs(30);

/// Whether the Pod watch says the assignment's pod does not exist (false when unknown).
fn absent<C: Cloud>(s: &Shared<C>, info: &AddressInfo) -> bool {
    let m = &info.metadata;
    !m.name.is_empty()
        && s.kube
            .client()
            .and_then(|k| k.pod_exists(&m.namespace, &m.name))
            == Some(false)
}

/// The sweep with the host's routes (`live`): release assignments unrouted for
/// `cfg.stale_grace`, or unrouted and absent from the API for [`ABSENT_GRACE`]. Without host
/// networking (`live` None): absent from the API for `cfg.stale_grace`.
pub fn sweep_stale<C: Cloud>(s: &Shared<C>, live: Option<&BTreeMap<Ipv4Addr, String>>) {
    let grace = s.cfg.stale_grace;
    let t = now();
    let mut node = s.lock();
    let mut suspects = s.unrouted.lock().unwrap_or_else(|p| p.into_inner());
    let mut due = Vec::new();
    let mut seen = BTreeSet::new();
    for (k, ip, info) in node.ds.assignments() {
        let routed = live.is_some_and(|l| l.contains_key(&ip));
        let gone = absent(s, info);
        if k.network_name == HOST_HELD_NETWORK || routed || (live.is_none() && !gone) {
            continue;
        }
        seen.insert(k.clone());
        let first = *suspects.entry(k.clone()).or_insert(t);
        let held_for = |d: Duration| t.since(first) >= d && t.since(info.assigned_at) >= d;
        if live.is_some() && held_for(grace) {
            due.push((k.clone(), ip, "sweep"));
        } else if gone && held_for(if live.is_some() { ABSENT_GRACE } else { grace }) {
            due.push((k.clone(), ip, "api"));
        }
    }
    suspects.retain(|k, _| seen.contains(k));
    for (k, ip, by) in &due {
        node.ds.unassign(k, t);
        suspects.remove(k);
        if *by == "api" {
            tracing::warn!(key = %k, ip = %ip, "the pod is gone from the API server (and the host) and its DEL never arrived: released");
        } else {
            tracing::warn!(key = %k, ip = %ip, grace_s = grace.as_secs(),
                "no host route to the pod for the grace period (its DEL never arrived): released");
        }
        s.metrics
            .inc("awscni_stale_assignments_released_count", &[("by", by)]);
    }
    if !due.is_empty() {
        if let Err(e) = s.checkpoint.write(&node.ds) {
            tracing::error!(error = %e, "checkpoint write after the stale sweep failed");
        }
        s.update_gauges(&node);
    }
}
