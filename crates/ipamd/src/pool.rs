//! The pool loop: every cycle, ask the policy for decisions and carry them out through the
//! cloud backend, outside the pool lock (pods keep being served meanwhile).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ipnet::Ipv4Net;
use vpc_cni_cloud::{Cloud, CloudError, ErrorKind, Interface};
use vpc_cni_ipam::policy::PoolPolicy;
use vpc_cni_ipam::{Action, AssignFailure, CidrKind, Delivery, NodeState, PolicyKind};

use crate::calls::timed;
use crate::state::{Shared, now};

/// Least time between two pool cycles run because an ADD found no address.
const REFILL_GAP: std::time::Duration = std::time::Duration::from_secs(1);

/// Run forever (until the task is dropped): a pool cycle every period, and a reconciliation
/// with IMDS every `cfg.reconcile` (upstream: after 60 s without pool actions).
pub async fn run<C: Cloud>(shared: Arc<Shared<C>>) {
    let mut tick = tokio::time::interval(shared.cfg.cycle);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reconcile = tokio::time::Instant::now();
    let mut last_sg_refresh = tokio::time::Instant::now();
    let mut last_cycle = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.refill.notified() => {
                // At most one refill cycle a second: every waiting pod's retry is a miss.
                tokio::time::sleep_until(last_cycle + REFILL_GAP).await;
            }
        }
        last_cycle = tokio::time::Instant::now();
        cycle(&shared).await;
        // Custom networking takes its groups from the ENIConfig: nothing to follow (spec c.9).
        if !shared.cfg.settings.custom_networking
            && last_sg_refresh.elapsed() >= shared.cfg.sg_refresh
        {
            last_sg_refresh = tokio::time::Instant::now();
            refresh_security_groups(&shared).await;
        }
        if last_reconcile.elapsed() >= shared.cfg.reconcile {
            last_reconcile = tokio::time::Instant::now();
            if shared.cfg.host_network {
                crate::owners::sweep(&shared).await;
            } else {
                crate::gc::sweep_stale(&shared, None);
            }
            if !shared.cfg.ipv6 {
                crate::reconcile::mark_excluded(&shared).await;
            }
            match timed(&shared, "GetMetadata", shared.cloud.interfaces()).await {
                Ok(list) if !list.is_empty() && shared.cfg.ipv6 => {
                    crate::v6::reconcile(&shared, &list).await;
                }
                Ok(list) if !list.is_empty() => {
                    let managed = crate::reconcile::managed(&shared, &list).await;
                    let checked = crate::reconcile::with_ec2_truth(&shared, managed).await;
                    crate::reconcile::reconcile(&shared, &checked);
                }
                Ok(_) => tracing::warn!("IMDS lists no interfaces; reconcile skipped"),
                Err(e) => tracing::warn!(error = %e, "IMDS read failed; reconcile skipped"),
            }
        }
    }
}

/// Give the managed ENIs the primary ENI's security groups when those changed.
async fn refresh_security_groups<C: Cloud>(s: &Shared<C>) {
    let enis: Vec<String> = s.lock().ds.enis().iter().map(|e| e.id.clone()).collect();
    match s.cloud.refresh_security_groups(&enis).await {
        Ok(Some(groups)) => tracing::info!(?groups, enis = enis.len(), "security groups refreshed"),
        Ok(None) => {}
        Err(e) => record_error(s, "ModifyNetworkInterfaceAttribute", "refreshSGIDs", &e),
    }
}

/// One pool cycle.
pub async fn cycle<C: Cloud>(s: &Shared<C>) {
    // IPv6 mode manages no pool: the /80 holds every pod the node can run.
    if s.cfg.ipv6 {
        let node = s.lock();
        s.update_gauges(&node);
        return;
    }
    let (decisions, cordoned) = {
        let mut node = s.lock();
        let node = &mut *node;
        let cordoned = crate::kube::before_cycle(s, node);
        let node_state = NodeState {
            terminating: s.terminating.load(Ordering::SeqCst),
            unschedulable: cordoned,
        };
        (node.policy.cycle(&mut node.ds, node_state, now()), cordoned)
    };
    for d in decisions {
        tracing::info!(reason = %d.reason, action = ?d.action, "pool decision");
        execute(s, d.action).await;
    }
    let node = s.lock();
    s.update_gauges(&node);
    crate::kube::after_cycle(s, &node, cordoned);
}

