//! A pod's network (spec e.3/e.4), either family: the veth pair, the pod side (`<ip>/32` or
//! `/128`, the `169.254.1.1` / `fe80::1` link-scope gateway, a default route through it, a
//! permanent neighbour entry pointing the gateway at the host veth's MAC; for IPv6 the pod's
//! interface and `lo` enabled and the addresses past duplicate address detection) and the host
//! side (host route, `to <ip>` rule at 512, `from <ip>` rule at 1536 for secondary-ENI tables).
//! [`PodSpec`] says what should exist; [`PodNetwork`] is the seam that makes it so, takes it
//! away, or reports what is missing.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;
use rtnetlink::Handle;

use crate::netns::{Netns, connect_here, connect_in};
use crate::nl::{self, Link, Rule};
use crate::veth::{VethEnds, create_veth, host_veth_sysctls, pod_v6_sysctls, random_mac};
use crate::{DataplaneError, MAIN_TABLE, PRIO_FROM_POD, PRIO_TO_POD, Result, pod_gateway};

/// How long an IPv6 pod's addresses may stay tentative (upstream's `v6DADTimeout`).
const V6_DAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the dataplane needs to wire (or unwire) one pod address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// The pod address (IPv4, or IPv6 in an IPv6 cluster).
    pub ip: IpAddr,
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
    /// Whether this is an IPv6 pod address.
    pub fn is_v6(&self) -> bool {
        self.ip.is_ipv6()
    }

    /// The pod's fake gateway: `169.254.1.(i+1)`, or `fe80::(i+1)` for IPv6.
    pub fn gateway(&self) -> IpAddr {
        if self.is_v6() {
            IpAddr::V6(Ipv6Addr::new(
                0xfe80,
                0,
                0,
                0,
                0,
                0,
                0,
                self.index as u16 + 1,
            ))
        } else {
            IpAddr::V4(pod_gateway(self.index))
        }
    }

    /// The pod address as a host prefix (`/32` or `/128`).
    pub fn host(&self) -> IpNet {
        IpNet::from(self.ip)
    }

    fn default_net(&self) -> IpNet {
        if self.is_v6() {
            "::/0".parse().expect("valid")
        } else {
            "0.0.0.0/0".parse().expect("valid")
        }
    }

    fn veth(&self) -> VethEnds {
        VethEnds {
            host_veth: self.host_veth.clone(),
            container_if: self.container_if.clone(),
            mtu: self.mtu,
        }
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
    pub pod_addrs: Vec<IpNet>,
    /// Pod routes in the pod table: (destination, gateway, output interface).
    pub pod_routes: Vec<(IpNet, Option<IpAddr>, Option<u32>)>,
    /// Permanent neighbours on the pod link.
    pub pod_neighbours: Vec<(IpAddr, Vec<u8>)>,
    /// The host veth.
    pub host_link: Option<Link>,
    /// Host main-table routes: (destination, output interface).
    pub host_routes: Vec<(IpNet, Option<u32>)>,
    /// Host rules.
    pub host_rules: Vec<Rule>,
}

/// What of `spec` is missing in `seen`, one sentence each (empty: all there).
pub fn missing(spec: &PodSpec, seen: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    let gw = IpNet::from(spec.gateway());
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
                out.push(format!("address {} is missing on {}", spec.host(), l.name));
            }
            let has = |dst: IpNet, via: Option<IpAddr>| {
                seen.pod_routes
                    .iter()
                    .any(|(d, g, o)| *d == dst && *g == via && *o == Some(l.index))
            };
            if !has(gw, None) {
                out.push(format!("route {gw} dev {} is missing in the pod", l.name));
            }
            if !has(spec.default_net(), Some(spec.gateway())) {
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
                    "host route {} dev {} is missing",
                    spec.host(),
                    h.name
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
        let sides = Sides {
            host: &host,
            pod: &pod,
            host_ns: &host_ns,
            pod_ns: &pod_ns,
        };
        for p in pods {
            setup_one(&sides, p).await?;
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

/// The namespaces and netlink connections one ADD works with.
struct Sides<'a> {
    host: &'a Handle,
    pod: &'a Handle,
    host_ns: &'a Netns,
    pod_ns: &'a Netns,
}

async fn setup_one(sides: &Sides<'_>, p: &PodSpec) -> Result<()> {
    let (host, pod) = (sides.host, sides.pod);
    let mac = random_mac()?;
    let echoed = create_veth(host, pod, sides.host_ns, &p.veth(), mac).await?;
    host_veth_sysctls(&p.host_veth, p.is_v6());
    if p.is_v6() {
        pod_v6_sysctls(sides.pod_ns, &p.container_if)?;
    }
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
        nl::replace_route(pod, IpNet::from(gw), None, &pod_link, table).await?;
        nl::replace_route(pod, p.default_net(), Some(gw), &pod_link, table).await
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
    let pod_addr = async {
        match p.host() {
            // Unique by IPAM, and its only neighbour never holds it: no DAD to wait for.
            IpNet::V6(n) => nl::add_address_nodad(pod, &pod_link, n).await,
            v4 => nl::add_address(pod, &pod_link, v4).await,
        }
    };
    let pod_neigh = nl::add_permanent_neighbour(pod, &pod_link, gw, &host_link.mac);
    let (a, b, c, d, e, f) = futures::join!(
        host_route, host_rules, pod_routes, pod_rule, pod_addr, pod_neigh
    );
    a.and(b).and(c).and(d).and(e).and(f)?;
    if p.is_v6() {
        crate::veth::wait_v6_stable(pod, &pod_link, V6_DAD_TIMEOUT).await?;
    }
    Ok(())
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
        host_routes: nl::routes_of(host, MAIN_TABLE, p.is_v6())
            .await?
            .into_iter()
            .map(|r| (r.dst, r.oif))
            .collect(),
        host_rules: nl::rules_of(host, p.is_v6())
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .collect(),
        pod_link: nl::link_by_name(pod, &p.container_if).await?,
        ..Observed::default()
    };
    if let Some(l) = &seen.pod_link {
        seen.pod_addrs = nl::addresses(pod, l.index).await?;
        seen.pod_routes = nl::routes_of(pod, p.pod_table(), p.is_v6())
            .await?
            .into_iter()
            .map(|r| (r.dst, r.gateway, r.oif))
            .collect();
        seen.pod_neighbours = nl::permanent_neighbours(pod, l.index).await?;
    }
    Ok(seen)
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
}
