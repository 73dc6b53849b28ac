//! The datastore of one network card (spec b): ENIs, their /32s or /28s, assignments keyed by
//! the CNI triple, cooldown state and counters. Pure data with deterministic iteration order:
//! ENIs by device number, CIDRs and addresses by value.

mod assign;
mod held;
mod stats;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::key::{IpamKey, PodMetadata};
use crate::time::Time;

pub use assign::{Assignment, Released};
pub use held::{HOST_HELD_NETWORK, Held, Holding};
pub use stats::{EniStats, IpStats};

/// Most refused pods the datastore remembers as waiting.
pub const MAX_WAITING: usize = 4096;
/// A refused pod counts as waiting for at most this long.
pub const WAITING_MAX_AGE: Duration = Duration::from_secs(600);

/// Default `IP_COOLDOWN_PERIOD`.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);

/// Datastore errors, with upstream's wording where one exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatastoreError {
    /// `AddENI` of an ENI already present.
    #[error("data store: duplicate ENI {0}")]
    DuplicateEni(String),
    /// The ENI is not in the datastore.
    #[error("datastore: unknown ENI {0}")]
    UnknownEni(String),
    /// The CIDR overlaps one already in the datastore.
    #[error("datastore: IP already in data store: {0}")]
    CidrExists(Ipv4Net),
    /// The CIDR is not on that ENI.
    #[error("datastore: unknown IP {0}")]
    UnknownCidr(Ipv4Net),
    /// Non-forced delete of a CIDR with assigned addresses.
    #[error("datastore: IP is used and can not be deleted: {0}")]
    CidrInUse(Ipv4Net),
    /// Non-forced removal of an ENI with assigned addresses.
    #[error("datastore: ENI is used and can not be deleted: {0}")]
    EniInUse(String),
    /// No address is free for a new pod.
    #[error("AssignPodIPv4Address: no available IP/Prefix addresses")]
    NoAvailableAddress,
    /// Two assignments claim one address (e.g. a corrupt checkpoint).
    #[error("datastore: address {0} is already assigned to {1}")]
    AddressTaken(Ipv4Addr, IpamKey),
}

/// How an ENI enters the datastore.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct EniSpec {
    /// ENI ID (`eni-…`).
    pub id: String,
    /// Device index on its card (0 = primary).
    pub device_number: u32,
    /// Whether this is the instance's primary ENI.
    pub is_primary: bool,
    /// Trunk ENI (security groups for pods): never gets addresses.
    pub is_trunk: bool,
    /// EFA ENI: used but never freed.
    pub is_efa: bool,
    /// In an excluded subnet: no new pods, not counted in stats.
    pub excluded: bool,
    /// Subnet ID.
    pub subnet_id: String,
    /// Route table used by pods on this ENI (254 = main).
    pub route_table_id: u32,
    /// The ENI's primary private IP (never given to pods).
    pub primary_ip: Option<Ipv4Addr>,
}

/// Per-address record: exists only for assigned addresses and cooling ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressInfo {
    /// Owner; `None` once released.
    pub key: Option<IpamKey>,
    /// Pod identity of the owner.
    pub metadata: PodMetadata,
    /// When it was assigned.
    pub assigned_at: Time,
    /// When it was released (start of its cooldown).
    pub unassigned_at: Option<Time>,
}

impl AddressInfo {
    /// The record of an address assigned to `key` at `at`.
    pub fn assigned(key: IpamKey, metadata: PodMetadata, at: Time) -> Self {
        AddressInfo {
            key: Some(key),
            metadata,
            assigned_at: at,
            unassigned_at: None,
        }
    }
}

/// A /32 (secondary IP) or /28 (prefix) on an ENI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CidrInfo {
    /// The block.
    pub net: Ipv4Net,
    /// Whether it is a delegated prefix.
    pub is_prefix: bool,
    /// Recorded addresses.
    pub addresses: BTreeMap<Ipv4Addr, AddressInfo>,
}

