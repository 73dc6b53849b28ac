//! The planner: runs a policy to a fixed point on an ideal cloud while pods are added (or
//! removed) one at a time, and records what the node holds at each requested pod count.

use std::time::Duration;

use serde::Serialize;
use vpc_cni_ipam::policy::PoolPolicy;
use vpc_cni_ipam::{
    Action, Datastore, DatastoreError, IpamKey, NodeState, PodMetadata, Policy, PoolLimits,
    Settings, Time,
};
use vpc_cni_limits::{IPS_PER_PREFIX, InstanceType};

use crate::ideal::IdealCloud;
use crate::subnet::{SubnetFit, SubnetQuestion, fit};

/// Pool-manager period (upstream: 2.5 s + 2.5 s, no jitter).
pub const CYCLE: Duration = Duration::from_secs(5);
/// Cycles (about 2.8 h of node time) after which a pool that keeps acting is declared oscillating.
const MAX_CYCLES: u32 = 2_000;

/// What to plan.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    /// The instance type.
    pub instance: InstanceType,
    /// The settings (upstream env vars).
    pub settings: Settings,
    /// Node pod capacity; growth stops once total IPs reach it.
    pub max_pods: u32,
    /// Pod counts to report, in the order to visit them.
    pub pods: Vec<u32>,
    /// Optional node-group question about a subnet.
    pub subnet: Option<SubnetQuestion>,
    /// `ENABLE_IPv6`: pods take addresses of the primary ENI's /80; no pool, no IPv4 per pod.
    pub ipv6: bool,
}

/// What one ENI holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EniRow {
    /// Pods with an address on this ENI.
    pub pods: u32,
    /// Addresses usable by pods (secondary /32s, or 16 per prefix).
    pub ips: u32,
    /// Prefixes.
    pub prefixes: u32,
}

/// The node at one pod count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanRow {
    /// Pods on the node (not counting host-network pods).
    pub pods: u32,
    /// Attached ENIs.
    pub enis: u32,
    /// Addresses usable by pods.
    pub ips_attached: u32,
    /// Prefixes attached.
    pub prefixes: u32,
    /// Attached addresses no pod uses.
    pub unused_ips: u32,
    /// Subnet addresses the node consumes: ENI primary IPs plus `ips_attached`.
    pub subnet_addresses: u32,
    /// Pods that found no address (the node is at its limit).
    pub pending_pods: u32,
    /// Per ENI, device order, primary first.
    pub per_eni: Vec<EniRow>,
    /// The rule that drove the last change (or why nothing changed).
    pub rule: String,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// The instance type.
    pub instance_type: String,
    /// `secondary-ip`, `prefix` or `ipv6`.
    pub mode: &'static str,
    /// Settings as upstream env vars.
    pub settings: std::collections::BTreeMap<&'static str, String>,
    /// Node pod capacity used.
    pub max_pods: u32,
    /// Rows in request order.
    pub rows: Vec<PlanRow>,
    /// The subnet answer, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<SubnetFit>,
    /// The pod subnet's answer (custom networking with a pod subnet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_subnet: Option<SubnetFit>,
    /// Notes worth telling (e.g. prefix delegation unavailable on this type).
    pub notes: Vec<String>,
}

/// Planner failures.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The ideal cloud rejected an action (a bug in policy or planner).
    #[error("applying a decision failed: {0}")]
    Datastore(#[from] DatastoreError),
}

struct Node {
    ds: Datastore,
    policy: Policy,
    cloud: IdealCloud,
    now: Time,
    pods: Vec<IpamKey>,
    pending: u32,
    last_rule: Option<String>,
    idle_window: Duration,
    oscillation: Option<String>,
}

impl Node {
    fn new(req: &PlanRequest, limits: PoolLimits) -> Result<Self, PlanError> {
        let mut ds = Datastore::new(limits.prefix_delegation, req.settings.ip_cooldown);
        let mut cloud = IdealCloud::new(req.instance.limits.ipv4_limit);
        cloud.attach_primary(&mut ds, Time::ZERO)?;
        // Long enough for every timer that can enable a new action to expire.
        let policy = Policy::new(req.settings.clone(), limits);
        // The adaptive pool shrinks as its history ages out: settle past all of it.
        let idle_window = policy
            .quiet_after()
            .max(req.settings.ip_cooldown + 2 * CYCLE);
        Ok(Node {
            ds,
            policy,
            cloud,
            now: Time::ZERO,
            pods: Vec::new(),
            pending: 0,
            last_rule: None,
            idle_window,
            oscillation: None,
        })
    }

