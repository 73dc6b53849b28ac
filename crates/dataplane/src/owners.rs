//! Who owns a pod address on this host: the `/32` route in the main table that points at a pod's
//! host veth (spec e.3). The daemon reads it so it never hands out an address a live pod still
//! uses (upstream's stale-veth filter), and DEL reads it so it never removes another pod's route
//! and rules.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteFlags};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::nl::{self, errno};
use crate::{DataplaneError, MAIN_TABLE, Result};

/// The interface the main table's own `/32` route for `ip` points at, if such a route exists
/// (one kernel FIB lookup with `RTM_F_FIB_MATCH`, not a dump). A covering route (the subnet, the
/// default route) is not an owner: `None`.
pub async fn route_owner(h: &Handle, ip: Ipv4Addr) -> Result<Option<u32>> {
    let mut msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(ip, 32)
        .table_id(MAIN_TABLE)
        .build();
    msg.header.flags |= RouteFlags::FibMatch;
    let r: std::result::Result<Vec<_>, _> = h.route().get(msg).execute().try_collect().await;
    let msgs = match r {
        Ok(m) => m,
        // ENETUNREACH / EHOSTUNREACH / ESRCH: no route at all.
        Err(e) if matches!(errno(&e), 101 | 113 | 3 | 2) => return Ok(None),
        Err(source) => {
            return Err(DataplaneError::Netlink {
                op: format!("look up the route to {ip}"),
                source,
            });
        }
    };
    Ok(msgs.iter().find_map(|m| {
        if m.header.destination_prefix_length != 32 {
            return None;
        }
        let dst_ok = m
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Destination(RouteAddress::Inet(d)) if *d == ip));
        let oif = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        if dst_ok { oif } else { None }
    }))
}

/// Every address the main table routes as a `/32` to an interface whose name starts with
/// `veth_prefix` (a pod's host veth), with that interface's name.
pub async fn pod_routes(h: &Handle, veth_prefix: &str) -> Result<BTreeMap<Ipv4Addr, String>> {
    let names: BTreeMap<u32, String> = nl::links(h)
        .await?
        .into_iter()
        .map(|l| (l.index, l.name))
        .collect();
    let mut out = BTreeMap::new();
    for r in nl::routes(h, MAIN_TABLE).await? {
        if r.dst.prefix_len() != 32 || r.gateway.is_some() {
            continue;
        }
        let Some(name) = r.oif.and_then(|i| names.get(&i)) else {
            continue;
        };
        if name.starts_with(veth_prefix) {
            out.insert(r.dst.addr(), name.clone());
        }
    }
    Ok(out)
}
