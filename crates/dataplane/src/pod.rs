//! A pod's network (spec e.3/e.4): the veth pair, the pod side (`<ip>/32`, the
//! `169.254.1.1` link-scope gateway, a default route through it, a permanent neighbour entry
//! pointing the gateway at the host veth's MAC) and the host side (`/32` route, `to <ip>` rule
//! at 512, `from <ip>` rule at 1536 for secondary-ENI tables). [`PodSpec`] says what should
//! exist; [`PodNetwork`] is the seam that makes it so, takes it away, or reports what is missing.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use ipnet::Ipv4Net;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::netns::{Netns, connect_here, connect_in};
use crate::nl::{self, Link, Rule};
use crate::{
    DataplaneError, MAIN_TABLE, PRIO_FROM_POD, PRIO_TO_POD, Result, format_mac, pod_gateway,
};

/// Everything the dataplane needs to wire (or unwire) one pod address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// The pod address.
    pub ip: Ipv4Addr,
    /// Route table of the address's ENI (≤ 1 or 254 = main).
    pub route_table: u32,
    /// Host-side veth name.
    pub host_veth: String,
    /// Pod-side interface name.
    pub container_if: String,
    /// MTU of both ends.
    pub mtu: u32,
    /// Position among the pod's addresses (0 for regular pods).
    pub index: usize,
}

impl PodSpec {
    /// The pod's fake gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        pod_gateway(self.index)
    }

    fn host(&self) -> Ipv4Net {
        Ipv4Net::new(self.ip, 32).expect("/32 is valid")
    }

    fn eni_table(&self) -> u32 {
        if self.route_table <= 1 {
            MAIN_TABLE
        } else {
            self.route_table
        }
    }

    /// Table of the routes inside the pod (main for the first interface, `index` after).
    pub fn pod_table(&self) -> u32 {
        if self.index == 0 {
            MAIN_TABLE
        } else {
            self.index as u32
        }
    }

    /// The host rules this address needs.
    pub fn host_rules(&self) -> Vec<Rule> {
        let mut out = vec![Rule {
            priority: PRIO_TO_POD,
            table: MAIN_TABLE,
            src: None,
            dst: Some(self.host()),
            fwmark: None,
        }];
        if self.eni_table() != MAIN_TABLE {
            out.push(Rule {
                priority: PRIO_FROM_POD,
                table: self.eni_table(),
                src: Some(self.host()),
                dst: None,
                fwmark: None,
            });
        }
        out
    }
}

/// What [`PodNetwork::check`] saw of one pod address.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The pod-side link.
    pub pod_link: Option<Link>,
    /// Its addresses.
    pub pod_addrs: Vec<Ipv4Net>,
    /// Pod routes in the pod table: (destination, gateway, output interface).
    pub pod_routes: Vec<(Ipv4Net, Option<Ipv4Addr>, Option<u32>)>,
    /// Permanent neighbours on the pod link.
    pub pod_neighbours: Vec<(Ipv4Addr, Vec<u8>)>,
    /// The host veth.
    pub host_link: Option<Link>,
    /// Host main-table routes: (destination, output interface).
    pub host_routes: Vec<(Ipv4Net, Option<u32>)>,
    /// Host rules.
    pub host_rules: Vec<Rule>,
}

