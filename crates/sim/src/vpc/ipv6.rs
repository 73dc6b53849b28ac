//! IPv6 of the simulated VPC: dual-stack subnets (one /64 each), `AssignIpv6Addresses` and
//! `UnassignIpv6Addresses` with addresses and /80 prefixes. An ENI holds as many IPv6 addresses
//! and prefixes together as its instance type allows private IPv4 addresses.

use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
use vpc_cni_ipam::Time;

use super::Vpc;
use crate::error::{Ec2Error, Ec2ErrorCode};
use crate::subnet::Subnet;
use crate::throttle::Ec2Action;

impl Subnet {
    /// Make the subnet dual-stack with `cidr`, which must be a /64.
    pub fn with_ipv6(mut self, cidr: Ipv6Net) -> Result<Self, Ec2Error> {
        if cidr.prefix_len() != 64 {
            return Err(Ec2Error::new(
                Ec2ErrorCode::InvalidParameterValue,
                format!("subnet IPv6 block {cidr}: a subnet's IPv6 block must be a /64"),
            ));
        }
        self.ipv6_cidr = Some(cidr.trunc());
        Ok(self)
    }

    /// The block of a dual-stack subnet, or the error EC2 gives for an IPv4-only one.
    fn ipv6_block(&self) -> Result<Ipv6Net, Ec2Error> {
        self.ipv6_cidr.ok_or_else(|| {
            Ec2Error::new(
                Ec2ErrorCode::InvalidParameterValue,
                format!("subnet {} has no IPv6 CIDR block", self.id),
            )
        })
    }

    /// The next IPv6 address: from the first /80 of the block, past the first four (which AWS
    /// keeps, as in IPv4).
    fn alloc_ipv6(&mut self) -> Result<Ipv6Addr, Ec2Error> {
        let net = self.ipv6_block()?;
        self.ipv6_handed.0 += 1;
        Ok(Ipv6Addr::from(
            u128::from(net.network()) + 3 + u128::from(self.ipv6_handed.0),
        ))
    }

    /// The next /80: the first /80 holds the addresses, prefixes come from the ones after it.
    fn alloc_ipv6_prefix(&mut self) -> Result<Ipv6Net, Ec2Error> {
        let net = self.ipv6_block()?;
        self.ipv6_handed.1 += 1;
        let base = u128::from(net.network()) + (u128::from(self.ipv6_handed.1) << 48);
        Ok(Ipv6Net::new(Ipv6Addr::from(base), 80).expect("/80"))
    }
}

impl Vpc {
    /// Give `eni` `addresses` IPv6 addresses and `prefixes` /80 prefixes, within the slot limit
    /// (also the second half of a `CreateNetworkInterface` with an IPv6 count; unmetered).
    pub fn add_ipv6(
        &mut self,
        eni: &str,
        addresses: u32,
        prefixes: u32,
    ) -> Result<(Vec<Ipv6Addr>, Vec<Ipv6Net>), Ec2Error> {
        self.eni_checked(eni)?;
        let e = &self.enis[eni];
        let (held, subnet_id) = (
            (e.ipv6_addresses.len() + e.ipv6_prefixes.len()) as u32,
            e.subnet_id.clone(),
        );
        let max = e
            .attachment
            .as_ref()
            .and_then(|a| self.instances.get(&a.instance_id))
            .map_or(50, |i| i.limits.ipv4_limit);
        if held + addresses + prefixes > max {
            return Err(Ec2Error::new(
                Ec2ErrorCode::InvalidParameterValue,
                format!(
                    "Number of IPv6 addresses will exceed limit on {eni} ({held} + {} > {max})",
                    addresses + prefixes
                ),
            ));
        }
        let subnet = self.subnet_mut(&subnet_id)?;
        subnet.ipv6_block()?;
        let ips = (0..addresses)
            .map(|_| subnet.alloc_ipv6())
            .collect::<Result<Vec<_>, _>>()?;
        let nets = (0..prefixes)
            .map(|_| subnet.alloc_ipv6_prefix())
            .collect::<Result<Vec<_>, _>>()?;
        let e = self.enis.get_mut(eni).expect("checked");
        e.ipv6_addresses.extend(&ips);
        e.ipv6_prefixes.extend(&nets);
        Ok((ips, nets))
    }

    /// `AssignIpv6Addresses` by count (addresses and/or /80 prefixes).
    pub fn assign_ipv6_addresses(
        &mut self,
        eni: &str,
        addresses: u32,
        prefixes: u32,
        now: Time,
    ) -> Result<(Vec<Ipv6Addr>, Vec<Ipv6Net>), Ec2Error> {
        self.call(Ec2Action::AssignIpv6Addresses, now)?;
        self.eni_checked(eni)?;
        self.add_ipv6(eni, addresses, prefixes)
            .inspect_err(|e| self.count_error(e))
    }

