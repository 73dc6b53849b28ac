//! Thin typed helpers over rtnetlink: the links, addresses, routes, rules and neighbours the
//! CNI touches (either address family), read into small structs and written with one request
//! each.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion, LinkUnspec, RouteMessageBuilder};

use crate::{DataplaneError, Result};

/// A link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Hardware address.
    pub mac: Vec<u8>,
    /// Administratively up.
    pub up: bool,
    /// MTU.
    pub mtu: u32,
    /// For a veth: the peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
}

/// A link message as a [`Link`].
pub fn to_link(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        name: String::new(),
        mac: Vec::new(),
        up: m.header.flags.contains(LinkFlags::Up),
        mtu: 0,
        peer_index: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::Link(i) => l.peer_index = Some(*i),
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Address(mac) => l.mac = mac.clone(),
            LinkAttribute::Mtu(mtu) => l.mtu = *mtu,
            _ => {}
        }
    }
    l
}

/// Every link.
pub async fn links(h: &Handle) -> Result<Vec<Link>> {
    let msgs: Vec<LinkMessage> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(DataplaneError::netlink("list links"))?;
    Ok(msgs.iter().map(to_link).collect())
}

/// The errno of a netlink error (0 when it is not one).
pub fn errno(e: &rtnetlink::Error) -> i32 {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.raw_code().abs(),
        _ => 0,
    }
}

const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const ENODEV: i32 = 19;
const EEXIST: i32 = 17;

/// The link called `name`, if any (one kernel lookup, not a dump).
pub async fn link_by_name(h: &Handle, name: &str) -> Result<Option<Link>> {
    let r: std::result::Result<Vec<LinkMessage>, _> = h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_collect()
        .await;
    match r {
        Ok(msgs) => Ok(msgs.iter().map(to_link).find(|l| l.name == name)),
        Err(e) if errno(&e) == ENODEV => Ok(None),
        Err(e) => Err(DataplaneError::Netlink {
            op: format!("look up link {name}"),
            source: e,
        }),
    }
}

/// The link with hardware address `mac`, if any.
pub async fn link_by_mac(h: &Handle, mac: &[u8]) -> Result<Option<Link>> {
    Ok(links(h).await?.into_iter().find(|l| l.mac == mac))
}

/// Delete a link.
pub async fn del_link(h: &Handle, link: &Link) -> Result<()> {
    h.link()
        .del(link.index)
        .execute()
        .await
        .map_err(DataplaneError::netlink(format!(
            "delete link {}",
            link.name
        )))
}

/// Bring a link up, optionally setting its MTU.
pub async fn set_up(h: &Handle, link: &Link, mtu: Option<u32>) -> Result<()> {
    let mut b = LinkUnspec::new_with_index(link.index).up();
    if let Some(mtu) = mtu {
        b = b.mtu(mtu);
    }
    h.link()
        .set(b.build())
        .execute()
        .await
        .map_err(DataplaneError::netlink(format!(
            "set link {} up",
            link.name
        )))
}

/// The addresses of a link (both families).
pub async fn addresses(h: &Handle, index: u32) -> Result<Vec<IpNet>> {
    Ok(address_flags(h, index)
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect())
}

/// The addresses of a link with whether each is still tentative (IPv6 duplicate address
/// detection running) or failed it.
pub async fn address_flags(h: &Handle, index: u32) -> Result<Vec<(IpNet, bool)>> {
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(DataplaneError::netlink("list addresses"))?;
    let mut out = Vec::new();
    let unstable = AddressFlags::Tentative | AddressFlags::Dadfailed;
    for m in msgs.iter().filter(|m| m.header.index == index) {
        let mut flags = AddressFlags::from_bits_retain(u32::from(m.header.flags.bits()));
        let mut addr = None;
        for a in &m.attributes {
            match a {
                AddressAttribute::Address(ip) => addr = IpNet::new(*ip, m.header.prefix_len).ok(),
                AddressAttribute::Flags(f) => flags = *f,
                _ => {}
            }
        }
        if let Some(n) = addr {
            out.push((n, flags.intersects(unstable)));
        }
    }
    out.dedup();
    Ok(out)
}

