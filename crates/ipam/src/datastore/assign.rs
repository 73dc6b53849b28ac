//! Assigning addresses to pods and releasing them (spec b.3, b.4), plus restoring assignments
//! from a checkpoint.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use super::{AddressInfo, CidrInfo, Datastore, DatastoreError};
use crate::key::{IpamKey, PodMetadata};
use crate::time::Time;

/// The answer to an assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// ENI that holds it.
    pub eni_id: String,
    /// Device number of that ENI.
    pub device_number: u32,
    /// Route table pods on that ENI use.
    pub route_table_id: u32,
}

/// The answer to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Released {
    /// The address that was freed (now cooling).
    pub ip: Ipv4Addr,
    /// ENI that holds it.
    pub eni_id: String,
    /// Device number of that ENI.
    pub device_number: u32,
    /// Route table of that ENI.
    pub route_table_id: u32,
    /// Interfaces the pod had (0 reported as 1).
    pub interfaces_count: u32,
    /// Whether the address came from a prefix.
    pub from_prefix: bool,
}

impl CidrInfo {
    /// First usable address: a recorded one that is released and out of cooldown, else the lowest
    /// address without a record.
    fn free_address(&self, now: Time, cooldown: std::time::Duration) -> Option<Ipv4Addr> {
        let first = u32::from(self.net.network());
        (0..self.size())
            .map(|i| Ipv4Addr::from(first + i))
            .find(|ip| match self.addresses.get(ip) {
                None => true,
                Some(a) => {
                    a.key.is_none() && a.unassigned_at.is_none_or(|t| now.since(t) > cooldown)
                }
            })
    }
}

