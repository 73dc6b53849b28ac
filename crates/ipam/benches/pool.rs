//! Benchmarks of the brain on a 250-pod node: one assign + release, and one policy evaluation.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ipnet::Ipv4Net;
use vpc_cni_ipam::policy::PoolPolicy;
use vpc_cni_ipam::{
    AdaptivePolicy, AwsPolicy, Datastore, EniSpec, IpamKey, NodeState, PodMetadata, PolicyKind,
    PoolLimits, Settings, Time,
};
use vpc_cni_limits::LimitsTable;

/// A node with 250 pod slots filled but one: prefix mode like an m5.4xlarge (8 ENIs × 2 /28s),
/// secondary-IP mode like a p3dn.24xlarge (6 ENIs × 49 IPs).
fn node(pd: bool) -> (Datastore, Vec<IpamKey>) {
    let mut ds = Datastore::new(pd, Duration::from_secs(30));
    let mut block = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    for d in 0..if pd { 8u32 } else { 6 } {
        let id = format!("eni-{d}");
        ds.add_eni(
            EniSpec {
                id: id.clone(),
                device_number: d,
                is_primary: d == 0,
                ..Default::default()
            },
            Time::ZERO,
        )
        .unwrap();
        for _ in 0..if pd { 2 } else { 49 } {
            let net = if pd {
                Ipv4Net::new(Ipv4Addr::from(block), 28)
            } else {
                Ipv4Net::new(Ipv4Addr::from(block), 32)
            };
            ds.add_cidr(&id, net.unwrap(), pd).unwrap();
            block += 16;
        }
    }
    let keys: Vec<IpamKey> = (0..250)
        .map(|i| IpamKey::new("aws-cni", &format!("{i:064x}"), "eth0"))
        .collect();
    for k in &keys[..249] {
        ds.assign(k, PodMetadata::default(), Time::ZERO).unwrap();
    }
    (ds, keys)
}

fn bench(c: &mut Criterion) {
    for pd in [false, true] {
        let mode = if pd { "prefix" } else { "secondary-ip" };
        let (mut ds, keys) = node(pd);
        let mut now = Time::from_secs(100);
        c.bench_function(&format!("assign+release/250 pods/{mode}"), |b| {
            b.iter(|| {
                now = now.plus(Duration::from_secs(31));
                let a = ds
                    .assign(black_box(&keys[249]), PodMetadata::default(), now)
                    .unwrap();
                black_box(a);
                black_box(ds.unassign(&keys[249], now));
            })
        });
        let table = LimitsTable::builtin();
        let t = table
            .get(if pd { "m5.4xlarge" } else { "p3dn.24xlarge" })
            .unwrap();
        let settings = Settings {
            prefix_delegation: pd,
            warm_prefix_target: 1,
            warm_ip_target: 5,
            minimum_ip_target: 30,
            ..Settings::default()
        };
        let limits = PoolLimits::new(&t.limits, &settings, 250);
        let mut policy = AwsPolicy::new(settings, limits);
        c.bench_function(&format!("policy cycle/250 pods/{mode}"), |b| {
            b.iter(|| {
                // Evaluate on a copy so every iteration sees the same pool.
                let mut copy = ds.clone();
                black_box(policy.cycle(&mut copy, NodeState::default(), Time::from_secs(10_000)))
            })
        });
        // The adaptive policy with an arrival history: 10 minutes of one pod every 5 s.
        let adaptive_settings = Settings {
            prefix_delegation: pd,
            pool_policy: PolicyKind::Adaptive,
            ..Settings::default()
        };
        let mut adaptive = AdaptivePolicy::new(adaptive_settings, limits);
        let mut warm = ds.clone();
        let mut t = Time::from_secs(9_000);
        for _ in 0..120 {
            let _ = warm.assign(&keys[249], PodMetadata::default(), t);
            warm.unassign(&keys[249], t);
            adaptive.cycle(&mut warm.clone(), NodeState::default(), t);
            t = t.plus(Duration::from_secs(5));
        }
        c.bench_function(&format!("adaptive policy cycle/250 pods/{mode}"), |b| {
            b.iter(|| {
                let mut copy = ds.clone();
                black_box(adaptive.cycle(&mut copy, NodeState::default(), Time::from_secs(10_000)))
            })
        });
        c.bench_function(&format!("pool clone (baseline)/250 pods/{mode}"), |b| {
            b.iter(|| black_box(ds.clone()))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
