//! The IPv6 node's pool (spec b, c: `ENABLE_IPv6`): one /80 prefix on the primary ENI, no warm
//! pool management. Pods get the lowest free address of the prefix (never the prefix's own
//! `::` address); a released address cools like an IPv4 one before it is handed out again.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;
use std::time::Duration;

use ipnet::Ipv6Net;
use serde::Serialize;

use crate::datastore::AddressInfo;
use crate::key::{IpamKey, PodMetadata};
use crate::time::Time;

/// What can go wrong in the IPv6 pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V6Error {
    /// No /80 yet (the daemon assigns one at start).
    #[error("AssignPodIPv6Address: no IPv6 prefix on the primary ENI")]
    NoPrefix,
    /// A restored address is outside the node's /80.
    #[error("datastore: IPv6 address {0} is not in the node's prefix {1}")]
    OutsidePrefix(Ipv6Addr, Ipv6Net),
    /// Two assignments claim one address.
    #[error("datastore: address {0} is already assigned to {1}")]
    AddressTaken(Ipv6Addr, IpamKey),
}

/// One IPv6 assignment's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct V6Assignment {
    /// The pod's address.
    pub ip: Ipv6Addr,
    /// The ENI carrying the prefix.
    pub eni_id: String,
}

/// The IPv6 pool of a node.
#[derive(Debug, Clone)]
pub struct V6Pool {
    eni: String,
    prefix: Ipv6Net,
    cooldown: Duration,
    /// Assigned and cooling addresses, by address.
    addresses: BTreeMap<Ipv6Addr, AddressInfo>,
    index: HashMap<IpamKey, Ipv6Addr>,
    /// IMDS did not list the prefix at the last reconcile.
    missing_once: bool,
}

impl V6Pool {
    /// A pool over `prefix` (a /80) of `eni`.
    pub fn new(eni: &str, prefix: Ipv6Net, cooldown: Duration) -> Self {
        V6Pool {
            eni: eni.to_string(),
            prefix: prefix.trunc(),
            cooldown,
            addresses: BTreeMap::new(),
            index: HashMap::new(),
            missing_once: false,
        }
    }

    /// Record whether IMDS lists the prefix at a reconcile; true when it is missing for the
    /// second time in a row (once may be IMDS lagging behind EC2).
    pub fn note_imds(&mut self, listed: bool) -> bool {
        let gone = !listed && self.missing_once;
        self.missing_once = !listed;
        gone
    }

    /// The prefix.
    pub fn prefix(&self) -> Ipv6Net {
        self.prefix
    }

    /// The ENI carrying it.
    pub fn eni(&self) -> &str {
        &self.eni
    }

    /// Keys of the pods holding addresses now.
    pub fn holders(&self) -> Vec<IpamKey> {
        self.index.keys().cloned().collect()
    }

    /// Addresses assigned now.
    pub fn assigned(&self) -> usize {
        self.index.len()
    }

    /// Give `key` an address (`AssignPodIPv6Address`); idempotent per key.
    pub fn assign(&mut self, key: &IpamKey, metadata: PodMetadata, now: Time) -> V6Assignment {
        if let Some(&ip) = self.index.get(key) {
            return self.answer(ip);
        }
        let cooldown = self.cooldown;
        self.addresses.retain(|_, a| {
            a.key.is_some() || a.unassigned_at.is_some_and(|t| now.since(t) <= cooldown)
        });
        // The lowest address past `::` with no record: records are few, so walk them in order.
        let base = u128::from(self.prefix.network());
        let mut next = base + 1;
        for ip in self.addresses.keys() {
            let n = u128::from(*ip);
            if n > next {
                break;
            }
            if n == next {
                next += 1;
            }
        }
        let ip = Ipv6Addr::from(next);
        self.record(key.clone(), ip, metadata, now);
        self.answer(ip)
    }

    fn record(&mut self, key: IpamKey, ip: Ipv6Addr, metadata: PodMetadata, now: Time) {
        self.addresses
            .insert(ip, AddressInfo::assigned(key.clone(), metadata, now));
        self.index.insert(key, ip);
    }

    fn answer(&self, ip: Ipv6Addr) -> V6Assignment {
        V6Assignment {
            ip,
            eni_id: self.eni.clone(),
        }
    }