/// What of `spec` is missing in `seen`, one sentence each (empty: all there).
pub fn missing(spec: &PodSpec, seen: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    let gw = Ipv4Net::new(spec.gateway(), 32).expect("/32");
    match &seen.pod_link {
        None => out.push(format!(
            "interface {} is missing in the pod",
            spec.container_if
        )),
        Some(l) => {
            if !l.up {
                out.push(format!("interface {} is down", spec.container_if));
            }
            if !seen.pod_addrs.contains(&spec.host()) {
                out.push(format!("address {}/32 is missing on {}", spec.ip, l.name));
            }
            let has = |dst: Ipv4Net, via: Option<Ipv4Addr>| {
                seen.pod_routes
                    .iter()
                    .any(|(d, g, o)| *d == dst && *g == via && *o == Some(l.index))
            };
            if !has(gw, None) {
                out.push(format!("route {gw} dev {} is missing in the pod", l.name));
            }
            if !has(Ipv4Net::default(), Some(spec.gateway())) {
                out.push(format!(
                    "default route via {} is missing in the pod",
                    spec.gateway()
                ));
            }
            let host_mac = seen.host_link.as_ref().map(|h| h.mac.clone());
            if !seen
                .pod_neighbours
                .iter()
                .any(|(ip, mac)| *ip == spec.gateway() && Some(mac) == host_mac.as_ref())
            {
                out.push(format!(
                    "permanent neighbour {} → host veth MAC is missing in the pod",
                    spec.gateway()
                ));
            }
        }
    }
    match &seen.host_link {
        None => out.push(format!("host veth {} is missing", spec.host_veth)),
        Some(h) => {
            if !seen
                .host_routes
                .iter()
                .any(|(d, o)| *d == spec.host() && *o == Some(h.index))
            {
                out.push(format!(
                    "host route {}/32 dev {} is missing",
                    spec.ip, h.name
                ));
            }
        }
    }
    for r in spec.host_rules() {
        if !seen.host_rules.contains(&r) {
            out.push(format!(
                "host rule prio {} {} lookup {} is missing",
                r.priority,
                match (r.src, r.dst) {
                    (Some(s), _) => format!("from {s}"),
                    (_, Some(d)) => format!("to {d}"),
                    _ => "all".into(),
                },
                r.table
            ));
        }
    }
    out
}

/// The seam between the plugin's command logic and the kernel.
#[allow(async_fn_in_trait)]
pub trait PodNetwork {
    /// Wire every address of a pod into the namespace at `netns`.
    async fn setup(&self, netns: &str, pods: &[PodSpec]) -> Result<()>;
    /// Remove what [`PodNetwork::setup`] made, best-effort; returns every error met. The veth
    /// is deleted from inside `netns` (when it still exists), so a newer pod of the same name,
    /// whose host veth has the same name, is never touched.
    async fn teardown(&self, netns: Option<&str>, pods: &[PodSpec]) -> Vec<DataplaneError>;
    /// What is missing (empty: the pod is wired as it should be).
    async fn check(&self, netns: &str, pods: &[PodSpec]) -> Result<Vec<String>>;
}

/// [`PodNetwork`] on the real kernel through rtnetlink.
#[derive(Debug, Default, Clone, Copy)]
pub struct Netlink;

impl PodNetwork for Netlink {
    async fn setup(&self, netns: &str, pods: &[PodSpec]) -> Result<()> {
        let pod_ns = Netns::open(netns)?;
        let host_ns = Netns::current()?;
        let host = connect_here()?;
        let pod = connect_in(&pod_ns)?;
        for p in pods {
            setup_one(&host, &pod, &host_ns, p).await?;
        }
        Ok(())
    }

    async fn teardown(&self, netns: Option<&str>, pods: &[PodSpec]) -> Vec<DataplaneError> {
        let host = match connect_here() {
            Ok(h) => h,
            Err(e) => return vec![e],
        };
        // A netns that is already gone took the veth pair with it.
        let pod = netns
            .filter(|n| !n.is_empty() && std::path::Path::new(n).exists())
            .and_then(|n| Netns::open(n).and_then(|ns| connect_in(&ns)).ok());
        let mut errors = Vec::new();
        for p in pods {
            teardown_one(&host, pod.as_ref(), p, &mut errors).await;
        }
        errors
    }

    async fn check(&self, netns: &str, pods: &[PodSpec]) -> Result<Vec<String>> {
        let pod_ns = Netns::open(netns)?;
        let host = connect_here()?;
        let pod = connect_in(&pod_ns)?;
        let mut out = Vec::new();
        for p in pods {
            out.extend(missing(p, &observe(&host, &pod, p).await?));
        }
        Ok(out)
    }
}

