//! The discrete-event cluster simulator: node groups whose nodes run the `ipam` policy with
//! upstream timing (5 s loop, one EC2 action per cycle, latencies, retries, cooldowns) against the
//! simulated VPC, and workloads whose pods wait and retry like kubelet when no address is free.

mod exec;
mod v6;
mod workload;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use vpc_cni_ipam::policy::PoolPolicy;
use vpc_cni_ipam::{Datastore, EniSpec, IpamKey, Policy, PoolLimits, Settings, Time};
use vpc_cni_limits::{CniVersion, InstanceType, LimitsTable, MaxPodsOptions, max_pods};

use crate::report::{Recorder, Report};
use crate::rng::Rng;
use crate::scenario::Scenario;
use crate::subnet::Subnet;
use crate::throttle::Throttle;
use crate::vpc::Vpc;

pub use exec::Cleanup;

/// Pool-manager period.
pub const CYCLE: Duration = Duration::from_secs(5);

/// Something that happens at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    NodeCycle(u32),
    ActionDone(u32),
    PodCreate(u32),
    PodTry(u32),
    PodDelete(u32),
    Controller(u32),
    Sample,
    Scale(u32, u32),
}

/// A simulation that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Bad scenario content.
    #[error("{0}")]
    Scenario(String),
}

struct Group {
    name: String,
    instance: InstanceType,
    settings: Settings,
    limits: PoolLimits,
    subnet: String,
    /// Custom networking: the ENIConfig subnet of every ENI but the primary.
    pod_subnet: Option<String>,
    /// `ENABLE_IPv6`: pods take addresses of the primary ENI's /80, no pool is managed.
    ipv6: bool,
    ipamd_start: Duration,
    /// (load, node) of live nodes, for least-loaded scheduling.
    load: BTreeSet<(u32, u32)>,
    live: Vec<u32>,
}

struct Node {
    group: u32,
    instance_id: String,
    ds: Datastore,
    policy: Policy,
    alive: bool,
    pods: u32,
    cycle_scheduled: bool,
    idle: Duration,
    inflight: Option<exec::Completion>,
    cleanup: Vec<Cleanup>,
    /// Last cycle run because an ADD found no address.
    kicked_at: Option<Time>,
}

struct Pod {
    workload: u32,
    group: u32,
    node: Option<u32>,
    created: Time,
    running: bool,
    deleted: bool,
}

/// The running simulation.
pub struct Cluster {
    now: Time,
    end: Time,
    queue: BinaryHeap<Reverse<(Time, u64, Event)>>,
    seq: u64,
    vpc: Vpc,
    rng: Rng,
    groups: Vec<Group>,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    workloads: Vec<workload::State>,
    pod_retry: Duration,
    sample_every: Duration,
    rec: Recorder,
    /// Pod events processed (creations, address attempts, deletions).
    pub pod_events: u64,
}

