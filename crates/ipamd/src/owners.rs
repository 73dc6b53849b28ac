//! The host's word on which pod addresses are in use: the `/32` routes to pod veths (spec e.3).
//! Whatever the cloud or the checkpoint say, an address a live pod still routes is never handed
//! out: checkpoint entries on addresses no ENI carries are kept aside while the host routes them,
//! routed addresses nobody claims are held under an invented key, and every new assignment is
//! checked against the host before the reply. Upstream's stale-veth filter is the same idea.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use vpc_cni_cloud::Cloud;
use vpc_cni_ipam::{HOST_HELD_NETWORK, IpamKey, PodMetadata};

use crate::checkpoint::Dropped;
use crate::state::{Shared, now};

/// The key under which an address routed to `veth` with no assignment is held.
pub fn host_key(veth: &str) -> IpamKey {
    IpamKey::new(HOST_HELD_NETWORK, veth, "host")
}

async fn live_or_empty<C: Cloud>(s: &Shared<C>, when: &str) -> Option<BTreeMap<Ipv4Addr, String>> {
    match s.host.live().await {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!(error = %e, when, "cannot read the host's pod routes; live-pod check skipped");
            None
        }
    }
}

fn conflict<C: Cloud>(s: &Shared<C>, when: &'static str) {
    s.metrics
        .inc("awscni_live_pod_address_conflict_count", &[("when", when)]);
}

/// At start, after the checkpoint was restored: entries whose address no ENI carries are kept
/// aside while a live pod routes them (else dropped, as upstream), and routed addresses with no
/// entry are held. Returns how many entries were dropped for good.
pub async fn reclaim_at_start<C: Cloud>(s: &Shared<C>, dropped: Vec<Dropped>) -> usize {
    let live = live_or_empty(s, "restore").await.unwrap_or_default();
    let mut gone = 0;
    let mut node = s.lock();
    for d in dropped {
        if let Some(veth) = live.get(&d.ip) {
            conflict(s, "restore");
            tracing::error!(ip = %d.ip, veth = %veth, entry = %d,
                "checkpoint entry on no attached ENI, but a live pod still routes the address: kept out of the pool");
            let _ = node.ds.hold(d.key, d.ip, d.metadata, d.at);
        } else {
            gone += 1;
            tracing::warn!(entry = %d, "checkpoint entry on no attached ENI and no live pod route: dropped (stale/dead)");
        }
    }
    hold_unclaimed(s, &mut node.ds, &live, "restore");
    s.update_gauges(&node);
    gone
}

/// Hold every routed address that no assignment or aside entry claims.
fn hold_unclaimed<C: Cloud>(
    s: &Shared<C>,
    ds: &mut vpc_cni_ipam::Datastore,
    live: &BTreeMap<Ipv4Addr, String>,
    when: &'static str,
) {
    for (ip, veth) in live {
        if ds.is_owned(*ip) {
            continue;
        }
        conflict(s, when);
        let r = ds.hold(host_key(veth), *ip, PodMetadata::default(), now());
        tracing::error!(ip = %ip, veth = %veth, placed = ?r.as_ref().ok(),
            "a live pod routes this address but no assignment names it: held out of the pool");
    }
}

/// Periodic pass: hold newly seen unclaimed addresses; let go of held ones whose route is gone.
pub async fn sweep<C: Cloud>(s: &Shared<C>) {
    let Some(live) = live_or_empty(s, "sweep").await else {
        return;
    };
    let mut node = s.lock();
    hold_unclaimed(s, &mut node.ds, &live, "sweep");
    let mut stale: Vec<(Ipv4Addr, IpamKey)> = node
        .ds
        .held()
        .filter(|(ip, _)| !live.contains_key(ip))
        .map(|(ip, h)| (ip, h.key.clone()))
        .collect();
    stale.extend(
        node.ds
            .assignments()
            .filter(|(k, ip, _)| k.network_name == HOST_HELD_NETWORK && !live.contains_key(ip))
            .map(|(k, ip, _)| (ip, k.clone())),
    );
    for (ip, key) in &stale {
        node.ds.forget_owner(*ip, key);
        tracing::info!(ip = %ip, key = %key, "held address: its pod route is gone; released");
    }
    if !stale.is_empty()
        && let Err(e) = s.checkpoint.write(&node.ds)
    {
        tracing::error!(error = %e, "checkpoint write after releasing held addresses failed");
    }
    s.update_gauges(&node);
    drop(node);
    crate::gc::sweep_stale(s, Some(&live));
}

/// Whether `ip`, just given to a new pod, is routed to a live pod's veth; if so it is held for
/// that veth (the caller assigns again). A failed lookup is logged and trusted as free, as the
/// host was read at start.
pub async fn taken_on_host<C: Cloud>(s: &Shared<C>, ip: Ipv4Addr) -> Option<String> {
    match s.host.owner(ip).await {
        Ok(Some(veth)) => {
            conflict(s, "assign");
            tracing::error!(ip = %ip, veth = %veth,
                "the address picked for a new pod is routed to a live pod's veth: held, picking another");
            Some(veth)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(ip = %ip, error = %e, "host route lookup failed; assignment kept");
            None
        }
    }
}
