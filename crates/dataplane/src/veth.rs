//! The veth pair of a pod: created from inside the pod's namespace with its peer placed in the
//! host's (one request, echoed back so no lookup follows), a random local MAC on the host end,
//! and the per-interface sysctls of both ends, including the IPv6 ones written from a thread
//! that enters the pod's namespace.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::netns::Netns;
use crate::nl::{self, Link};
use crate::{DataplaneError, Result};

/// The two ends of a veth pair and their MTU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethEnds {
    /// Host-side name.
    pub host_veth: String,
    /// Pod-side name.
    pub container_if: String,
    /// MTU of both ends.
    pub mtu: u32,
}

fn veth_message(
    p: &VethEnds,
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

/// Create the pair from inside the pod's namespace with the host end placed in `host_ns`
/// (a leftover host end of the same name is deleted and the request repeated); the pod end
/// as the kernel echoed it, when it did.
pub async fn create_veth(
    host: &Handle,
    pod: &Handle,
    host_ns: &Netns,
    p: &VethEnds,
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

/// Upstream's IPv6 settings on the host veth; hosts without IPv6 have no such files. An IPv6
/// pod's host end also skips duplicate address detection for its link-local address: until
/// that ends the kernel sends no neighbour solicitation from it, and the first packets to the
/// pod would wait a second.
pub fn host_veth_sysctls(name: &str, v6_pod: bool) {
    for (key, value) in [
        ("accept_ra", "0"),
        ("accept_redirects", "1"),
        ("forwarding", "0"),
    ] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/{key}"), value);
    }
    if v6_pod {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/accept_dad"), "0");
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

/// Enable IPv6 on the pod's interface and `lo` and skip duplicate address detection on the
/// interface (its only neighbour is the host end, which never holds the pod's address). Must
/// run before the host end comes up (carrier starts DAD).
pub fn pod_v6_sysctls(ns: &Netns, ifname: &str) -> Result<()> {
    pod_sysctls(
        ns,
        &[
            (format!("{ifname}/disable_ipv6"), "0"),
            ("lo/disable_ipv6".to_string(), "0"),
            (format!("{ifname}/accept_dad"), "0"),
        ],
    )
}

/// Write `net/ipv6/conf/<key>` = value inside the namespace `ns`, from a short-lived thread
/// that enters it: `/proc/sys/net` shows the namespace of the task that opens it. A missing
/// file (a kernel without IPv6) is skipped; the address requests fail later in the kernel's
/// own words.
pub fn pod_sysctls(ns: &Netns, writes: &[(String, &'static str)]) -> Result<()> {
    let fd = ns
        .fd()
        .try_clone_to_owned()
        .map_err(|source| DataplaneError::Io {
            what: format!("duplicate the descriptor of {}", ns.path()),
            source,
        })?;
    let path = ns.path().to_string();
    let writes = writes.to_vec();
    let worker = std::thread::spawn(move || -> Result<()> {
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            DataplaneError::Netns {
                path: path.clone(),
                source: std::io::Error::from(e),
            }
        })?;
        for (key, value) in writes {
            let file = format!("/proc/sys/net/ipv6/conf/{key}");
            match std::fs::write(&file, value) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(DataplaneError::Io {
                        what: format!("write {file} in {path}"),
                        source,
                    });
                }
            }
        }
        Ok(())
    });
    worker.join().unwrap_or_else(|_| {
        Err(DataplaneError::NotFound(
            "the sysctl thread panicked".into(),
        ))
    })
}

/// Wait (up to `timeout`) until no IPv6 address of `link` is tentative or has failed duplicate
/// address detection.
pub async fn wait_v6_stable(h: &Handle, link: &Link, timeout: Duration) -> Result<()> {
    poll_addresses(h, link, timeout, |addrs| {
        let unstable: Vec<String> = addrs
            .iter()
            .filter(|(n, bad)| *bad && n.addr().is_ipv6())
            .map(|(n, _)| n.to_string())
            .collect();
        if unstable.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "IPv6 addresses still tentative: {}",
                unstable.join(", ")
            ))
        }
    })
    .await
}

/// Read `link`'s addresses (with their tentative-or-failed flag) until `check` accepts them,
/// up to `timeout`. The kernel settles addresses from a work queue a moment after the link gets
/// carrier, so polls start at 1 ms and back off to upstream's 50 ms. `check`'s `Err` says what
/// is still missing; the last one is the timeout's error.
pub async fn poll_addresses<T>(
    h: &Handle,
    link: &Link,
    timeout: Duration,
    mut check: impl FnMut(&[(ipnet::IpNet, bool)]) -> std::result::Result<T, String>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        let why = match check(&nl::address_flags(h, link.index).await?) {
            Ok(v) => return Ok(v),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            return Err(DataplaneError::NotFound(format!(
                "{}: after {timeout:?}, {why}",
                link.name
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_macs_are_local_unicast() {
        let m = random_mac().unwrap();
        assert_eq!(m[0] & 0x03, 0x02);
    }
}
