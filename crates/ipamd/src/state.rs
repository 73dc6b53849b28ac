//! The daemon's shared state: the datastore and policy behind one lock, the checkpoint file,
//! metrics, configuration and the instance facts.

use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use vpc_cni_cloud::{Cloud, InstanceMeta};
use vpc_cni_ipam::{Datastore, Policy, Time};

use crate::checkpoint::CheckpointFile;
use crate::config::DaemonConfig;
use crate::metrics::Metrics;

/// Unix time in milliseconds: the daemon's clock for the brain.
pub fn now() -> Time {
    Time(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// The pool: datastore and policy, changed together.
pub struct Node {
    /// The datastore of card 0.
    pub ds: Datastore,
    /// The warm-pool policy.
    pub policy: Policy,
}

/// Everything the gRPC handlers, the pool loop and the HTTP endpoints share.
pub struct Shared<C: Cloud> {
    /// The pool.
    pub node: Mutex<Node>,
    /// Checkpoint file.
    pub checkpoint: CheckpointFile,
    /// Metrics.
    pub metrics: Metrics,
    /// Configuration.
    pub cfg: DaemonConfig,
    /// Instance facts from IMDS.
    pub meta: InstanceMeta,
    /// The cloud backend.
    pub cloud: C,
    /// Set on SIGTERM: no growth, no new pods.
    pub terminating: AtomicBool,
    /// CIDRs the pool released recently (kept out of reconciliation for 60 s).
    pub released: Mutex<Vec<(ipnet::Ipv4Net, Time)>>,
    /// Attached ENIs ipamd leaves alone (spec c.7), as EC2's tags said when last read.
    pub unmanaged: Mutex<std::collections::BTreeSet<String>>,
    /// The host's pod routes (who really uses an address).
    pub host: Box<dyn crate::host::HostOwners>,
    /// Assignments seen without a host route, since when (the stale sweep's clock).
    pub unrouted: Mutex<std::collections::HashMap<vpc_cni_ipam::IpamKey, Time>>,
    /// The Kubernetes side (no client until connected, or never on a laptop).
    pub kube: crate::kube::KubeSide,
    /// Trunk ENIs (security groups for pods), as EC2 said when the ENIs were classified.
    pub trunks: Mutex<std::collections::BTreeSet<String>>,
    /// Custom networking (the ENIConfig checks and which ENIConfig made which ENI).
    pub custom: crate::custom::CustomSide,
    /// Woken when an ADD found no address and the policy refills on a miss (`adaptive`): the
    /// pool loop runs a cycle then instead of at the next period.
    pub refill: tokio::sync::Notify,
}

impl<C: Cloud> Shared<C> {
    /// Lock the pool (a poisoned lock is recovered: the datastore's invariants hold per call).
    pub fn lock(&self) -> MutexGuard<'_, Node> {
        self.node.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refresh the pool gauges.
    pub fn update_gauges(&self, node: &Node) {
        let st = node.ds.stats(now());
        let m = &self.metrics;
        // IPv6 mode counts the /80 as upstream does: every address of it (2^48), and its pods.
        let (v6_total, v6_assigned) = node.ds.v6().map_or((0.0, 0.0), |p| {
            let bits = 128 - i32::from(p.prefix().prefix_len());
            (2f64.powi(bits), p.assigned() as f64)
        });
        m.set("awscni_eni_allocated", &[], node.ds.enis().len() as f64);
        m.set("awscni_held_ip_addresses", &[], node.ds.held_count() as f64);
        m.set(
            "awscni_total_ip_addresses",
            &[],
            f64::from(st.total_ips) + v6_total,
        );
        m.set(
            "awscni_assigned_ip_addresses",
            &[],
            f64::from(st.assigned_ips) + v6_assigned,
        );
        m.set(
            "awscni_total_ipv4_prefixes",
            &[],
            f64::from(st.total_prefixes),
        );
        let l = node.policy.limits();
        m.set(
            "awscni_eni_max",
            &[],
            f64::from(l.max_eni - l.unmanaged_enis),
        );
        m.set(
            "awscni_ip_max",
            &[],
            f64::from(l.max_ips_per_eni * (l.max_eni - l.unmanaged_enis)),
        );
    }
}
