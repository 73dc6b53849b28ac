//! Property tests of the datastore: under any sequence of operations an address is never
//! assigned twice, the counters equal recomputed values, ADD is idempotent and releasing an
//! unknown key is a no-op.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use proptest::prelude::*;
use vpc_cni_ipam::{Datastore, DatastoreError, EniSpec, IpamKey, PodMetadata, Time};

#[derive(Debug, Clone)]
enum Op {
    AddEni,
    AddCidrs { eni: usize, n: u8 },
    Assign(u8),
    Unassign(u8),
    Advance(u16),
    DelCidr { eni: usize, idx: usize, force: bool },
    RemoveEni { eni: usize, force: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::AddEni),
        3 => (0usize..4, 1u8..6).prop_map(|(eni, n)| Op::AddCidrs { eni, n }),
        8 => any::<u8>().prop_map(|k| Op::Assign(k % 64)),
        5 => any::<u8>().prop_map(|k| Op::Unassign(k % 80)),
        2 => (1u16..40).prop_map(Op::Advance),
        1 => (0usize..4, 0usize..20, any::<bool>()).prop_map(|(eni, idx, force)| Op::DelCidr { eni, idx, force }),
        1 => (0usize..4, any::<bool>()).prop_map(|(eni, force)| Op::RemoveEni { eni, force }),
    ]
}

fn key(k: u8) -> IpamKey {
    IpamKey::new("aws-cni", &format!("c{k}"), "eth0")
}

struct World {
    ds: Datastore,
    now: Time,
    next_eni: u32,
    next_block: u32,
    pd: bool,
}

