//! The node's side (spec e.5), owned by ipamd: each secondary ENI's link found by MAC and
//! given its MTU, primary address and route table (gateway `/32` scope link, default route,
//! `from <ENI primary IP>` rule at 32765), the kernel's subnet route removed from main; the
//! node-level rules (`fwmark` at 1024, external service CIDRs at 1535); and, for the simulated
//! VPC, links standing in for attached ENIs so that the same code finds them.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec};

use crate::nl::{self, Link, Rule};
use crate::pod::ensure_rule;
use crate::{
    DataplaneError, MAIN_TABLE, PRIO_EXTERNAL_SERVICE, PRIO_FROM_ENI, PRIO_FWMARK, Result,
};

/// One attached ENI as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EniLink {
    /// Hardware address.
    pub mac: [u8; 6],
    /// The ENI's primary private IP.
    pub primary_ip: Ipv4Addr,
    /// Its subnet.
    pub subnet: Ipv4Net,
    /// Device number (0 = primary ENI).
    pub device_number: u32,
}

impl EniLink {
    /// Route table of the ENI (spec e.5: main for device 0, N + 1 otherwise; card 0 only).
    pub fn table(&self) -> u32 {
        if self.device_number == 0 {
            MAIN_TABLE
        } else {
            self.device_number + 1
        }
    }

    /// The VPC router: subnet network address + 1.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    fn address(&self) -> Ipv4Net {
        Ipv4Net::new(self.primary_ip, self.subnet.prefix_len()).expect("subnet prefix is valid")
    }

    /// The `from <primary IP> lookup <table> prio 32765` rule.
    pub fn rule(&self) -> Rule {
        Rule {
            priority: PRIO_FROM_ENI,
            table: self.table(),
            src: Some(IpNet::V4(Ipv4Net::new(self.primary_ip, 32).expect("/32"))),
            dst: None,
            fwmark: None,
        }
    }
}

/// Node-level routing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRules {
    /// Add `fwmark <mark>/<mark> lookup main prio 1024` (node-port support on or external SNAT off).
    pub fwmark: Option<u32>,
    /// `AWS_EXTERNAL_SERVICE_CIDRS`: `to <cidr> lookup main prio 1535` each.
    pub external_service_cidrs: Vec<Ipv4Net>,
}

/// Find the link of `eni` by MAC, retrying (`attempts` × `wait`) while the kernel catches up
/// with a fresh attachment.
pub async fn find_link(h: &Handle, mac: &[u8; 6], attempts: u32, wait: Duration) -> Result<Link> {
    for n in 0..attempts.max(1) {
        if let Some(l) = nl::link_by_mac(h, mac).await? {
            return Ok(l);
        }
        if n + 1 < attempts {
            tokio::time::sleep(wait).await;
        }
    }
    Err(DataplaneError::NotFound(format!(
        "no link with MAC {} after {attempts} attempts",
        crate::format_mac(mac)
    )))
}

/// Configure a secondary ENI (spec e.5 `setupENINetwork`). The primary ENI only gets its MTU.
pub async fn setup_eni(
    h: &Handle,
    eni: &EniLink,
    mtu: u32,
    attempts: u32,
    wait: Duration,
) -> Result<Link> {
    let link = find_link(h, &eni.mac, attempts, wait).await?;
    nl::set_up(h, &link, Some(mtu)).await?;
    if eni.device_number == 0 {
        return Ok(link);
    }
    for a in nl::addresses(h, link.index).await? {
        let global_v4 = matches!(a, IpNet::V4(v4) if !v4.addr().is_link_local());
        if global_v4 && a != IpNet::V4(eni.address()) {
            nl::del_address(h, &link, a).await?;
        }
    }
    nl::add_address(h, &link, eni.address()).await?;
    let gw = Ipv4Net::new(eni.gateway(), 32).expect("/32");
    retry(|| nl::replace_route(h, gw, None, &link, eni.table())).await?;
    retry(|| {
        nl::replace_route(
            h,
            Ipv4Net::default(),
            Some(eni.gateway().into()),
            &link,
            eni.table(),
        )
    })
    .await?;
    for r in nl::routes(h, MAIN_TABLE).await? {
        if r.dst == IpNet::V4(eni.subnet) && r.oif == Some(link.index) {
            nl::del_route(h, &r).await?;
        }
    }
    ensure_rule(h, &eni.rule()).await?;
    Ok(link)
}