impl CidrInfo {
    /// Addresses in the block (1 or 16).
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.net.prefix_len())
    }

    /// Addresses currently assigned.
    pub fn assigned(&self) -> u32 {
        self.addresses.values().filter(|a| a.key.is_some()).count() as u32
    }
}

/// One ENI in the datastore: its [`EniSpec`] (readable through `Deref`) plus live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Eni {
    /// What the ENI is.
    #[serde(flatten)]
    pub spec: EniSpec,
    /// When it entered the datastore (restart resets it, as upstream).
    pub created_at: Time,
    /// Its CIDRs by value.
    pub cidrs: BTreeMap<Ipv4Net, CidrInfo>,
}

impl std::ops::Deref for Eni {
    type Target = EniSpec;

    fn deref(&self) -> &EniSpec {
        &self.spec
    }
}

impl Eni {
    /// Addresses assigned on this ENI.
    pub fn assigned(&self) -> u32 {
        self.cidrs.values().map(CidrInfo::assigned).sum()
    }

    /// Whether any pod uses it.
    pub fn has_pods(&self) -> bool {
        self.cidrs
            .values()
            .any(|c| c.addresses.values().any(|a| a.key.is_some()))
    }
}

/// The datastore of one card.
#[derive(Debug, Clone)]
pub struct Datastore {
    enis: Vec<Eni>,
    prefix_delegation: bool,
    cooldown: Duration,
    /// key → address, for idempotent ADD and fast DEL.
    index: HashMap<IpamKey, Ipv4Addr>,
    total: u64,
    assigned: u64,
    allocated_prefixes: u64,
    /// Addresses live pods use that no ENI here carries (see `held`).
    held: BTreeMap<Ipv4Addr, Held>,
    /// Successful new assignments since start (the pod arrivals a policy may measure).
    arrivals: u64,
    /// Pods refused for want of an address and not yet served or deleted, with when they first
    /// asked (a policy's unmet demand).
    waiting: HashMap<IpamKey, Time>,
    /// Prefix mode also serves pods from /32 secondary addresses (after prefixes).
    ip_fallback: bool,
    /// IPv6 mode (`ENABLE_IPv6`): the node's /80 and its pods.
    v6: Option<crate::v6::V6Pool>,
}

impl Datastore {
    /// An empty datastore; `prefix_delegation` selects which CIDRs serve pods.
    pub fn new(prefix_delegation: bool, cooldown: Duration) -> Self {
        Datastore {
            enis: Vec::new(),
            prefix_delegation,
            cooldown,
            index: HashMap::new(),
            total: 0,
            assigned: 0,
            allocated_prefixes: 0,
            held: BTreeMap::new(),
            arrivals: 0,
            waiting: HashMap::new(),
            ip_fallback: false,
            v6: None,
        }
    }

    /// The IPv6 pool, in IPv6 mode.
    pub fn v6(&self) -> Option<&crate::v6::V6Pool> {
        self.v6.as_ref()
    }

    /// The IPv6 pool, to assign from.
    pub fn v6_mut(&mut self) -> Option<&mut crate::v6::V6Pool> {
        self.v6.as_mut()
    }

    /// Enter IPv6 mode with this pool (the primary ENI's /80).
    pub fn set_v6(&mut self, pool: crate::v6::V6Pool) {
        self.v6 = Some(pool);
    }

    /// New assignments since start (idempotent repeats not counted).
    pub fn arrivals(&self) -> u64 {
        self.arrivals
    }

    /// Pods refused an address and still waiting (neither served nor deleted since).
    pub fn waiting(&self) -> u32 {
        self.waiting.len() as u32
    }