    /// Run cycles until nothing happens for a whole idle window. A pool that keeps acting is
    /// recorded as oscillating (upstream does the same with such settings) and left as it is.
    fn settle(&mut self) -> Result<(), PlanError> {
        let mut idle = Duration::ZERO;
        let mut recent: Vec<String> = Vec::new();
        for _ in 0..MAX_CYCLES {
            let decisions = self
                .policy
                .cycle(&mut self.ds, NodeState::default(), self.now);
            if decisions.is_empty() {
                idle += CYCLE;
            } else {
                idle = Duration::ZERO;
                for d in &decisions {
                    self.cloud.apply(&mut self.ds, &d.action, self.now)?;
                    self.last_rule = Some(d.reason.clone());
                    let label = match &d.action {
                        Action::AllocateEni { .. } => "allocate a new ENI",
                        Action::FreeEni { .. } => "free an ENI",
                        Action::AssignToEni { .. } => "assign addresses to an ENI",
                        Action::Release { .. } => "release addresses",
                    };
                    if !recent.iter().any(|r| r == label) {
                        recent.push(label.to_string());
                    }
                    if recent.len() > 3 {
                        recent.remove(0);
                    }
                }
            }
            self.now = self.now.plus(CYCLE);
            if idle >= self.idle_window {
                return Ok(());
            }
        }
        let pods = self.pods.len();
        self.oscillation = Some(format!(
            "never settles at {pods} pods: the policy keeps cycling ({}); last: {} \
             (upstream ipamd does the same with these settings)",
            recent.join(", then "),
            self.last_rule.as_deref().unwrap_or("-")
        ));
        Ok(())
    }

