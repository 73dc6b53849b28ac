//! The node's networking, owned by the daemon (spec e.5/e.6): each attached ENI's link set up
//! by MAC, the node-level rules, and the SNAT/connmark rules reconciled through `iptables`.
//! With a simulated cloud it first makes links standing in for the ENIs (and, for the primary,
//! what DHCP would have done), so the same path runs on a laptop inside a network namespace.

use std::time::Duration;

use ipnet::Ipv4Net;
use vpc_cni_cloud::{Cloud, Interface};
use vpc_cni_dataplane::iptables::{Iptables, IptablesBin, reconcile};
use vpc_cni_dataplane::netns::connect_here;
use vpc_cni_dataplane::node::{self, EniLink, NodeRules};
use vpc_cni_dataplane::snat::{SnatConfig, desired};
use vpc_cni_dataplane::{DataplaneError, nl, parse_mac};

use crate::state::Shared;

fn eni_link(i: &Interface) -> Result<EniLink, DataplaneError> {
    Ok(EniLink {
        mac: parse_mac(&i.mac).ok_or_else(|| {
            DataplaneError::NotFound(format!("ENI {} has an invalid MAC {:?}", i.id, i.mac))
        })?,
        primary_ip: i.primary_ip,
        subnet: i.subnet_cidr,
        device_number: i.device_number,
    })
}

/// How long to look for a fresh ENI's link (upstream: 5 tries, 3 s apart).
fn find_policy(sim: bool) -> (u32, Duration) {
    if sim {
        (1, Duration::ZERO)
    } else {
        (5, Duration::from_secs(3))
    }
}

async fn setup_one<C: Cloud>(
    s: &Shared<C>,
    h: &vpc_cni_dataplane::Handle,
    i: &Interface,
) -> Result<String, DataplaneError> {
    let eni = eni_link(i)?;
    if s.cfg.sim_links {
        let primary = (i.device_number == 0).then(|| {
            Ipv4Net::new(i.primary_ip, i.subnet_cidr.prefix_len()).expect("subnet prefix")
        });
        node::ensure_sim_link(h, &format!("eth{}", i.device_number), &eni.mac, primary).await?;
    }
    let (attempts, wait) = find_policy(s.cfg.sim_links);
    let link = node::setup_eni(h, &eni, s.cfg.host.eni_mtu, attempts, wait).await?;
    tracing::info!(eni = %i.id, link = %link.name, table = eni.table(), "ENI link configured");
    Ok(link.name)
}

/// Set the node up at start: every attached ENI, node rules, SNAT.
pub async fn setup_node<C: Cloud>(
    s: &Shared<C>,
    interfaces: &[Interface],
) -> Result<(), DataplaneError> {
    let h = connect_here()?;
    if s.cfg.sim_links {
        node::loopback_up(&h).await?;
        // What the EKS AMI does on a real node. Already on: nothing to write (a container's
        // /proc/sys is read-only unless privileged).
        let path = "/proc/sys/net/ipv4/ip_forward";
        if std::fs::read_to_string(path).unwrap_or_default().trim() != "1" {
            std::fs::write(path, "1").map_err(|source| DataplaneError::Io {
                what: "enable net.ipv4.ip_forward (set it on the node, or run privileged)".into(),
                source,
            })?;
        }
    }
    let mut primary_if = String::from("eth0");
    for i in interfaces {
        let name = setup_one(s, &h, i).await?;
        if i.device_number == 0 {
            primary_if = name;
        }
    }
    if s.cfg.ipv6 {
        return setup_v6_node(s, &h, interfaces, &primary_if).await;
    }
    let h2 = &s.cfg.host;
    let rules = NodeRules {
        fwmark: (h2.node_port_support || !s.cfg.external_snat).then_some(h2.connmark),
        external_service_cidrs: h2.external_service_cidrs.clone(),
    };
    node::setup_node_rules(&h, &rules).await?;
    if s.cfg.v6_egress {
        v6_basics(s, &h, interfaces, &primary_if).await?;
        block_egress_range(true)?;
    }
    let snat = SnatConfig {
        vpc_cidrs: s.meta.vpc_cidrs.clone(),
        exclude_cidrs: s.cfg.exclude_snat_cidrs.clone(),
        node_ip: s.meta.primary_ip,
        randomize: h2.randomize,
        external_snat: s.cfg.external_snat,
        mark: h2.connmark,
        veth_prefix: h2.veth_prefix.clone(),
        node_port_support: h2.node_port_support,
        primary_if,
    };
    let want = desired(&snat);
    let changes = tokio::task::spawn_blocking(move || reconcile(&IptablesBin::default(), &want))
        .await
        .map_err(|e| DataplaneError::NotFound(format!("iptables task: {e}")))??;
    tracing::info!(
        changes = changes.len(),
        "SNAT and connmark rules reconciled"
    );
    Ok(())
}

