//! Table-driven unit tests of the `aws` policy: growth, shrink and ENI freeing, timers.
use vpc_cni_limits::LimitsTable;

use super::*;
use crate::key::{IpamKey, PodMetadata};

/// A node of `ty` whose ENIs hold `cidrs[i]` /32s (or /28s in PD) and `pods` assigned.
fn node(ty: &str, settings: Settings, cidrs: &[u32], pods: u32) -> (Datastore, AwsPolicy) {
    let table = LimitsTable::builtin();
    let limits = PoolLimits::new(&table.get(ty).unwrap().limits, &settings, 250);
    let pd = limits.prefix_delegation;
    let ds = crate::policy::test_support::datastore(pd, settings.ip_cooldown, cidrs, pods);
    (ds, AwsPolicy::new(settings, limits))
}

fn actions(ty: &str, settings: Settings, cidrs: &[u32], pods: u32) -> Vec<Action> {
    let (mut ds, mut p) = node(ty, settings, cidrs, pods);
    p.cycle(&mut ds, NodeState::default(), Time::from_secs(600))
        .into_iter()
        .map(|d| d.action)
        .collect()
}

fn assign(eni: &str, count: u32, kind: CidrKind) -> Action {
    Action::AssignToEni {
        eni: eni.into(),
        count,
        kind,
    }
}

