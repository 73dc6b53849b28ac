//! Scenario files (TOML): the VPC, its subnets, node groups with their upstream env settings, and
//! the workloads that create and delete pods. `examples/README.md` documents every field.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer};

use crate::subnet::ReservationType;
use crate::vpc::{Faults, Latency};

/// A duration written as `90`, `"90s"`, `"5m"`, `"2h"`, `"1d"` or `"250ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            Raw::Text(t) => parse_duration(&t)
                .map(Dur)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parse `"250ms"`, `"90s"`, `"5m"`, `"2h"`, `"1d"` (or a bare number of seconds).
pub fn parse_duration(t: &str) -> Result<Duration, String> {
    let t = t.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {t:?}: expected e.g. 90s, 5m, 2h, 1d"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        u => {
            return Err(format!(
                "invalid duration unit {u:?} in {t:?}: use ms, s, m, h or d"
            ));
        }
    };
    Ok(Duration::from_secs_f64(secs))
}

/// The variable a `pod_subnet` turns on.
pub const CUSTOM_NETWORK_ENV: &str = "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG";

/// The whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name shown in reports.
    #[serde(default)]
    pub name: String,
    /// Seed of every random choice.
    #[serde(default = "one")]
    pub seed: u64,
    /// Simulated time to run.
    pub duration: Dur,
    /// Time-series sampling interval (default 60 s).
    #[serde(default)]
    pub sample_every: Option<Dur>,
    /// How often a pod whose ADD failed retries (kubelet sandbox retry; default 2 s).
    #[serde(default)]
    pub pod_retry: Option<Dur>,
    /// The cloud.
    #[serde(default)]
    pub vpc: VpcSpec,
    /// Subnets.
    pub subnets: Vec<SubnetSpec>,
    /// Node groups.
    pub node_groups: Vec<NodeGroupSpec>,
    /// Workloads.
    #[serde(default)]
    pub workloads: Vec<WorkloadSpec>,
    /// Upstream settings to sweep when comparing policies (`simulate --compare`): every
    /// combination of these values is run with the `aws` policy, over every node group's env.
    #[serde(default)]
    pub sweep: BTreeMap<String, Vec<SweepValue>>,
}

/// One value of a swept variable: `2`, `true` or `"2"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SweepValue {
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// Text, used as written.
    Text(String),
}

impl SweepValue {
    /// The value as an env var value.
    pub fn as_env(&self) -> String {
        match self {
            SweepValue::Int(i) => i.to_string(),
            SweepValue::Bool(b) => b.to_string(),
            SweepValue::Text(t) => t.clone(),
        }
    }
}

/// Most combinations a sweep may ask for.
pub const MAX_SWEEP: usize = 2_000;

fn one() -> u64 {
    1
}

fn yes() -> bool {
    true
}

/// Cloud behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcSpec {
    /// Account-wide EC2 throttling with AWS's published buckets (default on).
    #[serde(default = "yes")]
    pub throttling: bool,
    /// Multiplier on bucket sizes and refill rates (a raised limit).
    #[serde(default = "unit")]
    pub throttle_scale: f64,
    /// Latencies.
    #[serde(default)]
    pub latency: Latency,
    /// Injected faults.
    #[serde(default)]
    pub faults: Faults,
}

fn unit() -> f64 {
    1.0
}

impl Default for VpcSpec {
    fn default() -> Self {
        VpcSpec {
            throttling: true,
            throttle_scale: 1.0,
            latency: Latency::default(),
            faults: Faults::default(),
        }
    }
}

/// One subnet.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    /// Subnet ID.
    pub id: String,
    /// CIDR (/16 to /28).
    pub cidr: Ipv4Net,
    /// Availability zone.
    #[serde(default = "default_az")]
    pub az: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// CIDR reservations.
    #[serde(default)]
    pub reservations: Vec<ReservationSpec>,
    /// The subnet's IPv6 block (a /64): dual-stack, as `ENABLE_IPv6` node groups need.
    #[serde(default)]
    pub ipv6_cidr: Option<ipnet::Ipv6Net>,
    /// Fraction (0–1) of the free addresses already taken at start by other tenants, placed
    /// scattered as EC2 places secondary IPs (fragmentation).
    #[serde(default)]
    pub prefill: f64,
}

fn default_az() -> String {
    "us-east-1a".into()
}

/// A subnet CIDR reservation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationSpec {
    /// The reserved block.
    pub cidr: Ipv4Net,
    /// `prefix` or `explicit`.
    #[serde(rename = "type")]
    pub kind: ReservationType,
}

/// One node group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGroupSpec {
    /// Group name.
    pub name: String,
    /// Instance type.
    pub instance_type: String,
    /// Nodes at start.
    pub count: u32,
    /// Subnet of the nodes and their ENIs.
    pub subnet: String,
    /// Custom networking: the ENIConfig's subnet, where every ENI but the primary goes (implies
    /// `AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true`, so the primary ENI gives no pod address). It
    /// must be in the node subnet's zone, as an ENI cannot be attached across zones.
    #[serde(default)]
    pub pod_subnet: Option<String>,
    /// Kubelet max pods (default: the EKS AMI's value for the mode).
    #[serde(default)]
    pub max_pods: Option<u32>,
    /// aws-node env vars (upstream names).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Delay from node launch to ipamd's first pool cycle (default 0).
    #[serde(default)]
    pub ipamd_start: Option<Dur>,
    /// Node launches spread over this window at start (default: all at once).
    #[serde(default)]
    pub launch_spread: Option<Dur>,
    /// Scale events.
    #[serde(default)]
    pub scale: Vec<ScaleSpec>,
}

