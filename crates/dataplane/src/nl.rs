//! Thin typed helpers over rtnetlink: the links, addresses, routes, rules and neighbours the
//! CNI touches, read into small structs and written with one request each.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::AddressAttribute;
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

/// The IPv4 addresses of a link.
pub async fn addresses(h: &Handle, index: u32) -> Result<Vec<Ipv4Net>> {
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(DataplaneError::netlink("list addresses"))?;
    let mut out = Vec::new();
    for m in msgs.iter().filter(|m| m.header.index == index) {
        for a in &m.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = a
                && let Ok(n) = Ipv4Net::new(*ip, m.header.prefix_len)
            {
                out.push(n);
            }
        }
    }
    out.dedup();
    Ok(out)
}

/// Add an address (replacing one that exists).
pub async fn add_address(h: &Handle, link: &Link, net: Ipv4Net) -> Result<()> {
    h.address()
        .add(link.index, IpAddr::V4(net.addr()), net.prefix_len())
        .replace()
        .execute()
        .await
        .map_err(DataplaneError::netlink(format!(
            "add address {net} to {}",
            link.name
        )))
}

/// Delete an address.
pub async fn del_address(h: &Handle, link: &Link, net: Ipv4Net) -> Result<()> {
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(link.index)
        .set_address_filter(IpAddr::V4(net.addr()))
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

/// An IPv4 route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Destination.
    pub dst: Ipv4Net,
    /// Gateway.
    pub gateway: Option<Ipv4Addr>,
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
    let msgs: Vec<RouteMessage> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(DataplaneError::netlink("list routes"))?;
    let mut out = Vec::new();
    for m in msgs {
        let mut r = Route {
            dst: Ipv4Net::default(),
            gateway: None,
            oif: None,
            table: u32::from(m.header.table),
            scope_link: m.header.scope == RouteScope::Link,
            msg: m.clone(),
        };
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                    r.dst =
                        Ipv4Net::new(*ip, m.header.destination_prefix_length).unwrap_or_default();
                }
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => r.gateway = Some(*ip),
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

/// Add (or replace) a route: `dst [via gateway] dev oif [scope link] table t`.
pub async fn replace_route(
    h: &Handle,
    dst: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    link: &Link,
    table: u32,
) -> Result<()> {
    let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
        .output_interface(link.index)
        .table_id(table);
    b = match gateway {
        Some(gw) => b.gateway(gw),
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

/// An IPv4 policy rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Priority.
    pub priority: u32,
    /// Table.
    pub table: u32,
    /// `from`.
    pub src: Option<Ipv4Net>,
    /// `to`.
    pub dst: Option<Ipv4Net>,
    /// `fwmark value/mask`.
    pub fwmark: Option<(u32, u32)>,
}

/// Every IPv4 rule, with the kernel's message for deletion.
pub async fn rules(h: &Handle) -> Result<Vec<(Rule, RuleMessage)>> {
    let msgs: Vec<RuleMessage> = h
        .rule()
        .get(IpVersion::V4)
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
            RuleAttribute::Source(IpAddr::V4(ip)) => {
                r.src = Ipv4Net::new(*ip, m.header.src_len).ok();
            }
            RuleAttribute::Destination(IpAddr::V4(ip)) => {
                r.dst = Ipv4Net::new(*ip, m.header.dst_len).ok();
            }
            RuleAttribute::FwMark(v) => mark = Some(*v),
            RuleAttribute::FwMask(v) => mask = *v,
            _ => {}
        }
    }
    r.fwmark = mark.map(|m| (m, mask));
    r
}

/// The request describing `r` (selectors, priority, table, fwmark).
fn rule_request(h: &Handle, r: &Rule) -> rtnetlink::RuleAddRequest<Ipv4Addr> {
    let mut req = h
        .rule()
        .add()
        .v4()
        .priority(r.priority)
        .table_id(r.table)
        .action(RuleAction::ToTable);
    if let Some(src) = r.src {
        req = req.source_prefix(src.addr(), src.prefix_len());
    }
    if let Some(dst) = r.dst {
        req = req.destination_prefix(dst.addr(), dst.prefix_len());
    }
    if let Some((mark, mask)) = r.fwmark {
        req = req.fw_mark(mark);
        req.message_mut()
            .attributes
            .push(RuleAttribute::FwMask(mask));
    }
    req
}

/// Add a rule (an identical one already there is success).
pub async fn add_rule(h: &Handle, r: &Rule) -> Result<()> {
    match rule_request(h, r).execute().await {
        Err(e) if errno(&e) == EEXIST => Ok(()),
        other => other.map_err(DataplaneError::netlink(format!("add rule {r:?}"))),
    }
}

/// Delete the rule matching `r` exactly (priority, table, selectors) without listing rules;
/// `Ok(false)` when there was none.
pub async fn del_rule_matching(h: &Handle, r: &Rule) -> Result<bool> {
    let mut req = rule_request(h, r);
    let msg = req.message_mut().clone();
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
pub async fn del_route_to(h: &Handle, dst: Ipv4Net, table: u32) -> Result<bool> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
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

/// Permanent IPv4 neighbours of a link: (address, MAC).
pub async fn permanent_neighbours(h: &Handle, index: u32) -> Result<Vec<(Ipv4Addr, Vec<u8>)>> {
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
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => ip = Some(*v),
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
    ip: Ipv4Addr,
    mac: &[u8],
) -> Result<()> {
    h.neighbours()
        .add(link.index, IpAddr::V4(ip))
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
