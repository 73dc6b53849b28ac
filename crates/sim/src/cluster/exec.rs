//! A node's pool loop: run the policy each cycle and carry its decisions out against the
//! simulated VPC the way upstream ipamd does (ENI create → attach → DeleteOnTermination; retry
//! an assign once with 1, then the policy's next step: with subnet discovery the next ENI or a
//! new ENI in another eligible subnet, else the 120 s pause on insufficient addresses; failed
//! releases and frees are retried on later cycles).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use vpc_cni_ipam::policy::PoolPolicy;
use vpc_cni_ipam::{
    Action, AssignFailure, CidrKind, Delivery, EniSpec, NodeState, PolicyKind, Time,
};

use super::{CYCLE, Cluster, Event};
use crate::discovery::candidates;
use crate::error::Ec2ErrorCode;

/// Addresses (and maybe a new ENI) that reach the datastore when an action completes.
pub(super) struct Completion {
    /// When the call was made and what it was, for the policy's delivery-time measure.
    started: Time,
    what: Delivery,
    new_eni: Option<EniSpec>,
    eni: String,
    ips: Vec<Ipv4Addr>,
    prefixes: Vec<Ipv4Net>,
}

/// Cloud work still owed after a failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleanup {
    /// Addresses removed from the datastore but not yet from EC2.
    Release(String, Vec<Ipv4Net>),
    /// ENI to detach, then delete.
    Detach(String),
    /// Detached ENI to delete.
    Delete(String),
}

impl Cluster {
    pub(super) fn node_cycle(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        node.cycle_scheduled = false;
        if !node.alive || node.inflight.is_some() {
            return;
        }
        let worked = self.run_cleanups(n);
        let node = &mut self.nodes[n as usize];
        // IPv6 mode manages no pool.
        let decisions = if node.ds.v6().is_some() {
            Vec::new()
        } else {
            node.policy
                .cycle(&mut node.ds, NodeState::default(), self.now)
        };
        let acted = !decisions.is_empty() || worked;
        for d in decisions {
            self.execute(n, d.action);
        }
        let node = &mut self.nodes[n as usize];
        if node.inflight.is_some() {
            return; // the completion schedules the next cycle
        }
        let window = node
            .policy
            .quiet_after()
            .max(node.ds.cooldown() + 2 * CYCLE);
        node.idle = if acted {
            Duration::ZERO
        } else {
            node.idle + CYCLE
        };
        if node.idle < window || !node.cleanup.is_empty() {
            node.cycle_scheduled = true;
            self.push(self.now.plus(CYCLE), Event::NodeCycle(n));
        }
        // else: dormant until a pod comes or goes (nothing can change without one).
    }

    pub(super) fn action_done(&mut self, n: u32) {
        let node = &mut self.nodes[n as usize];
        let Some(c) = node.inflight.take() else {
            return;
        };
        if !node.alive {
            return;
        }
        let took = self.now.since(c.started);
        node.policy.record_delivery(c.what, took);
        if let Some(spec) = c.new_eni {
            node.ds
                .add_eni(spec, self.now)
                .expect("new ENI id is unique");
        }
        for ip in c.ips {
            let _ = node
                .ds
                .add_cidr(&c.eni, Ipv4Net::new(ip, 32).expect("/32"), false);
        }
        for p in c.prefixes {
            let _ = node.ds.add_cidr(&c.eni, p, true);
        }
        node.idle = Duration::ZERO;
        node.cycle_scheduled = true;
        self.push(self.now.plus(CYCLE), Event::NodeCycle(n));
    }

    fn execute(&mut self, n: u32, action: Action) {
        match action {
            Action::AssignToEni { eni, count, kind } => {
                self.assign(n, &eni, count, kind, Vec::new())
            }
            Action::AllocateEni { count, kind } => self.allocate(n, count, kind),
            Action::Release { eni, cidrs } => self.unassign_or_owe(n, eni, cidrs),
            Action::FreeEni { eni } => self.free_eni(n, eni),
        }
    }

    /// Tell node `n`'s policy when EC2 answered `RequestLimitExceeded`.
    fn note_throttled(&mut self, n: u32, e: &crate::error::Ec2Error) {
        if e.code == Ec2ErrorCode::RequestLimitExceeded {
            self.nodes[n as usize].policy.record_throttled(self.now);
        }
    }