/// An IPv6 node (spec e.5): the IPv6 basics ([`v6_basics`]), no SNAT or connmark rules
/// (upstream writes none in IPv6 mode), and new connections to the IPv4 egress range
/// (`169.254.172.0/22`) from elsewhere rejected.
async fn setup_v6_node<C: Cloud>(
    s: &Shared<C>,
    h: &vpc_cni_dataplane::Handle,
    interfaces: &[Interface],
    primary_if: &str,
) -> Result<(), DataplaneError> {
    v6_basics(s, h, interfaces, primary_if).await?;
    let rules = NodeRules {
        fwmark: None,
        external_service_cidrs: s.cfg.host.external_service_cidrs.clone(),
    };
    node::setup_node_rules(h, &rules).await?;
    block_egress_range(false)?;
    tracing::info!(primary = %primary_if, "IPv6 node set up: forwarding on, no SNAT rules");
    Ok(())
}

/// What upstream's init container does for `ENABLE_IPv6` or `ENABLE_V6_EGRESS`: IPv6 on,
/// forwarding on, router advertisements still accepted on the primary interface
/// (`accept_ra=2`); with a simulated cloud also the node's IPv6 address on the primary link,
/// as the VPC's DHCPv6 would put it.
async fn v6_basics<C: Cloud>(
    s: &Shared<C>,
    h: &vpc_cni_dataplane::Handle,
    interfaces: &[Interface],
    primary_if: &str,
) -> Result<(), DataplaneError> {
    for (key, value) in [
        ("all/disable_ipv6".to_string(), "0"),
        ("all/forwarding".to_string(), "1"),
        (format!("{primary_if}/accept_ra"), "2"),
    ] {
        let path = format!("/proc/sys/net/ipv6/conf/{key}");
        if std::fs::read_to_string(&path).unwrap_or_default().trim() == value {
            continue;
        }
        std::fs::write(&path, value).map_err(|source| DataplaneError::Io {
            what: format!(
                "IPv6 node set-up: write {value} to {path} (set it on the node, or run privileged)"
            ),
            source,
        })?;
    }
    if s.cfg.sim_links
        && let (Some(ip), Some(primary)) = (
            s.meta.ipv6,
            interfaces.iter().find(|i| i.device_number == 0),
        )
    {
        let len = primary
            .subnet_ipv6_cidrs
            .first()
            .map_or(64, |n| n.prefix_len());
        let addr = ipnet::Ipv6Net::new(ip, len).expect("prefix length from a CIDR");
        let link = node::find_link(h, &eni_link(primary)?.mac, 1, Duration::ZERO).await?;
        nl::add_address_nodad(h, &link, addr).await?;
    }
    Ok(())
}

/// Reject new connections forwarded to the other family's egress range (first rule of
/// `filter FORWARD`, as upstream): pods reach out through their egress interface, but nothing
/// reaches a pod through it. `v6`: the IPv6 range of an IPv4 node with `ENABLE_V6_EGRESS`.
fn block_egress_range(v6: bool) -> Result<(), DataplaneError> {
    let (ipt, range, family) = if v6 {
        (IptablesBin::v6(), "fd00::ac:0/118", "v6")
    } else {
        (IptablesBin::default(), "169.254.172.0/22", "v4")
    };
    let rule: Vec<String> = [
        "-d",
        range,
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-m",
        "comment",
        "--comment",
        &format!("Block Node Local Pod access via IP{family}"),
        "-j",
        "REJECT",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let mut check = vec!["-C".to_string(), "FORWARD".into()];
    check.extend(rule.iter().cloned());
    if ipt.exec("filter", &check).is_ok() {
        return Ok(());
    }
    let mut insert = vec!["-I".to_string(), "FORWARD".into(), "1".into()];
    insert.extend(rule);
    ipt.exec("filter", &insert)
}

/// Configure an ENI the pool just attached.
pub async fn on_new_eni<C: Cloud>(s: &Shared<C>, i: &Interface) {
    if !s.cfg.host_network {
        return;
    }
    let r = async {
        let h = connect_here()?;
        setup_one(s, &h, i).await
    }
    .await;
    if let Err(e) = r {
        tracing::error!(eni = %i.id, error = %e, "failed to set up the ENI's link");
    }
}

/// Forget an ENI the pool freed: its `from` rule, and with a simulated cloud its stand-in link.
pub async fn on_eni_freed<C: Cloud>(s: &Shared<C>, i: &Interface) {
    if !s.cfg.host_network {
        return;
    }
    let r = async {
        let eni = eni_link(i)?;
        let h = connect_here()?;
        for (rule, msg) in nl::rules(&h).await? {
            if rule == eni.rule() {
                nl::del_rule(&h, &rule, &msg).await?;
            }
        }
        if s.cfg.sim_links
            && let Some(l) = nl::link_by_mac(&h, &eni.mac).await?
        {
            nl::del_link(&h, &l).await?;
        }
        Ok::<_, DataplaneError>(())
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(eni = %i.id, error = %e, "cleanup after freeing the ENI failed");
    }
}
