//! What a simulation records while it runs (pod waits, samples, subnet exhaustion) and the
//! report it ends with: per node group, per subnet, EC2 calls and errors, time series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use vpc_cni_ipam::Time;

use crate::error::Ec2Error;
use crate::subnet::Subnet;
use crate::vpc::CallStats;

/// Per node group, at the end of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupEnd {
    /// Group name.
    pub name: String,
    /// Instance type.
    pub instance_type: String,
    /// Live nodes.
    pub nodes: u32,
    /// Pods holding an address.
    pub pods: u32,
    /// Pods still waiting for an address.
    pub pending: u32,
    /// Addresses attached for pods.
    pub attached: u32,
    /// ENIs.
    pub enis: u32,
    /// Prefixes.
    pub prefixes: u32,
}

/// Pod address-wait statistics, seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Waits {
    /// Pods that got an address.
    pub pods: u64,
    /// Pods that waited at all.
    pub waited: u64,
    /// Median.
    pub p50_s: f64,
    /// 99th percentile.
    pub p99_s: f64,
    /// Maximum.
    pub max_s: f64,
}

/// One node group in the report.
#[derive(Debug, Clone, Serialize)]
pub struct GroupReport {
    /// End state.
    #[serde(flatten)]
    pub end: GroupEnd,
    /// Attached but unused addresses.
    pub unused: u32,
    /// Unused share of attached, percent.
    pub waste_pct: f64,
    /// Address waits.
    pub wait: Waits,
}

/// One subnet in the report.
#[derive(Debug, Clone, Serialize)]
pub struct SubnetReport {
    /// Subnet ID.
    pub id: String,
    /// CIDR.
    pub cidr: String,
    /// What it holds: `nodes of G`, `nodes and pods of G`, `pods of G (ENIConfig)`; empty when
    /// no node group uses it directly (subnet discovery may still).
    pub role: String,
    /// Free addresses at the end.
    pub free_addresses: u32,
    /// Free aligned /28 blocks at the end.
    pub free_prefix_blocks: u32,
    /// Fewest free addresses sampled, and when (seconds).
    pub worst_free_addresses: (u32, f64),
    /// Fewest free /28 blocks sampled, and when (seconds).
    pub worst_free_prefix_blocks: (u32, f64),
    /// First insufficient-address error: when (seconds) and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exhausted: Option<Exhaustion>,
}

/// When and why a subnet ran out.
#[derive(Debug, Clone, Serialize)]
pub struct Exhaustion {
    /// Seconds into the run.
    pub at_s: f64,
    /// AWS error code.
    pub code: String,
    /// The error text, with the free-address and free-block counts at that moment.
    pub why: String,
    /// Insufficient-address errors in all.
    pub errors: u64,
}

/// One time-series point.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds into the run.
    pub t_s: f64,
    /// Per group: (attached, assigned).
    pub groups: Vec<(u32, u32)>,
    /// Per subnet: (free addresses, free /28 blocks).
    pub subnets: Vec<(u32, u32)>,
}

/// The simulation report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Simulated seconds.
    pub duration_s: f64,
    /// Pod events processed.
    pub pod_events: u64,
    /// Node groups.
    pub groups: Vec<GroupReport>,
    /// Subnets.
    pub subnets: Vec<SubnetReport>,
    /// EC2 calls by action.
    pub ec2_calls: BTreeMap<String, u64>,
    /// Throttled calls (`RequestLimitExceeded`).
    pub throttled: u64,
    /// EC2 errors by code.
    pub errors: BTreeMap<String, u64>,
    /// Failed address assignments (pods retried).
    pub no_address_attempts: u64,
    /// Address waits of every pod of every group, pods still pending at the end counted with
    /// their wait so far (the per-group figures count only pods that got an address).
    pub wait: Waits,
    /// Nodes that could not be launched.
    pub node_launch_failures: Vec<String>,
    /// Group names in sample order.
    pub series_groups: Vec<String>,
    /// Subnet IDs in sample order.
    pub series_subnets: Vec<String>,
    /// Time series.
    pub series: Vec<Sample>,
}

/// Running records.
#[derive(Debug, Default)]
pub struct Recorder {
    waits: BTreeMap<u32, Vec<u32>>,
    /// How long pods still without an address at the end had waited.
    pending_waits: Vec<u32>,
    samples: Vec<Sample>,
    subnet_ids: Vec<String>,
    exhausted: BTreeMap<String, Exhaustion>,
    /// Subnet ID → its role in the report.
    pub roles: BTreeMap<String, String>,
    /// Failed ADDs.
    pub no_address: u64,
    /// Node launch failures.
    pub node_launch_failures: Vec<String>,
}

fn secs(t: Time) -> f64 {
    t.as_millis() as f64 / 1000.0
}

impl Recorder {
    /// A pod of `group` got its address after `waited`.
    pub fn pod_started(&mut self, group: u32, waited: Duration) {
        self.waits
            .entry(group)
            .or_default()
            .push(waited.as_millis() as u32);
    }

