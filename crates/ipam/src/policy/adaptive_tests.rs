//! Table-driven unit tests of the `adaptive` policy: sizing, floor and caps, release after the
//! hold time, the /32 fallback, throttling back-off.

use vpc_cni_limits::LimitsTable;

use super::*;
use crate::key::PodMetadata;
use crate::settings::PolicyKind;

fn adaptive(extra: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings {
        pool_policy: PolicyKind::Adaptive,
        ..Settings::default()
    };
    extra(&mut s);
    s
}

use crate::policy::test_support::key;

/// An m5.large-like node whose ENIs hold `cidrs[i]` /32s (or /28s in PD), `pods` assigned.
fn node(
    settings: Settings,
    cidrs: &[u32],
    pods: u32,
    max_pods: u32,
) -> (Datastore, AdaptivePolicy) {
    let table = LimitsTable::builtin();
    let limits = PoolLimits::new(&table.get("m5.large").unwrap().limits, &settings, max_pods);
    let pd = limits.prefix_delegation;
    let ds = crate::policy::test_support::datastore(pd, settings.ip_cooldown, cidrs, pods);
    let mut p = AdaptivePolicy::new(settings, limits);
    // A node running for a while: past its boot fill.
    p.started = Some(Time::ZERO);
    (ds, p)
}

fn at(s: u64) -> Time {
    Time::from_secs(s)
}

/// (settings, CIDRs per ENI, pods, max pods, expected first action)
type FirstCycleCase = (Settings, Vec<u32>, u32, u32, Option<Action>);

#[test]
fn first_cycle_table() {
    use CidrKind::{Prefix, SecondaryIp as Ip};
    // (settings, CIDRs per ENI, pods, max pods) → first action
    let pd = |s: &mut Settings| s.prefix_delegation = true;
    let cases: Vec<FirstCycleCase> = vec![
        // No history: one warm address, not an ENI's worth.
        (
            adaptive(|_| {}),
            vec![0],
            0,
            29,
            Some(assign("eni-0", 1, Ip)),
        ),
        // MINIMUM_IP_TARGET is a floor.
        (
            adaptive(|s| s.minimum_ip_target = 5),
            vec![0],
            0,
            29,
            Some(assign("eni-0", 5, Ip)),
        ),
        (adaptive(|s| s.minimum_ip_target = 5), vec![5], 0, 29, None),
        // Max pods caps the floor.
        (
            adaptive(|s| s.minimum_ip_target = 50),
            vec![0],
            0,
            3,
            Some(assign("eni-0", 3, Ip)),
        ),
        (adaptive(|_| {}), vec![3], 3, 3, None),
        // Prefix mode: one prefix holds the warm address.
        (
            adaptive(pd),
            vec![0],
            0,
            110,
            Some(assign("eni-0", 1, Prefix)),
        ),
        (
            adaptive(pd),
            vec![1],
            16,
            110,
            Some(assign("eni-0", 1, Prefix)),
        ),
        (adaptive(pd), vec![1], 10, 110, None),
        // The primary ENI is full: a new ENI with what is needed.
        (
            adaptive(|_| {}),
            vec![9],
            9,
            29,
            Some(Action::AllocateEni { count: 1, kind: Ip }),
        ),
        // MAX_ENI=1 and full: nothing.
        (adaptive(|s| s.max_eni = Some(1)), vec![9], 9, 29, None),
    ];
    for (i, (s, cidrs, pods, mp, want)) in cases.into_iter().enumerate() {
        let (mut ds, mut p) = node(s, &cidrs, pods, mp);
        let got = p.cycle(&mut ds, NodeState::default(), at(600));
        assert_eq!(
            got.first().map(|d| d.action.clone()),
            want,
            "case {i}: {got:?}"
        );
        for d in &got {
            assert!(
                d.reason.starts_with("adaptive: ") && d.reason.contains("ready"),
                "{}",
                d.reason
            );
        }
    }
}

fn assign(eni: &str, count: u32, kind: CidrKind) -> Action {
    Action::AssignToEni {
        eni: eni.into(),
        count,
        kind,
    }
}

#[test]
fn a_starting_node_fills_its_primary_eni_in_one_call_and_keeps_it() {
    let (mut ds, mut p) = node(adaptive(|_| {}), &[0], 0, 29);
    p.started = None;
    let d = p.cycle(&mut ds, NodeState::default(), at(10));
    assert_eq!(
        d[0].action,
        assign("eni-0", 9, CidrKind::SecondaryIp),
        "{}",
        d[0].reason
    );
    assert!(d[0].reason.contains("starting"), "{}", d[0].reason);
    // Booting never shrinks: a full primary with no pods keeps its addresses.
    let (mut ds, mut p) = node(adaptive(|_| {}), &[9], 0, 29);
    p.started = None;
    for t in (10..300).step_by(5) {
        assert!(
            p.cycle(&mut ds, NodeState::default(), at(t)).is_empty(),
            "t={t}"
        );
    }
}

#[test]
fn waiting_pods_are_asked_for_in_one_call() {
    let (mut ds, mut p) = node(adaptive(|_| {}), &[1], 1, 29);
    for k in 100..112 {
        assert!(ds.assign(&key(k), PodMetadata::default(), at(10)).is_err());
    }
    assert_eq!(ds.waiting(), 12);
    let d = p.cycle(&mut ds, NodeState::default(), at(11));
    // 12 waiting + 1 warm; the primary has room for 8 more.
    assert_eq!(
        d[0].action,
        assign("eni-0", 8, CidrKind::SecondaryIp),
        "{}",
        d[0].reason
    );
    assert!(d[0].reason.contains("12 waiting"), "{}", d[0].reason);
}