fn split(count: u32, kind: CidrKind) -> (u32, u32) {
    match kind {
        CidrKind::SecondaryIp => (count, 0),
        CidrKind::Prefix => (0, count),
    }
}

/// Tell the policy EC2 throttled a growth call (the adaptive policy backs off).
fn note_throttled<C: Cloud>(s: &Shared<C>, e: &CloudError) {
    if e.kind() == ErrorKind::Throttled {
        s.lock().policy.record_throttled(now());
    }
}

fn record_error<C: Cloud>(s: &Shared<C>, api: &'static str, f: &'static str, e: &CloudError) {
    crate::kube::ec2_failed(s, api, e);
    s.metrics.inc("awscni_ec2api_error_count", &[("fn", api)]);
    s.metrics.inc(
        "awscni_aws_api_error_count",
        &[("api", api), ("error", e.code.as_str())],
    );
    s.metrics.inc("awscni_ipamd_error_count", &[("fn", f)]);
    if e.is_insufficient_addresses() {
        tracing::error!(error = %e, "Unable to attach IPs/Prefixes for the ENI, subnet doesn't seem to have enough IPs/Prefixes. Consider using new subnet or carve a reserved range using create-subnet-cidr-reservation");
    } else {
        tracing::warn!(error = %e, api, "EC2 call failed");
    }
}

/// `PrivateIpAddressLimitExceeded` on an ENI the datastore thinks has room: it is out of sync,
/// so import what EC2 holds (upstream does the same).
async fn import_from_ec2<C: Cloud>(s: &Shared<C>, eni: &str) {
    match timed(s, "DescribeNetworkInterfaces", s.cloud.eni_addresses(eni)).await {
        Ok((ips, prefixes)) => {
            tracing::info!(
                eni,
                ips = ips.len(),
                prefixes = prefixes.len(),
                "ENI full at EC2: imported its addresses"
            );
            add_addresses(s, eni, &ips, &prefixes);
        }
        Err(e) => tracing::warn!(eni, code = %e.code, "ENI full at EC2 and not describable"),
    }
}

fn add_addresses<C: Cloud>(s: &Shared<C>, eni: &str, ips: &[Ipv4Addr], prefixes: &[Ipv4Net]) {
    let mut node = s.lock();
    for ip in ips {
        let _ = node
            .ds
            .add_cidr(eni, Ipv4Net::new(*ip, 32).expect("/32"), false);
    }
    for p in prefixes {
        let _ = node.ds.add_cidr(eni, *p, true);
    }
}

fn add_interface<C: Cloud>(s: &Shared<C>, i: &Interface) {
    crate::calls::add_eni(s, &mut s.lock(), i, now());
    add_addresses(s, &i.id, &i.secondary_ips, &i.prefixes);
}

