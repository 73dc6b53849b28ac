//! Reconciliation against the simulated cloud: addresses added or removed behind the daemon's
//! back are picked up; released ones stay out during their cooldown; a stale IMDS listing is
//! corrected by EC2 before anything is removed.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use ipnet::Ipv4Net;
use vpc_cni_cloud::{Cloud, SimCloud};
use vpc_cni_ipam::{IpamKey, PodMetadata, Time};
use vpc_cni_ipamd::reconcile::{note_released, reconcile, with_ec2_truth};
use vpc_cni_ipamd::{DaemonConfig, init, pool};
use vpc_cni_limits::LimitsTable;

type Node = (
    std::path::PathBuf,
    Arc<Mutex<vpc_cni_sim::Vpc>>,
    Arc<vpc_cni_ipamd::state::Shared<SimCloud>>,
);

/// An m5.large daemon on the simulated cloud with WARM_IP_TARGET=`warm`, after its first pool
/// cycle: (scratch dir, the VPC, the daemon state).
async fn node(name: &str, warm: u32) -> Node {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = DaemonConfig::from_lookup(|k| match k {
        "WARM_IP_TARGET" => Some(warm.to_string()),
        "DISABLE_METRICS" | "DISABLE_INTROSPECTION" => Some("true".into()),
        _ => None,
    })
    .unwrap();
    cfg.checkpoint = dir.join("ipam.json");
    let table = LimitsTable::builtin();
    let cloud = SimCloud::launch(
        table.get("m5.large").unwrap(),
        "10.0.0.0/20".parse().unwrap(),
        9,
        0.0,
    )
    .unwrap();
    let vpc = cloud.vpc();
    let shared = init(cfg, cloud, &table).await.unwrap();
    pool::cycle(&shared).await;
    (dir, vpc, shared)
}

#[tokio::test]
async fn picks_up_changes_made_outside_the_daemon() {
    let (dir, vpc, shared) = node("ipamd-reconcile", 2).await;
    let primary = shared.lock().ds.enis()[0].id.clone();
    assert_eq!(shared.lock().ds.stats(Time::ZERO).total_ips, 2);

    // Someone adds three addresses to the ENI: reconcile adopts them.
    let (extra, _) = vpc
        .lock()
        .unwrap()
        .assign_private_ip_addresses(&primary, 3, 0, Time::ZERO)
        .unwrap();
    let ch = reconcile(&shared, &shared.cloud.interfaces().await.unwrap());
    assert_eq!((ch.added, ch.removed), (3, 0));

    // A pod holds one; the address is taken away in EC2: force-removed, assignment dropped,
    // checkpoint rewritten.
    let key = IpamKey::new("aws-cni", "c1", "eth0");
    let ip = shared
        .lock()
        .ds
        .assign(&key, PodMetadata::default(), Time::ZERO)
        .unwrap()
        .ip;
    shared.checkpoint.write(&shared.lock().ds).unwrap();
    let net = Ipv4Net::new(ip, 32).unwrap();
    vpc.lock()
        .unwrap()
        .unassign_private_ip_addresses(&primary, &[net], Time::ZERO)
        .unwrap();
    let ch = reconcile(&shared, &shared.cloud.interfaces().await.unwrap());
    assert_eq!((ch.removed, ch.assignments_dropped), (1, 1));
    assert!(
        std::fs::read_to_string(dir.join("ipam.json"))
            .unwrap()
            .contains("\"allocations\":[]")
    );

    // An address the pool released a moment ago but EC2 still shows is not re-added.
    let still_attached: Ipv4Addr = extra[0];
    let net = Ipv4Net::new(still_attached, 32).unwrap();
    shared.lock().ds.del_cidr(&primary, net, false).unwrap();
    note_released(&shared, &[net], vpc_cni_ipamd::state::now());
    let ch = reconcile(&shared, &shared.cloud.interfaces().await.unwrap());
    assert_eq!(
        ch.added, 0,
        "released address stays out during the reconcile cooldown"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_stale_imds_listing_is_checked_against_ec2_first() {
    let (dir, vpc, shared) = node("ipamd-reconcile-stale", 3).await;
    assert_eq!(shared.lock().ds.stats(Time::ZERO).total_ips, 3);
    // IMDS has not caught up with the last address yet.
    let mut stale = shared.cloud.interfaces().await.unwrap();
    let lagging = stale[0].secondary_ips.pop().unwrap();
    let describes = |v: &std::sync::Mutex<vpc_cni_sim::Vpc>| {
        v.lock()
            .unwrap()
            .stats()
            .calls
            .get("DescribeNetworkInterfaces(filtered)")
            .copied()
            .unwrap_or(0)
    };
    let before = describes(&vpc);
    let checked = with_ec2_truth(&shared, stale.clone()).await;
    assert_eq!(
        describes(&vpc) - before,
        1,
        "one DescribeNetworkInterfaces for the one mismatch"
    );
    assert!(checked[0].secondary_ips.contains(&lagging));
    let ch = reconcile(&shared, &checked);
    assert_eq!(
        (ch.added, ch.removed),
        (0, 0),
        "nothing removed on IMDS's word alone"
    );
    // An ENI IMDS agrees on costs no EC2 call.
    let agreed = shared.cloud.interfaces().await.unwrap();
    let before = describes(&vpc);
    with_ec2_truth(&shared, agreed).await;
    assert_eq!(describes(&vpc), before);
    // Taken without the check, the stale listing would have dropped the address.
    let ch = reconcile(&shared, &stale);
    assert_eq!(ch.removed, 1);
    let _ = std::fs::remove_dir_all(&dir);
}