#[test]
fn idle_addresses_go_back_after_the_hold_but_not_cooling_or_assigned_ones() {
    let (mut ds, mut p) = node(adaptive(|_| {}), &[9], 3, 29);
    // A pod leaves at 590 s: its address cools until 620 and is held until 650.
    ds.unassign(&key(2), at(590)).unwrap();
    let d = p.cycle(&mut ds, NodeState::default(), at(600));
    let Action::Release { cidrs, .. } = &d[0].action else {
        panic!("{d:?} {}", p.describe(&ds, at(600)))
    };
    // 7 free: 1 held (just freed), 1 stays warm, 5 go.
    assert_eq!(cidrs.len(), 5, "{}", d[0].reason);
    for c in cidrs {
        assert!(ds.find_cidr(c.addr()).is_none());
    }
    let stats = ds.stats(at(600));
    assert_eq!((stats.total_ips, stats.assigned_ips), (4, 2));
    // Steady pods: nothing more until the held address is idle long enough and the next
    // release round is due (0.5–1.5 × 120 s after the last), then it goes too and the pool
    // stays put.
    let mut second = None;
    for t in (605..2000).step_by(5) {
        let d = p.cycle(&mut ds, NodeState::default(), at(t));
        if d.is_empty() {
            continue;
        }
        assert!(second.is_none() && (660..=780).contains(&t), "t={t}: {d:?}");
        assert!(
            matches!(
                d[..],
                [Decision {
                    action: Action::Release { .. },
                    ..
                }]
            ),
            "{d:?}"
        );
        second = Some(t);
    }
    assert!(second.is_some(), "the held address went back");
    assert_eq!(ds.stats(at(2000)).total_ips, 3);
}

#[test]
fn an_empty_secondary_eni_goes_back_whole() {
    let (mut ds, mut p) = node(adaptive(|_| {}), &[9, 9], 3, 29);
    let d = p.cycle(&mut ds, NodeState::default(), at(600));
    assert_eq!(
        d[0].action,
        Action::FreeEni {
            eni: "eni-1".into()
        },
        "{}",
        d[0].reason
    );
    // Not within 60 s of its creation.
    let (mut ds, mut p) = node(adaptive(|_| {}), &[9, 9], 3, 29);
    assert!(
        p.cycle(&mut ds, NodeState::default(), at(30))
            .iter()
            .all(|d| !matches!(d.action, Action::FreeEni { .. }))
    );
}

#[test]
fn no_free_block_falls_back_to_addresses_at_once_and_back_to_prefixes_later() {
    let pd = adaptive(|s| s.prefix_delegation = true);
    let (mut ds, mut p) = node(pd, &[1], 16, 110);
    let d = p.cycle(&mut ds, NodeState::default(), at(600));
    assert_eq!(d[0].action, assign("eni-0", 1, CidrKind::Prefix));
    let next = p.after_assign_failure(&ds, &["eni-0".into()], AssignFailure::Insufficient, at(600));
    let next = next.expect("a /32 fallback");
    assert_eq!(
        next.action,
        assign("eni-0", 1, CidrKind::SecondaryIp),
        "{}",
        next.reason
    );
    assert!(next.reason.contains("/28"), "{}", next.reason);
    // The /32 serves a pod in prefix mode.
    ds.add_cidr("eni-0", "10.9.9.9/32".parse().unwrap(), false)
        .unwrap();
    ds.assign(&key(99), PodMetadata::default(), at(601))
        .unwrap();
    let d = p.cycle(&mut ds, NodeState::default(), at(605));
    assert!(
        matches!(
            d[0].action,
            Action::AssignToEni {
                kind: CidrKind::SecondaryIp,
                ..
            }
        ),
        "{d:?}"
    );
    // Five minutes on, prefixes again.
    let d = p.cycle(&mut ds, NodeState::default(), at(901));
    assert_eq!(d[0].action, assign("eni-0", 1, CidrKind::Prefix));
}

#[test]
fn throttling_backs_off_growth_and_a_delivery_resets_it() {
    let (mut ds, mut p) = node(adaptive(|_| {}), &[0], 0, 29);
    p.record_throttled(at(600));
    assert!(p.cycle(&mut ds, NodeState::default(), at(600)).is_empty());
    assert!(p.describe(&ds, at(600)).contains("backing off"));
    // 2 s × jitter (0.5–1.5) at most 3 s.
    assert!(!p.cycle(&mut ds, NodeState::default(), at(604)).is_empty());
    p.record_delivery(Delivery::Assign, Duration::from_millis(300));
    assert_eq!(p.throttle_level, 0);
}

#[test]
fn the_warm_pool_follows_the_arrival_rate() {
    let no_cooldown = adaptive(|s| s.ip_cooldown = Duration::ZERO);
    let (mut ds, mut p) = node(no_cooldown, &[5, 5], 0, 29);
    // 2 pods per 5 s for two minutes, each gone within the cycle (churn).
    let mut k = 0;
    let mut warm = 0;
    for t in (5..=120).step_by(5) {
        for _ in 0..2 {
            ds.assign(&key(k), PodMetadata::default(), at(t)).unwrap();
            ds.unassign(&key(k), at(t));
            k += 1;
        }
        p.cycle(&mut ds, NodeState::default(), at(t));
        warm = p.last.warm;
    }
    // 0.4 pods/s over a lead of 1 s reaction + 1 s first assign guess: mean 0.8, 99% quantile 3.
    assert_eq!(warm, 3, "{}", p.describe(&ds, at(120)));
    // A slower cloud means a longer lead and a larger pool.
    p.record_delivery(Delivery::Assign, Duration::from_secs(9));
    p.cycle(&mut ds, NodeState::default(), at(125));
    assert!(p.last.warm > 3, "{}", p.describe(&ds, at(125)));
}
