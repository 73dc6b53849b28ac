//! The seam to the host's routing table: which pod addresses a live pod's veth routes
//! (`/32` routes in the main table, spec e.3). A netlink implementation, one for a daemon that
//! does not own the host, and a fake for tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Mutex;

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

/// The host's main table through rtnetlink. Every `/32` route to an interface counts, not only
/// those to interfaces named with this daemon's veth prefix: a plugin configured with another
/// prefix, or anything else routing an address on the host, still means the address is in use
/// (and the stale sweep must never take a live pod's address because its veth is named
/// differently).
pub struct NetlinkHost {
    handle: vpc_cni_dataplane::Handle,
}

impl NetlinkHost {
    /// A netlink connection in the daemon's namespace.
    pub fn connect() -> Result<Self, vpc_cni_dataplane::DataplaneError> {
        Ok(NetlinkHost {
            handle: vpc_cni_dataplane::netns::connect_here()?,
        })
    }
}

impl HostOwners for NetlinkHost {
    fn live(&self) -> BoxFut<'_, Result<BTreeMap<Ipv4Addr, String>, String>> {
        Box::pin(async {
            vpc_cni_dataplane::owners::pod_routes(&self.handle)
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
            Ok(Some(name))
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
