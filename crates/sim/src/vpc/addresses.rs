//! Address operations of the simulated VPC: `AssignPrivateIpAddresses` and
//! `UnassignPrivateIpAddresses` (secondary IPs and /28 prefixes), with the per-ENI limit.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use vpc_cni_ipam::Time;

use super::Vpc;
use crate::error::{Ec2Error, Ec2ErrorCode};
use crate::throttle::Ec2Action;

impl Vpc {
    /// Carve `n` blocks from the ENI's subnet with `alloc` (all or nothing).
    fn carve(
        &mut self,
        eni: &str,
        n: u32,
        limit: Option<u32>,
        alloc: fn(&mut crate::subnet::Subnet, &mut crate::rng::Rng) -> Result<Ipv4Net, Ec2Error>,
    ) -> Result<Vec<Ipv4Net>, Ec2Error> {
        self.check_slots(eni, n, limit)?;
        let subnet_id = self.enis[eni].subnet_id.clone();
        let mut rng = self.rng.clone();
        let subnet = self.subnets.get_mut(&subnet_id).expect("ENI subnet exists");
        let mut got = Vec::new();
        for _ in 0..n {
            match alloc(subnet, &mut rng) {
                Ok(net) => got.push(net),
                Err(e) => {
                    for net in got {
                        subnet.release(net);
                    }
                    return Err(e);
                }
            }
        }
        self.rng = rng;
        Ok(got)
    }

    pub(super) fn add_ips(
        &mut self,
        eni: &str,
        n: u32,
        limit: Option<u32>,
    ) -> Result<Vec<Ipv4Addr>, Ec2Error> {
        let got = self.carve(eni, n, limit, |s, r| {
            s.alloc_ip(r).map(|ip| Ipv4Net::new(ip, 32).expect("/32"))
        })?;
        let ips: Vec<Ipv4Addr> = got.iter().map(Ipv4Net::addr).collect();
        self.enis
            .get_mut(eni)
            .expect("checked")
            .secondary_ips
            .extend(&ips);
        Ok(ips)
    }

    pub(super) fn add_prefixes(
        &mut self,
        eni: &str,
        n: u32,
        limit: Option<u32>,
    ) -> Result<Vec<Ipv4Net>, Ec2Error> {
        let got = self.carve(eni, n, limit, crate::subnet::Subnet::alloc_prefix)?;
        self.enis
            .get_mut(eni)
            .expect("checked")
            .prefixes
            .extend(&got);
        Ok(got)
    }

    /// The per-ENI address limit: the attached instance's, else (unattached) `limit`.
    fn check_slots(&self, eni: &str, n: u32, limit: Option<u32>) -> Result<(), Ec2Error> {
        let e = &self.enis[eni];
        let max = e
            .attachment
            .as_ref()
            .and_then(|a| self.instances.get(&a.instance_id))
            .map(|i| i.limits.ipv4_limit)
            .or(limit)
            .unwrap_or(50);
        if e.slots() + n > max {
            return Err(Ec2Error::new(
                Ec2ErrorCode::PrivateIpAddressLimitExceeded,
                format!(
                    "Number of private addresses will exceed limit on {} ({} + {n} > {max})",
                    e.id,
                    e.slots()
                ),
            ));
        }
        Ok(())
    }

    /// `AssignPrivateIpAddresses` by count (secondary IPs or prefixes).
    pub fn assign_private_ip_addresses(
        &mut self,
        eni: &str,
        ips: u32,
        prefixes: u32,
        now: Time,
    ) -> Result<(Vec<Ipv4Addr>, Vec<Ipv4Net>), Ec2Error> {
        self.call(Ec2Action::AssignPrivateIpAddresses, now)?;
        self.eni_checked(eni)?;
        let r = if prefixes > 0 {
            self.add_prefixes(eni, prefixes, None)
                .map(|p| (Vec::new(), p))
        } else {
            self.add_ips(eni, ips, None).map(|i| (i, Vec::new()))
        };
        r.inspect_err(|e| self.count_error(e))
    }

    /// `UnassignPrivateIpAddresses` of /32s and/or prefixes.
    pub fn unassign_private_ip_addresses(
        &mut self,
        eni: &str,
        cidrs: &[Ipv4Net],
        now: Time,
    ) -> Result<(), Ec2Error> {
        self.call(Ec2Action::UnassignPrivateIpAddresses, now)?;
        let e = self.eni_checked(eni)?;
        let subnet_id = e.subnet_id.clone();
        let mut released = Vec::new();
        for c in cidrs {
            if c.prefix_len() == 32 {
                if let Some(pos) = e.secondary_ips.iter().position(|ip| *ip == c.addr()) {
                    e.secondary_ips.remove(pos);
                    released.push(*c);
                }
            } else if let Some(pos) = e.prefixes.iter().position(|p| p == c) {
                e.prefixes.remove(pos);
                released.push(*c);
            }
        }
        let subnet = self.subnets.get_mut(&subnet_id).expect("ENI subnet exists");
        for c in released {
            subnet.release(c);
        }
        Ok(())
    }
}