impl Cluster {
    /// Build the cluster of a scenario.
    pub fn new(sc: &Scenario, table: &LimitsTable) -> Result<Self, SimError> {
        let err = |m: String| SimError::Scenario(m);
        let mut vpc = Vpc::new(
            sc.seed,
            Throttle::new(sc.vpc.throttling, sc.vpc.throttle_scale, Time::ZERO),
        );
        vpc.latency = sc.vpc.latency;
        vpc.faults = sc.vpc.faults;
        let mut rng = Rng::new(sc.seed.wrapping_mul(31).wrapping_add(7));
        for s in &sc.subnets {
            let mut subnet = Subnet::new(&s.id, s.cidr, &s.az)
                .map_err(|e| err(format!("subnet {}: {e}", s.id)))?;
            if let Some(v6) = s.ipv6_cidr {
                subnet = subnet
                    .with_ipv6(v6)
                    .map_err(|e| err(format!("subnet {}: {e}", s.id)))?;
            }
            subnet.tags = s.tags.clone();
            for r in &s.reservations {
                subnet
                    .reserve(r.cidr, r.kind)
                    .map_err(|e| err(format!("subnet {}: {e}", s.id)))?;
            }
            let fill = (f64::from(subnet.free_addresses()) * s.prefill) as u32;
            for _ in 0..fill {
                subnet
                    .alloc_ip(&mut rng)
                    .map_err(|e| err(format!("subnet {} prefill: {e}", s.id)))?;
            }
            vpc.add_subnet(subnet);
        }
        let mut groups = Vec::new();
        for g in &sc.node_groups {
            let instance = table
                .get(&g.instance_type)
                .map_err(|e| err(format!("node group {}: {e}", g.name)))?
                .clone();
            let mut env = g.env.clone();
            if g.pod_subnet.is_some() {
                env.insert(
                    crate::scenario::CUSTOM_NETWORK_ENV.to_string(),
                    "true".into(),
                );
            }
            let settings =
                Settings::from_map(&env).map_err(|e| err(format!("node group {}: {e}", g.name)))?;
            let ipv6 = v6::enabled(&env, &settings, &g.name)?;
            let mp = g
                .max_pods
                .unwrap_or_else(|| default_max_pods(&instance, &settings));
            groups.push(Group {
                name: g.name.clone(),
                limits: PoolLimits::new(&instance.limits, &settings, mp),
                instance,
                settings,
                subnet: g.subnet.clone(),
                pod_subnet: g.pod_subnet.clone(),
                ipv6,
                ipamd_start: g.ipamd_start.map(|d| d.0).unwrap_or_default(),
                load: BTreeSet::new(),
                live: Vec::new(),
            });
        }
        let mut c = Cluster {
            now: Time::ZERO,
            end: Time::ZERO.plus(sc.duration.0),
            queue: BinaryHeap::new(),
            seq: 0,
            vpc,
            rng,
            groups,
            nodes: Vec::new(),
            pods: Vec::new(),
            workloads: Vec::new(),
            pod_retry: sc.pod_retry.map(|d| d.0).unwrap_or(Duration::from_secs(2)),
            sample_every: sc
                .sample_every
                .map(|d| d.0)
                .unwrap_or(Duration::from_secs(60)),
            rec: Recorder::default(),
            pod_events: 0,
        };
        for (gi, g) in sc.node_groups.iter().enumerate() {
            let spread = g.launch_spread.map(|d| d.0).unwrap_or_default();
            for k in 0..g.count {
                let at = if g.count > 1 {
                    spread.mul_f64(f64::from(k) / f64::from(g.count))
                } else {
                    Duration::ZERO
                };
                c.launch_node(gi as u32, Time::ZERO.plus(at));
            }
            for s in &g.scale {
                c.push(Time::ZERO.plus(s.at.0), Event::Scale(gi as u32, s.count));
            }
        }
        for w in &sc.workloads {
            let gi = c
                .groups
                .iter()
                .position(|g| g.name == w.group())
                .expect("checked by Scenario") as u32;
            let id = c.workloads.len() as u32;
            c.workloads.push(workload::State::new(w.clone(), gi));
            c.start_workload(id);
        }
        c.push(Time::ZERO, Event::Sample);
        Ok(c)
    }