impl Datastore {
    /// Give `key` an address (`AssignPodIPv4Address`). Idempotent: a key that already has an
    /// address gets the same one back. Deterministic: lowest device number, lowest CIDR, lowest
    /// free address.
    pub fn assign(
        &mut self,
        key: &IpamKey,
        metadata: PodMetadata,
        now: Time,
    ) -> Result<Assignment, DatastoreError> {
        if let Some(&ip) = self.index.get(key) {
            let (eni, _) = self.find_cidr(ip).expect("indexed address is in a CIDR");
            return Ok(Assignment {
                ip,
                eni_id: eni.id.clone(),
                device_number: eni.device_number,
                route_table_id: eni.route_table_id,
            });
        }
        let (pd, cooldown) = (self.prefix_delegation, self.cooldown);
        let find = |kind: bool| {
            self.enis
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.excluded && !e.is_trunk)
                .find_map(|(i, e)| {
                    e.cidrs
                        .values()
                        .filter(|c| c.is_prefix == kind)
                        .find_map(|c| c.free_address(now, cooldown).map(|ip| (i, c.net, ip)))
                })
        };
        // Prefix mode with the /32 fallback: every prefix first, then the /32s.
        let found = find(pd).or_else(|| (pd && self.ip_fallback).then(|| find(false)).flatten());
        let Some((eni_idx, net, ip)) = found else {
            self.note_waiting(key, now);
            return Err(DatastoreError::NoAvailableAddress);
        };
        self.waiting.remove(key);
        self.arrivals += 1;
        self.record(eni_idx, net, ip, key.clone(), metadata, now);
        let eni = &self.enis[eni_idx];
        Ok(Assignment {
            ip,
            eni_id: eni.id.clone(),
            device_number: eni.device_number,
            route_table_id: eni.route_table_id,
        })
    }

    fn record(
        &mut self,
        eni_idx: usize,
        net: Ipv4Net,
        ip: Ipv4Addr,
        key: IpamKey,
        metadata: PodMetadata,
        now: Time,
    ) {
        let cidr = self.enis[eni_idx]
            .cidrs
            .get_mut(&net)
            .expect("caller found the CIDR");
        // Stale released records of this CIDR are purged when one of them is reused.
        let cooldown = self.cooldown;
        cidr.addresses.retain(|_, a| {
            a.key.is_some() || a.unassigned_at.is_some_and(|t| now.since(t) <= cooldown)
        });
        cidr.addresses
            .insert(ip, AddressInfo::assigned(key.clone(), metadata, now));
        self.index.insert(key, ip);
        self.assigned += 1;
    }

    /// Re-create an assignment read from a checkpoint at a known address. Fails if the address is
    /// in no CIDR of this datastore or is already assigned.
    pub fn restore(
        &mut self,
        key: IpamKey,
        ip: Ipv4Addr,
        metadata: PodMetadata,
        assigned_at: Time,
    ) -> Result<Assignment, DatastoreError> {
        if let Some(&existing) = self.index.get(&key) {
            if existing == ip {
                return self.assign(&key, metadata, assigned_at);
            }
            return Err(DatastoreError::AddressTaken(existing, key));
        }
        let (eni_idx, net) = self
            .enis
            .iter()
            .enumerate()
            .find_map(|(i, e)| e.cidrs.keys().find(|n| n.contains(&ip)).map(|n| (i, *n)))
            .ok_or(DatastoreError::UnknownCidr(
                Ipv4Net::new(ip, 32).expect("valid"),
            ))?;
        if let Some(owner) = self.enis[eni_idx].cidrs[&net]
            .addresses
            .get(&ip)
            .and_then(|a| a.key.clone())
        {
            return Err(DatastoreError::AddressTaken(ip, owner));
        }
        self.record(eni_idx, net, ip, key.clone(), metadata, assigned_at);
        self.assign(&key, PodMetadata::default(), assigned_at)
    }

    /// Release `key`'s address (`UnassignPodIPAddress`); the address enters cooldown. An unknown
    /// key (also under upstream's CRI-migrated fallback key) is a no-op answered with `None`; a
    /// key whose address was kept aside (see `held`) gives that address up.
    pub fn unassign(&mut self, key: &IpamKey, now: Time) -> Option<Released> {
        // A pod deleted while waiting for an address is no longer demand.
        self.waiting.remove(key);
        self.release(key, Some(now))
            .or_else(|| self.release_held(key))
    }

    /// Undo an assignment as if it never happened: no cooldown, so a retried ADD gets the same
    /// address (upstream's roll-back when the checkpoint cannot be written).
    pub fn unassign_without_cooldown(&mut self, key: &IpamKey) -> Option<Released> {
        self.release(key, None)
    }

    fn release(&mut self, key: &IpamKey, now: Option<Time>) -> Option<Released> {
        let (key, ip) = match self.index.get(key) {
            Some(&ip) => (key.clone(), ip),
            None => {
                let migrated = key.migrated();
                let ip = *self.index.get(&migrated)?;
                (migrated, ip)
            }
        };
        self.index.remove(&key);
        self.assigned -= 1;
        let eni = self
            .enis
            .iter_mut()
            .find(|e| e.cidrs.keys().any(|n| n.contains(&ip)))
            .expect("indexed address is on an ENI");
        let cidr = eni
            .cidrs
            .values_mut()
            .find(|c| c.net.contains(&ip))
            .expect("indexed address is in a CIDR");
        let info = cidr
            .addresses
            .get_mut(&ip)
            .expect("indexed address is recorded");
        let interfaces_count = info.metadata.interfaces_count.max(1);
        match now {
            Some(now) => {
                info.key = None;
                info.metadata = PodMetadata::default();
                info.unassigned_at = Some(now);
            }
            None => {
                cidr.addresses.remove(&ip);
            }
        }
        Some(Released {
            ip,
            eni_id: eni.spec.id.clone(),
            device_number: eni.spec.device_number,
            route_table_id: eni.spec.route_table_id,
            interfaces_count,
            from_prefix: cidr.is_prefix,
        })
    }

    /// The address `key` holds, if any.
    pub fn lookup(&self, key: &IpamKey) -> Option<Ipv4Addr> {
        self.index.get(key).copied()
    }
}
