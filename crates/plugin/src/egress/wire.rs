//! The egress interface on the kernel (rtnetlink): a second veth pair per pod (`v4if0` or
//! `v6if0` inside, `veth<8 hex>` on the host) with the lease's address.
//!
//! IPv4 (pods of an IPv6 cluster): the pod holds `<lease>/22` (no prefix route), routes
//! `<gw>/32 scope link`, the range via the gateway and `0.0.0.0/0` via it (the conflist's route);
//! the host end holds the gateway `/32` and routes `<lease>/32` to the pod.
//! IPv6 (pods of an IPv4 cluster): IPv6 goes off on the pod's main interface, the pod holds
//! `<lease>/118` and a default route via the host end's link-local address; the host routes
//! `<lease>/128` to the pod.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use vpc_cni_dataplane::netns::{Netns, connect_here, connect_in};
use vpc_cni_dataplane::nl::{self, Link};
use vpc_cni_dataplane::veth::{
    VethEnds, create_veth, host_veth_sysctls, pod_v6_sysctls, poll_addresses, random_mac,
    wait_v6_stable,
};
use vpc_cni_dataplane::{DataplaneError, Handle, MAIN_TABLE, Result, format_mac};

/// What the egress interface gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressSpec {
    /// Pod-side interface (`v4if0` / `v6if0`).
    pub ifname: String,
    /// The pod's main interface (`CNI_IFNAME`), whose IPv6 goes off in IPv6 egress.
    pub main_if: String,
    /// The lease.
    pub addr: IpAddr,
    /// The egress range.
    pub subnet: IpNet,
    /// Its gateway (range network + 1).
    pub gateway: IpAddr,
    /// The route through the interface (`0.0.0.0/0`, `::/0`).
    pub route: IpNet,
    /// MTU of both ends.
    pub mtu: u32,
}

/// The two interfaces made, for the result: (name, MAC) of the host end and of the pod end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// Host end.
    pub host: (String, String),
    /// Pod end.
    pub pod: (String, String),
}

/// The seam between the egress command logic and the kernel.
#[allow(async_fn_in_trait)]
pub trait EgressNet {
    /// Make the interface in the namespace at `netns`.
    async fn setup(&self, netns: &str, spec: &EgressSpec) -> Result<Made>;
    /// Delete the pod's egress interface `ifname` (its host end and routes go with it); a
    /// missing namespace or interface is success.
    async fn teardown(&self, netns: &str, ifname: &str) -> Result<()>;
}

/// [`EgressNet`] on the real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct EgressNetlink;

fn host_name() -> Result<String> {
    let m = random_mac()?;
    Ok(format!("veth{}", format_mac(&m[2..]).replace(':', "")))
}

/// `/proc/sys` writes on the host (ignored where the kernel has no such file).
fn host_sysctl(path: &str, value: &str) -> Result<()> {
    if std::fs::read_to_string(path).unwrap_or_default().trim() == value {
        return Ok(());
    }
    match std::fs::write(path, value) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DataplaneError::Io {
            what: format!("write {value} to {path}"),
            source,
        }),
    }
}

impl EgressNet for EgressNetlink {
    async fn setup(&self, netns: &str, spec: &EgressSpec) -> Result<Made> {
        let pod_ns = Netns::open(netns)?;
        let host_ns = Netns::current()?;
        let host = connect_here()?;
        let pod = connect_in(&pod_ns)?;
        let ends = VethEnds {
            host_veth: host_name()?,
            container_if: spec.ifname.clone(),
            mtu: spec.mtu,
        };
        let mac = random_mac()?;
        let v6 = spec.addr.is_ipv6();
        if v6 {
            disable_main_v6(&pod_ns, &spec.main_if)?;
        } else {
            host_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        }
        create_veth(&host, &pod, &host_ns, &ends, mac).await?;
        host_veth_sysctls(&ends.host_veth, v6);
        if v6 {
            pod_v6_sysctls(&pod_ns, &ends.container_if)?;
        }
        let pod_link = nl::link_by_name(&pod, &ends.container_if)
            .await?
            .ok_or_else(|| DataplaneError::NotFound(format!("{} vanished", ends.container_if)))?;
        let host_link = nl::link_by_name(&host, &ends.host_veth)
            .await?
            .ok_or_else(|| DataplaneError::NotFound(format!("{} vanished", ends.host_veth)))?;
        nl::set_up(&host, &host_link, None).await?;
        if v6 {
            wire_v6(&host, &pod, &host_link, &pod_link, spec).await?;
        } else {
            wire_v4(&host, &pod, &host_link, &pod_link, spec).await?;
        }
        Ok(Made {
            host: (ends.host_veth, format_mac(&mac)),
            pod: (ends.container_if, format_mac(&pod_link.mac)),
        })
    }