impl World {
    fn eni_id(&self, i: usize) -> Option<String> {
        let enis = self.ds.enis();
        (!enis.is_empty()).then(|| enis[i % enis.len()].id.clone())
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::AddEni => {
                let id = format!("eni-{}", self.next_eni);
                let spec = EniSpec {
                    id,
                    device_number: self.next_eni,
                    is_primary: self.next_eni == 0,
                    ..Default::default()
                };
                self.next_eni += 1;
                self.ds.add_eni(spec, self.now).unwrap();
            }
            Op::AddCidrs { eni, n } => {
                let Some(id) = self.eni_id(*eni) else { return };
                for _ in 0..*n {
                    let base = u32::from(Ipv4Addr::new(10, 1, 0, 0)) + self.next_block * 16;
                    self.next_block += 1;
                    let net = if self.pd {
                        Ipv4Net::new(Ipv4Addr::from(base), 28)
                    } else {
                        Ipv4Net::new(Ipv4Addr::from(base + 3), 32)
                    };
                    self.ds.add_cidr(&id, net.unwrap(), self.pd).unwrap();
                }
            }
            Op::Assign(k) => {
                let before = self.ds.lookup(&key(*k));
                match self.ds.assign(&key(*k), PodMetadata::default(), self.now) {
                    Ok(a) => {
                        if let Some(ip) = before {
                            assert_eq!(a.ip, ip, "ADD must be idempotent per key");
                        }
                    }
                    Err(DatastoreError::NoAvailableAddress) => assert!(before.is_none()),
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            Op::Unassign(k) => {
                let before_counters = self.ds.counters();
                let known = self.ds.lookup(&key(*k)).is_some();
                let r = self.ds.unassign(&key(*k), self.now);
                assert_eq!(r.is_some(), known);
                if !known {
                    assert_eq!(
                        self.ds.counters(),
                        before_counters,
                        "unknown release must be a no-op"
                    );
                }
            }
            Op::Advance(s) => self.now = self.now.plus(Duration::from_secs(u64::from(*s))),
            Op::DelCidr { eni, idx, force } => {
                let Some(id) = self.eni_id(*eni) else { return };
                let nets: Vec<Ipv4Net> = self.ds.eni(&id).unwrap().cidrs.keys().copied().collect();
                if nets.is_empty() {
                    return;
                }
                let net = nets[idx % nets.len()];
                let used = self.ds.eni(&id).unwrap().cidrs[&net].assigned() > 0;
                let r = self.ds.del_cidr(&id, net, *force);
                assert_eq!(r.is_err(), used && !force);
            }
            Op::RemoveEni { eni, force } => {
                let Some(id) = self.eni_id(*eni) else { return };
                let used = self.ds.eni(&id).unwrap().has_pods();
                let r = self.ds.remove_eni(&id, *force);
                assert_eq!(r.is_err(), used && !force);
            }
        }
    }

    fn check(&self) {
        assert_eq!(self.ds.counters(), self.ds.recount(), "counters drifted");
        let mut seen_ips = HashSet::new();
        let mut seen_keys = HashMap::new();
        for (k, ip, _) in self.ds.assignments() {
            assert!(seen_ips.insert(ip), "{ip} assigned twice");
            assert!(
                seen_keys.insert(k.clone(), ip).is_none(),
                "{k} holds two addresses"
            );
            assert_eq!(self.ds.lookup(k), Some(ip), "index disagrees for {k}");
        }
        let stats = self.ds.stats(self.now);
        assert_eq!(u64::from(stats.assigned_ips), self.ds.counters().1);
        assert!(stats.cooldown_ips + stats.assigned_ips <= stats.total_ips);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn datastore_invariants(pd in any::<bool>(), ops in prop::collection::vec(op(), 1..120)) {
        let mut w = World { ds: Datastore::new(pd, Duration::from_secs(30)), now: Time::ZERO, next_eni: 0, next_block: 0, pd };
        w.apply(&Op::AddEni);
        for op in &ops {
            w.apply(op);
            w.check();
        }
    }

    #[test]
    fn cooling_addresses_are_not_reused(ops in prop::collection::vec(0u8..16, 1..60)) {
        // One /28, pods come and go within the cooldown: no address released less than 30 s ago
        // is handed out again.
        let mut ds = Datastore::new(true, Duration::from_secs(30));
        ds.add_eni(EniSpec { id: "eni-0".into(), is_primary: true, ..Default::default() }, Time::ZERO).unwrap();
        ds.add_cidr("eni-0", "10.0.0.16/28".parse().unwrap(), true).unwrap();
        let mut released: HashMap<Ipv4Addr, Time> = HashMap::new();
        let mut now = Time::ZERO;
        for k in ops {
            now = now.plus(Duration::from_secs(7));
            if let Some(r) = ds.unassign(&key(k), now) {
                released.insert(r.ip, now);
            } else if let Ok(a) = ds.assign(&key(k), PodMetadata::default(), now)
                && let Some(t) = released.get(&a.ip)
            {
                prop_assert!(now.since(*t) > Duration::from_secs(30), "{} reused after {:?}", a.ip, now.since(*t));
            }
        }
    }
}

#[test]
fn assignment_is_deterministic_lowest_first() {
    let mut ds = Datastore::new(true, Duration::from_secs(30));
    ds.add_eni(
        EniSpec {
            id: "eni-b".into(),
            device_number: 1,
            ..Default::default()
        },
        Time::ZERO,
    )
    .unwrap();
    ds.add_eni(
        EniSpec {
            id: "eni-a".into(),
            device_number: 0,
            is_primary: true,
            ..Default::default()
        },
        Time::ZERO,
    )
    .unwrap();
    ds.add_cidr("eni-b", "10.0.0.0/28".parse().unwrap(), true)
        .unwrap();
    ds.add_cidr("eni-a", "10.0.1.0/28".parse().unwrap(), true)
        .unwrap();
    let a = ds
        .assign(&key(1), PodMetadata::default(), Time::ZERO)
        .unwrap();
    // Primary (device 0) first; the network address of a prefix is handed out, as upstream.
    assert_eq!(
        (a.eni_id.as_str(), a.ip),
        ("eni-a", Ipv4Addr::new(10, 0, 1, 0))
    );
    let b = ds
        .assign(&key(2), PodMetadata::default(), Time::ZERO)
        .unwrap();
    assert_eq!(b.ip, Ipv4Addr::new(10, 0, 1, 1));
    // Released address cools for 30 s, then is reused.
    ds.unassign(&key(1), Time::from_secs(1));
    let c = ds
        .assign(&key(3), PodMetadata::default(), Time::from_secs(2))
        .unwrap();
    assert_eq!(c.ip, Ipv4Addr::new(10, 0, 1, 2));
    ds.unassign(&key(3), Time::from_secs(3));
    let d = ds
        .assign(&key(4), PodMetadata::default(), Time::from_secs(32))
        .unwrap();
    assert_eq!(d.ip, Ipv4Addr::new(10, 0, 1, 0));
    assert_eq!(ds.stats(Time::from_secs(32)).cooldown_ips, 1);
}

#[test]
fn errors_use_upstream_wording() {
    let mut ds = Datastore::new(false, Duration::from_secs(30));
    ds.add_eni(
        EniSpec {
            id: "eni-0".into(),
            ..Default::default()
        },
        Time::ZERO,
    )
    .unwrap();
    let dup = ds
        .add_eni(
            EniSpec {
                id: "eni-0".into(),
                ..Default::default()
            },
            Time::ZERO,
        )
        .unwrap_err();
    assert!(dup.to_string().starts_with("data store: duplicate ENI"));
    let net: Ipv4Net = "10.0.0.5/32".parse().unwrap();
    ds.add_cidr("eni-0", net, false).unwrap();
    assert!(
        ds.add_cidr("eni-0", net, false)
            .unwrap_err()
            .to_string()
            .contains("IP already in data store")
    );
    assert!(
        ds.add_cidr("eni-9", "10.0.0.6/32".parse().unwrap(), false)
            .unwrap_err()
            .to_string()
            .contains("unknown ENI")
    );
    ds.assign(&key(1), PodMetadata::default(), Time::ZERO)
        .unwrap();
    assert!(
        ds.del_cidr("eni-0", net, false)
            .unwrap_err()
            .to_string()
            .contains("IP is used and can not be deleted")
    );
    assert!(
        ds.remove_eni("eni-0", false)
            .unwrap_err()
            .to_string()
            .contains("ENI is used and can not be deleted")
    );
    let none = ds
        .assign(&key(2), PodMetadata::default(), Time::ZERO)
        .unwrap_err();
    assert_eq!(
        none.to_string(),
        "AssignPodIPv4Address: no available IP/Prefix addresses"
    );
    // Forced removal drops the assignment and counts it once.
    let (_, dropped) = ds.remove_eni("eni-0", true).unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(ds.counters(), (0, 0, 0));
}

#[test]
fn migrated_key_fallback_on_release() {
    let mut ds = Datastore::new(false, Duration::from_secs(30));
    ds.add_eni(
        EniSpec {
            id: "eni-0".into(),
            ..Default::default()
        },
        Time::ZERO,
    )
    .unwrap();
    ds.add_cidr("eni-0", "10.0.0.5/32".parse().unwrap(), false)
        .unwrap();
    let legacy = IpamKey::new("_migrated-from-cri", "abc", "unknown");
    ds.assign(&legacy, PodMetadata::default(), Time::ZERO)
        .unwrap();
    let r = ds
        .unassign(&IpamKey::new("aws-cni", "abc", "eth0"), Time::ZERO)
        .unwrap();
    assert_eq!(r.ip, Ipv4Addr::new(10, 0, 0, 5));
}
