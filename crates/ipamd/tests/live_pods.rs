//! The daemon never hands out an address a live pod on the host still routes, whatever the cloud
//! and the checkpoint say; upstream's failure paths around the checkpoint and excluded subnets.
//! Runs against the simulated cloud with a fake host routing table.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use tonic::Request;
use vpc_cni_cloud::{Cloud, SimCloud};
use vpc_cni_ipam::{HOST_HELD_NETWORK, IpamKey, Time};
use vpc_cni_ipamd::host::{BoxFut, FakeHost, HostOwners};
use vpc_cni_ipamd::rpc::Service;
use vpc_cni_ipamd::state::Shared;
use vpc_cni_ipamd::{DaemonConfig, init_with_host, pool};
use vpc_cni_limits::LimitsTable;
use vpc_cni_proto::rpc::cni_backend_server::CniBackend;
use vpc_cni_proto::rpc::{AddNetworkRequest, DelNetworkRequest};
use vpc_cni_proto::vpccni::CheckNetworkRequest;
use vpc_cni_proto::vpccni::pod_addresses_server::PodAddresses;

/// A host whose routes the test controls, shared with the daemon.
#[derive(Clone, Default)]
struct Host(Arc<FakeHost>);

impl HostOwners for Host {
    fn live(&self) -> BoxFut<'_, Result<BTreeMap<Ipv4Addr, String>, String>> {
        self.0.live()
    }
    fn owner(&self, ip: Ipv4Addr) -> BoxFut<'_, Result<Option<String>, String>> {
        self.0.owner(ip)
    }
}

impl Host {
    fn route(&self, ip: Ipv4Addr, veth: &str) {
        self.0.0.lock().unwrap().insert(ip, veth.to_string());
    }
    fn unroute(&self, ip: Ipv4Addr) {
        self.0.0.lock().unwrap().remove(&ip);
    }
}

