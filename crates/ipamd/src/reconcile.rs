//! Reconciliation with IMDS (spec c.8): attached addresses missing from the datastore are added
//! (except those the pool itself released within the last 60 s), datastore CIDRs and ENIs that
//! are no longer attached are force-removed (where IMDS and the datastore disagree, EC2's
//! `DescribeNetworkInterfaces` decides), unknown attached ENIs are adopted once EC2's tags
//! say they are managed (spec c.7; they get this node's tags on the way).

use std::collections::BTreeSet;
use std::time::Duration;

use ipnet::Ipv4Net;
use vpc_cni_cloud::{Cloud, CloudError, Interface};
use vpc_cni_ipam::Time;

use crate::state::{Shared, now};

/// How long a CIDR the pool released is kept out of reconciliation.
pub const RECONCILE_COOLDOWN: Duration = Duration::from_secs(60);

/// What one reconciliation changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// CIDRs added.
    pub added: usize,
    /// CIDRs force-removed.
    pub removed: usize,
    /// ENIs adopted.
    pub enis_added: usize,
    /// ENIs force-removed.
    pub enis_removed: usize,
    /// Assignments dropped with them.
    pub assignments_dropped: usize,
}

/// Read EC2's tags of the attached ENIs (tagging managed ones that lack this node's tags),
/// record the unmanaged ones and their count in the pool limits, and return the managed ones.
pub async fn classify<C: Cloud>(
    s: &Shared<C>,
    attached: &[Interface],
) -> Result<Vec<Interface>, CloudError> {
    let classes = crate::calls::timed(
        s,
        "DescribeNetworkInterfaces",
        s.cloud.manage_enis(attached),
    )
    .await?;
    for id in &classes.tagged {
        s.metrics
            .inc("awscni_ec2api_req_count", &[("fn", "CreateTags")]);
        tracing::info!(eni = %id, "managed ENI given this node's tags");
    }
    let unmanaged: BTreeSet<String> = classes.unmanaged.into_iter().collect();
    if !unmanaged.is_empty() {
        tracing::info!(enis = ?unmanaged, "attached ENIs left unmanaged (tags)");
    }
    set_unmanaged_count(s, unmanaged.len());
    if !classes.trunks.is_empty() {
        tracing::info!(enis = ?classes.trunks, "trunk ENI attached (security groups for pods): no address of ipamd's goes on it");
    }
    s.trunks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(classes.trunks);
    let managed = attached
        .iter()
        .filter(|i| !unmanaged.contains(&i.id))
        .cloned()
        .collect();
    *s.unmanaged.lock().unwrap_or_else(|p| p.into_inner()) = unmanaged;
    Ok(managed)
}

/// The managed part of an IMDS listing; ENIs neither in the datastore nor known unmanaged are
/// classified first (on failure they wait for the next reconcile).
pub async fn managed<C: Cloud>(s: &Shared<C>, attached: &[Interface]) -> Vec<Interface> {
    let unknown = {
        let node = s.lock();
        let unmanaged = s.unmanaged.lock().unwrap_or_else(|p| p.into_inner());
        attached
            .iter()
            .any(|i| node.ds.eni(&i.id).is_none() && !unmanaged.contains(&i.id))
    };
    if unknown {
        match classify(s, attached).await {
            Ok(m) => return m,
            Err(e) => {
                tracing::warn!(code = %e.code, error = %e.message, "reading ENI tags failed; unknown ENIs wait");
                let node = s.lock();
                return attached
                    .iter()
                    .filter(|i| node.ds.eni(&i.id).is_some())
                    .cloned()
                    .collect();
            }
        }
    }
    let (managed, count, shrunk) = {
        let mut unmanaged = s.unmanaged.lock().unwrap_or_else(|p| p.into_inner());
        // An unmanaged ENI that was detached no longer takes an ENI slot.
        let before = unmanaged.len();
        unmanaged.retain(|id| attached.iter().any(|i| i.id == *id));
        let managed: Vec<Interface> = attached
            .iter()
            .filter(|i| !unmanaged.contains(&i.id))
            .cloned()
            .collect();
        (managed, unmanaged.len(), unmanaged.len() != before)
    };
    if shrunk {
        set_unmanaged_count(s, count);
    }
    managed
}

/// Record how many attached ENIs are unmanaged in the pool limits (and `awscni_eni_max`).
fn set_unmanaged_count<C: Cloud>(s: &Shared<C>, count: usize) {
    let mut node = s.lock();
    let mut limits = *node.policy.limits();
    limits.unmanaged_enis = count as u32;
    node.policy.set_limits(limits);
    s.update_gauges(&node);
}

/// The CIDRs an interface shows: a /32 per secondary IP, and its prefixes.
fn shown(i: &Interface) -> BTreeSet<Ipv4Net> {
    i.secondary_ips
        .iter()
        .map(|ip| Ipv4Net::new(*ip, 32).expect("/32"))
        .chain(i.prefixes.iter().copied())
        .collect()
}