/// Add an address (replacing one that exists).
pub async fn add_address(h: &Handle, link: &Link, net: impl Into<IpNet>) -> Result<()> {
    let net: IpNet = net.into();
    h.address()
        .add(link.index, net.addr(), net.prefix_len())
        .replace()
        .execute()
        .await
        .map_err(DataplaneError::netlink(format!(
            "add address {net} to {}",
            link.name
        )))
}

/// Add an IPv6 address without duplicate address detection (unique by IPAM, or on a link where
/// no other holder could answer; a tentative address receives nothing).
pub async fn add_address_nodad(h: &Handle, link: &Link, net: Ipv6Net) -> Result<()> {
    add_address_flags(h, link, IpNet::V6(net), AddressFlags::Nodad).await
}

/// Add an address without the kernel's prefix route (the caller routes the prefix itself).
pub async fn add_address_noprefixroute(h: &Handle, link: &Link, net: IpNet) -> Result<()> {
    add_address_flags(h, link, net, AddressFlags::Noprefixroute).await
}

async fn add_address_flags(h: &Handle, link: &Link, net: IpNet, flags: AddressFlags) -> Result<()> {
    let mut req = h
        .address()
        .add(link.index, net.addr(), net.prefix_len())
        .replace();
    req.message_mut()
        .attributes
        .push(AddressAttribute::Flags(flags));
    req.execute().await.map_err(DataplaneError::netlink(format!(
        "add address {net} ({flags:?}) to {}",
        link.name
    )))
}

/// Delete an address.
pub async fn del_address(h: &Handle, link: &Link, net: IpNet) -> Result<()> {
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(link.index)
        .set_address_filter(net.addr())
        .execute()
        .try_collect()
        .await
        .map_err(DataplaneError::netlink("list addresses"))?;
    for m in msgs {
        h.address()
            .del(m)
            .execute()
            .await
            .map_err(DataplaneError::netlink(format!(
                "delete address {net} from {}",
                link.name
            )))?;
    }
    Ok(())
}

/// A route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Destination.
    pub dst: IpNet,
    /// Gateway.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Table.
    pub table: u32,
    /// Scope link.
    pub scope_link: bool,
    /// The kernel's message, for deletion.
    pub msg: RouteMessage,
}

/// Every IPv4 unicast route in `table`.
pub async fn routes(h: &Handle, table: u32) -> Result<Vec<Route>> {
    routes_of(h, table, false).await
}

/// Every unicast route in `table` of one family (IPv6 when `v6`).
pub async fn routes_of(h: &Handle, table: u32, v6: bool) -> Result<Vec<Route>> {
    let query = if v6 {
        RouteMessageBuilder::<Ipv6Addr>::new().build()
    } else {
        RouteMessageBuilder::<Ipv4Addr>::new().build()
    };
    let default = if v6 {
        IpNet::V6(Ipv6Net::default())
    } else {
        IpNet::V4(Ipv4Net::default())
    };
    let msgs: Vec<RouteMessage> = h
        .route()
        .get(query)
        .execute()
        .try_collect()
        .await
        .map_err(DataplaneError::netlink("list routes"))?;
    let mut out = Vec::new();
    for m in msgs {
        let mut r = Route {
            dst: default,
            gateway: None,
            oif: None,
            table: u32::from(m.header.table),
            scope_link: m.header.scope == RouteScope::Link,
            msg: m.clone(),
        };
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(a) => {
                    if let Some(ip) = route_ip(a) {
                        r.dst =
                            IpNet::new(ip, m.header.destination_prefix_length).unwrap_or(default);
                    }
                }
                RouteAttribute::Gateway(a) => r.gateway = route_ip(a),
                RouteAttribute::Oif(i) => r.oif = Some(*i),
                RouteAttribute::Table(t) => r.table = *t,
                _ => {}
            }
        }
        if r.table == table && m.header.kind == RouteType::Unicast {
            out.push(r);
        }
    }
    Ok(out)
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