fn veth_message(
    p: &PodSpec,
    host_ns: &Netns,
    mac: [u8; 6],
) -> netlink_packet_route::link::LinkMessage {
    // The pod end is created up (IFF_UP in the request: one round trip fewer under RTNL). The
    // host end cannot be: the kernel configures the peer before linking the pair, and opening
    // an unpaired veth fails with ENOTCONN.
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(p.host_veth.clone())
        .mtu(p.mtu)
        .address(mac.to_vec())
        .setns_by_fd(host_ns.fd().as_raw_fd())
        .build();
    LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(p.container_if.clone())
        .mtu(p.mtu)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build()
}

/// Send a link creation asking the kernel to echo the new link back (Linux ≥ 6.3): the echo
/// carries the pod end's index and its peer's, saving a lookup under RTNL. `Ok(None)` when the
/// kernel acknowledged without echoing.
async fn add_link_echo(
    h: &Handle,
    msg: netlink_packet_route::link::LinkMessage,
) -> std::result::Result<Option<Link>, rtnetlink::Error> {
    use futures::StreamExt;
    use rtnetlink::packet_core::{
        NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REQUEST, NetlinkMessage,
        NetlinkPayload,
    };
    use rtnetlink::packet_route::RouteNetlinkMessage;
    let mut req = NetlinkMessage::from(RouteNetlinkMessage::NewLink(msg));
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO;
    let mut responses = h.clone().request(req)?;
    let mut echoed = None;
    while let Some(m) = responses.next().await {
        match m.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                echoed = Some(nl::to_link(&l))
            }
            NetlinkPayload::Error(e) if e.code.is_some() => {
                return Err(rtnetlink::Error::NetlinkError(e));
            }
            _ => {}
        }
    }
    Ok(echoed)
}

async fn create_veth(
    host: &Handle,
    pod: &Handle,
    host_ns: &Netns,
    p: &PodSpec,
    mac: [u8; 6],
) -> Result<Option<Link>> {
    let what = || {
        format!(
            "create veth {} (pod) / {} (host)",
            p.container_if, p.host_veth
        )
    };
    match add_link_echo(pod, veth_message(p, host_ns, mac)).await {
        Ok(l) => Ok(l),
        // A leftover host veth of the same name (a pod re-created under the same name).
        Err(e) if nl::errno(&e) == 17 => {
            if let Some(old) = nl::link_by_name(host, &p.host_veth).await? {
                nl::del_link(host, &old).await?;
            }
            add_link_echo(pod, veth_message(p, host_ns, mac))
                .await
                .map_err(DataplaneError::netlink(what()))
        }
        Err(e) => Err(DataplaneError::Netlink {
            op: what(),
            source: e,
        }),
    }
}

async fn setup_one(host: &Handle, pod: &Handle, host_ns: &Netns, p: &PodSpec) -> Result<()> {
    let mac = random_mac()?;
    let echoed = create_veth(host, pod, host_ns, p, mac).await?;
    host_veth_sysctls(&p.host_veth);
    let pod_link = match echoed.filter(|l| l.name == p.container_if) {
        Some(l) => l,
        None => nl::link_by_name(pod, &p.container_if)
            .await?
            .ok_or_else(|| DataplaneError::NotFound(format!("{} vanished", p.container_if)))?,
    };
    let host_link = match pod_link.peer_index {
        Some(index) => Link {
            index,
            name: p.host_veth.clone(),
            mac: mac.to_vec(),
            up: true,
            mtu: p.mtu,
            peer_index: None,
        },
        None => nl::link_by_name(host, &p.host_veth).await?.ok_or_else(|| {
            DataplaneError::NotFound(format!("host veth {} vanished", p.host_veth))
        })?,
    };
    // Independent requests go out together (one wait per chain instead of one per request):
    // the host side (link up, then its /32 route; the rules need no link) and the pod side
    // (the gateway's /32 before the default route via it; address, neighbour and rule need
    // neither). The kernel still applies them one at a time under RTNL.
    let gw = p.gateway();
    let table = p.pod_table();
    let host_route = async {
        nl::set_up(host, &host_link, None).await?;
        nl::replace_route(host, p.host(), None, &host_link, MAIN_TABLE).await
    };
    let host_rules = async {
        for r in p.host_rules() {
            ensure_rule(host, &r).await?;
        }
        Ok(())
    };
    let pod_routes = async {
        let gw32 = Ipv4Net::new(gw, 32).expect("/32");
        nl::replace_route(pod, gw32, None, &pod_link, table).await?;
        nl::replace_route(pod, Ipv4Net::default(), Some(gw), &pod_link, table).await
    };
    let pod_rule = async {
        if p.index > 0 {
            let from = Rule {
                priority: 1,
                table,
                src: Some(p.host()),
                dst: None,
                fwmark: None,
            };
            ensure_rule(pod, &from).await?;
        }
        Ok(())
    };
    let pod_addr = nl::add_address(pod, &pod_link, p.host());
    let pod_neigh = nl::add_permanent_neighbour(pod, &pod_link, gw, &host_link.mac);
    let (a, b, c, d, e, f) = futures::join!(
        host_route, host_rules, pod_routes, pod_rule, pod_addr, pod_neigh
    );
    a.and(b).and(c).and(d).and(e).and(f)
}