    /// Record a pod refused an address. The map is bounded whatever policy runs (a client can
    /// invent keys): past [`MAX_WAITING`] entries, those older than [`WAITING_MAX_AGE`] go, and
    /// if that frees nothing the new key is not recorded (no node runs that many pods).
    pub(crate) fn note_waiting(&mut self, key: &IpamKey, now: Time) {
        if self.waiting.contains_key(key) {
            return;
        }
        if self.waiting.len() >= MAX_WAITING {
            self.prune_waiting(now, WAITING_MAX_AGE);
            if self.waiting.len() >= MAX_WAITING {
                return;
            }
        }
        self.waiting.insert(key.clone(), now);
    }

    /// Forget waiting pods older than `max_age` (their DEL never came).
    pub fn prune_waiting(&mut self, now: Time, max_age: std::time::Duration) {
        self.waiting.retain(|_, at| now.since(*at) <= max_age);
    }

    /// Let prefix mode serve pods from /32 secondary addresses too, after every prefix (the
    /// adaptive policy's fallback on a fragmented subnet). Off by default, as upstream.
    pub fn set_ip_fallback(&mut self, on: bool) {
        self.ip_fallback = on;
    }

    /// Whether pods get addresses from /28 prefixes.
    pub fn prefix_delegation(&self) -> bool {
        self.prefix_delegation
    }

    /// The IP cooldown period.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    /// ENIs in device order.
    pub fn enis(&self) -> &[Eni] {
        &self.enis
    }

    /// One ENI by ID.
    pub fn eni(&self, id: &str) -> Option<&Eni> {
        self.enis.iter().find(|e| e.id == id)
    }

    fn eni_mut(&mut self, id: &str) -> Result<&mut Eni, DatastoreError> {
        self.enis
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or_else(|| DatastoreError::UnknownEni(id.to_string()))
    }

    /// Raw counters as upstream keeps them: (total, assigned, allocated prefixes).
    pub fn counters(&self) -> (u64, u64, u64) {
        (self.total, self.assigned, self.allocated_prefixes)
    }

    /// Add an ENI (`AddENI`).
    pub fn add_eni(&mut self, spec: EniSpec, now: Time) -> Result<(), DatastoreError> {
        if self.eni(&spec.id).is_some() {
            return Err(DatastoreError::DuplicateEni(spec.id));
        }
        let eni = Eni {
            spec,
            created_at: now,
            cidrs: BTreeMap::new(),
        };
        let pos = self
            .enis
            .partition_point(|e| (e.device_number, &e.id) < (eni.device_number, &eni.id));
        self.enis.insert(pos, eni);
        Ok(())
    }

    /// Mark an ENI as in an excluded subnet (no new pods; the policy drains its free CIDRs) or
    /// not. Returns whether that changed anything.
    pub fn set_excluded(&mut self, eni: &str, excluded: bool) -> Result<bool, DatastoreError> {
        let e = self.eni_mut(eni)?;
        let changed = e.spec.excluded != excluded;
        e.spec.excluded = excluded;
        Ok(changed)
    }

    /// Add a /32 or /28 to an ENI (`AddIPv4CidrToStore`).
    pub fn add_cidr(
        &mut self,
        eni: &str,
        net: Ipv4Net,
        is_prefix: bool,
    ) -> Result<(), DatastoreError> {
        let net = net.trunc();
        let overlaps = |c: &Ipv4Net| c.contains(&net) || net.contains(c);
        if self.enis.iter().any(|e| e.cidrs.keys().any(overlaps)) {
            return Err(DatastoreError::CidrExists(net));
        }
        let info = CidrInfo {
            net,
            is_prefix,
            addresses: BTreeMap::new(),
        };
        let size = u64::from(info.size());
        self.eni_mut(eni)?.cidrs.insert(net, info);
        self.total += size;
        if is_prefix {
            self.allocated_prefixes += 1;
        }
        self.adopt_held(net);
        Ok(())
    }