/// Resize a node group at a time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleSpec {
    /// When.
    pub at: Dur,
    /// New node count.
    pub count: u32,
}

/// A workload: how pods of one node group come and go.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum WorkloadSpec {
    /// A constant number of pods from `start`.
    Steady {
        /// Node group.
        group: String,
        /// Pods.
        pods: u32,
        /// Start (default 0).
        #[serde(default)]
        start: Dur,
    },
    /// A deployment of `replicas` pods created at `at` (and deleted at `until`, if given).
    Burst {
        /// Node group.
        group: String,
        /// Replicas.
        replicas: u32,
        /// When they are created.
        at: Dur,
        /// When they are deleted.
        #[serde(default)]
        until: Option<Dur>,
    },
    /// Pods created at `rate` per second across the group, each living an exponentially
    /// distributed time with mean `lifetime`.
    Churn {
        /// Node group.
        group: String,
        /// Creations per second (whole group).
        rate: f64,
        /// Mean pod lifetime.
        lifetime: Dur,
        /// Start (default 0).
        #[serde(default)]
        start: Dur,
        /// End of creations (default: the end of the run).
        #[serde(default)]
        end: Option<Dur>,
    },
    /// A desired pod count following a daily sine between `min` and `max` (re-evaluated each minute).
    Diurnal {
        /// Node group.
        group: String,
        /// Pods at the trough.
        min: u32,
        /// Pods at the peak.
        max: u32,
        /// Period (default 24 h).
        #[serde(default)]
        period: Option<Dur>,
        /// Time of the peak within the period (default 12 h).
        #[serde(default)]
        peak_at: Option<Dur>,
    },
}

impl WorkloadSpec {
    /// The node group it targets.
    pub fn group(&self) -> &str {
        match self {
            Self::Steady { group, .. }
            | Self::Burst { group, .. }
            | Self::Churn { group, .. }
            | Self::Diurnal { group, .. } => group,
        }
    }
}

impl Scenario {
    /// Parse TOML text; errors name the field.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        for g in &self.node_groups {
            if !self.subnets.iter().any(|s| s.id == g.subnet) {
                return Err(format!(
                    "node group {:?}: subnet {:?} is not defined under [[subnets]]",
                    g.name, g.subnet
                ));
            }
        }
        for g in &self.node_groups {
            let Some(pod) = &g.pod_subnet else { continue };
            let zone = |id: &str| {
                self.subnets
                    .iter()
                    .find(|s| s.id == id)
                    .map(|s| s.az.clone())
            };
            match (zone(pod), zone(&g.subnet)) {
                (None, _) => {
                    return Err(format!(
                        "node group {:?}: pod_subnet {pod:?} is not defined under [[subnets]]",
                        g.name
                    ));
                }
                (Some(p), Some(n)) if p != n => {
                    return Err(format!(
                        "node group {:?}: pod_subnet {pod:?} is in {p}, the node subnet {:?} in {n} (an ENI cannot be attached across zones)",
                        g.name, g.subnet
                    ));
                }
                _ => {}
            }
            if g.env
                .get(crate::scenario::CUSTOM_NETWORK_ENV)
                .is_some_and(|v| matches!(v.trim(), "false" | "0" | "f" | "F" | "FALSE" | "False"))
            {
                return Err(format!(
                    "node group {:?}: pod_subnet needs custom networking, but env sets {}=false",
                    g.name,
                    crate::scenario::CUSTOM_NETWORK_ENV
                ));
            }
        }
        for w in &self.workloads {
            if !self.node_groups.iter().any(|g| g.name == w.group()) {
                return Err(format!(
                    "workload for group {:?}: no such node group",
                    w.group()
                ));
            }
        }
        let mut combos = 1usize;
        for (var, values) in &self.sweep {
            let known = vpc_cni_ipam::settings::VARIABLES.contains(&var.as_str());
            if !known || var == vpc_cni_ipam::settings::POOL_POLICY {
                return Err(format!(
                    "sweep: {var:?} is not an upstream setting this simulator reads (one of {})",
                    vpc_cni_ipam::settings::VARIABLES
                        .iter()
                        .filter(|v| **v != vpc_cni_ipam::settings::POOL_POLICY)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if values.is_empty() {
                return Err(format!("sweep: {var} has no values"));
            }
            combos = combos.saturating_mul(values.len());
        }
        if combos > MAX_SWEEP {
            return Err(format!(
                "sweep: {combos} combinations, at most {MAX_SWEEP} (each is a whole simulation)"
            ));
        }
        for s in &self.subnets {
            if !(0.0..=1.0).contains(&s.prefill) {
                return Err(format!(
                    "subnet {:?}: prefill must be between 0 and 1, got {}",
                    s.id, s.prefill
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (t, secs) in [
            ("90", 90.0),
            ("90s", 90.0),
            ("5m", 300.0),
            ("2h", 7200.0),
            ("1d", 86400.0),
            ("250ms", 0.25),
        ] {
            assert_eq!(parse_duration(t).unwrap().as_secs_f64(), secs, "{t}");
        }
        assert!(parse_duration("5 parsecs").unwrap_err().contains("unit"));
    }

    #[test]
    fn errors_name_the_field() {
        let bad = "duration = \"1h\"\n[[subnets]]\nid = \"s\"\ncidr = \"10.0.0.0/24\"\n[[node_groups]]\nname = \"g\"\ninstance_type = \"m5.large\"\ncount = 1\nsubnet = \"nope\"\n";
        assert!(
            Scenario::from_toml(bad)
                .unwrap_err()
                .contains("subnet \"nope\"")
        );
        let typo = "duration = \"1h\"\nsubnetz = []\n";
        assert!(Scenario::from_toml(typo).unwrap_err().contains("subnetz"));
    }
}
