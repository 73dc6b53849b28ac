//! Custom networking end to end: two `vpc-cni daemon --cloud aws` (one node per zone) against
//! `vpc-cni emulate` with pod subnets in 100.64.0.0/16 and the Kubernetes API, driven with
//! Debian's `kubectl`: AZ-named ENIConfigs (`ENI_CONFIG_LABEL_DEF=topology.kubernetes.io/zone`)
//! put each node's pods in its zone's pod subnet with the ENIConfig's groups and none on the
//! primary ENI (secondary IPs on one node, prefixes on the other); relabelling a node moves its
//! next ENI; deleting the ENIConfig stops growth with an Event and recreating it resumes growth;
//! a per-node annotation changes one node's pool only, and a bad one is refused with an Event.

#[allow(dead_code)]
#[path = "support/awsd.rs"]
mod awsd;
#[allow(dead_code)]
#[path = "support/emu.rs"]
mod emu;
#[allow(dead_code)]
#[path = "support/grpc.rs"]
mod grpc;
#[allow(dead_code)]
#[path = "support/kubectl.rs"]
mod kubectl;

use std::path::Path;
use std::time::{Duration, Instant};

use awsd::{aws_daemon_on, python_json_on, req};
use ipnet::Ipv4Net;
use kubectl::{events, kubectl, until};
use serde_json::Value;
use vpc_cni_proto::rpc::cni_backend_client::CniBackendClient;

