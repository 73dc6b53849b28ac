//! Policy comparison: the same seeded scenario run under several policies (and, for `aws`, every
//! combination of a scenario's `sweep`), each run summarised in the figures users weigh — idle
//! addresses, pod waits, pending pods, EC2 calls, throttling, subnet low-water mark — and the
//! runs that beat a reference on both idle addresses and p99 wait.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use vpc_cni_ipam::PolicyKind;
use vpc_cni_ipam::settings::POOL_POLICY;
use vpc_cni_limits::LimitsTable;

use crate::cluster::Cluster;
use crate::report::{Report, Waits};
use crate::scenario::Scenario;

/// One run to make: a policy and the env it overrides in every node group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    /// Shown in tables: the policy, then the swept settings.
    pub label: String,
    /// The policy.
    pub policy: PolicyKind,
    /// Env set in every node group (beyond `VPC_CNI_POOL_POLICY`).
    pub env: BTreeMap<String, String>,
}

/// The runs for `policies`: `aws` expands to every combination of the scenario's sweep (or the
/// scenario as written when it has none); other policies run the scenario as written.
pub fn variants(sc: &Scenario, policies: &[PolicyKind]) -> Vec<Variant> {
    let mut out = Vec::new();
    for &policy in policies {
        if policy != PolicyKind::Aws || sc.sweep.is_empty() {
            out.push(Variant {
                label: policy.to_string(),
                policy,
                env: BTreeMap::new(),
            });
            continue;
        }
        let mut combos: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
        for (var, values) in &sc.sweep {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.insert(var.clone(), v.as_env());
                        c
                    })
                })
                .collect();
        }
        for env in combos {
            let settings: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push(Variant {
                label: format!("aws {}", settings.join(" ")),
                policy,
                env,
            });
        }
    }
    out
}

/// The scenario with a variant's env in every node group.
pub fn apply(sc: &Scenario, v: &Variant) -> Scenario {
    let mut sc = sc.clone();
    for g in &mut sc.node_groups {
        g.env.extend(v.env.clone());
        g.env.insert(POOL_POLICY.to_string(), v.policy.to_string());
    }
    sc
}

/// One run in figures.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The variant's label.
    pub label: String,
    /// The policy.
    pub policy: PolicyKind,
    /// The env the run set in every node group (swept settings).
    pub env: BTreeMap<String, String>,
    /// Attached but unassigned addresses, all groups, mean over the samples.
    pub idle_mean: f64,
    /// The same, the highest sample.
    pub idle_peak: u32,
    /// Pod address waits, all groups.
    pub wait: Waits,
    /// Pods still without an address at the end.
    pub pending: u32,
    /// EC2 calls by action.
    pub ec2_calls: BTreeMap<String, u64>,
    /// EC2 calls in all.
    pub ec2_total: u64,
    /// `RequestLimitExceeded` answers.
    pub throttled: u64,
    /// Fewest free addresses, all subnets together, over the samples.
    pub subnet_low_water: u32,
}

impl Summary {
    /// Summarise a report.
    pub fn of(v: &Variant, r: &Report) -> Self {
        let idle = r.idle_series();
        let idle_mean = if idle.is_empty() {
            0.0
        } else {
            idle.iter().map(|(_, v)| f64::from(*v)).sum::<f64>() / idle.len() as f64
        };
        Summary {
            label: v.label.clone(),
            policy: v.policy,
            env: v.env.clone(),
            idle_mean,
            idle_peak: idle.iter().map(|(_, v)| *v).max().unwrap_or(0),
            wait: r.wait.clone(),
            pending: r.groups.iter().map(|g| g.end.pending).sum(),
            ec2_total: r.ec2_calls.values().sum(),
            ec2_calls: r.ec2_calls.clone(),
            throttled: r.throttled,
            subnet_low_water: r
                .series
                .iter()
                .map(|s| s.subnets.iter().map(|x| x.0).sum::<u32>())
                .min()
                .unwrap_or(0),
        }
    }

    /// Whether this run holds fewer idle addresses *and* makes pods wait less (p99, pending pods
    /// counted with their wait so far) than `other`, leaving no more pods pending.
    pub fn dominates(&self, other: &Summary) -> bool {
        self.idle_mean < other.idle_mean
            && self.wait.p99_s < other.wait.p99_s
            && self.pending <= other.pending
    }
}

