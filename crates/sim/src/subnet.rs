//! A subnet's address space as EC2 manages it: the five AWS-reserved addresses, secondary IPs
//! placed at random free positions (which is what fragments a subnet), /28 prefixes carved from
//! aligned fully free blocks, and subnet CIDR reservations (`prefix` and `explicit`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::error::{Ec2Error, Ec2ErrorCode};
use crate::rng::Rng;

/// Addresses AWS keeps in every subnet: the first four and the last.
pub const AWS_RESERVED: u32 = 5;

/// Kind of a subnet CIDR reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReservationType {
    /// EC2 carves prefixes from it (and places no /32 there).
    Prefix,
    /// Only explicitly requested addresses; nothing is placed there automatically.
    Explicit,
}

/// One subnet.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Subnet {
    /// Subnet ID.
    pub id: String,
    /// Its CIDR.
    pub cidr: Ipv4Net,
    /// Availability zone.
    pub az: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// IPv6 block (a /64) of a dual-stack subnet.
    #[serde(default)]
    pub ipv6_cidr: Option<ipnet::Ipv6Net>,
    /// IPv6 addresses and /80 prefixes handed out so far (never reused: a /64 does not run out).
    #[serde(default)]
    pub(crate) ipv6_handed: (u64, u64),
    reservations: Vec<(Ipv4Net, ReservationType)>,
    used: Vec<u64>,
    no_auto_ip: Vec<u64>,
    free: u32,
}

impl Subnet {
    /// A subnet with the AWS-reserved addresses taken. `cidr` must be /16 to /28.
    pub fn new(id: &str, cidr: Ipv4Net, az: &str) -> Result<Self, Ec2Error> {
        let len = cidr.prefix_len();
        if !(16..=28).contains(&len) {
            return Err(Ec2Error::new(
                Ec2ErrorCode::InvalidParameterValue,
                format!("subnet {cidr}: the block must be between /16 and /28"),
            ));
        }
        let size = 1u32 << (32 - len);
        let words = size.div_ceil(64) as usize;
        let mut s = Subnet {
            id: id.to_string(),
            cidr: cidr.trunc(),
            az: az.to_string(),
            tags: BTreeMap::new(),
            ipv6_cidr: None,
            ipv6_handed: (0, 0),
            reservations: Vec::new(),
            used: vec![0; words],
            no_auto_ip: vec![0; words],
            free: size,
        };
        for i in [0, 1, 2, 3, size - 1] {
            s.mark(i);
        }
        Ok(s)
    }

    /// Addresses in the subnet.
    pub fn size(&self) -> u32 {
        1 << (32 - self.cidr.prefix_len())
    }