/// Add `r` unless an identical rule exists (the kernel answers EEXIST: no listing needed).
pub async fn ensure_rule(h: &Handle, r: &Rule) -> Result<()> {
    nl::add_rule(h, r).await
}

async fn teardown_one(
    host: &Handle,
    pod: Option<&Handle>,
    p: &PodSpec,
    errors: &mut Vec<DataplaneError>,
) {
    // Delete by description, not by listing: DEL cost stays flat however many pods the node has.
    // Table 0 matches any table: every `from <ip> prio 1536` goes, whichever table it names.
    let to_pod = Rule {
        priority: PRIO_TO_POD,
        table: MAIN_TABLE,
        src: None,
        dst: Some(p.host()),
        fwmark: None,
    };
    let from_pod = Rule {
        priority: PRIO_FROM_POD,
        table: 0,
        src: Some(p.host()),
        dst: None,
        fwmark: None,
    };
    // The address may belong to another pod by now (a restarted daemon gave it out again, a
    // newer sandbox of the same pod): its /32 route then points at another interface, and that
    // route and its rules stay. Ours is the host peer of the pod's interface, when it exists.
    let ours = match pod {
        Some(pod) => nl::link_by_name(pod, &p.container_if)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.peer_index),
        None => None,
    };
    match crate::owners::route_owner(host, p.ip).await {
        Ok(Some(owner)) if Some(owner) != ours => {
            errors.push(DataplaneError::NotFound(format!(
                "the route to {} points at interface {owner}, not this pod's: another pod owns the address, its route and rules are left alone",
                p.ip
            )));
            delete_pod_end(pod, p, errors).await;
            return;
        }
        Ok(_) => {}
        Err(e) => errors.push(e),
    }
    if let Err(e) = nl::del_rule_matching(host, &to_pod).await {
        errors.push(e);
    }
    for _ in 0..8 {
        match nl::del_rule_matching(host, &from_pod).await {
            Ok(true) => continue,
            Ok(false) => break,
            Err(e) => {
                errors.push(e);
                break;
            }
        }
    }
    if let Err(e) = nl::del_route_to(host, p.host(), MAIN_TABLE).await {
        errors.push(e);
    }
    delete_pod_end(pod, p, errors).await;
}