    /// Add one pod, waiting for the pool to grow if needed; `false` if it never gets an address.
    fn add_pod(&mut self) -> Result<bool, PlanError> {
        let key = IpamKey::new("aws-cni", &format!("pod-{:05}", self.pods.len()), "eth0");
        loop {
            match self.ds.assign(&key, PodMetadata::default(), self.now) {
                Ok(_) => {
                    self.pods.push(key);
                    self.settle()?;
                    return Ok(true);
                }
                Err(DatastoreError::NoAvailableAddress) => {
                    let before = self.ds.stats(self.now).total_ips;
                    self.settle()?;
                    if self.ds.stats(self.now).total_ips == before {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn remove_pod(&mut self) -> Result<(), PlanError> {
        if let Some(key) = self.pods.pop() {
            self.ds.unassign(&key, self.now);
        }
        self.settle()
    }

    fn row(&self, pods: u32) -> PlanRow {
        let pd = self.ds.prefix_delegation();
        let per_eni: Vec<EniRow> = self
            .ds
            .enis()
            .iter()
            .map(|e| {
                let s = self.ds.eni_stats(e);
                EniRow {
                    pods: s.assigned_ips,
                    ips: s.total_ips,
                    prefixes: if pd { s.cidrs } else { 0 },
                }
            })
            .collect();
        let ips: u32 = per_eni.iter().map(|e| e.ips).sum();
        let placed = self.pods.len() as u32;
        let enis = per_eni.len() as u32;
        PlanRow {
            pods,
            enis,
            ips_attached: ips,
            prefixes: per_eni.iter().map(|e| e.prefixes).sum(),
            unused_ips: ips - placed,
            subnet_addresses: ips + enis,
            pending_pods: self.pending,
            per_eni,
            rule: match &self.last_rule {
                Some(r) => r.clone(),
                None => self.policy.describe(&self.ds, self.now),
            },
        }
    }
}

/// Run the plan.
pub fn plan(req: &PlanRequest) -> Result<PlanReport, PlanError> {
    if req.ipv6 {
        return Ok(plan_ipv6(req));
    }
    let limits = PoolLimits::new(&req.instance.limits, &req.settings, req.max_pods);
    let mut notes = Vec::new();
    if req.settings.prefix_delegation && !limits.prefix_delegation {
        notes.push(format!(
            "{} is not a Nitro instance: ipamd ignores ENABLE_PREFIX_DELEGATION and uses secondary IPs",
            req.instance.name
        ));
    }
    let mut node = Node::new(req, limits)?;
    node.settle()?;
    let mut rows = Vec::new();
    for &target in &req.pods {
        node.last_rule = None;
        while (node.pods.len() as u32) + node.pending < target {
            if node.pending > 0 || !node.add_pod()? {
                node.pending += 1;
            }
        }
        while (node.pods.len() as u32) + node.pending > target {
            if node.pending > 0 {
                node.pending -= 1;
            } else {
                node.remove_pod()?;
            }
        }
        if node.last_rule.is_none() || node.pending > 0 {
            node.last_rule = Some(node.policy.describe(&node.ds, node.now));
        }
        if let Some(o) = node.oscillation.take() {
            node.last_rule = Some(o.clone());
            if !notes.contains(&o) {
                notes.push(o);
            }
        }
        rows.push(node.row(target));
    }
    if let Some(row) = rows.iter().find(|r| r.pending_pods > 0) {
        notes.push(format!(
            "only {} pods fit on one {} with these settings ({} requested)",
            row.pods - row.pending_pods,
            req.instance.name,
            row.pods
        ));
        let s = &req.settings;
        if s.warm_ip_target == 0
            && s.minimum_ip_target > 0
            && row.ips_attached < limits.max_eni * limits.max_ips_per_eni
        {
            notes.push(format!(
                "MINIMUM_IP_TARGET={} without WARM_IP_TARGET caps the pool at the minimum: ipamd never \
                 grows past it (intended upstream, amazon-vpc-cni-k8s#2650); set WARM_IP_TARGET ≥ 1",
                s.minimum_ip_target
            ));
        }
    }
    let (subnet, pod_subnet) = match req.subnet.as_ref() {
        Some(q) => {
            let worst = rows.iter().max_by_key(|r| r.subnet_addresses);
            let (node, pods) = fit(q, worst, limits.prefix_delegation);
            (Some(node), pods)
        }
        None => (None, None),
    };
    Ok(PlanReport {
        instance_type: req.instance.name.clone(),
        mode: if limits.prefix_delegation {
            "prefix"
        } else {
            "secondary-ip"
        },
        settings: req.settings.to_env(),
        max_pods: req.max_pods,
        rows,
        subnet,
        pod_subnet,
        notes,
    })
}

/// IPv6 mode: one ENI whose /80 holds every pod up to max pods; the subnet's IPv4 space holds the
/// node's primary address only.
fn plan_ipv6(req: &PlanRequest) -> PlanReport {
    let rows: Vec<PlanRow> = req
        .pods
        .iter()
        .map(|&pods| {
            let placed = pods.min(req.max_pods);
            PlanRow {
                pods,
                enis: 1,
                ips_attached: 0,
                prefixes: 0,
                unused_ips: 0,
                subnet_addresses: 1,
                pending_pods: pods - placed,
                per_eni: vec![EniRow {
                    pods: placed,
                    ips: 0,
                    prefixes: 0,
                }],
                rule: "IPv6 mode: pods take addresses of the primary ENI's /80 (2^48 of them); no IPv4 address per pod, no pool to manage"
                    .into(),
            }
        })
        .collect();
    // The subnet holds the pods the node can run, not those max pods leaves pending.
    let busiest = rows.last().map(|r| PlanRow {
        pods: r.pods - r.pending_pods,
        ..r.clone()
    });
    let subnet = req
        .subnet
        .as_ref()
        .map(|q| fit(q, busiest.as_ref(), false).0);
    let mut notes = vec![
        "IPv6 mode (ENABLE_IPv6=true, prefix delegation): the node subnet needs an IPv6 block; its IPv4 range holds one address per node"
            .to_string(),
    ];
    if let Some(row) = rows.iter().find(|r| r.pending_pods > 0) {
        notes.push(format!(
            "max pods {} caps the node: {} of {} pods pending",
            req.max_pods, row.pending_pods, row.pods
        ));
    }
    let mut settings = req.settings.to_env();
    settings.insert("ENABLE_IPv6", "true".into());
    PlanReport {
        instance_type: req.instance.name.clone(),
        mode: "ipv6",
        settings,
        max_pods: req.max_pods,
        rows,
        subnet,
        pod_subnet: None,
        notes,
    }
}

/// Prefixes needed for `pods` pods at 16 addresses each (a lower bound for any setting).
pub fn min_prefixes(pods: u32) -> u32 {
    pods.div_ceil(IPS_PER_PREFIX)
}
