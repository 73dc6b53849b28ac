//! The node's networking, owned by the daemon (spec e.5/e.6): each attached ENI's link set up
//! by MAC, the node-level rules, and the SNAT/connmark rules reconciled through `iptables`.
//! With a simulated cloud it first makes links standing in for the ENIs (and, for the primary,
//! what DHCP would have done), so the same path runs on a laptop inside a network namespace.

use std::time::Duration;

use ipnet::Ipv4Net;
use vpc_cni_cloud::{Cloud, Interface};
use vpc_cni_dataplane::iptables::{IptablesBin, reconcile};
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
    let h2 = &s.cfg.host;
    let rules = NodeRules {
        fwmark: (h2.node_port_support || !s.cfg.external_snat).then_some(h2.connmark),
        external_service_cidrs: h2.external_service_cidrs.clone(),
    };
    node::setup_node_rules(&h, &rules).await?;
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