/// (instance type, settings, CIDRs per ENI, pods, expected actions)
type GrowthCase = (&'static str, Settings, Vec<u32>, u32, Vec<Action>);

#[test]
fn growth_table() {
    use CidrKind::{Prefix, SecondaryIp as Ip};
    let d = Settings::default;
    let targets = |w, m| Settings {
        warm_ip_target: w,
        minimum_ip_target: m,
        ..d()
    };
    let pd = |wpt, w, m| Settings {
        prefix_delegation: true,
        warm_prefix_target: wpt,
        warm_ip_target: w,
        minimum_ip_target: m,
        ..d()
    };
    let cases: Vec<GrowthCase> = vec![
        // WARM_ENI_TARGET=1, empty primary: fill it with a whole ENI's worth.
        ("r5.xlarge", d(), vec![0], 0, vec![assign("eni-0", 14, Ip)]),
        // One ENI's worth free: steady.
        ("r5.xlarge", d(), vec![14], 0, vec![]),
        // 13 free < 14: primary full → new ENI with 14.
        (
            "r5.xlarge",
            d(),
            vec![14],
            1,
            vec![Action::AllocateEni {
                count: 14,
                kind: Ip,
            }],
        ),
        // Targets: short = max(5 − 5, 20 − 14) = 6 → new ENI with 6.
        (
            "r5.xlarge",
            targets(5, 20),
            vec![14],
            0,
            vec![Action::AllocateEni { count: 6, kind: Ip }],
        ),
        // Targets: short 1 with room on the second ENI.
        (
            "r5.xlarge",
            targets(5, 20),
            vec![14, 6],
            16,
            vec![assign("eni-1", 1, Ip)],
        ),
        // MAX_ENI=1 and full: nothing to do.
        (
            "r5.xlarge",
            Settings {
                max_eni: Some(1),
                ..d()
            },
            vec![14],
            14,
            vec![],
        ),
        // PD, WARM_PREFIX_TARGET=1, no free prefix: one more prefix on the primary.
        (
            "m5.large",
            pd(1, 0, 0),
            vec![1],
            1,
            vec![assign("eni-0", 1, Prefix)],
        ),
        // PD with targets: MINIMUM 25 → 2 prefixes at once.
        (
            "m5.large",
            pd(1, 5, 25),
            vec![0],
            0,
            vec![assign("eni-0", 2, Prefix)],
        ),
        // Custom networking: the primary is never grown.
        (
            "m5.large",
            Settings {
                custom_networking: true,
                ..d()
            },
            vec![0],
            0,
            vec![Action::AllocateEni { count: 9, kind: Ip }],
        ),
    ];
    for (ty, s, cidrs, pods, want) in cases {
        assert_eq!(
            actions(ty, s.clone(), &cidrs, pods),
            want,
            "{ty} {s:?} cidrs={cidrs:?} pods={pods}"
        );
    }
}

#[test]
fn shrink_and_free_table() {
    let d = Settings::default;
    // WARM_IP_TARGET=2 with 10 free /32s: release 8, highest device first.
    let acts = actions(
        "r5.xlarge",
        Settings {
            warm_ip_target: 2,
            ..d()
        },
        &[14],
        4,
    );
    assert!(
        matches!(&acts[..], [Action::Release { eni, cidrs }] if eni == "eni-0" && cidrs.len() == 8),
        "{acts:?}"
    );
    // WARM_ENI_TARGET=1, 3 ENIs and 0 pods: 42 ≥ 2 × 14 → free the highest empty ENI.
    let acts = actions("r5.xlarge", d(), &[14, 14, 14], 0);
    assert_eq!(
        acts,
        vec![Action::FreeEni {
            eni: "eni-2".into()
        }]
    );
    // PD: 3 free prefixes > WARM_PREFIX_TARGET=1 → release 2.
    let acts = actions(
        "m5.large",
        Settings {
            prefix_delegation: true,
            warm_prefix_target: 1,
            ..d()
        },
        &[3],
        0,
    );
    assert!(
        matches!(&acts[..], [Action::Release { cidrs, .. }] if cidrs.len() == 2),
        "{acts:?}"
    );
}

#[test]
fn timers_gate_actions() {
    // An ENI younger than one minute is not freed.
    let (mut ds, mut p) = node("r5.xlarge", Settings::default(), &[14, 14, 14], 0);
    assert!(
        p.cycle(&mut ds, NodeState::default(), Time::from_secs(30))
            .is_empty()
    );
    // Within 120 s of an insufficient-addresses error growth pauses (boundary inclusive).
    let (mut ds, mut p) = node("r5.xlarge", Settings::default(), &[0], 0);
    p.record_insufficient_addresses(Time::from_secs(100));
    assert!(
        p.cycle(&mut ds, NodeState::default(), Time::from_secs(220))
            .is_empty()
    );
    assert_eq!(
        p.cycle(&mut ds, NodeState::default(), Time::from_secs(221))
            .len(),
        1
    );
    // Two shrinks are at least 30 s apart.
    let (mut ds, mut p) = node(
        "r5.xlarge",
        Settings {
            warm_ip_target: 2,
            ..Settings::default()
        },
        &[14],
        4,
    );
    assert_eq!(
        p.cycle(&mut ds, NodeState::default(), Time::from_secs(100))
            .len(),
        1
    );
    ds.add_cidr("eni-0", "10.9.9.9/32".parse().unwrap(), false)
        .unwrap();
    assert!(
        p.cycle(&mut ds, NodeState::default(), Time::from_secs(130))
            .is_empty()
    );
    assert_eq!(
        p.cycle(&mut ds, NodeState::default(), Time::from_secs(131))
            .len(),
        1
    );
    // A terminating node does not grow.
    let (mut ds, mut p) = node("r5.xlarge", Settings::default(), &[0], 0);
    let term = NodeState {
        terminating: true,
        unschedulable: false,
    };
    assert!(p.cycle(&mut ds, term, Time::ZERO).is_empty());
}

/// (subnet discovery, failure, ENIs already tried, expected next action, growth paused after).
type FailureCase = (bool, AssignFailure, Vec<&'static str>, Option<Action>, bool);

/// Upstream's failure paths after an `AssignToEni` failed (also asking for one).
#[test]
fn after_assign_failure_table() {
    use AssignFailure::{Insufficient, Other};
    use CidrKind::SecondaryIp as Ip;
    let alloc = |count| Action::AllocateEni { count, kind: Ip };
    let cases: Vec<FailureCase> = vec![
        // Subnet discovery: the next ENI with room, in the same cycle, no pause.
        (
            true,
            Insufficient,
            vec!["eni-0"],
            Some(assign("eni-1", 9, Ip)),
            false,
        ),
        // Every ENI tried: a new ENI (another eligible subnet), no pause yet.
        (
            true,
            Insufficient,
            vec!["eni-0", "eni-1"],
            Some(alloc(14)),
            false,
        ),
        // Without discovery: the 120 s pause, nothing else.
        (false, Insufficient, vec!["eni-0"], None, true),
        // Any other error: upstream returns it; no ENI is created.
        (true, Other, vec!["eni-0"], None, false),
        (false, Other, vec!["eni-0"], None, false),
    ];
    for (discovery, failure, tried, want, paused) in cases {
        let settings = Settings {
            subnet_discovery: discovery,
            ..Settings::default()
        };
        // m5.xlarge: 4 ENIs of 15 addresses; two ENIs with 5 /32s each, all in use.
        let (ds, mut p) = node("m5.xlarge", settings, &[5, 5], 10);
        let tried: Vec<String> = tried.into_iter().map(String::from).collect();
        let got = p
            .after_assign_failure(&ds, &tried, failure, Time::from_secs(600))
            .map(|d| d.action);
        let case = format!("discovery={discovery} {failure:?} tried={tried:?}");
        assert_eq!(got, want, "{case}");
        let blocked = p
            .growth_blocked(NodeState::default(), Time::from_secs(601))
            .is_some();
        assert_eq!(blocked, paused, "{case}");
    }
}

#[test]
fn excluded_enis_give_back_unused_cidrs_and_take_no_pods() {
    let (mut ds, mut p) = node("m5.xlarge", Settings::default(), &[14, 6], 16);
    // 16 pods: 14 on eni-0, 2 on eni-1; eni-1's subnet is then tagged kubernetes.io/role/cni=0.
    assert!(ds.set_excluded("eni-1", true).unwrap());
    let d = p.cycle(&mut ds, NodeState::default(), Time::from_secs(600));
    let released: Vec<usize> = d
        .iter()
        .filter_map(|d| match &d.action {
            Action::Release { eni, cidrs } if eni == "eni-1" => Some(cidrs.len()),
            _ => None,
        })
        .collect();
    assert_eq!(released, vec![4], "{d:?}");
    assert_eq!(
        ds.eni("eni-1").unwrap().cidrs.len(),
        2,
        "the two in use stay"
    );
    // No new pod lands on it.
    let a = ds.assign(
        &IpamKey::new("aws-cni", "new", "eth0"),
        PodMetadata::default(),
        Time::from_secs(601),
    );
    assert!(a.is_err() || a.unwrap().eni_id != "eni-1");
    // A pod leaving empties a CIDR: it goes on the next cycle.
    ds.unassign(&IpamKey::new("aws-cni", "15", "eth0"), Time::from_secs(602));
    let d = p.cycle(&mut ds, NodeState::default(), Time::from_secs(610));
    assert!(
        d.iter()
            .any(|d| matches!(&d.action, Action::Release { eni, cidrs } if eni == "eni-1" && cidrs.len() == 1)),
        "{d:?}"
    );
    assert_eq!(ds.eni("eni-1").unwrap().cidrs.len(), 1);
}

#[test]
fn growth_stops_at_max_pods_instead_of_overshooting_by_an_eni() {
    let settings = Settings::default();
    for (max_pods, cidrs, want) in [
        // 18 held, 18 used, max pods 20: a new ENI with 2, not 9.
        (
            20,
            vec![9, 9],
            vec![Action::AllocateEni {
                count: 2,
                kind: CidrKind::SecondaryIp,
            }],
        ),
        // Room on the ENI: 2 more, not 7.
        (
            20,
            vec![9, 2, 7],
            vec![assign("eni-1", 2, CidrKind::SecondaryIp)],
        ),
        // At max pods: nothing.
        (20, vec![9, 9, 2], vec![]),
    ] {
        let used: u32 = cidrs.iter().sum::<u32>().min(18);
        let (mut ds, mut p) = node("m5.large", settings.clone(), &cidrs, used);
        let mut limits = *p.limits();
        limits.max_pods = max_pods;
        p.set_limits(limits);
        let got: Vec<Action> = p
            .cycle(&mut ds, NodeState::default(), Time::from_secs(600))
            .into_iter()
            .map(|d| d.action)
            .collect();
        assert_eq!(got, want, "max pods {max_pods}, CIDRs {cidrs:?}");
    }
}
