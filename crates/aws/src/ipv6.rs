//! The IPv6 side of the backend (spec h.1, h.2): `AssignIpv6Addresses` with a /80 prefix count,
//! `UnassignIpv6Addresses` of prefixes, and the IMDS paths `ipv6`, `ipv6s`, `ipv6-prefix` and
//! `vpc-ipv6-cidr-blocks` (each absent, i.e. 404, on an IPv4-only node: read as empty).

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use vpc_cni_cloud::CloudError;

use crate::{AwsCloud, cloud_error};

fn invalid(what: &str, text: &str, expected: &str) -> CloudError {
    CloudError {
        code: "ImdsInvalid".into(),
        message: format!("{what}: {text:?} is not {expected}"),
    }
}

/// One IPv6 address per line.
pub fn parse_addrs(text: &str, what: &str) -> Result<Vec<Ipv6Addr>, CloudError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().map_err(|_| invalid(what, l, "an IPv6 address")))
        .collect()
}

/// One IPv6 CIDR per line.
pub fn parse_nets(text: &str, what: &str) -> Result<Vec<Ipv6Net>, CloudError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().map_err(|_| invalid(what, l, "an IPv6 CIDR")))
        .collect()
}

/// An interface's IPv6 addresses, /80 prefixes and subnet blocks.
pub(crate) type Ipv6Parts = (Vec<Ipv6Addr>, Vec<Ipv6Net>, Vec<Ipv6Net>);

impl AwsCloud {
    /// `ipv6s`, `ipv6-prefix` and `subnet-ipv6-cidr-blocks` of the interface at `base`
    /// (`network/interfaces/macs/<mac>`).
    pub(crate) async fn interface_ipv6(&self, base: &str) -> Result<Ipv6Parts, CloudError> {
        let ips = match self.imds.get(&format!("{base}/ipv6s")).await? {
            Some(t) => parse_addrs(&t, "ipv6s")?,
            None => Vec::new(),
        };
        let nets = match self.imds.get(&format!("{base}/ipv6-prefix")).await? {
            Some(t) => parse_nets(&t, "ipv6-prefix")?,
            None => Vec::new(),
        };
        let subnet = match self
            .imds
            .get(&format!("{base}/subnet-ipv6-cidr-blocks"))
            .await?
        {
            Some(t) => parse_nets(&t, "subnet-ipv6-cidr-blocks")?,
            None => Vec::new(),
        };
        Ok((ips, nets, subnet))
    }

    /// The node's `ipv6` and the VPC's `vpc-ipv6-cidr-blocks` (primary ENI `mac`).
    pub(crate) async fn instance_ipv6(
        &self,
        mac: &str,
    ) -> Result<(Option<Ipv6Addr>, Vec<Ipv6Net>), CloudError> {
        let ip = match self.imds.get("ipv6").await? {
            Some(t) => parse_addrs(&t, "ipv6")?.into_iter().next(),
            None => None,
        };
        let path = format!("network/interfaces/macs/{mac}/vpc-ipv6-cidr-blocks");
        let blocks = match self.imds.get(&path).await? {
            Some(t) => parse_nets(&t, "vpc-ipv6-cidr-blocks")?,
            None => Vec::new(),
        };
        Ok((ip, blocks))
    }

    /// `AssignIpv6Addresses` with `Ipv6PrefixCount`.
    pub async fn assign_ipv6_prefix_count(
        &self,
        eni: &str,
        count: u32,
    ) -> Result<Vec<Ipv6Net>, CloudError> {
        let out = self
            .ec2
            .assign_ipv6_addresses()
            .network_interface_id(eni)
            .ipv6_prefix_count(count as i32)
            .send()
            .await
            .map_err(|e| cloud_error("AssignIpv6Addresses", e))?;
        out.assigned_ipv6_prefixes()
            .iter()
            .map(|p| {
                p.parse()
                    .map_err(|_| invalid("AssignIpv6Addresses", p, "an IPv6 CIDR"))
            })
            .collect()
    }

    /// `UnassignIpv6Addresses` of prefixes.
    pub async fn unassign_ipv6_prefix_list(
        &self,
        eni: &str,
        prefixes: &[Ipv6Net],
    ) -> Result<(), CloudError> {
        self.ec2
            .unassign_ipv6_addresses()
            .network_interface_id(eni)
            .set_ipv6_prefixes(Some(prefixes.iter().map(|p| p.to_string()).collect()))
            .send()
            .await
            .map(drop)
            .map_err(|e| cloud_error("UnassignIpv6Addresses", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_imds_lists() {
        assert_eq!(
            parse_addrs("2001:db8::4\n2001:db8::5\n", "ipv6s").unwrap(),
            [
                "2001:db8::4".parse::<Ipv6Addr>().unwrap(),
                "2001:db8::5".parse().unwrap()
            ]
        );
        assert_eq!(
            parse_nets("2001:db8:0:1:1::/80", "ipv6-prefix").unwrap(),
            ["2001:db8:0:1:1::/80".parse::<Ipv6Net>().unwrap()]
        );
        assert!(parse_addrs("", "ipv6s").unwrap().is_empty());
        let e = parse_nets("10.0.0.0/28", "ipv6-prefix").unwrap_err();
        assert_eq!(
            e.message,
            r#"ipv6-prefix: "10.0.0.0/28" is not an IPv6 CIDR"#
        );
    }
}