/// Up to 5 tries with back-off from 500 ms (spec e.5).
async fn retry<F, Fut>(mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut wait = Duration::from_millis(500);
    let mut last = None;
    for _ in 0..5 {
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    Err(last.expect("at least one try"))
}

/// Make the node-level rules exactly `want` (stale 1024/1535 rules removed).
pub async fn setup_node_rules(h: &Handle, want: &NodeRules) -> Result<()> {
    let mut desired = Vec::new();
    if let Some(mark) = want.fwmark {
        desired.push(Rule {
            priority: PRIO_FWMARK,
            table: MAIN_TABLE,
            src: None,
            dst: None,
            fwmark: Some((mark, mark)),
        });
    }
    for c in &want.external_service_cidrs {
        desired.push(Rule {
            priority: PRIO_EXTERNAL_SERVICE,
            table: MAIN_TABLE,
            src: None,
            dst: Some(IpNet::V4(*c)),
            fwmark: None,
        });
    }
    for (r, msg) in nl::rules(h).await? {
        let ours = r.priority == PRIO_FWMARK || r.priority == PRIO_EXTERNAL_SERVICE;
        if ours && !desired.contains(&r) {
            nl::del_rule(h, &r, &msg).await?;
        }
    }
    for r in &desired {
        ensure_rule(h, r).await?;
    }
    Ok(())
}

/// Which kind of link stands in for simulated ENIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimLinkKind {
    /// `dummy` (kernel module `dummy`).
    Dummy,
    /// An empty `bridge`, for kernels built without `dummy`.
    Bridge,
}

/// Make sure a link named `name` with `mac` exists (simulated VPC only); on the primary ENI
/// also do what the OS's DHCP client does on EC2: the primary address with its subnet route,
/// and the default route via the subnet router.
pub async fn ensure_sim_link(
    h: &Handle,
    name: &str,
    mac: &[u8; 6],
    primary: Option<Ipv4Net>,
) -> Result<SimLinkKind> {
    let mut kind = SimLinkKind::Dummy;
    if nl::link_by_mac(h, mac).await?.is_none() {
        if let Some(stale) = nl::link_by_name(h, name).await? {
            nl::del_link(h, &stale).await?;
        }
        let dummy = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(
            netlink_packet_route::link::InfoKind::Dummy,
        )
        .name(name.to_string())
        .address(mac.to_vec())
        .build();
        if h.link().add(dummy).execute().await.is_err() {
            kind = SimLinkKind::Bridge;
            let bridge = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(
                netlink_packet_route::link::InfoKind::Bridge,
            )
            .name(name.to_string())
            .address(mac.to_vec())
            .build();
            h.link()
                .add(bridge)
                .execute()
                .await
                .map_err(DataplaneError::netlink(format!(
                    "create link {name} for a simulated ENI"
                )))?;
        }
    }
    let link = nl::link_by_mac(h, mac)
        .await?
        .ok_or_else(|| DataplaneError::NotFound(format!("simulated ENI link {name} vanished")))?;
    nl::set_up(h, &link, None).await?;
    if let Some(addr) = primary {
        nl::add_address(h, &link, addr).await?;
        // DHCP's default route via the subnet router (the subnet's first address + 1, as in a
        // VPC), so pods reach outside the VPC through SNAT as on EC2.
        let router = Ipv4Addr::from(u32::from(addr.network()) + 1);
        nl::replace_route(
            h,
            Ipv4Net::default(),
            Some(router.into()),
            &link,
            MAIN_TABLE,
        )
        .await?;
    }
    Ok(kind)
}

/// Bring `lo` up (fresh namespaces start with it down; local delivery needs it).
pub async fn loopback_up(h: &Handle) -> Result<()> {
    if let Some(lo) = nl::link_by_name(h, "lo").await? {
        nl::set_up(h, &lo, None).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_gateways_rules() {
        let eni = |device_number| EniLink {
            mac: [2, 0, 0, 0, 0, 1],
            primary_ip: "10.0.3.17".parse().unwrap(),
            subnet: "10.0.2.0/23".parse().unwrap(),
            device_number,
        };
        assert_eq!(eni(0).table(), MAIN_TABLE);
        assert_eq!(eni(2).table(), 3);
        assert_eq!(eni(1).gateway(), Ipv4Addr::new(10, 0, 2, 1));
        assert_eq!(eni(1).address().to_string(), "10.0.3.17/23");
        let r = eni(1).rule();
        assert_eq!(
            (r.priority, r.table, r.src.unwrap().to_string()),
            (32765, 2, "10.0.3.17/32".into())
        );
    }
}