    /// `UnassignPrivateIpAddresses`; a failed call is owed for a later cycle (and throttling is
    /// told to the policy).
    fn unassign_or_owe(&mut self, n: u32, eni: String, cidrs: Vec<Ipv4Net>) {
        if let Err(e) = self
            .vpc
            .unassign_private_ip_addresses(&eni, &cidrs, self.now)
        {
            self.note_throttled(n, &e);
            self.nodes[n as usize]
                .cleanup
                .push(Cleanup::Release(eni, cidrs));
        }
    }

    /// Upstream's `tryAssignIPs`/`tryAssignPrefixes`: ask for `count`, on an error other than
    /// `PrivateIpAddressLimitExceeded` ask for one; that error imports EC2's view of the ENI; any
    /// other failure goes to the policy for the next step (`tried` grows).
    fn assign(&mut self, n: u32, eni: &str, count: u32, kind: CidrKind, mut tried: Vec<String>) {
        let (ips, pfx) = split(count, kind);
        let mut r = self
            .vpc
            .assign_private_ip_addresses(eni, ips, pfx, self.now);
        // Upstream asks again for one after any other error; the adaptive policy does not
        // after throttling (a second call into an empty bucket only deepens it).
        let adaptive = self.nodes[n as usize].policy.kind() == PolicyKind::Adaptive;
        if let Err(e) = &r
            && e.code != Ec2ErrorCode::PrivateIpAddressLimitExceeded
            && !(adaptive && e.code == Ec2ErrorCode::RequestLimitExceeded)
        {
            let (ips, pfx) = split(1, kind);
            r = self
                .vpc
                .assign_private_ip_addresses(eni, ips, pfx, self.now);
        }
        let e = match r {
            Ok((ips, prefixes)) => {
                let at = self
                    .now
                    .plus(Duration::from_millis(self.vpc.latency.assign_ms));
                let c = Completion {
                    started: self.now,
                    what: Delivery::Assign,
                    new_eni: None,
                    eni: eni.to_string(),
                    ips,
                    prefixes,
                };
                return self.complete(n, at, c);
            }
            Err(e) => e,
        };
        if e.code == Ec2ErrorCode::PrivateIpAddressLimitExceeded {
            if let Some(found) = self.vpc.eni(eni) {
                let c = Completion {
                    started: self.now,
                    what: Delivery::Assign,
                    new_eni: None,
                    eni: eni.to_string(),
                    ips: found.secondary_ips.clone(),
                    prefixes: found.prefixes.clone(),
                };
                self.complete(n, self.now, c);
            }
            return;
        }
        self.note_throttled(n, &e);
        let failure = if e.code.is_insufficient_addresses() {
            if let Some(subnet) = self.vpc.eni(eni).map(|x| x.subnet_id.clone()) {
                self.rec.subnet_exhausted(&subnet, self.now, &e);
            }
            AssignFailure::Insufficient
        } else {
            AssignFailure::Other
        };
        tried.push(eni.to_string());
        let node = &mut self.nodes[n as usize];
        let next = node
            .policy
            .after_assign_failure(&node.ds, &tried, failure, self.now);
        match next.map(|d| d.action) {
            Some(Action::AssignToEni { eni, count, kind }) => {
                self.assign(n, &eni, count, kind, tried)
            }
            Some(a) => self.execute(n, a),
            None => {}
        }
    }

    /// Subnets a new ENI of node `n` may go to, in order (spec c.5).
    fn candidate_subnets(&self, n: u32) -> Vec<String> {
        let node = &self.nodes[n as usize];
        let g = &self.groups[node.group as usize];
        // Custom networking: the ENIConfig names one subnet; no other is tried.
        if let Some(p) = &g.pod_subnet {
            return vec![p.clone()];
        }
        candidates(
            &self.vpc,
            &g.subnet,
            node.policy.settings().subnet_discovery,
        )
    }