fn cfg(dir: &std::path::Path, env: &[(&str, &str)]) -> DaemonConfig {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([
            ("DISABLE_METRICS".into(), "true".into()),
            ("DISABLE_INTROSPECTION".into(), "true".into()),
        ])
        .collect();
    let mut c = DaemonConfig::from_lookup(|k| env.get(k).cloned()).unwrap();
    c.checkpoint = dir.join("ipam.json");
    c
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn cloud(seed: u64) -> SimCloud {
    let table = LimitsTable::builtin();
    SimCloud::launch(
        table.get("m5.large").unwrap(),
        "10.0.0.0/24".parse().unwrap(),
        seed,
        0.0,
    )
    .unwrap()
}

async fn start(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    cloud: SimCloud,
    host: &Host,
) -> Arc<Shared<SimCloud>> {
    let table = LimitsTable::builtin();
    let s = init_with_host(cfg(dir, env), cloud, &table, Box::new(host.clone()))
        .await
        .unwrap();
    pool::cycle(&s).await;
    s
}

fn add_req(c: &str) -> AddNetworkRequest {
    AddNetworkRequest {
        k8s_pod_name: format!("pod-{c}"),
        k8s_pod_namespace: "default".into(),
        network_name: "aws-cni".into(),
        container_id: c.into(),
        if_name: "eth0".into(),
        client_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

async fn add(svc: &Service<SimCloud>, c: &str) -> Option<Ipv4Addr> {
    let r = svc
        .add_network(Request::new(add_req(c)))
        .await
        .unwrap()
        .into_inner();
    r.success
        .then(|| r.ip_allocation_metadata[0].i_pv4_addr.parse().unwrap())
}

async fn check(svc: &Service<SimCloud>, c: &str) -> Option<String> {
    let r = svc
        .check_network(Request::new(CheckNetworkRequest {
            network_name: "aws-cni".into(),
            container_id: c.into(),
            if_name: "eth0".into(),
            i_pv4_addr: String::new(),
            client_version: env!("CARGO_PKG_VERSION").into(),
        }))
        .await
        .unwrap()
        .into_inner();
    r.assigned.then_some(r.i_pv4_addr)
}

/// The cloud's state is lost across a restart (a new simulated VPC with the same seed hands out
/// the very same addresses again): pods still routed on the host keep theirs, nobody else gets
/// them, and an address routed to a veth with no entry at all is held too.
#[tokio::test]
async fn a_restart_that_lost_the_cloud_never_duplicates_a_live_pods_address() {
    let dir = scratch("ipamd-live-lost");
    let host = Host::default();
    let env = [("WARM_IP_TARGET", "3"), ("MINIMUM_IP_TARGET", "8")];
    let s = start(&dir, &env, cloud(5), &host).await;
    let svc = Service::new(s.clone());
    let mut live = Vec::new();
    for i in 0..6 {
        let ip = add(&svc, &format!("c{i}")).await.expect("an address");
        host.route(ip, &format!("eni{i:011x}"));
        live.push(ip);
    }
    // Pod c5 is gone without a DEL reaching the daemon; its route went with its netns.
    host.unroute(live[5]);
    drop(svc);
    drop(s);

    // Same checkpoint, a brand-new VPC: every checkpoint entry is on no ENI at start.
    let s = start(&dir, &env, cloud(5), &host).await;
    let svc = Service::new(s.clone());
    for (i, ip) in live.iter().enumerate().take(5) {
        assert_eq!(
            check(&svc, &format!("c{i}")).await,
            Some(ip.to_string()),
            "c{i} keeps {ip}"
        );
    }
    assert_eq!(
        check(&svc, "c5").await,
        None,
        "c5 had no live route: dropped"
    );
    let mut handed = Vec::new();
    for i in 0..10 {
        pool::cycle(&s).await;
        if let Some(ip) = add(&svc, &format!("n{i}")).await {
            handed.push(ip);
        }
    }
    assert!(
        handed.len() >= 5,
        "new pods still get addresses: {handed:?}"
    );
    for ip in &handed {
        assert!(!live[..5].contains(ip), "{ip} is a live pod's address");
    }
    let text = s.metrics.render();
    assert!(
        text.contains("awscni_live_pod_address_conflict_count{when=\"restore\"} 5"),
        "{text}"
    );
    // DEL of a kept pod frees it like any other.
    let del = DelNetworkRequest {
        network_name: "aws-cni".into(),
        container_id: "c0".into(),
        if_name: "eth0".into(),
        client_version: env!("CARGO_PKG_VERSION").into(),
        reason: "PodDeleted".into(),
        ..Default::default()
    };
    let r = svc
        .del_network(Request::new(del))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.ip_allocation_metadata[0].i_pv4_addr, live[0].to_string());
    assert_eq!(check(&svc, "c0").await, None);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An address routed to a veth that no assignment names is never handed out, and is let go once
/// the route is gone; the check happens at assignment time too.
#[tokio::test]
async fn routed_addresses_without_an_owner_are_held_until_their_route_goes() {
    let dir = scratch("ipamd-live-unclaimed");
    let host = Host::default();
    // Learn which address the cloud hands out first (same seed = same addresses).
    let probe = start(
        &scratch("ipamd-live-probe"),
        &[("WARM_IP_TARGET", "2")],
        cloud(7),
        &host,
    )
    .await;
    let first = add(&Service::new(probe.clone()), "probe").await.unwrap();
    drop(probe);

    // Routed before the daemon starts: held at start.
    host.route(first, "enideadbeef001");
    let s = start(&dir, &[("WARM_IP_TARGET", "2")], cloud(7), &host).await;
    let svc = Service::new(s.clone());
    let a = add(&svc, "a").await.unwrap();
    assert_ne!(a, first);
    pool::cycle(&s).await;
    // Routed after start, behind the daemon's back: refused at assignment time.
    let next = {
        let node = s.lock();
        node.ds
            .enis()
            .iter()
            .flat_map(|e| e.cidrs.keys())
            .map(|n| n.addr())
            .find(|ip| *ip != a && !node.ds.is_owned(*ip))
            .unwrap()
    };
    host.route(next, "enideadbeef002");
    let b = add(&svc, "b").await.unwrap();
    assert!(b != next && b != first && b != a, "{b}");
    let held: Vec<IpamKey> = s
        .lock()
        .ds
        .assignments()
        .filter(|(k, _, _)| k.network_name == HOST_HELD_NETWORK)
        .map(|(k, _, _)| k.clone())
        .collect();
    assert_eq!(held.len(), 2, "{held:?}");
    // The routes go: the sweep lets both addresses go back to the pool.
    host.unroute(first);
    host.unroute(next);
    vpc_cni_ipamd::owners::sweep(&s).await;
    assert_eq!(s.lock().ds.held_count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint write failure rolls the assignment back without cooldown: the retried ADD gets
/// the same address (upstream).
#[tokio::test]
async fn a_failed_checkpoint_write_rolls_back_without_cooldown() {
    let dir = scratch("ipamd-ckpt-rollback");
    let host = Host::default();
    let s = start(&dir, &[("WARM_IP_TARGET", "3")], cloud(3), &host).await;
    let svc = Service::new(s.clone());
    // The checkpoint's directory turns into a file: the write fails.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, "not a directory").unwrap();
    let err = svc
        .add_network(Request::new(add_req("x")))
        .await
        .unwrap_err();
    assert!(err.message().contains("failed to persist"), "{err:?}");
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let first_free = {
        let node = s.lock();
        node.ds.enis()[0].cidrs.keys().next().unwrap().addr()
    };
    let ip = add(&svc, "x").await.unwrap();
    assert_eq!(
        ip, first_free,
        "the retried ADD gets the address the failed one had"
    );
    assert_eq!(s.lock().ds.stats(Time::from_secs(0)).cooldown_ips, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An ENI whose subnet gets tagged `kubernetes.io/role/cni=0` takes no new pods; its unused
/// addresses go back to EC2 and leave the datastore; pods on it keep theirs.
#[tokio::test]
async fn an_excluded_subnet_drains_its_enis() {
    let dir = scratch("ipamd-excluded");
    let host = Host::default();
    let c = cloud(4);
    let vpc = c.vpc();
    let s = start(&dir, &[("WARM_IP_TARGET", "5")], c, &host).await;
    let svc = Service::new(s.clone());
    let pod = add(&svc, "p").await.unwrap();
    let eni = s.lock().ds.enis()[0].id.clone();
    assert_eq!(
        s.cloud.interfaces().await.unwrap()[0].secondary_ips.len(),
        5
    );
    vpc.lock()
        .unwrap()
        .subnets
        .get_mut("subnet-0sim")
        .unwrap()
        .tags
        .insert("kubernetes.io/role/cni".into(), "0".into());
    vpc_cni_ipamd::reconcile::mark_excluded(&s).await;
    pool::cycle(&s).await;
    assert!(s.lock().ds.eni(&eni).unwrap().excluded);
    let left = s.cloud.interfaces().await.unwrap()[0].secondary_ips.clone();
    assert_eq!(left, vec![pod], "only the pod's address stays at EC2");
    assert_eq!(add(&svc, "q").await, None, "no new pod on an excluded ENI");
    assert_eq!(check(&svc, "p").await, Some(pod.to_string()));
    let _ = std::fs::remove_dir_all(&dir);
}
