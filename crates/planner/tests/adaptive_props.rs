//! Property tests of the `adaptive` policy on an ideal cloud, checked from raw datastore state
//! independently of the policy's own arithmetic: it never exceeds max pods (rounded up to a
//! prefix), MAX_ENI or the instance's per-ENI limit; it never releases an address that is
//! assigned or still cooling, nor frees an ENI with pods; and at a steady pod count it stops
//! acting (no oscillation).

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::Ipv4Net;
use proptest::prelude::*;
use vpc_cni_ipam::policy::PoolPolicy;
use vpc_cni_ipam::{
    Action, Datastore, IpamKey, NodeState, PodMetadata, Policy, PolicyKind, PoolLimits, Settings,
    Time,
};
use vpc_cni_limits::LimitsTable;
use vpc_cni_planner::{CYCLE, IdealCloud};

const TYPES: &[&str] = &[
    "t3.small",
    "t3.medium",
    "m5.large",
    "r5.xlarge",
    "m5.4xlarge",
];

#[derive(Debug, Clone)]
struct Case {
    ty: &'static str,
    settings: Settings,
    max_pods: u32,
    /// (pod count to reach, seconds between two pod changes)
    steps: Vec<(u32, u64)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(TYPES),
        any::<bool>(),
        prop_oneof![Just(0u32), 1u32..40],
        prop_oneof![Just(None), (1u32..4).prop_map(Some)],
        prop_oneof![Just(0u32), Just(30), 1u32..120],
        10u32..120,
        prop::collection::vec((0u32..80, 0u64..20), 1..5),
    )
        .prop_map(|(ty, pd, min, max_eni, cooldown, max_pods, steps)| Case {
            ty,
            settings: Settings {
                minimum_ip_target: min,
                max_eni,
                prefix_delegation: pd,
                ip_cooldown: Duration::from_secs(u64::from(cooldown)),
                pool_policy: PolicyKind::Adaptive,
                ..Settings::default()
            },
            max_pods,
            steps,
        })
}

struct Node {
    ds: Datastore,
    policy: Policy,
    cloud: IdealCloud,
    limits: PoolLimits,
    cooldown: Duration,
    now: Time,
    pods: Vec<IpamKey>,
    serial: u32,
}

impl Node {
    /// CIDR → whether it may not go back (an assigned address, or one released within the
    /// cooldown), and ENI → whether it has pods, before a cycle.
    fn snapshot(&self) -> (BTreeMap<Ipv4Net, bool>, BTreeMap<String, bool>) {
        let mut cidrs = BTreeMap::new();
        let mut enis = BTreeMap::new();
        for e in self.ds.enis() {
            enis.insert(e.id.clone(), e.has_pods());
            for c in e.cidrs.values() {
                let busy = c.addresses.values().any(|a| {
                    a.key.is_some()
                        || a.unassigned_at
                            .is_some_and(|t| self.now.since(t) <= self.cooldown)
                });
                cidrs.insert(c.net, busy);
            }
        }
        (cidrs, enis)
    }

    /// One cycle, checked; returns how many decisions it made.
    fn cycle(&mut self) -> Result<usize, TestCaseError> {
        let (cidrs, enis) = self.snapshot();
        let before = self.ds.enis().len() as u32;
        let decisions = self
            .policy
            .cycle(&mut self.ds, NodeState::default(), self.now);
        for d in &decisions {
            match &d.action {
                Action::AllocateEni { count, .. } => {
                    prop_assert!(
                        before < self.limits.max_eni,
                        "ENI beyond MAX_ENI: {}",
                        d.reason
                    );
                    prop_assert!(*count <= self.limits.max_cidrs_per_eni(), "{}", d.reason);
                }
                Action::Release { cidrs: gone, .. } => {
                    for c in gone {
                        prop_assert_eq!(
                            cidrs.get(c),
                            Some(&false),
                            "released {} in use or cooling: {}",
                            c,
                            d.reason
                        );
                    }
                }
                Action::FreeEni { eni } => {
                    prop_assert_eq!(
                        enis.get(eni),
                        Some(&false),
                        "freed {} with pods: {}",
                        eni,
                        d.reason
                    );
                }
                Action::AssignToEni { .. } => {}
            }
            self.cloud.apply(&mut self.ds, &d.action, self.now).unwrap();
        }
        prop_assert!(self.ds.enis().len() as u32 <= self.limits.max_eni);
        for e in self.ds.enis() {
            prop_assert!(
                e.cidrs.len() as u32 <= self.limits.max_cidrs_per_eni(),
                "{} over the per-ENI limit",
                e.id
            );
        }
        let slack = if self.limits.prefix_delegation { 15 } else { 0 };
        let total = self.ds.stats(self.now).total_ips;
        prop_assert!(
            total <= self.limits.max_pods + slack,
            "{total} addresses, max pods {}",
            self.limits.max_pods
        );
        self.now = self.now.plus(CYCLE);
        Ok(decisions.len())
    }

    fn add_pod(&mut self) -> Result<bool, TestCaseError> {
        let key = IpamKey::new("aws-cni", &format!("p{}", self.serial), "eth0");
        self.serial += 1;
        for _ in 0..120 {
            if self
                .ds
                .assign(&key, PodMetadata::default(), self.now)
                .is_ok()
            {
                self.pods.push(key);
                return Ok(true);
            }
            self.cycle()?;
        }
        Ok(false)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn adaptive_respects_limits_never_frees_in_use_and_settles(c in case()) {
        let table = LimitsTable::builtin();
        let t = table.get(c.ty).unwrap();
        let limits = PoolLimits::new(&t.limits, &c.settings, c.max_pods);
        let mut ds = Datastore::new(limits.prefix_delegation, c.settings.ip_cooldown);
        let mut cloud = IdealCloud::new(t.limits.ipv4_limit);
        cloud.attach_primary(&mut ds, Time::ZERO).unwrap();
        let mut node = Node {
            ds,
            policy: Policy::new(c.settings.clone(), limits),
            cloud,
            limits,
            cooldown: c.settings.ip_cooldown,
            now: Time::ZERO,
            pods: vec![],
            serial: 0,
        };
        for &(target, gap) in &c.steps {
            while (node.pods.len() as u32) < target {
                if !node.add_pod()? {
                    break; // the node is full
                }
                for _ in 0..gap / 5 {
                    node.cycle()?;
                }
            }
            while (node.pods.len() as u32) > target {
                let key = node.pods.remove(0);
                prop_assert!(node.ds.unassign(&key, node.now).is_some());
                for _ in 0..gap / 5 {
                    node.cycle()?;
                }
            }
            // Two steady hours: whatever the pool still does happens in the first 90 minutes
            // (arrival history, release rounds, the ENI memory), then nothing.
            for _ in 0..(90 * 60 / 5) {
                node.cycle()?;
            }
            for _ in 0..(30 * 60 / 5) {
                let n = node.cycle()?;
                prop_assert_eq!(n, 0, "still acting at a steady {} pods: {}", node.pods.len(), node.policy.describe(&node.ds, node.now));
            }
        }
    }
}
