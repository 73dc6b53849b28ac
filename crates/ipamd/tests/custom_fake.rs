//! Custom networking and per-node settings against the in-memory Kubernetes fake and the
//! simulated VPC: ENIs go to the ENIConfig's subnet with its groups and the primary ENI gives no
//! pod address; a missing or invalid ENIConfig allocates nothing and is reported naming the
//! field; Node annotations override the warm-pool variables, a bad one is refused with an Event.

use std::sync::Arc;

#[path = "support/fake_node.rs"]
mod fake_node;
use std::time::Duration;

use vpc_cni_cloud::SimCloud;
use vpc_cni_ipamd::pool;
use vpc_cni_ipamd::state::Shared;
use vpc_cni_k8s::fake::FakeKube;
use vpc_cni_k8s::{EniConfig, NodeView};
use vpc_cni_sim::Subnet;

const POD_SUBNET: &str = "subnet-pods-a";
const OTHER_ZONE: &str = "subnet-pods-b";

async fn daemon(
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (Arc<Shared<SimCloud>>, Arc<FakeKube>) {
    let (s, fake) = fake_node::start(
        dir,
        env,
        |_| {},
        |v| {
            v.add_subnet(
                Subnet::new(POD_SUBNET, "100.64.0.0/24".parse().unwrap(), "us-east-1a").unwrap(),
            );
            v.add_subnet(
                Subnet::new(OTHER_ZONE, "100.64.1.0/24".parse().unwrap(), "us-east-1b").unwrap(),
            );
            v.security_groups.insert("sg-0pods".into());
        },
    )
    .await;
    vpc_cni_ipamd::kube::start_worker(&s);
    (s, fake)
}

fn node(label: Option<&str>, annotations: &[(&str, &str)]) -> NodeView {
    let mut n = NodeView {
        name: "n1".into(),
        ..Default::default()
    };
    if let Some(l) = label {
        n.labels
            .insert("k8s.amazonaws.com/eniConfig".into(), l.into());
    }
    for (k, v) in annotations {
        n.annotations.insert(k.to_string(), v.to_string());
    }
    n
}

fn eniconfig(name: &str, subnet: &str, groups: &[&str]) -> EniConfig {
    EniConfig {
        name: name.into(),
        subnet: subnet.into(),
        security_groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

/// (subnet, groups, addresses) of every ENI of the instance, primary first.
fn enis(s: &Shared<SimCloud>) -> Vec<(String, Vec<String>, usize)> {
    let vpc = s.cloud.vpc();
    let v = vpc.lock().unwrap();
    let mut all: Vec<_> = v
        .attached(s.cloud.instance_id())
        .map(|e| {
            let a = e.attachment.as_ref().unwrap().device_index;
            (
                a,
                e.subnet_id.clone(),
                e.security_groups.clone(),
                e.secondary_ips.len(),
            )
        })
        .collect();
    all.sort();
    all.into_iter().map(|(_, s, g, n)| (s, g, n)).collect()
}

async fn cycles(s: &Shared<SimCloud>, n: usize) {
    for _ in 0..n {
        pool::cycle(s).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn enis_follow_the_eniconfig_and_problems_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (s, fake) = daemon(
        dir.path(),
        &[("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true")],
    )
    .await;
    // Max pods without the API server: one ENI fewer (2 × 9 + 2), as max-pods and plan say.
    assert_eq!(s.lock().policy.limits().max_pods, 20);
    // No ENIConfig yet: nothing is allocated and the Event names the missing object.
    fake.state.lock().unwrap().node = Some(node(Some("pods-a"), &[]));
    cycles(&s, 2).await;
    assert_eq!(enis(&s).len(), 1, "no ENI without an ENIConfig");
    let p = s.custom.problem.lock().unwrap().clone().expect("a problem");
    assert_eq!(
        (p.eniconfig.as_str(), p.field.as_str()),
        ("pods-a", "metadata.name")
    );
    let w = fake.state.lock().unwrap().warnings.clone();
    assert!(
        w.iter().any(|w| w.reason == "ENIConfigInvalid"
            && w.note.contains("ENIConfig/pods-a: metadata.name")),
        "{w:?}"
    );

    // A subnet in another zone, then an unknown group: each named.
    let cases = [
        (OTHER_ZONE, vec![], "spec.subnet", "zone us-east-1b"),
        ("subnet-nope", vec![], "spec.subnet", "does not exist"),
        (
            POD_SUBNET,
            vec!["sg-0unknown"],
            "spec.securityGroups",
            "sg-0unknown",
        ),
    ];
    for (subnet, groups, field, words) in cases {
        fake.state
            .lock()
            .unwrap()
            .eniconfigs
            .insert("pods-a".into(), Ok(eniconfig("pods-a", subnet, &groups)));
        cycles(&s, 1).await;
        let p = s.custom.problem.lock().unwrap().clone().expect("a problem");
        assert_eq!(p.field, field, "{p}");
        assert!(p.to_string().contains(words), "{p}");
        assert_eq!(enis(&s).len(), 1, "{p}: no ENI");
    }

    // Fixed: the next ENI is made in the pod subnet with the ENIConfig's group.
    fake.state.lock().unwrap().eniconfigs.insert(
        "pods-a".into(),
        Ok(eniconfig("pods-a", POD_SUBNET, &["sg-0pods"])),
    );
    cycles(&s, 2).await;
    assert!(s.custom.problem.lock().unwrap().is_none());
    let all = enis(&s);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].2, 0, "the primary ENI holds no pod address: {all:?}");
    assert_eq!(
        (all[1].0.as_str(), all[1].1.clone()),
        (POD_SUBNET, vec!["sg-0pods".to_string()])
    );
    assert!(all[1].2 > 0);
    let origins = s.custom.origins.lock().unwrap().clone();
    assert_eq!(
        origins.values().cloned().collect::<Vec<_>>(),
        vec!["pods-a".to_string()]
    );

    // Deleting the ENIConfig stops growth (a per-node warm ENI target of 2 asks for a third
    // ENI); the ENI and its addresses stay.
    {
        let mut st = fake.state.lock().unwrap();
        st.eniconfigs.clear();
        st.node = Some(node(Some("pods-a"), &[("vpc-cni.io/warm-eni-target", "2")]));
    }
    let addresses = all[1].2;
    cycles(&s, 2).await;
    assert_eq!(enis(&s).len(), 2);
    assert_eq!(enis(&s)[1].2, addresses);
    assert_eq!(
        s.custom
            .problem
            .lock()
            .unwrap()
            .as_ref()
            .map(|p| p.field.clone()),
        Some("metadata.name".into())
    );
}

#[tokio::test]
async fn node_annotations_override_the_pool_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (s, fake) = daemon(dir.path(), &[]).await;
    let settings = |s: &Shared<SimCloud>| s.lock().policy.settings().clone();
    fake.state.lock().unwrap().node = Some(node(
        None,
        &[
            ("vpc-cni.io/warm-ip-target", "2"),
            ("vpc-cni.io/max-eni", "1"),
        ],
    ));
    cycles(&s, 1).await;
    assert_eq!(settings(&s).warm_ip_target, 2);
    assert_eq!(s.lock().policy.limits().max_eni, 1);
    // A bad value: refused with an Event naming annotation and value; the previous one stays.
    fake.state.lock().unwrap().node = Some(node(
        None,
        &[
            ("vpc-cni.io/warm-ip-target", "many"),
            ("vpc-cni.io/max-eni", "1"),
        ],
    ));
    cycles(&s, 1).await;
    assert_eq!(settings(&s).warm_ip_target, 2);
    let w = fake.state.lock().unwrap().warnings.clone();
    assert!(
        w.iter().any(|w| w.reason == "InvalidNodeSetting"
            && w.note.contains("vpc-cni.io/warm-ip-target=\"many\"")),
        "{w:?}"
    );
    // Removed: back to the DaemonSet's values.
    fake.state.lock().unwrap().node = Some(node(None, &[]));
    cycles(&s, 1).await;
    assert_eq!(settings(&s).warm_ip_target, 0);
    assert_eq!(s.lock().policy.limits().max_eni, 3);
}