    /// Free addresses (EC2's `AvailableIpAddressCount`).
    pub fn free_addresses(&self) -> u32 {
        self.free
    }

    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        self.cidr
            .contains(&ip)
            .then(|| u32::from(ip) - u32::from(self.cidr.network()))
    }

    fn addr(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + i)
    }

    fn is_used(&self, i: u32) -> bool {
        self.used[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    fn mark(&mut self, i: u32) {
        debug_assert!(!self.is_used(i));
        self.used[(i / 64) as usize] |= 1 << (i % 64);
        self.free -= 1;
    }

    fn unmark(&mut self, i: u32) {
        debug_assert!(self.is_used(i));
        self.used[(i / 64) as usize] &= !(1 << (i % 64));
        self.free += 1;
    }

    /// Add a subnet CIDR reservation (`CreateSubnetCidrReservation`).
    pub fn reserve(&mut self, cidr: Ipv4Net, kind: ReservationType) -> Result<(), Ec2Error> {
        let cidr = cidr.trunc();
        if !self.cidr.contains(&cidr)
            || self
                .reservations
                .iter()
                .any(|(r, _)| r.contains(&cidr) || cidr.contains(r))
        {
            return Err(Ec2Error::new(
                Ec2ErrorCode::InvalidParameterValue,
                format!(
                    "reservation {cidr} is outside {} or overlaps another",
                    self.cidr
                ),
            ));
        }
        let start = self.offset(cidr.network()).expect("contained");
        for i in start..start + (1u32 << (32 - cidr.prefix_len())) {
            self.no_auto_ip[(i / 64) as usize] |= 1 << (i % 64);
        }
        self.reservations.push((cidr, kind));
        Ok(())
    }

    /// Place one secondary IP at a random free position outside reservations.
    pub fn alloc_ip(&mut self, rng: &mut Rng) -> Result<Ipv4Addr, Ec2Error> {
        let size = self.size();
        let start = rng.below(u64::from(size)) as u32;
        // Scan from a random bit for a free, auto-assignable one (random enough to scatter); the
        // last pass revisits the first word whole.
        let words = self.used.len() as u32;
        let first_word = start / 64;
        for k in 0..=words {
            let w = (first_word + k) % words;
            let mut avail = !(self.used[w as usize] | self.no_auto_ip[w as usize]);
            if size < 64 {
                avail &= (1u64 << size) - 1;
            }
            if k == 0 {
                avail &= u64::MAX << (start % 64);
            }
            if avail != 0 {
                let i = w * 64 + avail.trailing_zeros();
                self.mark(i);
                return Ok(self.addr(i));
            }
        }
        Err(Ec2Error::new(
            Ec2ErrorCode::InsufficientFreeAddressesInSubnet,
            format!(
                "There are not enough free addresses in subnet '{}' to satisfy the requested number of instances.",
                self.id
            ),
        ))
    }

    /// Take a specific address (an ENI's requested primary IP, or an explicit assignment).
    pub fn take_ip(&mut self, ip: Ipv4Addr) -> Result<(), Ec2Error> {
        match self.offset(ip) {
            Some(i) if !self.is_used(i) => {
                self.mark(i);
                Ok(())
            }
            _ => Err(Ec2Error::new(
                Ec2ErrorCode::InvalidParameterValue,
                format!("address {ip} is in use or outside subnet {}", self.cidr),
            )),
        }
    }

    fn block_free(&self, b: u32) -> bool {
        let w = self.used[(b * 16 / 64) as usize];
        (w >> ((b * 16) % 64)) & 0xFFFF == 0
    }

    fn block_in(&self, b: u32, kind: ReservationType) -> bool {
        let ip = self.addr(b * 16);
        self.reservations
            .iter()
            .any(|(r, k)| *k == kind && r.contains(&ip))
    }

    /// Aligned /28 blocks that are wholly free and may hold a prefix.
    pub fn free_prefix_blocks(&self) -> u32 {
        (0..self.size() / 16)
            .filter(|&b| self.block_free(b) && !self.block_in(b, ReservationType::Explicit))
            .count() as u32
    }

    /// Carve one aligned /28, preferring `prefix` reservations, else a random free block.
    pub fn alloc_prefix(&mut self, rng: &mut Rng) -> Result<Ipv4Net, Ec2Error> {
        let blocks = self.size() / 16;
        let usable = |s: &Self, b| s.block_free(b) && !s.block_in(b, ReservationType::Explicit);
        let reserved: Vec<u32> = (0..blocks)
            .filter(|&b| usable(self, b) && self.block_in(b, ReservationType::Prefix))
            .collect();
        let pick = if let Some(&b) = reserved.first() {
            Some(b)
        } else {
            let free: Vec<u32> = (0..blocks).filter(|&b| usable(self, b)).collect();
            (!free.is_empty()).then(|| free[rng.below(free.len() as u64) as usize])
        };
        let Some(b) = pick else {
            return Err(Ec2Error::new(
                Ec2ErrorCode::InsufficientCidrBlocks,
                format!(
                    "There are not enough free cidr blocks in the specified subnet to satisfy the request. ({} free addresses, 0 free aligned /28 blocks in {})",
                    self.free, self.id
                ),
            ));
        };
        for i in b * 16..b * 16 + 16 {
            self.mark(i);
        }
        Ok(Ipv4Net::new(self.addr(b * 16), 28).expect("valid /28"))
    }

    /// Return a /32 or a /28 to the subnet.
    pub fn release(&mut self, net: Ipv4Net) {
        if let Some(start) = self.offset(net.network()) {
            for i in start..start + (1u32 << (32 - net.prefix_len())) {
                if self.is_used(i) {
                    self.unmark(i);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(cidr: &str) -> Subnet {
        Subnet::new("subnet-1", cidr.parse().unwrap(), "us-east-1a").unwrap()
    }

    #[test]
    fn reserved_addresses_and_counts() {
        for (cidr, free, blocks) in [
            ("10.0.0.0/24", 251, 14),
            ("10.0.0.0/28", 11, 0),
            ("10.0.0.0/20", 4091, 254),
        ] {
            let s = subnet(cidr);
            assert_eq!(s.free_addresses(), free, "{cidr}");
            assert_eq!(s.free_prefix_blocks(), blocks, "{cidr}");
        }
    }

    #[test]
    fn ips_are_scattered_and_exhaust_cleanly() {
        let mut s = subnet("10.0.0.0/24");
        let mut rng = Rng::new(1);
        let ips: Vec<Ipv4Addr> = (0..251).map(|_| s.alloc_ip(&mut rng).unwrap()).collect();
        let mut sorted = ips.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 251);
        assert!(
            !sorted.contains(&"10.0.0.0".parse().unwrap())
                && !sorted.contains(&"10.0.0.255".parse().unwrap())
        );
        assert_ne!(ips[..10], sorted[..10], "placement must not be packed");
        let err = s.alloc_ip(&mut rng).unwrap_err();
        assert_eq!(err.code, Ec2ErrorCode::InsufficientFreeAddressesInSubnet);
    }

    #[test]
    fn fragmentation_blocks_prefixes_while_addresses_remain() {
        let mut s = subnet("10.0.0.0/24");
        let mut rng = Rng::new(3);
        // One /32 in every /28 block leaves ~200 free addresses but no free aligned /28.
        for b in 0..16u32 {
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + b * 16 + 7);
            s.take_ip(ip).unwrap();
        }
        assert!(s.free_addresses() > 200);
        assert_eq!(s.free_prefix_blocks(), 0);
        assert_eq!(
            s.alloc_prefix(&mut rng).unwrap_err().code,
            Ec2ErrorCode::InsufficientCidrBlocks
        );
    }

    #[test]
    fn reservations_steer_placement() {
        let mut s = subnet("10.0.0.0/24");
        let mut rng = Rng::new(5);
        s.reserve("10.0.0.128/26".parse().unwrap(), ReservationType::Prefix)
            .unwrap();
        s.reserve("10.0.0.64/27".parse().unwrap(), ReservationType::Explicit)
            .unwrap();
        let p = s.alloc_prefix(&mut rng).unwrap();
        assert!("10.0.0.128/26".parse::<Ipv4Net>().unwrap().contains(&p));
        for _ in 0..100 {
            let ip = s.alloc_ip(&mut rng).unwrap();
            assert!(
                !"10.0.0.64/27".parse::<Ipv4Net>().unwrap().contains(&ip),
                "{ip} in an explicit reservation"
            );
            assert!(
                !"10.0.0.128/26".parse::<Ipv4Net>().unwrap().contains(&ip),
                "{ip} in a prefix reservation"
            );
        }
        s.release(p);
        assert!(
            s.reserve("10.0.0.0/8".parse().unwrap(), ReservationType::Prefix)
                .is_err()
        );
    }
}