    /// `UnassignIpv6Addresses`: returns what was really removed (EC2 echoes it back).
    pub fn unassign_ipv6_addresses(
        &mut self,
        eni: &str,
        addresses: &[Ipv6Addr],
        prefixes: &[Ipv6Net],
        now: Time,
    ) -> Result<(Vec<Ipv6Addr>, Vec<Ipv6Net>), Ec2Error> {
        self.call(Ec2Action::UnassignIpv6Addresses, now)?;
        let e = self.eni_checked(eni)?;
        let gone_ips: Vec<Ipv6Addr> = addresses
            .iter()
            .filter(|a| e.ipv6_addresses.contains(a))
            .copied()
            .collect();
        let gone_nets: Vec<Ipv6Net> = prefixes
            .iter()
            .filter(|p| e.ipv6_prefixes.contains(p))
            .copied()
            .collect();
        e.ipv6_addresses.retain(|a| !gone_ips.contains(a));
        e.ipv6_prefixes.retain(|p| !gone_nets.contains(p));
        Ok((gone_ips, gone_nets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::throttle::Throttle;
    use vpc_cni_limits::{Hypervisor, InstanceLimits};

    fn dual_stack() -> (Vpc, String) {
        let mut v = Vpc::new(1, Throttle::new(false, 1.0, Time::ZERO));
        let s = Subnet::new("subnet-1", "10.0.0.0/24".parse().unwrap(), "us-east-1a")
            .unwrap()
            .with_ipv6("2001:db8:0:1::/64".parse().unwrap())
            .unwrap();
        v.add_subnet(s);
        let limits = InstanceLimits {
            eni_limit: 3,
            ipv4_limit: 10,
            default_network_card_index: 0,
            network_cards: Vec::new(),
            hypervisor: Hypervisor::Nitro,
            bare_metal: false,
        };
        let i = v
            .run_instance("m5.large", &limits, "subnet-1", Time::ZERO)
            .unwrap();
        (v, i)
    }

    #[test]
    fn addresses_and_prefixes_come_from_the_subnet_block_and_respect_the_limit() {
        let (mut v, i) = dual_stack();
        let eni = v.instance(&i).unwrap().primary_eni.clone();
        assert_eq!(
            v.eni(&eni).unwrap().ipv6_addresses,
            ["2001:db8:0:1::4".parse::<Ipv6Addr>().unwrap()],
            "a dual-stack node launches with one IPv6 address"
        );
        let (ips, nets) = v.assign_ipv6_addresses(&eni, 2, 1, Time::ZERO).unwrap();
        assert_eq!(ips.len(), 2);
        assert_eq!(nets, ["2001:db8:0:1:1::/80".parse::<Ipv6Net>().unwrap()]);
        let (_, more) = v.assign_ipv6_addresses(&eni, 0, 1, Time::ZERO).unwrap();
        assert_eq!(more, ["2001:db8:0:1:2::/80".parse::<Ipv6Net>().unwrap()]);
        // 1 + 2 + 2 held; 10 allowed.
        let err = v.assign_ipv6_addresses(&eni, 0, 6, Time::ZERO).unwrap_err();
        assert_eq!(err.code, Ec2ErrorCode::InvalidParameterValue);
        assert!(err.message.contains("5 + 6 > 10"), "{}", err.message);
        let other: Ipv6Net = "2001:db8:0:1:9::/80".parse().unwrap();
        let (_, gone) = v
            .unassign_ipv6_addresses(&eni, &[], &[nets[0], other], Time::ZERO)
            .unwrap();
        assert_eq!(gone, nets, "only what the ENI held is reported removed");
        assert_eq!(v.eni(&eni).unwrap().ipv6_prefixes, more);
        assert_eq!(v.stats().calls["AssignIpv6Addresses"], 3);
    }

    #[test]
    fn ipv4_only_subnets_and_bad_blocks_are_refused() {
        let mut v = Vpc::new(1, Throttle::new(false, 1.0, Time::ZERO));
        v.add_subnet(Subnet::new("subnet-4", "10.0.0.0/24".parse().unwrap(), "az").unwrap());
        let eni = v
            .create_network_interface("subnet-4", "x", Default::default(), 0, 0, Time::ZERO)
            .unwrap();
        let err = v.assign_ipv6_addresses(&eni, 0, 1, Time::ZERO).unwrap_err();
        assert!(
            err.message.contains("no IPv6 CIDR block"),
            "{}",
            err.message
        );
        let bad = Subnet::new("s", "10.1.0.0/24".parse().unwrap(), "az")
            .unwrap()
            .with_ipv6("2001:db8::/56".parse().unwrap());
        assert!(bad.unwrap_err().message.contains("must be a /64"));
    }
}