type Client = CniBackendClient<tonic::transport::Channel>;

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: eniconfigs.crd.k8s.amazonaws.com\nspec:\n  group: crd.k8s.amazonaws.com\n  scope: Cluster\n  names: {plural: eniconfigs, singular: eniconfig, kind: ENIConfig}\n  versions: [{name: v1alpha1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]\n";

fn eniconfig(name: &str, subnet: &str, groups: &[&str]) -> String {
    format!(
        "---\napiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata:\n  name: {name}\nspec:\n  subnet: {subnet}\n  securityGroups: [{}]\n",
        groups.join(", ")
    )
}

fn apply(kc: &Path, dir: &Path, name: &str, yaml: &str) {
    let f = dir.join(name);
    std::fs::write(&f, yaml).unwrap();
    kubectl(kc, &["apply", "-f", f.to_str().unwrap()]);
}

/// Add pod `i`, retrying for `secs`; its address.
async fn add(c: &mut Client, i: u32, secs: u64) -> Option<std::net::Ipv4Addr> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = c.add_network(req(i)).await.unwrap().into_inner();
        if r.success {
            return Some(r.ip_allocation_metadata[0].i_pv4_addr.parse().unwrap());
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// EC2's view of instance `k`: (subnet, groups, secondary IPs, prefixes) per ENI, by device.
fn ec2_enis(ep: &Value, k: usize) -> Vec<(String, Value, usize, usize)> {
    let v = python_json_on("emulator_state.py", ep, k, &[]);
    let mut all: Vec<(u64, String, Value, usize, usize)> = v["attached"]
        .as_object()
        .unwrap()
        .values()
        .map(|e| {
            (
                e["device"].as_u64().unwrap(),
                e["subnet"].as_str().unwrap().to_string(),
                e["groups"].clone(),
                e["ips"].as_array().unwrap().len(),
                e["prefixes"].as_array().unwrap().len(),
            )
        })
        .collect();
    all.sort_by_key(|x| x.0);
    all.into_iter()
        .map(|(_, s, g, i, p)| (s, g, i, p))
        .collect()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eniconfig_per_zone_relabel_delete_and_per_node_settings() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    // subnet-0emu 10.0.0.0/20 (a, node A), subnet-1emu 10.0.16.0/20 (b, node B), pod subnets
    // subnet-2emu 100.64.0.0/24 (a), subnet-3emu 100.64.1.0/24 (b), subnet-4emu 100.64.2.0/24 (a).
    let (_emu, ep) = emu::emulator(&[
        "--instance-type",
        "m5.xlarge",
        "--instance-type",
        "m5.large",
        "--node-subnet",
        "10.0.16.0/20@b",
        "--pod-subnet",
        "100.64.0.0/24@a",
        "--pod-subnet",
        "100.64.1.0/24@b",
        "--pod-subnet",
        "100.64.2.0/24@a",
        "--security-group",
        "sg-0poda",
        "--security-group",
        "sg-0podb",
        "--kubernetes",
        "--k8s-addr",
        "127.0.0.1:0",
        "--kubeconfig",
        kc.to_str().unwrap(),
    ]);
    let subnets: Vec<String> = ep["subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {} {}",
                s["id"].as_str().unwrap(),
                s["cidr"].as_str().unwrap(),
                s["zone"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        subnets[2], "subnet-2emu 100.64.0.0/24 us-east-1a",
        "{subnets:?}"
    );
    let nodes: Vec<String> = ep["kubernetes"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    apply(&kc, dir.path(), "crd.yaml", CRD);
    let configs = eniconfig("us-east-1a", "subnet-2emu", &["sg-0poda"])
        + &eniconfig("us-east-1b", "subnet-3emu", &["sg-0podb"])
        + &eniconfig("spare-a", "subnet-4emu", &[]);
    apply(&kc, dir.path(), "configs.yaml", &configs);

    let common = |node: &str| {
        vec![
            ("MY_NODE_NAME", node.to_string()),
            ("KUBECONFIG", kc.to_str().unwrap().to_string()),
            ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true".into()),
            ("ENI_CONFIG_LABEL_DEF", "topology.kubernetes.io/zone".into()),
            ("VPC_CNI_STARTUP_TAINT", String::new()),
        ]
    };
    let mut env_a = common(&nodes[0]);
    env_a.push(("WARM_IP_TARGET", "2".into()));
    let mut env_b = common(&nodes[1]);
    env_b.extend([
        ("ENABLE_PREFIX_DELEGATION", "true".into()),
        // (it keeps an ENI slot for the trunk: B uses one ENI besides the primary)
        ("ENABLE_POD_ENI", "true".into()),
        ("WARM_PREFIX_TARGET", "1".into()),
    ]);
    let ea: Vec<(&str, &str)> = env_a.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let eb: Vec<(&str, &str)> = env_b.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = aws_daemon_on(&ep, 0, &dir.path().join("a"), &ea, &[]);
    let b = aws_daemon_on(&ep, 1, &dir.path().join("b"), &eb, &[]);
    let mut ca = grpc::connect(&a.socket()).await;
    let mut cb = grpc::connect(&b.socket()).await;

    // Each node's pods come from its zone's pod subnet; its ENIs carry the zone's group.
    for i in 0..3 {
        let ip = add(&mut ca, i, 20)
            .await
            .unwrap_or_else(|| panic!("node A pod {i}; log: {}", a.log()));
        assert!(net("100.64.0.0/24").contains(&ip), "node A pod {i}: {ip}");
        let ip = add(&mut cb, i, 20)
            .await
            .unwrap_or_else(|| panic!("node B pod {i}; log: {}", b.log()));
        assert!(net("100.64.1.0/24").contains(&ip), "node B pod {i}: {ip}");
    }
    let ea_enis = ec2_enis(&ep, 0);
    assert_eq!(
        (ea_enis[0].2, ea_enis[0].3),
        (0, 0),
        "primary ENI of A holds no pod address: {ea_enis:?}"
    );
    assert_eq!(
        (ea_enis[1].0.as_str(), ea_enis[1].1.clone()),
        ("subnet-2emu", serde_json::json!(["sg-0poda"]))
    );
    let eb_enis = ec2_enis(&ep, 1);
    assert_eq!(
        (eb_enis[0].2, eb_enis[0].3),
        (0, 0),
        "primary ENI of B holds no pod address: {eb_enis:?}"
    );
    assert_eq!(
        (eb_enis[1].0.as_str(), eb_enis[1].1.clone()),
        ("subnet-3emu", serde_json::json!(["sg-0podb"]))
    );
    assert!(
        eb_enis[1].3 >= 1,
        "prefix delegation: B's ENI holds prefixes: {eb_enis:?}"
    );

    // Security groups for pods on B: no CNINode yet (the VPC resource controller makes it), so
    // the features patch is retried every cycle; once it exists, the next write meets a conflict
    // and is made again on the fresh object. (An empty value is left out, as upstream's
    // `omitempty` does.)
    let faults = dir.path().join("faults.json");
    std::fs::write(&faults, r#"{"conflicts":1}"#).unwrap();
    kubectl(
        &kc,
        &[
            "replace",
            "--raw",
            "/_emulator/faults",
            "-f",
            faults.to_str().unwrap(),
        ],
    );
    let cninode = format!(
        "apiVersion: vpcresources.k8s.aws/v1alpha1\nkind: CNINode\nmetadata:\n  name: {}\nspec:\n  features: [{{name: Other, value: x}}]\n",
        nodes[1]
    );
    apply(&kc, dir.path(), "cninode.yaml", &cninode);
    until("the CNINode features", 20, || {
        kubectl::json(&kc, &["get", "cninode", &nodes[1]])["spec"]["features"]
            == serde_json::json!([{"name": "Other", "value": "x"},
                                  {"name": "SecurityGroupsForPods"},
                                  {"name": "CustomNetworking", "value": "us-east-1b"}])
    });
    // A pod the resource controller gave a branch ENI is refused with the reason, not given an
    // address of the node's (which would bypass its security groups).
    let branch = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: branch-pod\n  namespace: default\n  annotations:\n    vpc.amazonaws.com/pod-eni: '[{{\"eniId\":\"eni-0b\",\"vlanId\":1}}]'\nspec:\n  nodeName: {}\n  containers: [{{name: c, image: x}}]\n",
        nodes[1]
    );
    apply(&kc, dir.path(), "branch.yaml", &branch);
    let deadline = Instant::now() + Duration::from_secs(10);
    let refusal = loop {
        let mut r = req(99);
        r.k8s_pod_name = "branch-pod".into();
        match cb.add_network(r).await {
            Err(status) => break status,
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "the branch-ENI pod got an address"
                );
                // Not seen by the Pod watch yet: that address goes back.
                let mut d = vpc_cni_proto::rpc::DelNetworkRequest {
                    k8s_pod_name: "branch-pod".into(),
                    k8s_pod_namespace: "default".into(),
                    container_id: req(99).container_id,
                    if_name: "eth0".into(),
                    network_name: "aws-cni".into(),
                    client_version: req(99).client_version,
                    ..Default::default()
                };
                d.reason = "test".into();
                let _ = cb.del_network(d).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(refusal.code(), tonic::Code::FailedPrecondition);
    assert!(
        refusal
            .message()
            .contains("pod default/branch-pod has a branch ENI"),
        "{refusal:?}"
    );
    let left: Value =
        serde_json::from_str(&kubectl(&kc, &["get", "--raw", "/_emulator/faults"])).unwrap();
    assert_eq!(left["conflicts"], 0, "the conflict was met: {left}");

    // A's capacity (58, kubelet's plain formula for an m5.xlarge) is more than custom
    // networking can address (3 ENIs × 14 + 2 = 44): a Warning says so.
    until("the MaxPodsExceedAddresses Event", 20, || {
        events(&kc, "MaxPodsExceedAddresses").iter().any(|e| {
            let m = e["message"].as_str().unwrap_or("");
            m.contains("is 58") && m.contains("address 44 pods")
        })
    });

    // Relabel A: its next ENI comes from spare-a (the primary ENI's groups: the list is empty);
    // the existing ENI is kept.
    kubectl(
        &kc,
        &[
            "label",
            "node",
            &nodes[0],
            "vpc.amazonaws.com/externalEniConfig=spare-a",
        ],
    );
    let mut next = 3;
    while ec2_enis(&ep, 0).len() < 3 {
        assert!(next < 40, "no third ENI on A; log: {}", a.log());
        assert!(
            add(&mut ca, next, 20).await.is_some(),
            "pod {next} on A; log: {}",
            a.log()
        );
        next += 1;
    }
    let ea_enis = ec2_enis(&ep, 0);
    assert_eq!(ea_enis[1].0, "subnet-2emu", "{ea_enis:?}");
    assert_eq!(
        (ea_enis[2].0.as_str(), ea_enis[2].1.clone()),
        ("subnet-4emu", serde_json::json!(["sg-0sim"]))
    );
    let view: Value = serde_json::from_str(&a.get(a.introspection, "/v1/enis")).unwrap();
    let mut made: Vec<String> = view["0"]["ENIs"]
        .as_object()
        .unwrap()
        .values()
        .map(|e| e["ENIConfig"].as_str().unwrap().to_string())
        .collect();
    made.sort();
    assert_eq!(made, ["", "spare-a", "us-east-1a"], "{view}");

    // Delete spare-a: A fills its ENIs and cannot grow; the Event names the ENIConfig.
    kubectl(&kc, &["delete", "eniconfig", "spare-a"]);
    loop {
        assert!(next < 60, "A never ran out; log: {}", a.log());
        if add(&mut ca, next, 3).await.is_none() {
            break;
        }
        next += 1;
    }
    assert_eq!(ec2_enis(&ep, 0).len(), 3, "no ENI without the ENIConfig");
    until("the ENIConfigInvalid Event", 20, || {
        events(&kc, "ENIConfigInvalid").iter().any(|e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .contains("ENIConfig/spare-a: metadata.name")
        })
    });
    // Recreated: growth resumes and the waiting pod gets an address from spare-a's subnet.
    apply(
        &kc,
        dir.path(),
        "spare.yaml",
        &eniconfig("spare-a", "subnet-4emu", &[]),
    );
    let ip = add(&mut ca, next, 30)
        .await
        .unwrap_or_else(|| panic!("no address after recreating; log: {}", a.log()));
    assert!(
        net("100.64.0.0/24").contains(&ip) || net("100.64.2.0/24").contains(&ip),
        "{ip}"
    );
    assert_eq!(ec2_enis(&ep, 0).len(), 4);

    // A per-node setting on B only; a bad value is refused with an Event, the last one stays.
    let env_of = |d: &grpc::Daemon| -> Value {
        serde_json::from_str(&d.get(d.introspection, "/v1/ipamd-env-settings")).unwrap()
    };
    // (B's capacity, 29 from the plain formula, would cap it at two prefixes: a prefix node
    // runs with kubelet --max-pods 110.)
    kubectl::patch_node_status(&kc, &nodes[1], r#"{"status":{"capacity":{"pods":"110"}}}"#);
    kubectl(
        &kc,
        &[
            "annotate",
            "node",
            &nodes[1],
            "vpc-cni.io/warm-prefix-target=3",
        ],
    );
    until("B's per-node WARM_PREFIX_TARGET", 10, || {
        env_of(&b)["WARM_PREFIX_TARGET"] == "3"
    });
    assert_eq!(
        env_of(&b)["VPC_CNI_NODE_OVERRIDES"],
        "WARM_PREFIX_TARGET=3 (vpc-cni.io/warm-prefix-target)"
    );
    assert_eq!(env_of(&a)["VPC_CNI_NODE_OVERRIDES"], "", "A is left alone");
    until("B holding 3 free prefixes", 20, || {
        ec2_enis(&ep, 1).iter().map(|e| e.3).sum::<usize>() >= 4
    });
    kubectl(
        &kc,
        &[
            "annotate",
            "--overwrite",
            "node",
            &nodes[1],
            "vpc-cni.io/warm-prefix-target=lots",
        ],
    );
    until("the InvalidNodeSetting Event", 20, || {
        events(&kc, "InvalidNodeSetting").iter().any(|e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .contains("vpc-cni.io/warm-prefix-target=\"lots\"")
        })
    });
    assert_eq!(env_of(&b)["WARM_PREFIX_TARGET"], "3");
}