fn execute<C: Cloud>(
    s: &Shared<C>,
    action: Action,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
    Box::pin(async move {
        match action {
            Action::AssignToEni { eni, count, kind } => {
                assign_to_eni(s, eni, count, kind, Vec::new()).await
            }
            Action::AllocateEni { count, kind } => {
                let (ips, pfx) = split(count, kind);
                let Ok(placement) = crate::custom::placement(s).await else {
                    return;
                };
                s.metrics.inc(
                    "awscni_ec2api_req_count",
                    &[("fn", "CreateNetworkInterface")],
                );
                let made = s
                    .cloud
                    .allocate_eni(ips, pfx, placement.as_ref().map(|(_, p)| p));
                let started = std::time::Instant::now();
                match timed(s, "CreateNetworkInterface", made).await {
                    Ok(i) => {
                        s.lock()
                            .policy
                            .record_delivery(Delivery::Eni, started.elapsed());
                        if let Some((name, _)) = &placement {
                            crate::custom::created(s, &i.id, name);
                        }
                        // The link is ready before any pod can get one of its addresses.
                        crate::hostnet::on_new_eni(s, &i).await;
                        add_interface(s, &i)
                    }
                    Err(e) => {
                        note_throttled(s, &e);
                        record_error(s, "CreateNetworkInterface", "increaseIPPoolAllocENI", &e);
                        if e.is_insufficient_addresses() {
                            s.lock().policy.record_insufficient_addresses(now());
                        }
                    }
                }
            }
            Action::Release { eni, cidrs } => {
                s.metrics.inc(
                    "awscni_ec2api_req_count",
                    &[("fn", "UnassignPrivateIpAddresses")],
                );
                crate::reconcile::note_released(s, &cidrs, now());
                if let Err(e) = timed(
                    s,
                    "UnassignPrivateIpAddresses",
                    s.cloud.unassign(&eni, &cidrs),
                )
                .await
                {
                    record_error(s, "UnassignPrivateIpAddresses", "decreaseIPPool", &e);
                }
            }
            Action::FreeEni { eni } => {
                s.metrics.inc(
                    "awscni_ec2api_req_count",
                    &[("fn", "DeleteNetworkInterface")],
                );
                let gone = if s.cfg.host_network {
                    s.cloud
                        .interfaces()
                        .await
                        .ok()
                        .and_then(|all| all.into_iter().find(|i| i.id == eni))
                } else {
                    None
                };
                let freed = timed(s, "DeleteNetworkInterface", s.cloud.free_eni(&eni)).await;
                if let (Ok(()), Some(i)) = (&freed, &gone) {
                    crate::hostnet::on_eni_freed(s, i).await;
                }
                if let Err(e) = freed {
                    record_error(
                        s,
                        "DeleteNetworkInterface",
                        "decreaseIPPoolFreeENIFailed",
                        &e,
                    );
                }
            }
        }
    })
}

/// `AssignPrivateIpAddresses` as upstream's `tryAssignIPs`/`tryAssignPrefixes`: on an error other
/// than `PrivateIpAddressLimitExceeded` ask again for one; `PrivateIpAddressLimitExceeded` imports
/// EC2's view of the ENI; a failure the policy turns into the next step (`tried` grows).
fn assign_to_eni<C: Cloud>(
    s: &Shared<C>,
    eni: String,
    count: u32,
    kind: CidrKind,
    mut tried: Vec<String>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
    Box::pin(async move {
        let api = "AssignPrivateIpAddresses";
        let call = |n: u32| {
            let (ips, pfx) = split(n, kind);
            s.metrics.inc("awscni_ec2api_req_count", &[("fn", api)]);
            timed(s, api, s.cloud.assign(&eni, ips, pfx))
        };
        let started = std::time::Instant::now();
        let mut r = call(count).await;
        // Upstream asks again for one after any other error; the adaptive policy does not
        // after throttling (a second call into an empty bucket only deepens it).
        let adaptive = s.lock().policy.kind() == PolicyKind::Adaptive;
        if let Err(e) = &r
            && e.kind() != ErrorKind::PrivateIpAddressLimitExceeded
            && !(adaptive && e.kind() == ErrorKind::Throttled)
        {
            tracing::warn!(eni = %eni, error = %e, "failed to allocate all available addresses on the ENI; asking for one");
            r = call(1).await;
        }
        let e = match r {
            Ok((ips, prefixes)) => {
                s.lock()
                    .policy
                    .record_delivery(Delivery::Assign, started.elapsed());
                return add_addresses(s, &eni, &ips, &prefixes);
            }
            Err(e) => e,
        };
        note_throttled(s, &e);
        record_error(s, api, "increaseIPPoolAssign", &e);
        if e.kind() == ErrorKind::PrivateIpAddressLimitExceeded {
            return import_from_ec2(s, &eni).await;
        }
        let failure = if e.is_insufficient_addresses() {
            AssignFailure::Insufficient
        } else {
            AssignFailure::Other
        };
        tried.push(eni.clone());
        let next = {
            let mut node = s.lock();
            let node = &mut *node;
            node.policy
                .after_assign_failure(&node.ds, &tried, failure, now())
        };
        let Some(d) = next else { return };
        tracing::info!(reason = %d.reason, action = ?d.action, "pool decision");
        match d.action {
            Action::AssignToEni { eni, count, kind } => {
                assign_to_eni(s, eni, count, kind, tried).await
            }
            other => execute(s, other).await,
        }
    })
}

/// Load the attached interfaces into an empty datastore (start-up).
pub fn load_interfaces<C: Cloud>(s: &Shared<C>, interfaces: &[Interface]) {
    for i in interfaces {
        add_interface(s, i);
    }
}