    async fn teardown(&self, netns: &str, ifname: &str) -> Result<()> {
        if netns.is_empty() || !std::path::Path::new(netns).exists() {
            return Ok(());
        }
        let pod = connect_in(&Netns::open(netns)?)?;
        if let Some(l) = nl::link_by_name(&pod, ifname).await? {
            nl::del_link(&pod, &l).await?;
        }
        Ok(())
    }
}

/// Upstream turns IPv6 off on the pod's main interface when it adds the IPv6 egress one.
fn disable_main_v6(pod_ns: &Netns, main_if: &str) -> Result<()> {
    vpc_cni_dataplane::veth::pod_sysctls(pod_ns, &[(format!("{main_if}/disable_ipv6"), "1")])
}

async fn wire_v4(
    host: &Handle,
    pod: &Handle,
    host_link: &Link,
    pod_link: &Link,
    s: &EgressSpec,
) -> Result<()> {
    let addr = IpNet::new(s.addr, s.subnet.prefix_len()).expect("prefix of the subnet");
    nl::add_address_noprefixroute(pod, pod_link, addr).await?;
    nl::replace_route(pod, IpNet::from(s.gateway), None, pod_link, MAIN_TABLE).await?;
    nl::replace_route(pod, s.subnet, Some(s.gateway), pod_link, MAIN_TABLE).await?;
    if s.route != s.subnet {
        nl::replace_route(pod, s.route, Some(s.gateway), pod_link, MAIN_TABLE).await?;
    }
    nl::add_address(host, host_link, IpNet::from(s.gateway)).await?;
    nl::replace_route(host, IpNet::from(s.addr), None, host_link, MAIN_TABLE).await
}

async fn wire_v6(
    host: &Handle,
    pod: &Handle,
    host_link: &Link,
    pod_link: &Link,
    s: &EgressSpec,
) -> Result<()> {
    let IpNet::V6(addr) = IpNet::new(s.addr, s.subnet.prefix_len()).expect("prefix of the subnet")
    else {
        unreachable!("an IPv6 lease");
    };
    nl::add_address_nodad(pod, pod_link, addr).await?;
    let gw = host_link_local(host, host_link, Duration::from_secs(10)).await?;
    nl::replace_route(pod, s.route, Some(gw), pod_link, MAIN_TABLE).await?;
    nl::replace_route(host, IpNet::from(s.addr), None, host_link, MAIN_TABLE).await?;
    wait_v6_stable(pod, pod_link, Duration::from_secs(10)).await
}

/// The host end's link-local address, once the kernel has made it (at carrier) and it is no
/// longer tentative.
async fn host_link_local(h: &Handle, link: &Link, timeout: Duration) -> Result<IpAddr> {
    poll_addresses(h, link, timeout, |addrs| {
        addrs
            .iter()
            .find_map(|(n, bad)| match n.addr() {
                IpAddr::V6(a) if !bad && a.segments()[0] & 0xffc0 == 0xfe80 => Some(n.addr()),
                _ => None,
            })
            .ok_or_else(|| {
                "no usable IPv6 link-local address (IPv6 disabled on the host?)".to_string()
            })
    })
    .await
}