/// Add (or replace) a route: `dst [via gateway] dev oif [scope link] table t` (the family is
/// the destination's; a gateway of the other family is refused by the kernel).
pub async fn replace_route(
    h: &Handle,
    dst: impl Into<IpNet>,
    gateway: Option<IpAddr>,
    link: &Link,
    table: u32,
) -> Result<()> {
    let dst: IpNet = dst.into();
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
        .map_err(|e| DataplaneError::NotFound(format!("route to {dst}: {e}")))?
        .output_interface(link.index)
        .table_id(table);
    b = match gateway {
        Some(gw) => b
            .gateway(gw)
            .map_err(|e| DataplaneError::NotFound(format!("route via {gw}: {e}")))?,
        None => b.scope(RouteScope::Link),
    };
    let what = match gateway {
        Some(gw) => format!("add route {dst} via {gw} dev {} table {table}", link.name),
        None => format!("add route {dst} dev {} scope link table {table}", link.name),
    };
    h.route()
        .add(b.build())
        .replace()
        .execute()
        .await
        .map_err(DataplaneError::netlink(what))
}

/// Delete a route read by [`routes`].
pub async fn del_route(h: &Handle, r: &Route) -> Result<()> {
    h.route()
        .del(r.msg.clone())
        .execute()
        .await
        .map_err(DataplaneError::netlink(format!(
            "delete route {} table {}",
            r.dst, r.table
        )))
}

/// A policy rule (IPv6 when a selector is IPv6, else IPv4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Priority.
    pub priority: u32,
    /// Table.
    pub table: u32,
    /// `from`.
    pub src: Option<IpNet>,
    /// `to`.
    pub dst: Option<IpNet>,
    /// `fwmark value/mask`.
    pub fwmark: Option<(u32, u32)>,
}

impl Rule {
    /// Whether this is an IPv6 rule.
    pub fn is_v6(&self) -> bool {
        matches!(self.src, Some(IpNet::V6(_))) || matches!(self.dst, Some(IpNet::V6(_)))
    }
}

/// Every IPv4 rule, with the kernel's message for deletion.
pub async fn rules(h: &Handle) -> Result<Vec<(Rule, RuleMessage)>> {
    rules_of(h, false).await
}

/// Every rule of one family (IPv6 when `v6`), with the kernel's message for deletion.
pub async fn rules_of(h: &Handle, v6: bool) -> Result<Vec<(Rule, RuleMessage)>> {
    let msgs: Vec<RuleMessage> = h
        .rule()
        .get(if v6 { IpVersion::V6 } else { IpVersion::V4 })
        .execute()
        .try_collect()
        .await
        .map_err(DataplaneError::netlink("list rules"))?;
    Ok(msgs.into_iter().map(|m| (to_rule(&m), m)).collect())
}

fn to_rule(m: &RuleMessage) -> Rule {
    let mut r = Rule {
        priority: 0,
        table: u32::from(m.header.table),
        src: None,
        dst: None,
        fwmark: None,
    };
    let mut mark = None;
    let mut mask = u32::MAX;
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => r.priority = *p,
            RuleAttribute::Table(t) => r.table = *t,
            RuleAttribute::Source(ip) => r.src = IpNet::new(*ip, m.header.src_len).ok(),
            RuleAttribute::Destination(ip) => r.dst = IpNet::new(*ip, m.header.dst_len).ok(),
            RuleAttribute::FwMark(v) => mark = Some(*v),
            RuleAttribute::FwMask(v) => mask = *v,
            _ => {}
        }
    }
    r.fwmark = mark.map(|m| (m, mask));
    r
}

/// The message describing `r` (family, selectors, priority, table, fwmark).
fn rule_message(h: &Handle, r: &Rule) -> RuleMessage {
    let mut req = h
        .rule()
        .add()
        .v4()
        .priority(r.priority)
        .table_id(r.table)
        .action(RuleAction::ToTable);
    let m = req.message_mut();
    if r.is_v6() {
        m.header.family = AddressFamily::Inet6;
    }
    if let Some(src) = r.src {
        m.header.src_len = src.prefix_len();
        m.attributes.push(RuleAttribute::Source(src.addr()));
    }
    if let Some(dst) = r.dst {
        m.header.dst_len = dst.prefix_len();
        m.attributes.push(RuleAttribute::Destination(dst.addr()));
    }
    if let Some((mark, mask)) = r.fwmark {
        m.attributes.push(RuleAttribute::FwMark(mark));
        m.attributes.push(RuleAttribute::FwMask(mask));
    }
    m.clone()
}