    fn push(&mut self, at: Time, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, e)));
    }

    /// Simulated time now.
    pub fn now(&self) -> Time {
        self.now
    }

    /// End of the run.
    pub fn end(&self) -> Time {
        self.end
    }

    /// Process events up to `until` (or the end); `false` once the run is over.
    pub fn run_until(&mut self, until: Time) -> bool {
        let until = until.min(self.end);
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            if *at > until {
                break;
            }
            let Reverse((at, _, e)) = self.queue.pop().expect("peeked");
            self.now = at;
            self.handle(e);
        }
        self.now = until;
        until < self.end
    }

    /// Run to the end and report.
    pub fn run(mut self) -> Report {
        self.run_until(self.end);
        self.finish()
    }

    fn handle(&mut self, e: Event) {
        match e {
            Event::NodeCycle(n) => self.node_cycle(n),
            Event::ActionDone(n) => self.action_done(n),
            Event::PodCreate(w) => self.workload_create(w),
            Event::PodTry(p) => self.pod_try(p),
            Event::PodDelete(p) => self.pod_delete(p),
            Event::Controller(w) => self.workload_control(w),
            Event::Sample => {
                self.sample();
                self.push(self.now.plus(self.sample_every), Event::Sample);
            }
            Event::Scale(g, count) => self.scale(g, count),
        }
    }

    fn launch_node(&mut self, gi: u32, at: Time) {
        let g = &self.groups[gi as usize];
        let (ty, limits, subnet) = (
            g.instance.name.clone(),
            g.instance.limits.clone(),
            g.subnet.clone(),
        );
        let instance_id = match self.vpc.run_instance(&ty, &limits, &subnet, at) {
            Ok(id) => id,
            Err(e) => {
                if e.code.is_insufficient_addresses() {
                    self.rec.subnet_exhausted(&subnet, at, &e);
                }
                self.rec
                    .node_launch_failures
                    .push(format!("{}: {e}", g.name));
                return;
            }
        };
        let primary = self
            .vpc
            .instance(&instance_id)
            .expect("just launched")
            .primary_eni
            .clone();
        let eni = self.vpc.eni(&primary).expect("primary exists");
        let g = &self.groups[gi as usize];
        // With subnet discovery, a node subnet tagged out of pod use (kubernetes.io/role/cni=0)
        // makes the primary ENI excluded: its pods' addresses come from ENIs in tagged subnets.
        let excluded = g.settings.subnet_discovery
            && self
                .vpc
                .subnets
                .get(&subnet)
                .is_some_and(|s| crate::discovery::excluded(&s.tags, None));
        let mut ds = Datastore::new(g.limits.prefix_delegation, g.settings.ip_cooldown);
        ds.add_eni(
            EniSpec {
                id: primary,
                is_primary: true,
                route_table_id: 254,
                primary_ip: Some(eni.primary_ip),
                subnet_id: subnet,
                excluded,
                ..EniSpec::default()
            },
            at,
        )
        .expect("fresh datastore");
        if g.ipv6 && !v6::setup(&mut self.vpc, &mut ds, &mut self.rec, &g.name) {
            return;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push(Node {
            group: gi,
            instance_id,
            ds,
            policy: Policy::new(g.settings.clone(), g.limits),
            alive: true,
            pods: 0,
            cycle_scheduled: true,
            idle: Duration::ZERO,
            inflight: None,
            cleanup: Vec::new(),
            kicked_at: None,
        });
        let g = &mut self.groups[gi as usize];
        g.load.insert((0, id));
        g.live.push(id);
        let start = at.plus(g.ipamd_start);
        self.push(start, Event::NodeCycle(id));
    }

    fn scale(&mut self, gi: u32, count: u32) {
        let live = self.groups[gi as usize].live.len() as u32;
        for _ in live..count {
            self.launch_node(gi, self.now);
        }
        for _ in count..live {
            let n = self.groups[gi as usize].live.pop().expect("live node");
            self.remove_node(n);
        }
    }

    fn remove_node(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        node.alive = false;
        let gi = node.group;
        self.groups[gi as usize].load.remove(&(node.pods, n));
        let _ = self.vpc.terminate_instance(&node.instance_id);
        let evicted: Vec<u32> = (0..self.pods.len() as u32)
            .filter(|&p| self.pods[p as usize].node == Some(n) && !self.pods[p as usize].deleted)
            .collect();
        for p in evicted {
            let w = self.pods[p as usize].workload;
            self.pods[p as usize].deleted = true;
            self.workload_pod_gone(w, p);
        }
    }

    /// Wake a dormant node: something changed its pool.
    fn wake(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        node.idle = Duration::ZERO;
        if node.alive && !node.cycle_scheduled && node.inflight.is_none() {
            node.cycle_scheduled = true;
            self.push(self.now.plus(CYCLE), Event::NodeCycle(n));
        }
    }

    /// Put a new pod of `workload` on the least-loaded node with room, and try its ADD.
    fn create_pod(&mut self, w: u32) -> u32 {
        let gi = self.workloads[w as usize].group;
        let id = self.pods.len() as u32;
        self.pods.push(Pod {
            workload: w,
            group: gi,
            node: None,
            created: self.now,
            running: false,
            deleted: false,
        });
        self.pod_events += 1;
        self.pod_try(id);
        id
    }

    fn place(&mut self, p: u32) -> Option<u32> {
        let gi = self.pods[p as usize].group as usize;
        let cap = self.groups[gi]
            .limits
            .max_pods
            .saturating_sub(vpc_cni_limits::HOST_NETWORK_PODS);
        let &(load, n) = self.groups[gi].load.first()?;
        if load >= cap {
            return None;
        }
        let g = &mut self.groups[gi];
        g.load.remove(&(load, n));
        g.load.insert((load + 1, n));
        self.nodes[n as usize].pods += 1;
        self.pods[p as usize].node = Some(n);
        Some(n)
    }

    fn unplace(&mut self, p: u32) {
        if let Some(n) = self.pods[p as usize].node.take() {
            let node = &mut self.nodes[n as usize];
            if node.alive {
                let g = &mut self.groups[node.group as usize];
                g.load.remove(&(node.pods, n));
                node.pods -= 1;
                g.load.insert((node.pods, n));
            }
        }
    }

    fn pod_try(&mut self, p: u32) {
        let pod = &self.pods[p as usize];
        if pod.deleted || pod.running {
            return;
        }
        self.pod_events += 1;
        let node = match pod.node {
            Some(n) => Some(n),
            None => self.place(p),
        };
        let Some(n) = node else {
            self.push(self.now.plus(self.pod_retry), Event::PodTry(p));
            return;
        };
        let key = pod_key(p);
        match self.assign_pod(n, &key) {
            true => {
                let pod = &mut self.pods[p as usize];
                pod.running = true;
                let waited = self.now.since(pod.created);
                self.rec.pod_started(pod.group, waited);
                self.wake(n);
            }
            false => {
                self.rec.no_address += 1;
                self.push(self.now.plus(self.pod_retry), Event::PodTry(p));
                // A policy that refills on a miss gets a cycle now, not at the next period.
                // At most one such cycle a second: every waiting pod's retry is a miss.
                let node = &mut self.nodes[n as usize];
                let due = node
                    .kicked_at
                    .is_none_or(|t| self.now.since(t) >= Duration::from_secs(1));
                if node.alive && node.inflight.is_none() && due && node.policy.refill_on_miss() {
                    node.kicked_at = Some(self.now);
                    node.cycle_scheduled = true;
                    self.push(self.now, Event::NodeCycle(n));
                }
            }
        }
    }

    fn pod_delete(&mut self, p: u32) {
        let pod = &mut self.pods[p as usize];
        if pod.deleted {
            return;
        }
        pod.deleted = true;
        self.pod_events += 1;
        let (running, node) = (pod.running, pod.node);
        if running && let Some(n) = node {
            self.release_pod(n, &pod_key(p));
            self.wake(n);
        }
        self.unplace(p);
    }

    fn finish(mut self) -> Report {
        if self.rec.last_sample() < Some(self.now) {
            self.sample();
        }
        let subnets: Vec<&Subnet> = self.vpc.subnets.values().collect();
        let mut groups: Vec<crate::report::GroupEnd> = self
            .groups
            .iter()
            .map(|g| {
                let mut end = crate::report::GroupEnd {
                    name: g.name.clone(),
                    instance_type: g.instance.name.clone(),
                    ..Default::default()
                };
                for &n in &g.live {
                    let node = &self.nodes[n as usize];
                    let st = node.ds.stats(self.now);
                    end.nodes += 1;
                    end.pods += st.assigned_ips + v6::assigned(&node.ds);
                    end.attached += st.total_ips;
                    end.enis += node.ds.enis().len() as u32;
                    end.prefixes += st.total_prefixes;
                }
                end
            })
            .collect();
        for p in self.pods.iter().filter(|p| !p.deleted && !p.running) {
            groups[p.group as usize].pending += 1;
            self.rec.pod_pending(self.now.since(p.created));
        }
        let mut roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for g in &self.groups {
            let node_role = match g.pod_subnet {
                Some(_) => format!("nodes of {}", g.name),
                None => format!("nodes and pods of {}", g.name),
            };
            roles.entry(g.subnet.clone()).or_default().push(node_role);
            if let Some(p) = &g.pod_subnet {
                roles
                    .entry(p.clone())
                    .or_default()
                    .push(format!("pods of {} (ENIConfig)", g.name));
            }
        }
        self.rec.roles = roles.into_iter().map(|(k, v)| (k, v.join(", "))).collect();
        self.rec.report(
            self.now,
            groups,
            &subnets,
            self.vpc.stats(),
            self.pod_events,
        )
    }

    fn sample(&mut self) {
        let mut per_group = Vec::new();
        for g in &self.groups {
            let (mut attached, mut assigned) = (0u32, 0u32);
            for &n in &g.live {
                let st = self.nodes[n as usize].ds.stats(self.now);
                attached += st.total_ips;
                assigned += st.assigned_ips + v6::assigned(&self.nodes[n as usize].ds);
            }
            per_group.push((attached, assigned));
        }
        let subnets: Vec<(String, u32, u32)> = self
            .vpc
            .subnets
            .values()
            .map(|s| (s.id.clone(), s.free_addresses(), s.free_prefix_blocks()))
            .collect();
        self.rec.sample(self.now, per_group, subnets);
    }
}

fn pod_key(p: u32) -> IpamKey {
    IpamKey::new("aws-cni", &format!("{p:012x}"), "eth0")
}

/// What the EKS AMI configures as kubelet max pods for this mode.
pub fn default_max_pods(t: &InstanceType, s: &Settings) -> u32 {
    let opts = MaxPodsOptions {
        cni_version: CniVersion {
            major: 1,
            minor: 19,
        },
        custom_networking: s.custom_networking,
        prefix_delegation: s.prefix_delegation,
        max_eni: s.max_eni,
    };
    let mp = max_pods(t, &opts);
    if s.prefix_delegation {
        mp.recommended
    } else {
        mp.max_allowed
    }
}
