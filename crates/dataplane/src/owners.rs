//! Who owns a pod address on this host: the `/32` route in the main table that points at a pod's
//! host veth (spec e.3). The daemon reads it so it never hands out an address a live pod still
//! uses (upstream's stale-veth filter), and DEL reads it so it never removes another pod's route
//! and rules.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteFlags};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::nl::{self, errno};
use crate::{DataplaneError, MAIN_TABLE, Result};

/// The interface the main table's own `/32` route for `ip` points at, if such a route exists
/// (one kernel FIB lookup with `RTM_F_FIB_MATCH`, not a dump). A covering route (the subnet, the
/// default route) is not an owner: `None`.
pub async fn route_owner(h: &Handle, ip: IpAddr) -> Result<Option<u32>> {
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let mut msg = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(ip, bits)
        .map_err(|e| DataplaneError::NotFound(format!("route to {ip}: {e}")))?
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
    Ok(msgs.iter().find_map(|m| owner_of(m, ip)))
}

/// [`route_owner`] without an async runtime: one blocking `RTM_GETROUTE` on a fresh netlink
/// socket (~20 µs). The daemon's gRPC thread uses it on every new assignment, where a hop to
/// the runtime driving an rtnetlink connection would cost two thread wake-ups.
pub fn route_owner_blocking(ip: Ipv4Addr) -> Result<Option<u32>> {
    use netlink_packet_core::{NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
    let io = |what: &str| {
        let what = format!("route lookup for {ip}: {what}");
        move |source: std::io::Error| DataplaneError::Io { what, source }
    };
    let mut msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(ip, 32)
        .table_id(MAIN_TABLE)
        .build();
    msg.header.flags |= RouteFlags::FibMatch;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::GetRoute(msg));
    req.header.flags = NLM_F_REQUEST;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(io("socket"))?;
    sock.bind_auto().map_err(io("bind"))?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(io("connect"))?;
    sock.send(&buf, 0).map_err(io("send"))?;
    let (answer, _) = sock.recv_from_full().map_err(io("receive"))?;
    let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&answer).map_err(|e| {
        DataplaneError::NotFound(format!("route lookup for {ip}: undecodable answer: {e}"))
    })?;
    match parsed.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(m)) => {
            Ok(owner_of(&m, IpAddr::V4(ip)))
        }
        NetlinkPayload::Error(e) => match e.code.map(|c| c.get().abs()) {
            // ENETUNREACH / EHOSTUNREACH / ESRCH / ENOENT: no route at all.
            Some(101 | 113 | 3 | 2) | None => Ok(None),
            Some(code) => Err(DataplaneError::Io {
                what: format!("route lookup for {ip}"),
                source: std::io::Error::from_raw_os_error(code),
            }),
        },
        _ => Ok(None),
    }
}

/// The output interface of `m` when it is `ip`'s own host route (`/32`, `/128`).
fn owner_of(m: &netlink_packet_route::route::RouteMessage, ip: IpAddr) -> Option<u32> {
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    if m.header.destination_prefix_length != bits {
        return None;
    }
    let dst_ok = m.attributes.iter().any(|a| match (a, ip) {
        (RouteAttribute::Destination(RouteAddress::Inet(d)), IpAddr::V4(ip)) => *d == ip,
        (RouteAttribute::Destination(RouteAddress::Inet6(d)), IpAddr::V6(ip)) => *d == ip,
        _ => false,
    });
    let oif = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    });
    if dst_ok { oif } else { None }
}

/// Every address the main table routes as a `/32` to an interface (a pod's host veth, whatever
/// its prefix), with that interface's name.
pub async fn pod_routes(h: &Handle) -> Result<BTreeMap<Ipv4Addr, String>> {
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
        if let (Some(name), std::net::IpAddr::V4(ip)) =
            (r.oif.and_then(|i| names.get(&i)), r.dst.addr())
        {
            out.insert(ip, name.clone());
        }
    }
    Ok(out)
}
