//! Addresses that live pods on the node still use but that no ENI in the datastore carries (a
//! restart that lost the cloud's state, a checkpoint from another node's life): they are kept
//! aside, never handed out, and become ordinary assignments as soon as an ENI brings them back.
//! Upstream drops such entries; keeping them is what stops a duplicate address.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use super::{Datastore, DatastoreError, Released};
use crate::key::{IpamKey, PodMetadata};
use crate::time::Time;

/// Network name of the keys the daemon invents for addresses a live pod holds but no checkpoint
/// entry names (the owner is only known by its host interface).
pub const HOST_HELD_NETWORK: &str = "vpc-cni-held";

/// An address kept out of the pool for a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    /// The pod's key (from the checkpoint, or a [`HOST_HELD_NETWORK`] key).
    pub key: IpamKey,
    /// The pod's identity.
    pub metadata: PodMetadata,
    /// When it was assigned (checkpoint) or first seen (host).
    pub since: Time,
}

/// Where [`Datastore::hold`] put an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// An ENI carries it: recorded as an ordinary assignment.
    Assigned,
    /// No ENI carries it: kept aside until one does.
    Aside,
}

impl Datastore {
    /// Keep `ip` for `key`: an assignment when a CIDR of the datastore holds the address, else
    /// kept aside (never handed out; adopted by [`Datastore::add_cidr`] when it comes back).
    pub fn hold(
        &mut self,
        key: IpamKey,
        ip: Ipv4Addr,
        metadata: PodMetadata,
        since: Time,
    ) -> Result<Holding, DatastoreError> {
        match self.restore(key.clone(), ip, metadata.clone(), since) {
            Ok(_) => Ok(Holding::Assigned),
            Err(DatastoreError::UnknownCidr(_)) => {
                self.held.insert(
                    ip,
                    Held {
                        key,
                        metadata,
                        since,
                    },
                );
                Ok(Holding::Aside)
            }
            Err(e) => Err(e),
        }
    }

    /// Addresses kept aside, by address.
    pub fn held(&self) -> impl Iterator<Item = (Ipv4Addr, &Held)> {
        self.held.iter().map(|(ip, h)| (*ip, h))
    }

    /// Addresses held for live pods: aside, or assigned under a [`HOST_HELD_NETWORK`] key.
    pub fn held_count(&self) -> usize {
        self.held.len()
            + self
                .assignments()
                .filter(|(k, _, _)| k.network_name == HOST_HELD_NETWORK)
                .count()
    }

    /// Whether `ip` belongs to a pod the datastore knows (assigned, or kept aside).
    pub fn is_owned(&self, ip: Ipv4Addr) -> bool {
        self.held.contains_key(&ip)
            || self
                .find_cidr(ip)
                .is_some_and(|(_, c)| c.addresses.get(&ip).is_some_and(|a| a.key.is_some()))
    }

    /// Turn the aside addresses inside `net` (just added) into assignments.
    pub(super) fn adopt_held(&mut self, net: Ipv4Net) {
        let inside: Vec<Ipv4Addr> = self
            .held
            .range(net.network()..=net.broadcast())
            .map(|(ip, _)| *ip)
            .collect();
        for ip in inside {
            let h = self.held.remove(&ip).expect("listed above");
            // A key that meanwhile got another address keeps that one; the aside entry goes.
            let _ = self.restore(h.key, ip, h.metadata, h.since);
        }
    }

    /// The address `key` holds, assigned or kept aside.
    pub fn address_of(&self, key: &IpamKey) -> Option<Ipv4Addr> {
        self.lookup(key).or_else(|| self.held_by(key))
    }

    fn held_by(&self, key: &IpamKey) -> Option<Ipv4Addr> {
        self.held
            .iter()
            .find(|(_, h)| &h.key == key || h.key == key.migrated())
            .map(|(ip, _)| *ip)
    }

    /// Release an aside address by its key (DEL of a pod whose address no ENI carries). No
    /// cooldown: the address is not in the pool.
    pub(super) fn release_held(&mut self, key: &IpamKey) -> Option<Released> {
        let ip = self.held_by(key)?;
        let h = self.held.remove(&ip)?;
        Some(Released {
            ip,
            eni_id: String::new(),
            device_number: 0,
            route_table_id: 254,
            interfaces_count: h.metadata.interfaces_count.max(1),
            from_prefix: false,
        })
    }

    /// Forget an address, wherever it is held: an aside entry is dropped; an assignment is
    /// released without cooldown when `key` owns it. Used when the live pod is gone.
    pub fn forget_owner(&mut self, ip: Ipv4Addr, key: &IpamKey) -> bool {
        if self.held.get(&ip).is_some_and(|h| &h.key == key) {
            self.held.remove(&ip);
            return true;
        }
        if self.lookup(key) == Some(ip) {
            self.unassign_without_cooldown(key);
            return true;
        }
        false
    }
}