    /// Re-create an assignment read from a checkpoint.
    pub fn restore(
        &mut self,
        key: IpamKey,
        ip: Ipv6Addr,
        metadata: PodMetadata,
        assigned_at: Time,
    ) -> Result<V6Assignment, V6Error> {
        if !self.prefix.contains(&ip) {
            return Err(V6Error::OutsidePrefix(ip, self.prefix));
        }
        if let Some(owner) = self.addresses.get(&ip).and_then(|a| a.key.clone())
            && owner != key
        {
            return Err(V6Error::AddressTaken(ip, owner));
        }
        self.record(key, ip, metadata, assigned_at);
        Ok(self.answer(ip))
    }

    /// Release `key`'s address into cooldown; `None` for an unknown key.
    pub fn unassign(&mut self, key: &IpamKey, now: Time) -> Option<Ipv6Addr> {
        let ip = self
            .index
            .remove(key)
            .or_else(|| self.index.remove(&key.migrated()))?;
        if let Some(a) = self.addresses.get_mut(&ip) {
            a.key = None;
            a.metadata = PodMetadata::default();
            a.unassigned_at = Some(now);
        }
        Some(ip)
    }

    /// Undo an assignment as if it never happened (no cooldown): a failed checkpoint write.
    pub fn forget(&mut self, key: &IpamKey) {
        if let Some(ip) = self.index.remove(key) {
            self.addresses.remove(&ip);
        }
    }

    /// The address `key` holds.
    pub fn lookup(&self, key: &IpamKey) -> Option<Ipv6Addr> {
        self.index.get(key).copied()
    }

    /// Every assignment: (key, address, record).
    pub fn assignments(&self) -> impl Iterator<Item = (&IpamKey, Ipv6Addr, &AddressInfo)> {
        self.addresses
            .iter()
            .filter_map(|(ip, a)| a.key.as_ref().map(|k| (k, *ip, a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> IpamKey {
        IpamKey::new("aws-cni", &format!("c{i}"), "eth0")
    }

    fn pool(cooldown: u64) -> V6Pool {
        V6Pool::new(
            "eni-0",
            "2600:1f14:abc:de00:1234::/80".parse().unwrap(),
            Duration::from_secs(cooldown),
        )
    }

    #[test]
    fn lowest_free_address_idempotent_and_cooling() {
        let mut p = pool(30);
        let t = Time::from_secs(10);
        let a: Vec<Ipv6Addr> = (0..3)
            .map(|i| p.assign(&key(i), PodMetadata::default(), t).ip)
            .collect();
        assert_eq!(
            a.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "2600:1f14:abc:de00:1234::1",
                "2600:1f14:abc:de00:1234::2",
                "2600:1f14:abc:de00:1234::3"
            ]
        );
        assert_eq!(p.assign(&key(1), PodMetadata::default(), t).ip, a[1]);
        assert_eq!(p.unassign(&key(1), t), Some(a[1]));
        assert_eq!(p.unassign(&key(1), t), None);
        // Cooling: ::2 is skipped for 30 s, then handed out again.
        assert_eq!(
            p.assign(&key(7), PodMetadata::default(), Time::from_secs(20))
                .ip
                .to_string(),
            "2600:1f14:abc:de00:1234::4"
        );
        assert_eq!(
            p.assign(&key(8), PodMetadata::default(), Time::from_secs(41))
                .ip,
            a[1]
        );
        assert_eq!(p.assigned(), 4);
    }

    #[test]
    fn restore_checks_prefix_and_owner() {
        let mut p = pool(0);
        let ip: Ipv6Addr = "2600:1f14:abc:de00:1234::9".parse().unwrap();
        p.restore(key(1), ip, PodMetadata::default(), Time::ZERO)
            .unwrap();
        assert!(matches!(
            p.restore(key(2), ip, PodMetadata::default(), Time::ZERO),
            Err(V6Error::AddressTaken(..))
        ));
        let outside: Ipv6Addr = "2600:1f14:abc:de00:9999::1".parse().unwrap();
        assert!(matches!(
            p.restore(key(3), outside, PodMetadata::default(), Time::ZERO),
            Err(V6Error::OutsidePrefix(..))
        ));
        assert_eq!(p.lookup(&key(1)), Some(ip));
        assert_eq!(p.assignments().count(), 1);
    }
}
