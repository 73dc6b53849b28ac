//! The daemon's Kubernetes side against the in-memory fake (no server): max pods follows the
//! Node's capacity (and `--max-pods` pins it), a cordoned Node stops growth, pods waiting for an
//! address produce one Warning on the Node naming the cause, and a malformed capacity keeps the
//! table's value.

use std::sync::Arc;

#[path = "support/fake_node.rs"]
mod fake_node;

use vpc_cni_cloud::SimCloud;
use vpc_cni_ipamd::kube::KubeSettings;
use vpc_cni_ipamd::pool;
use vpc_cni_ipamd::state::Shared;
use vpc_cni_k8s::fake::FakeKube;
use vpc_cni_k8s::{KubeError, NodeView, Regarding};

async fn daemon(dir: &std::path::Path, pinned: bool) -> (Arc<Shared<SimCloud>>, Arc<FakeKube>) {
    daemon_with(dir, pinned, std::time::Duration::from_secs(300)).await
}

async fn daemon_with(
    dir: &std::path::Path,
    pinned: bool,
    grace: std::time::Duration,
) -> (Arc<Shared<SimCloud>>, Arc<FakeKube>) {
    let (s, fake) = fake_node::start(
        dir,
        &[],
        |cfg| {
            cfg.stale_grace = grace;
            if pinned {
                cfg.max_pods = Some(25);
            }
        },
        |_| {},
    )
    .await;
    *s.kube.settings.lock().unwrap() = KubeSettings {
        max_pods_pinned: pinned,
        ..Default::default()
    };
    (s, fake)
}

fn node(max_pods: Option<Result<u32, KubeError>>, cordoned: bool) -> NodeView {
    NodeView {
        name: "n1".into(),
        max_pods,
        cordoned,
        ..Default::default()
    }
}

fn max_pods(s: &Shared<SimCloud>) -> u32 {
    s.lock().policy.limits().max_pods
}

#[tokio::test]
async fn max_pods_follows_the_node_unless_pinned_and_a_bad_value_keeps_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let (s, fake) = daemon(dir.path(), false).await;
    let table = max_pods(&s);
    fake.state.lock().unwrap().node = Some(node(Some(Ok(12)), false));
    pool::cycle(&s).await;
    assert_eq!(max_pods(&s), 12);
    assert_eq!(
        *s.kube.max_pods_source.lock().unwrap(),
        "Node.status.capacity.pods"
    );
    let bad = KubeError::Invalid {
        object: "Node/n1".into(),
        field: "status.capacity.pods".into(),
        message: "\"lots\": expected a positive whole number".into(),
    };
    fake.state.lock().unwrap().node = Some(node(Some(Err(bad)), false));
    vpc_cni_ipamd::kube::start_worker(&s);
    pool::cycle(&s).await;
    assert_eq!(max_pods(&s), 12, "a malformed capacity changes nothing");
    assert!(table > 12);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let w = fake.state.lock().unwrap().warnings.clone();
    assert!(
        w.iter().any(|w| w.reason == "InvalidNodeCapacity"
            && w.note.contains("Node/n1: status.capacity.pods")
            && w.note.contains("keeps max pods 12")),
        "{w:?}"
    );

    let dir2 = tempfile::tempdir().unwrap();
    let (p, fake2) = daemon(dir2.path(), true).await;
    fake2.state.lock().unwrap().node = Some(node(Some(Ok(12)), false));
    pool::cycle(&p).await;
    assert_eq!(max_pods(&p), 25, "--max-pods wins");
}

#[tokio::test]
async fn a_cordoned_node_does_not_grow_and_waiting_pods_get_one_warning_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (s, fake) = daemon(dir.path(), false).await;
    fake.state.lock().unwrap().node = Some(node(None, true));
    // The start-up cycle ran before the fake was installed: drop what it added.
    let before = s.lock().ds.stats(vpc_cni_ipamd::state::now()).total_ips;
    for _ in 0..3 {
        vpc_cni_ipamd::kube::pod_waiting(&s);
        pool::cycle(&s).await;
    }
    let after = s.lock().ds.stats(vpc_cni_ipamd::state::now()).total_ips;
    assert_eq!(after, before, "no growth while cordoned");
    // The Events go through the worker: start it and let it drain.
    vpc_cni_ipamd::kube::start_worker(&s);
    vpc_cni_ipamd::kube::pod_waiting(&s);
    pool::cycle(&s).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let w = fake.state.lock().unwrap().warnings.clone();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].regarding, Regarding::Node);
    assert_eq!(w[0].reason, "PodsWaitingForAddresses");
    assert!(w[0].note.contains("cordoned"), "{}", w[0].note);
    // The same cause again within a minute: no second Event.
    vpc_cni_ipamd::kube::pod_waiting(&s);
    pool::cycle(&s).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(fake.state.lock().unwrap().warnings.len(), 1);
}

/// Without host networking, the Pod watch is the witness: an assignment whose pod has been
/// absent from the API for the grace period is released (its DEL never came); one whose pod
/// exists, or while the watch has not answered, is kept.
#[tokio::test]
async fn an_assignment_whose_pod_is_absent_from_the_api_is_released_after_the_grace() {
    use vpc_cni_ipam::{IpamKey, PodMetadata};
    let dir = tempfile::tempdir().unwrap();
    let (s, fake) = daemon_with(dir.path(), false, std::time::Duration::from_secs(1)).await;
    fake.state.lock().unwrap().node = Some(node(None, false));
    for _ in 0..3 {
        pool::cycle(&s).await;
    }
    let key = |n: &str| IpamKey::new("aws-cni", n, "eth0");
    let meta = |n: &str| PodMetadata {
        namespace: "default".into(),
        name: n.into(),
        ..Default::default()
    };
    let t0 = vpc_cni_ipamd::state::now();
    {
        let mut node = s.lock();
        for n in ["alive", "gone"] {
            node.ds.assign(&key(n), meta(n), t0).unwrap();
        }
    }
    let assigned = |s: &Shared<SimCloud>| {
        let mut v: Vec<String> = s
            .lock()
            .ds
            .assignments()
            .map(|(k, _, _)| k.container_id.clone())
            .collect();
        v.sort();
        v
    };
    // The watch has not answered: nothing is known to be absent.
    vpc_cni_ipamd::gc::sweep_stale(&s, None);
    assert_eq!(assigned(&s), ["alive", "gone"]);
    fake.state.lock().unwrap().pods = Some(
        [("default".to_string(), "alive".to_string())]
            .into_iter()
            .collect(),
    );
    // Absent, but not yet for the grace period (1 s here).
    vpc_cni_ipamd::gc::sweep_stale(&s, None);
    assert_eq!(assigned(&s), ["alive", "gone"]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    vpc_cni_ipamd::gc::sweep_stale(&s, None);
    assert_eq!(assigned(&s), ["alive"]);
}
