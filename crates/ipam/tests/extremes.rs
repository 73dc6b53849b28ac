//! The policy at the extremes of its settings: targets of 0, 1, the validated bound and
//! `u32::MAX` (a caller that bypasses validation), on pools of any fill. No arithmetic overflow
//! (debug builds panic on one), growth never past the instance's limits, and a pool that is
//! asked for the impossible still grows rather than giving up.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use proptest::prelude::*;
use vpc_cni_ipam::policy::PoolPolicy;
use vpc_cni_ipam::settings::MAX_TARGET;
use vpc_cni_ipam::{
    Action, Datastore, EniSpec, IpamKey, NodeState, PodMetadata, PoolLimits, Settings, Time,
};
use vpc_cni_limits::LimitsTable;

fn extreme() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(MAX_TARGET),
        Just(u32::MAX),
        0u32..64
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn no_overflow_and_limits_hold(
        warm_eni in extreme(), warm_ip in extreme(), min_ip in extreme(), warm_prefix in extreme(),
        pd in any::<bool>(), enis in 1usize..4, per_eni in 0u32..10, pods in 0u32..20,
    ) {
        let settings = Settings {
            warm_eni_target: warm_eni,
            warm_ip_target: warm_ip,
            minimum_ip_target: min_ip,
            warm_prefix_target: warm_prefix,
            prefix_delegation: pd,
            ..Settings::default()
        };
        let table = LimitsTable::builtin();
        let t = table.get("m5.xlarge").unwrap();
        let limits = PoolLimits::new(&t.limits, &settings, 58);
        let mut ds = Datastore::new(limits.prefix_delegation, Duration::from_secs(30));
        let mut next = u32::from(Ipv4Addr::new(10, 0, 0, 0));
        let per = per_eni.min(limits.max_cidrs_per_eni());
        for d in 0..enis {
            let id = format!("eni-{d}");
            ds.add_eni(EniSpec { id: id.clone(), device_number: d as u32, is_primary: d == 0, ..Default::default() }, Time::ZERO).unwrap();
            for _ in 0..per {
                let net = Ipv4Net::new(Ipv4Addr::from(next), if limits.prefix_delegation { 28 } else { 32 }).unwrap();
                ds.add_cidr(&id, net, limits.prefix_delegation).unwrap();
                next += 16;
            }
        }
        for p in 0..pods {
            let _ = ds.assign(&IpamKey::new("n", &p.to_string(), "eth0"), PodMetadata::default(), Time::ZERO);
        }
        let mut policy = vpc_cni_ipam::AwsPolicy::new(settings, limits);
        let decisions = policy.cycle(&mut ds, NodeState::default(), Time::from_secs(600));
        let _ = policy.describe(&ds, Time::from_secs(600));
        for d in &decisions {
            match &d.action {
                Action::AssignToEni { count, .. } | Action::AllocateEni { count, .. } => {
                    prop_assert!(*count >= 1 && *count <= limits.max_cidrs_per_eni().max(limits.max_ips_per_eni), "{d:?}");
                }
                _ => {}
            }
        }
        // Asking for the impossible is still asking: with only the ENI / prefix target set (to
        // u32::MAX), a pool with room grows.
        let huge = if limits.prefix_delegation { warm_prefix } else { warm_eni };
        let stats = ds.stats(Time::from_secs(600));
        let room = ds.enis().iter().any(|e| (e.cidrs.len() as u32) < limits.max_cidrs_per_eni())
            || (ds.enis().len() as u32) < limits.max_eni;
        if huge == u32::MAX && warm_ip == 0 && min_ip == 0 && stats.total_ips < limits.max_pods && room {
            let grows = decisions.iter().any(|d| matches!(d.action, Action::AssignToEni { .. } | Action::AllocateEni { .. }));
            prop_assert!(grows, "{decisions:?}");
        }
    }
}

#[test]
fn huge_targets_are_refused_by_validation_naming_the_variable() {
    for var in [
        "WARM_ENI_TARGET",
        "WARM_IP_TARGET",
        "MINIMUM_IP_TARGET",
        "WARM_PREFIX_TARGET",
        "MAX_ENI",
    ] {
        let e = Settings::from_lookup(|k| (k == var).then(|| "4294967295".to_string()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(var) && e.contains("4294967295") && e.contains("1000000"),
            "{e}"
        );
    }
    let e = Settings::from_lookup(|k| (k == "IP_COOLDOWN_PERIOD").then(|| "999999".to_string()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("IP_COOLDOWN_PERIOD"), "{e}");
}

/// Refused pods are remembered as waiting, but never more than `MAX_WAITING` of them: a client
/// inventing container IDs against a full node cannot grow the datastore.
#[test]
fn waiting_pods_are_bounded() {
    use vpc_cni_ipam::datastore::{MAX_WAITING, WAITING_MAX_AGE};
    let mut ds = Datastore::new(false, Duration::from_secs(30));
    for i in 0..(MAX_WAITING + 500) {
        let key = IpamKey::new("aws-cni", &format!("c{i}"), "eth0");
        assert!(ds.assign(&key, PodMetadata::default(), Time::ZERO).is_err());
    }
    assert_eq!(ds.waiting() as usize, MAX_WAITING);
    // Once the old ones are stale, a new refusal clears them.
    let later = Time::ZERO
        .plus(WAITING_MAX_AGE)
        .plus(Duration::from_secs(1));
    let key = IpamKey::new("aws-cni", "late", "eth0");
    assert!(ds.assign(&key, PodMetadata::default(), later).is_err());
    assert_eq!(ds.waiting(), 1);
}
