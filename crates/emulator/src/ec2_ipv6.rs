//! The IPv6 side of the EC2 actions: `AssignIpv6Addresses`, `UnassignIpv6Addresses`, the IPv6
//! counts of `CreateNetworkInterface`, and the IPv6 sets of ENIs and subnets in EC2's XML.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use vpc_cni_sim::SimEni;
use vpc_cni_sim::vpc::SubnetInfo;

use crate::ec2::{ApiError, Ctx, bad, param};
use crate::params::Params;
use crate::xml::{el, set, wrap};

/// `ipv6AddressesSet` and `ipv6PrefixSet` of an ENI.
pub(crate) fn eni_sets(e: &SimEni) -> String {
    set(
        "ipv6AddressesSet",
        e.ipv6_addresses
            .iter()
            .map(|a| el("ipv6Address", a) + &el("isPrimaryIpv6", "false")),
    ) + &set(
        "ipv6PrefixSet",
        e.ipv6_prefixes.iter().map(|p| el("ipv6Prefix", p)),
    )
}

/// `ipv6CidrBlockAssociationSet` of a subnet.
pub(crate) fn subnet_set(s: &SubnetInfo) -> String {
    set(
        "ipv6CidrBlockAssociationSet",
        s.ipv6_cidr.iter().map(|c| {
            el("associationId", format!("subnet-cidr-assoc-{}", s.id))
                + &el("ipv6CidrBlock", c)
                + &wrap("ipv6CidrBlockState", el("state", "associated"))
        }),
    )
}

/// (`Ipv6AddressCount`, `Ipv6PrefixCount`) of a request.
fn counts(p: &Params) -> Result<(u32, u32), ApiError> {
    let addresses = p.number("Ipv6AddressCount").map_err(param)?.unwrap_or(0);
    let prefixes = p.number("Ipv6PrefixCount").map_err(param)?.unwrap_or(0);
    if addresses > 0 && prefixes > 0 {
        return Err(bad(
            "InvalidParameterCombination",
            "Ipv6AddressCount and Ipv6PrefixCount cannot both be specified",
        ));
    }
    Ok((addresses, prefixes))
}

/// Refuse IPv6 counts on an IPv4-only subnet before `CreateNetworkInterface` makes anything.
pub(crate) fn check_create(c: &Ctx<'_>, subnet: &str, p: &Params) -> Result<(), ApiError> {
    let (a, n) = counts(p)?;
    let v4_only = c
        .vpc
        .subnets
        .get(subnet)
        .is_some_and(|s| s.ipv6_cidr.is_none());
    if a + n > 0 && v4_only {
        return Err(bad(
            "InvalidParameterValue",
            format!("subnet {subnet} has no IPv6 CIDR block"),
        ));
    }
    Ok(())
}

/// The IPv6 half of `CreateNetworkInterface` (part of the same call, not metered again).
pub(crate) fn on_create(c: &mut Ctx<'_>, eni: &str, p: &Params) -> Result<(), ApiError> {
    let (a, n) = counts(p)?;
    if a + n > 0 {
        c.vpc.add_ipv6(eni, a, n)?;
    }
    Ok(())
}

/// `AssignIpv6Addresses` by count.
pub(crate) fn assign(c: &mut Ctx<'_>, p: &Params) -> Result<String, ApiError> {
    let eni = p.required("NetworkInterfaceId").map_err(param)?.to_string();
    let (a, n) = counts(p)?;
    if a == 0 && n == 0 {
        return Err(bad(
            "InvalidParameterValue",
            "Give Ipv6AddressCount or Ipv6PrefixCount (explicit addresses are not supported by the simulated VPC)",
        ));
    }
    let (ips, nets) = c.vpc.assign_ipv6_addresses(&eni, a, n, c.now)?;
    Ok(el("networkInterfaceId", &eni)
        + &set("assignedIpv6Addresses", ips.iter().map(|i| i.to_string()))
        + &set("assignedIpv6PrefixSet", nets.iter().map(|p| p.to_string())))
}

/// `UnassignIpv6Addresses` of addresses and/or prefixes.
pub(crate) fn unassign(c: &mut Ctx<'_>, p: &Params) -> Result<String, ApiError> {
    let eni = p.required("NetworkInterfaceId").map_err(param)?.to_string();
    let ips = p
        .list("Ipv6Addresses")
        .iter()
        .map(|a| {
            a.parse::<Ipv6Addr>()
                .map_err(|_| bad("InvalidParameterValue", format!("Invalid IPv6 address {a}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let nets = p
        .list("Ipv6Prefix")
        .iter()
        .map(|a| {
            a.parse::<Ipv6Net>()
                .map_err(|_| bad("InvalidParameterValue", format!("Invalid IPv6 prefix {a}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (gone_ips, gone_nets) = c.vpc.unassign_ipv6_addresses(&eni, &ips, &nets, c.now)?;
    Ok(el("networkInterfaceId", &eni)
        + &set(
            "unassignedIpv6Addresses",
            gone_ips.iter().map(|i| i.to_string()),
        )
        + &set(
            "unassignedIpv6PrefixSet",
            gone_nets.iter().map(|p| p.to_string()),
        ))
}