/// A finished run: its summary and report, or why the variant could not run.
pub type Outcome = Result<(Summary, Report), String>;

/// Run every variant, `threads` at a time; `done(i, outcome)` is called as each finishes (in
/// completion order). Results come back in variant order.
pub fn run_all(
    sc: &Scenario,
    table: &LimitsTable,
    variants: &[Variant],
    threads: usize,
    done: &(dyn Fn(usize, &Outcome) + Sync),
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; variants.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1).min(variants.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(v) = variants.get(i) else { break };
                    let out = Cluster::new(&apply(sc, v), table)
                        .map(|c| {
                            let r = c.run();
                            (Summary::of(v, &r), r)
                        })
                        .map_err(|e| format!("{}: {e}", v.label));
                    done(i, &out);
                    results.lock().expect("no panic while held")[i] = Some(out);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("no panic while held")
        .into_iter()
        .map(|o| o.expect("every variant ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SC: &str = r#"
duration = "20m"
[[subnets]]
id = "s"
cidr = "10.0.0.0/20"
[[node_groups]]
name = "g"
instance_type = "m5.large"
count = 3
subnet = "s"
env = { WARM_IP_TARGET = "3" }
[[workloads]]
kind = "churn"
group = "g"
rate = 0.2
lifetime = "3m"
[sweep]
WARM_IP_TARGET = [1, 4]
MINIMUM_IP_TARGET = [0, 10]
"#;

    #[test]
    fn sweep_expands_for_aws_only_and_overrides_every_group() {
        let sc = Scenario::from_toml(SC).unwrap();
        let v = variants(&sc, &[PolicyKind::Aws, PolicyKind::Adaptive]);
        let labels: Vec<&str> = v.iter().map(|v| v.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "aws MINIMUM_IP_TARGET=0 WARM_IP_TARGET=1",
                "aws MINIMUM_IP_TARGET=0 WARM_IP_TARGET=4",
                "aws MINIMUM_IP_TARGET=10 WARM_IP_TARGET=1",
                "aws MINIMUM_IP_TARGET=10 WARM_IP_TARGET=4",
                "adaptive",
            ]
        );
        let applied = apply(&sc, &v[1]);
        let env = &applied.node_groups[0].env;
        assert_eq!(env["WARM_IP_TARGET"], "4");
        assert_eq!(env[POOL_POLICY], "aws");
        assert_eq!(apply(&sc, &v[4]).node_groups[0].env["WARM_IP_TARGET"], "3");
    }

    #[test]
    fn runs_are_deterministic_and_in_variant_order() {
        let sc = Scenario::from_toml(SC).unwrap();
        let table = LimitsTable::builtin();
        let v = variants(&sc, &[PolicyKind::Aws, PolicyKind::Adaptive]);
        let seen = Mutex::new(0);
        let a = run_all(&sc, &table, &v, 2, &|_, _| *seen.lock().unwrap() += 1);
        let b = run_all(&sc, &table, &v, 1, &|_, _| {});
        assert_eq!(*seen.lock().unwrap(), v.len());
        for (x, y) in a.iter().zip(&b) {
            let (x, y) = (&x.as_ref().unwrap().0, &y.as_ref().unwrap().0);
            assert_eq!(x.label, y.label);
            assert_eq!((x.idle_mean, x.ec2_total), (y.idle_mean, y.ec2_total));
        }
        // A floor of 10 holds more idle addresses than none, with the same warm target.
        let s = |i: usize| &a[i].as_ref().unwrap().0;
        assert!(
            s(2).idle_mean > s(0).idle_mean,
            "{} vs {}",
            s(2).idle_mean,
            s(0).idle_mean
        );
    }

    #[test]
    fn unknown_sweep_variables_are_refused_by_name() {
        let bad = SC.replace("MINIMUM_IP_TARGET = [0, 10]", "WARM_IP_TARGTE = [1]");
        let err = Scenario::from_toml(&bad).unwrap_err();
        assert!(
            err.contains("WARM_IP_TARGTE") && err.contains("MINIMUM_IP_TARGET"),
            "{err}"
        );
    }
}