    fn allocate(&mut self, n: u32, count: u32, kind: CidrKind) {
        let inst = self.nodes[n as usize].instance_id.clone();
        let device = match self.vpc.free_device_index(&inst, self.now) {
            Ok(d) => d,
            Err(e) => return self.note_throttled(n, &e),
        };
        let (ips, pfx) = split(count, kind);
        let tags = BTreeMap::from([(
            "node.k8s.amazonaws.com/instance_id".to_string(),
            inst.clone(),
        )]);
        let mut created = None;
        let mut exhausted = false;
        for subnet in self.candidate_subnets(n) {
            match self.vpc.create_network_interface(
                &subnet,
                &format!("aws-K8S-{inst}"),
                tags.clone(),
                ips,
                pfx,
                self.now,
            ) {
                Ok(id) => {
                    created = Some((id, subnet));
                    break;
                }
                // The next eligible subnet is tried, as upstream's AllocENI does.
                Err(e) if e.code.is_insufficient_addresses() => {
                    self.rec.subnet_exhausted(&subnet, self.now, &e);
                    exhausted = true;
                }
                Err(e) => return self.note_throttled(n, &e),
            }
        }
        let Some((eni, subnet)) = created else {
            if exhausted {
                self.nodes[n as usize]
                    .policy
                    .record_insufficient_addresses(self.now);
            }
            return;
        };
        if self
            .vpc
            .attach_network_interface(&eni, &inst, device, self.now)
            .is_err()
        {
            // Upstream deletes an ENI whose attach failed; a failed delete is retried later.
            if self.vpc.delete_network_interface(&eni, self.now).is_err() {
                self.nodes[n as usize].cleanup.push(Cleanup::Delete(eni));
            }
            return;
        }
        let _ = self.vpc.set_delete_on_termination(&eni, true, self.now);
        let e = self.vpc.eni(&eni).expect("just attached");
        let spec = EniSpec {
            id: eni.clone(),
            device_number: device,
            route_table_id: device + 1,
            primary_ip: Some(e.primary_ip),
            subnet_id: subnet,
            ..EniSpec::default()
        };
        let c = Completion {
            started: self.now,
            what: Delivery::Eni,
            new_eni: Some(spec),
            eni,
            ips: e.secondary_ips.clone(),
            prefixes: e.prefixes.clone(),
        };
        let l = self.vpc.latency;
        let at = self
            .now
            .plus(Duration::from_millis(l.eni_attach_ms + l.imds_lag_ms));
        self.complete(n, at, c);
    }

    fn complete(&mut self, n: u32, at: Time, c: Completion) {
        self.nodes[n as usize].inflight = Some(c);
        self.push(at, Event::ActionDone(n));
    }

    /// Detach now; delete on the next cycle (upstream waits 2 s between the two, while the ENI
    /// is `detaching`).
    fn free_eni(&mut self, n: u32, eni: String) {
        let next = if self.vpc.detach_network_interface(&eni, self.now).is_err() {
            Cleanup::Detach(eni)
        } else {
            Cleanup::Delete(eni)
        };
        self.nodes[n as usize].cleanup.push(next);
    }

    /// Retry owed cloud work; `true` if there was any.
    fn run_cleanups(&mut self, n: u32) -> bool {
        // A policy backing off from throttling keeps what it owes for later.
        if self.nodes[n as usize]
            .policy
            .backoff_until()
            .is_some_and(|t| self.now < t)
        {
            return false;
        }
        let owed = std::mem::take(&mut self.nodes[n as usize].cleanup);
        let any = !owed.is_empty();
        for c in owed {
            match c {
                Cleanup::Release(eni, cidrs) => {
                    if self.vpc.eni(&eni).is_some() {
                        self.unassign_or_owe(n, eni, cidrs);
                    }
                }
                Cleanup::Detach(eni) => self.free_eni(n, eni),
                Cleanup::Delete(eni) => {
                    if let Err(e) = self.vpc.delete_network_interface(&eni, self.now)
                        && e.code != Ec2ErrorCode::InvalidNetworkInterfaceIdNotFound
                    {
                        self.nodes[n as usize].cleanup.push(Cleanup::Delete(eni));
                    }
                }
            }
        }
        any
    }
}

fn split(count: u32, kind: CidrKind) -> (u32, u32) {
    match kind {
        CidrKind::SecondaryIp => (count, 0),
        CidrKind::Prefix => (0, count),
    }
}
