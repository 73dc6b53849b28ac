//! The host's word on which pod addresses are in use: the `/32` routes to pod veths (spec e.3).
//! Whatever the cloud or the checkpoint say, an address a live pod still routes is never handed
//! out: checkpoint entries on addresses no ENI carries are kept aside while the host routes them,
//! routed addresses nobody claims are held under an invented key, and every new assignment is
//! checked against the host before the reply. Upstream's stale-veth filter is the same idea.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Mutex;

use vpc_cni_cloud::Cloud;
use vpc_cni_ipam::{HOST_HELD_NETWORK, Holding, IpamKey, PodMetadata};

use crate::checkpoint::Dropped;
use crate::state::{Shared, now};

/// A boxed future (the trait is used as an object).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The seam to the host's routing table.
pub trait HostOwners: Send + Sync + 'static {
    /// Every address routed as a `/32` to a pod veth, with the veth's name.
    fn live(&self) -> BoxFut<'_, Result<BTreeMap<Ipv4Addr, String>, String>>;
    /// The interface owning `ip`'s own `/32` route, if there is one.
    fn owner(&self, ip: Ipv4Addr) -> BoxFut<'_, Result<Option<String>, String>>;
}

/// Without `--host-network` the daemon does not own the host: nothing to consult.
#[derive(Debug, Default)]
pub struct NoHost;

impl HostOwners for NoHost {
    fn live(&self) -> BoxFut<'_, Result<BTreeMap<Ipv4Addr, String>, String>> {
        Box::pin(async { Ok(BTreeMap::new()) })
    }
    fn owner(&self, _: Ipv4Addr) -> BoxFut<'_, Result<Option<String>, String>> {
        Box::pin(async { Ok(None) })
    }
}

/// The host's main table through rtnetlink.
pub struct NetlinkHost {
    handle: vpc_cni_dataplane::Handle,
    veth_prefix: String,
}

impl NetlinkHost {
    /// A netlink connection in the daemon's namespace; pod veths start with `veth_prefix`.
    pub fn connect(veth_prefix: &str) -> Result<Self, vpc_cni_dataplane::DataplaneError> {
        Ok(NetlinkHost {
            handle: vpc_cni_dataplane::netns::connect_here()?,
            veth_prefix: veth_prefix.to_string(),
        })
    }
}

impl HostOwners for NetlinkHost {
    fn live(&self) -> BoxFut<'_, Result<BTreeMap<Ipv4Addr, String>, String>> {
        Box::pin(async {
            vpc_cni_dataplane::owners::pod_routes(&self.handle, &self.veth_prefix)
                .await
                .map_err(|e| e.to_string())
        })
    }
    fn owner(&self, ip: Ipv4Addr) -> BoxFut<'_, Result<Option<String>, String>> {
        Box::pin(async move {
            // Blocking, but one ~20 µs kernel lookup: cheaper than waking the runtime that
            // drives the async netlink connection.
            let idx =
                vpc_cni_dataplane::owners::route_owner_blocking(ip).map_err(|e| e.to_string())?;
            let Some(idx) = idx else { return Ok(None) };
            let links = vpc_cni_dataplane::nl::links(&self.handle)
                .await
                .map_err(|e| e.to_string())?;
            let name = links
                .into_iter()
                .find(|l| l.index == idx)
                .map_or_else(|| format!("if{idx}"), |l| l.name);
            // Only a pod veth is an owner (an ENI link's own /32 is not a pod).
            Ok(name.starts_with(&self.veth_prefix).then_some(name))
        })
    }
}

/// A host for tests: addresses and the veth each is routed to.
#[derive(Debug, Default)]
pub struct FakeHost(pub Mutex<BTreeMap<Ipv4Addr, String>>);

impl HostOwners for FakeHost {
    fn live(&self) -> BoxFut<'_, Result<BTreeMap<Ipv4Addr, String>, String>> {
        let m = self.0.lock().expect("fake host").clone();
        Box::pin(async move { Ok(m) })
    }
    fn owner(&self, ip: Ipv4Addr) -> BoxFut<'_, Result<Option<String>, String>> {
        let o = self.0.lock().expect("fake host").get(&ip).cloned();
        Box::pin(async move { Ok(o) })
    }
}

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

/// Count of held addresses (aside, or assigned under an invented key).
pub fn held_count(ds: &vpc_cni_ipam::Datastore) -> usize {
    ds.held().count()
        + ds.assignments()
            .filter(|(k, _, _)| k.network_name == HOST_HELD_NETWORK)
            .count()
}

/// Placement of a hold, for logs.
pub fn describe(h: &Holding) -> &'static str {
    match h {
        Holding::Assigned => "on an ENI",
        Holding::Aside => "aside (no ENI carries it)",
    }
}