    /// Remove a CIDR (`DelIPv4CidrFromStore`). Without `force` a CIDR with assigned addresses is
    /// refused; with it, its assignments are dropped and returned.
    pub fn del_cidr(
        &mut self,
        eni: &str,
        net: Ipv4Net,
        force: bool,
    ) -> Result<Vec<(IpamKey, Ipv4Addr)>, DatastoreError> {
        let e = self.eni_mut(eni)?;
        let info = e.cidrs.get(&net).ok_or(DatastoreError::UnknownCidr(net))?;
        if !force && info.assigned() > 0 {
            return Err(DatastoreError::CidrInUse(net));
        }
        let info = e.cidrs.remove(&net).expect("checked above");
        Ok(self.forget_cidr(info))
    }

    /// Remove an ENI (`RemoveENIFromDataStore`); returns the assignments dropped when forced.
    pub fn remove_eni(
        &mut self,
        eni: &str,
        force: bool,
    ) -> Result<(Eni, Vec<(IpamKey, Ipv4Addr)>), DatastoreError> {
        let pos = self
            .enis
            .iter()
            .position(|e| e.id == eni)
            .ok_or_else(|| DatastoreError::UnknownEni(eni.to_string()))?;
        if !force && self.enis[pos].has_pods() {
            return Err(DatastoreError::EniInUse(eni.to_string()));
        }
        let mut removed = self.enis.remove(pos);
        let mut dropped = Vec::new();
        for (_, info) in std::mem::take(&mut removed.cidrs) {
            dropped.extend(self.forget_cidr(info.clone()));
            removed.cidrs.insert(info.net, info);
        }
        Ok((removed, dropped))
    }

    /// Counter and index bookkeeping for a CIDR that left the datastore (counted once, unlike
    /// upstream's double subtraction on forced ENI removal).
    fn forget_cidr(&mut self, info: CidrInfo) -> Vec<(IpamKey, Ipv4Addr)> {
        self.total -= u64::from(info.size());
        if info.is_prefix {
            self.allocated_prefixes -= 1;
        }
        let mut dropped = Vec::new();
        for (ip, a) in info.addresses {
            if let Some(key) = a.key {
                self.index.remove(&key);
                self.assigned -= 1;
                dropped.push((key, ip));
            }
        }
        dropped
    }

    /// The ENI and CIDR holding `ip`, if any.
    pub fn find_cidr(&self, ip: Ipv4Addr) -> Option<(&Eni, &CidrInfo)> {
        self.enis.iter().find_map(|e| {
            e.cidrs
                .range(..=Ipv4Net::new(ip, 32).expect("/32 is valid"))
                .next_back()
                .filter(|(net, _)| net.contains(&ip))
                .map(|(_, c)| (e, c))
        })
    }

    /// ENIs that can take more CIDRs (`GetAllocatableENIs`): not trunk, not excluded, not the
    /// primary when `skip_primary`, and fewer than `max_cidrs` CIDRs.
    pub fn allocatable_enis(
        &self,
        max_cidrs: u32,
        skip_primary: bool,
    ) -> impl Iterator<Item = &Eni> {
        self.enis.iter().filter(move |e| {
            let barred = e.is_trunk || e.excluded || (skip_primary && e.is_primary);
            !barred && (e.cidrs.len() as u32) < max_cidrs
        })
    }

    /// CIDRs of `eni` with no assigned address, any kind (`FindFreeableCidrs`); cooling ones
    /// qualify.
    pub fn freeable_cidrs(&self, eni: &str) -> Vec<Ipv4Net> {
        self.eni(eni)
            .map(|e| {
                e.cidrs
                    .values()
                    .filter(|c| c.assigned() == 0)
                    .map(|c| c.net)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every assignment: (key, address, metadata, assigned at).
    pub fn assignments(&self) -> impl Iterator<Item = (&IpamKey, Ipv4Addr, &AddressInfo)> {
        self.enis.iter().flat_map(|e| {
            e.cidrs.values().flat_map(|c| {
                c.addresses
                    .iter()
                    .filter_map(|(ip, a)| a.key.as_ref().map(|k| (k, *ip, a)))
            })
        })
    }
}