/// Delete the pod's interface from inside its namespace (the host end goes with it).
async fn delete_pod_end(pod: Option<&Handle>, p: &PodSpec, errors: &mut Vec<DataplaneError>) {
    if let Some(pod) = pod {
        match nl::link_by_name(pod, &p.container_if).await {
            Ok(Some(l)) => {
                if let Err(e) = nl::del_link(pod, &l).await {
                    errors.push(e);
                }
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
}

async fn observe(host: &Handle, pod: &Handle, p: &PodSpec) -> Result<Observed> {
    let mut seen = Observed {
        host_link: nl::link_by_name(host, &p.host_veth).await?,
        host_routes: nl::routes(host, MAIN_TABLE)
            .await?
            .into_iter()
            .map(|r| (r.dst, r.oif))
            .collect(),
        host_rules: nl::rules(host).await?.into_iter().map(|(r, _)| r).collect(),
        pod_link: nl::link_by_name(pod, &p.container_if).await?,
        ..Observed::default()
    };
    if let Some(l) = &seen.pod_link {
        seen.pod_addrs = nl::addresses(pod, l.index).await?;
        seen.pod_routes = nl::routes(pod, p.pod_table())
            .await?
            .into_iter()
            .map(|r| (r.dst, r.gateway, r.oif))
            .collect();
        seen.pod_neighbours = nl::permanent_neighbours(pod, l.index).await?;
    }
    Ok(seen)
}

/// Upstream's IPv6 settings on the host veth; hosts without IPv6 have no such files.
fn host_veth_sysctls(name: &str) {
    for (key, value) in [
        ("accept_ra", "0"),
        ("accept_redirects", "1"),
        ("forwarding", "0"),
    ] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/{key}"), value);
    }
}

/// A random locally administered unicast MAC.
pub fn random_mac() -> Result<[u8; 6]> {
    use std::io::Read;
    let mut mac = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut mac))
        .map_err(|source| DataplaneError::Io {
            what: "read /dev/urandom".into(),
            source,
        })?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

/// `format_mac` re-exported for messages about pods.
pub fn mac_string(mac: &[u8]) -> String {
    format_mac(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(table: u32, index: usize) -> PodSpec {
        PodSpec {
            ip: "10.0.1.5".parse().unwrap(),
            route_table: table,
            host_veth: "enib5faff8a083".into(),
            container_if: "eth0".into(),
            mtu: 9001,
            index,
        }
    }

    #[test]
    fn host_rules_per_table() {
        for (table, want) in [(254, 1), (1, 1), (0, 1), (2, 2), (3, 2)] {
            let rules = spec(table, 0).host_rules();
            assert_eq!(rules.len(), want, "table {table}");
            assert_eq!(rules[0].priority, PRIO_TO_POD);
            if want == 2 {
                assert_eq!((rules[1].priority, rules[1].table), (PRIO_FROM_POD, table));
            }
        }
        assert_eq!(spec(254, 0).pod_table(), MAIN_TABLE);
        assert_eq!(spec(254, 1).pod_table(), 1);
    }

    #[test]
    fn missing_names_each_absent_object() {
        let s = spec(3, 0);
        let all = missing(&s, &Observed::default());
        assert_eq!(all.len(), 4, "{all:?}");
        let link = |index, name: &str| Link {
            index,
            name: name.into(),
            mac: vec![2, 0, 0, 0, 0, index as u8],
            up: true,
            mtu: 9001,
            peer_index: None,
        };
        let complete = Observed {
            pod_link: Some(link(2, "eth0")),
            pod_addrs: vec!["10.0.1.5/32".parse().unwrap()],
            pod_routes: vec![
                ("169.254.1.1/32".parse().unwrap(), None, Some(2)),
                ("0.0.0.0/0".parse().unwrap(), Some(s.gateway()), Some(2)),
            ],
            pod_neighbours: vec![(s.gateway(), vec![2, 0, 0, 0, 0, 7])],
            host_link: Some(link(7, "enib5faff8a083")),
            host_routes: vec![("10.0.1.5/32".parse().unwrap(), Some(7))],
            host_rules: s.host_rules(),
        };
        assert!(missing(&s, &complete).is_empty());
        let mut no_rule = complete.clone();
        no_rule.host_rules.pop();
        assert_eq!(
            missing(&s, &no_rule),
            vec!["host rule prio 1536 from 10.0.1.5/32 lookup 3 is missing"]
        );
        let mut stale_neigh = complete.clone();
        stale_neigh.pod_neighbours[0].1 = vec![9; 6];
        assert_eq!(missing(&s, &stale_neigh).len(), 1);
    }

    #[test]
    fn random_macs_are_local_unicast() {
        let m = random_mac().unwrap();
        assert_eq!(m[0] & 0x03, 0x02);
    }
}