/// Add a rule (an identical one already there is success).
pub async fn add_rule(h: &Handle, r: &Rule) -> Result<()> {
    use futures::StreamExt;
    use rtnetlink::packet_core::{
        NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    };
    use rtnetlink::packet_route::RouteNetlinkMessage;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewRule(rule_message(h, r)));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE;
    let sent = async {
        let mut responses = h.clone().request(req)?;
        while let Some(m) = responses.next().await {
            if let NetlinkPayload::Error(e) = m.payload
                && e.code.is_some()
            {
                return Err(rtnetlink::Error::NetlinkError(e));
            }
        }
        Ok(())
    };
    match sent.await {
        Err(e) if errno(&e) == EEXIST => Ok(()),
        other => other.map_err(DataplaneError::netlink(format!("add rule {r:?}"))),
    }
}

/// Delete the rule matching `r` exactly (priority, table, selectors) without listing rules;
/// `Ok(false)` when there was none.
pub async fn del_rule_matching(h: &Handle, r: &Rule) -> Result<bool> {
    let msg = rule_message(h, r);
    match h.rule().del(msg).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == ENOENT => Ok(false),
        Err(e) => Err(DataplaneError::Netlink {
            op: format!("delete rule {r:?}"),
            source: e,
        }),
    }
}

/// Delete the route to `dst` in `table` without listing routes; `Ok(false)` when there was none.
pub async fn del_route_to(h: &Handle, dst: IpNet, table: u32) -> Result<bool> {
    let msg = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
        .map_err(|e| DataplaneError::NotFound(format!("route to {dst}: {e}")))?
        .table_id(table)
        .build();
    match h.route().del(msg).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == ESRCH || errno(&e) == ENOENT => Ok(false),
        Err(e) => Err(DataplaneError::Netlink {
            op: format!("delete route {dst} table {table}"),
            source: e,
        }),
    }
}

/// Delete a rule read by [`rules`].
pub async fn del_rule(h: &Handle, r: &Rule, msg: &RuleMessage) -> Result<()> {
    h.rule()
        .del(msg.clone())
        .execute()
        .await
        .map_err(DataplaneError::netlink(format!("delete rule {r:?}")))
}

/// Permanent neighbours of a link, both families: (address, MAC).
pub async fn permanent_neighbours(h: &Handle, index: u32) -> Result<Vec<(IpAddr, Vec<u8>)>> {
    // An unspecified family dumps the ARP and the NDP tables alike.
    let msgs: Vec<_> = h
        .neighbours()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(DataplaneError::netlink("list neighbours"))?;
    let mut out = Vec::new();
    for m in msgs {
        if m.header.ifindex != index || m.header.state != NeighbourState::Permanent {
            continue;
        }
        let mut ip = None;
        let mut mac = Vec::new();
        for a in &m.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => {
                    ip = Some(IpAddr::V4(*v))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => {
                    ip = Some(IpAddr::V6(*v))
                }
                NeighbourAttribute::LinkLayerAddress(l) => mac = l.clone(),
                _ => {}
            }
        }
        if let Some(ip) = ip {
            out.push((ip, mac));
        }
    }
    Ok(out)
}

/// Add (or replace) a permanent neighbour `ip → mac` on a link.
pub async fn add_permanent_neighbour(
    h: &Handle,
    link: &Link,
    ip: IpAddr,
    mac: &[u8],
) -> Result<()> {
    h.neighbours()
        .add(link.index, ip)
        .link_layer_address(mac)
        .state(NeighbourState::Permanent)
        .replace()
        .execute()
        .await
        .map_err(DataplaneError::netlink(format!(
            "add neighbour {ip} lladdr {} dev {}",
            crate::format_mac(mac),
            link.name
        )))
}