    /// A pod still without an address at the end had waited `waited`.
    pub fn pod_pending(&mut self, waited: Duration) {
        self.pending_waits.push(waited.as_millis() as u32);
    }

    /// An insufficient-address error in `subnet`.
    pub fn subnet_exhausted(&mut self, subnet: &str, now: Time, e: &Ec2Error) {
        let entry = self
            .exhausted
            .entry(subnet.to_string())
            .or_insert_with(|| Exhaustion {
                at_s: secs(now),
                code: e.code.as_str().to_string(),
                why: e.message.clone(),
                errors: 0,
            });
        entry.errors += 1;
    }

    /// Time of the latest sample.
    pub fn last_sample(&self) -> Option<Time> {
        self.samples
            .last()
            .map(|s| Time((s.t_s * 1000.0).round() as u64))
    }

    /// A time-series point.
    pub fn sample(&mut self, now: Time, groups: Vec<(u32, u32)>, subnets: Vec<(String, u32, u32)>) {
        self.subnet_ids = subnets.iter().map(|s| s.0.clone()).collect();
        self.samples.push(Sample {
            t_s: secs(now),
            groups,
            subnets: subnets.into_iter().map(|s| (s.1, s.2)).collect(),
        });
    }

    /// Build the report.
    pub fn report(
        mut self,
        now: Time,
        groups: Vec<GroupEnd>,
        subnets: &[&Subnet],
        calls: &CallStats,
        pod_events: u64,
    ) -> Report {
        let series_groups = groups.iter().map(|g| g.name.clone()).collect();
        let wait_all = waits(
            self.waits
                .values()
                .flatten()
                .chain(&self.pending_waits)
                .copied()
                .collect(),
        );
        let groups = groups
            .into_iter()
            .enumerate()
            .map(|(i, end)| {
                let unused = end.attached.saturating_sub(end.pods);
                let waste_pct = if end.attached == 0 {
                    0.0
                } else {
                    100.0 * f64::from(unused) / f64::from(end.attached)
                };
                let wait = waits(self.waits.remove(&(i as u32)).unwrap_or_default());
                GroupReport {
                    end,
                    unused,
                    waste_pct,
                    wait,
                }
            })
            .collect();
        let subnets = subnets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let worst = |f: fn(&(u32, u32)) -> u32| {
                    self.samples
                        .iter()
                        .filter_map(|x| x.subnets.get(i).map(|v| (f(v), x.t_s)))
                        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
                        .unwrap_or((s.free_addresses(), 0.0))
                };
                SubnetReport {
                    id: s.id.clone(),
                    cidr: s.cidr.to_string(),
                    role: self.roles.get(&s.id).cloned().unwrap_or_default(),
                    free_addresses: s.free_addresses(),
                    free_prefix_blocks: s.free_prefix_blocks(),
                    worst_free_addresses: worst(|v| v.0),
                    worst_free_prefix_blocks: worst(|v| v.1),
                    exhausted: self.exhausted.remove(&s.id),
                }
            })
            .collect();
        Report {
            duration_s: secs(now),
            pod_events,
            groups,
            subnets,
            ec2_calls: calls.calls.clone(),
            throttled: calls
                .errors
                .get("RequestLimitExceeded")
                .copied()
                .unwrap_or(0),
            errors: calls.errors.clone(),
            no_address_attempts: self.no_address,
            wait: wait_all,
            node_launch_failures: self.node_launch_failures,
            series_groups,
            series_subnets: self.subnet_ids,
            series: self.samples,
        }
    }
}

fn waits(mut ms: Vec<u32>) -> Waits {
    if ms.is_empty() {
        return Waits::default();
    }
    ms.sort_unstable();
    let pct = |p: f64| f64::from(ms[((ms.len() as f64 - 1.0) * p).round() as usize]) / 1000.0;
    Waits {
        pods: ms.len() as u64,
        waited: ms.iter().filter(|&&m| m > 0).count() as u64,
        p50_s: pct(0.5),
        p99_s: pct(0.99),
        max_s: f64::from(*ms.last().expect("non-empty")) / 1000.0,
    }
}

impl Report {
    /// Attached but unassigned addresses of all groups at each sample.
    pub fn idle_series(&self) -> Vec<(f64, u32)> {
        self.series
            .iter()
            .map(|s| {
                let idle = s.groups.iter().map(|(a, b)| a.saturating_sub(*b)).sum();
                (s.t_s, idle)
            })
            .collect()
    }

    /// The time series as CSV: one row per sample and group/subnet column.
    pub fn series_csv(&self) -> String {
        let mut out = String::from("t_s");
        for g in &self.series_groups {
            let _ = write!(out, ",{g}_attached,{g}_assigned");
        }
        for s in &self.series_subnets {
            let _ = write!(out, ",{s}_free,{s}_free_prefix_blocks");
        }
        out.push('\n');
        for x in &self.series {
            let _ = write!(out, "{}", x.t_s);
            for (a, b) in &x.groups {
                let _ = write!(out, ",{a},{b}");
            }
            for (a, b) in &x.subnets {
                let _ = write!(out, ",{a},{b}");
            }
            out.push('\n');
        }
        out
    }
}