/// Where IMDS and the datastore disagree about a known ENI, take EC2's word instead
/// (`DescribeNetworkInterfaces`; IMDS lags): on failure the ENI is left as the datastore has it.
pub async fn with_ec2_truth<C: Cloud>(s: &Shared<C>, attached: Vec<Interface>) -> Vec<Interface> {
    let mut out = Vec::with_capacity(attached.len());
    for mut i in attached {
        let held: Option<BTreeSet<Ipv4Net>> = s
            .lock()
            .ds
            .eni(&i.id)
            .map(|e| e.cidrs.keys().copied().collect());
        let Some(held) = held.filter(|h| *h != shown(&i)) else {
            out.push(i);
            continue;
        };
        match crate::calls::timed(s, "DescribeNetworkInterfaces", s.cloud.eni_addresses(&i.id))
            .await
        {
            Ok((ips, prefixes)) => {
                i.secondary_ips = ips;
                i.prefixes = prefixes;
            }
            Err(e) => {
                tracing::warn!(eni = %i.id, code = %e.code, "EC2 truth unavailable; ENI left as the datastore has it");
                i.secondary_ips = held
                    .iter()
                    .filter(|c| c.prefix_len() == 32)
                    .map(Ipv4Net::addr)
                    .collect();
                i.prefixes = held
                    .iter()
                    .filter(|c| c.prefix_len() != 32)
                    .copied()
                    .collect();
            }
        }
        out.push(i);
    }
    out
}

/// Remember CIDRs the pool released, so reconciliation does not re-add them while EC2 catches up.
pub fn note_released<C: Cloud>(s: &Shared<C>, cidrs: &[Ipv4Net], at: Time) {
    let mut r = s.released.lock().unwrap_or_else(|p| p.into_inner());
    r.retain(|(_, t)| at.since(*t) <= RECONCILE_COOLDOWN);
    r.extend(cidrs.iter().map(|c| (*c, at)));
}

/// Compare the datastore with the attached interfaces and fix it.
pub fn reconcile<C: Cloud>(s: &Shared<C>, attached: &[Interface]) -> Changes {
    let t = now();
    let cooling: BTreeSet<Ipv4Net> = s
        .released
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(_, at)| t.since(*at) <= RECONCILE_COOLDOWN)
        .map(|(c, _)| *c)
        .collect();
    let mut ch = Changes::default();
    let mut node = s.lock();
    let ids: BTreeSet<&str> = attached.iter().map(|i| i.id.as_str()).collect();
    let gone: Vec<String> = node
        .ds
        .enis()
        .iter()
        .filter(|e| !ids.contains(e.id.as_str()))
        .map(|e| e.id.clone())
        .collect();
    for id in gone {
        if let Ok((_, dropped)) = node.ds.remove_eni(&id, true) {
            ch.enis_removed += 1;
            ch.assignments_dropped += dropped.len();
            s.metrics
                .inc("awscni_reconcile_count", &[("fn", "eniReconcileDel")]);
            if !dropped.is_empty() {
                s.metrics.inc("awscni_force_removed_enis", &[]);
            }
        }
    }
    for i in attached {
        let want = shown(i);
        if node.ds.eni(&i.id).is_none() {
            crate::calls::add_eni(s, &mut node, i, t);
            ch.enis_added += 1;
            s.metrics
                .inc("awscni_reconcile_count", &[("fn", "eniReconcileAdd")]);
        }
        let have: BTreeSet<Ipv4Net> = node
            .ds
            .eni(&i.id)
            .map(|e| e.cidrs.keys().copied().collect())
            .unwrap_or_default();
        for stale in have.difference(&want) {
            if let Ok(dropped) = node.ds.del_cidr(&i.id, *stale, true) {
                ch.removed += 1;
                ch.assignments_dropped += dropped.len();
                for _ in &dropped {
                    s.metrics.inc("awscni_force_removed_ips", &[]);
                }
                s.metrics
                    .inc("awscni_reconcile_count", &[("fn", "eniIPPoolReconcileDel")]);
            }
        }
        for new in want.difference(&have).filter(|c| !cooling.contains(c)) {
            if node
                .ds
                .add_cidr(&i.id, *new, new.prefix_len() != 32)
                .is_ok()
            {
                ch.added += 1;
                s.metrics.inc(
                    "awscni_reconcile_count",
                    &[("fn", "eniDataStorePoolReconcileAdd")],
                );
            }
        }
    }
    if ch.assignments_dropped > 0
        && let Err(e) = s.checkpoint.write(&node.ds)
    {
        tracing::error!(error = %e, "checkpoint write after reconcile failed");
    }
    if ch != Changes::default() {
        tracing::info!(?ch, "reconciled with IMDS");
    }
    s.update_gauges(&node);
    ch
}

/// Mark the ENIs whose subnet the cloud says is excluded from pod addresses (spec c.7); the
/// policy then drains their unused CIDRs. A failed lookup leaves the marks as they were.
pub async fn mark_excluded<C: Cloud>(s: &Shared<C>) {
    let subnets: Vec<String> = {
        let node = s.lock();
        let mut v: Vec<String> = node.ds.enis().iter().map(|e| e.subnet_id.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let excluded = match crate::calls::timed(
        s,
        "DescribeSubnets",
        s.cloud.excluded_subnets(&subnets),
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read subnet exclusion tags; ENI exclusion unchanged");
            return;
        }
    };
    let mut node = s.lock();
    let enis: Vec<(String, String)> = node
        .ds
        .enis()
        .iter()
        .map(|e| (e.id.clone(), e.subnet_id.clone()))
        .collect();
    for (eni, subnet) in enis {
        let out = excluded.contains(&subnet);
        if node.ds.set_excluded(&eni, out).unwrap_or(false) {
            if out {
                tracing::warn!(eni = %eni, subnet = %subnet, "ENI's subnet is excluded (kubernetes.io/role/cni=0): no new pods on it; its unused addresses go back to EC2");
            } else {
                tracing::info!(eni = %eni, subnet = %subnet, "ENI's subnet is no longer excluded");
            }
        }
    }
}
