//! The daemon on a cluster, end to end: `vpc-cni daemon --cloud aws` against `vpc-cni emulate
//! --kubernetes` (EC2, IMDS and the Kubernetes API together), driven and checked with Debian's
//! `kubectl`: max pods from the Node's capacity, cordon, the pod-ips annotation, the startup
//! taint, the MissingIAMPermissions Event, starting before the API server, and a bad token.

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
use std::process::Command;
use std::time::{Duration, Instant};

use awsd::{aws_daemon, req};
use emu::emulator;
use kubectl::{events, json, kubectl, until};
use serde_json::Value;
use vpc_cni_proto::rpc::DelNetworkRequest;

fn metric(d: &grpc::Daemon, name: &str) -> f64 {
    d.get(d.metrics, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

fn k8s_emulator(dir: &Path, extra: &[&str]) -> (emu::Kill, Value, std::path::PathBuf, String) {
    let kc = dir.join("kubeconfig");
    let mut args = vec!["--instance-type", "m5.large", "--kubernetes"];
    args.extend([
        "--k8s-addr",
        "127.0.0.1:0",
        "--kubeconfig",
        kc.to_str().unwrap(),
    ]);
    args.extend_from_slice(extra);
    let (emu, ep) = emulator(&args);
    let node = ep["kubernetes"]["nodes"][0].as_str().unwrap().to_string();
    (emu, ep, kc, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pods_cordon_annotation_and_startup_taint() {
    let dir = tempfile::tempdir().unwrap();
    let (_emu, ep, kc, node) = k8s_emulator(dir.path(), &[]);
    let kcs = kc.to_str().unwrap();
    let status = r#"{"status":{"capacity":{"pods":"20"}}}"#;
    kubectl::patch_node_status(&kc, &node, status);
    let taint = "node.vpc-cni.io/agent-not-ready";
    kubectl(
        &kc,
        &["taint", "nodes", &node, &format!("{taint}=true:NoSchedule")],
    );
    let pods: String = (0..3)
        .map(|i| format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i}\n  namespace: default\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: x}}]\n---\n"))
        .collect();
    std::fs::write(dir.path().join("pods.yaml"), pods).unwrap();
    kubectl(
        &kc,
        &[
            "apply",
            "-f",
            dir.path().join("pods.yaml").to_str().unwrap(),
        ],
    );
    kubectl(&kc, &["cordon", &node]);

    let netd = dir.path().join("net.d");
    let env = [
        ("MY_NODE_NAME", node.as_str()),
        ("MY_POD_NAME", "aws-node-0"),
        ("ANNOTATE_POD_IP", "true"),
        ("HOST_CNI_CONFDIR_PATH", netd.to_str().unwrap()),
        ("KUBECONFIG", kcs),
    ];
    let d = aws_daemon(&ep, &dir.path().join("d"), &env, &[]);
    let mut c = grpc::connect(&d.socket()).await;

    // Cordoned: no ENI, no address; the Node gets a Warning naming the cause.
    for _ in 0..10 {
        let r = c.add_network(req(0)).await.unwrap().into_inner();
        assert!(!r.success, "no address while cordoned");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(metric(&d, "awscni_total_ip_addresses"), 0.0);
    until("the PodsWaitingForAddresses Event", 15, || {
        events(&kc, "PodsWaitingForAddresses")
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains("cordoned"))
    });

    // Uncordoned: pods get addresses, pod-0's annotation follows its address.
    kubectl(&kc, &["uncordon", &node]);
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while first.is_none() {
        assert!(
            Instant::now() < deadline,
            "no address after uncordon; log: {}",
            d.log()
        );
        let mut r0 = req(0);
        r0.k8s_pod_name = "pod-0".into();
        let r = c.add_network(r0).await.unwrap().into_inner();
        if r.success {
            first = Some(r.ip_allocation_metadata[0].i_pv4_addr.clone());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ip = first.unwrap();
    let annotation = |kc: &Path| {
        json(kc, &["get", "pod", "pod-0"])["metadata"]["annotations"]["vpc.amazonaws.com/pod-ips"]
            .as_str()
            .map(String::from)
    };
    until("the pod-ips annotation", 10, || {
        annotation(&kc).as_deref() == Some(ip.as_str())
    });

    // Max pods 20: the pool stops at 20 addresses however many pods ask.
    let mut got = 1;
    for i in 1..40u32 {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if c.add_network(req(i)).await.unwrap().into_inner().success {
                got += 1;
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if got == 20 && i > 20 {
            break;
        }
    }
    assert_eq!(got, 20, "20 pods, as Node.status.capacity.pods says");
    assert_eq!(metric(&d, "awscni_total_ip_addresses"), 20.0, "{}", d.log());
    let view: Value = serde_json::from_str(&d.get(d.introspection, "/v1/kubernetes")).unwrap();
    assert_eq!(view["maxPods"], 20, "{view}");
    assert_eq!(view["maxPodsSource"], "Node.status.capacity.pods");
    assert_eq!(view["node"], node.as_str());

    // The ENIConfig the Node selects (label), as upstream's /v1/eni-configs shows it.
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: eniconfigs.crd.k8s.amazonaws.com\nspec:\n  group: crd.k8s.amazonaws.com\n  scope: Cluster\n  names: {plural: eniconfigs, singular: eniconfig, kind: ENIConfig}\n  versions: [{name: v1alpha1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]\n";
    let cfg = "apiVersion: crd.k8s.amazonaws.com/v1alpha1\nkind: ENIConfig\nmetadata:\n  name: az-a\nspec:\n  subnet: subnet-0emu\n  securityGroups: [sg-1]\n";
    std::fs::write(dir.path().join("crd.yaml"), crd).unwrap();
    std::fs::write(dir.path().join("cfg.yaml"), cfg).unwrap();
    kubectl(
        &kc,
        &["apply", "-f", dir.path().join("crd.yaml").to_str().unwrap()],
    );
    kubectl(
        &kc,
        &["apply", "-f", dir.path().join("cfg.yaml").to_str().unwrap()],
    );
    kubectl(
        &kc,
        &["label", "node", &node, "k8s.amazonaws.com/eniConfig=az-a"],
    );
    until("/v1/eni-configs", 30, || {
        d.get(d.introspection, "/v1/eni-configs")
            == r#"{"securityGroups":["sg-1"],"subnet":"subnet-0emu"}"#
    });

    // DEL clears the annotation it set.
    let del = DelNetworkRequest {
        k8s_pod_name: "pod-0".into(),
        k8s_pod_namespace: "default".into(),
        container_id: req(0).container_id,
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        client_version: req(0).client_version,
        ..Default::default()
    };
    assert!(c.del_network(del).await.unwrap().into_inner().success);
    until("the annotation cleared", 10, || {
        annotation(&kc).as_deref() == Some("")
    });

    // The startup taint stays until the conflist exists, then goes.
    let taints = |kc: &Path| json(kc, &["get", "node", &node])["spec"]["taints"].to_string();
    std::thread::sleep(Duration::from_secs(3));
    assert!(taints(&kc).contains(taint), "taint kept without a conflist");
    std::fs::create_dir_all(&netd).unwrap();
    std::fs::write(netd.join("10-aws.conflist"), "{}").unwrap();
    until("the startup taint removed", 10, || {
        !taints(&kc).contains(taint)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_operation_becomes_a_missing_iam_permissions_event() {
    let dir = tempfile::tempdir().unwrap();
    let (_emu, ep, kc, node) =
        k8s_emulator(dir.path(), &["--deny-action", "CreateNetworkInterface"]);
    let env = [
        ("MY_NODE_NAME", node.as_str()),
        ("MY_POD_NAME", "aws-node-0"),
        ("KUBECONFIG", kc.to_str().unwrap()),
        // More than the primary ENI holds: a second ENI is needed and refused.
        ("WARM_IP_TARGET", "15"),
    ];
    let d = aws_daemon(&ep, &dir.path().join("d"), &env, &[]);
    until("the MissingIAMPermissions Event", 20, || {
        events(&kc, "MissingIAMPermissions").iter().any(|e| {
            e["involvedObject"]["name"] == "aws-node-0"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("CreateNetworkInterface")
        })
    });
    let text = kubectl(&kc, &["get", "events", "-n", "kube-system"]);
    assert!(text.contains("MissingIAMPermissions"), "{text}");
    // Pods on the primary ENI are still served.
    let mut c = grpc::connect(&d.socket()).await;
    assert!(c.add_network(req(0)).await.unwrap().into_inner().success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_the_api_server_and_takes_max_pods_when_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let tls = dir.path().join("tls");
    let port = grpc::free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let k8s_only = |kc: &Path| {
        let args = [
            "--kubernetes-only",
            "--k8s-addr",
            &addr,
            "--k8s-token",
            "secret",
            "--k8s-tls-dir",
            tls.to_str().unwrap(),
            "--kubeconfig",
            kc.to_str().unwrap(),
        ];
        emulator(&args)
    };
    // Once for the kubeconfig and certificate, then down.
    drop(k8s_only(&kc));
    let (_ec2, ep) = emulator(&["--instance-type", "m5.large"]);
    let node = "ip-10-0-0-10.ec2.internal";
    let env = [("MY_NODE_NAME", node), ("KUBECONFIG", kc.to_str().unwrap())];
    let d = aws_daemon(&ep, &dir.path().join("d"), &env, &["--k8s-wait-ms", "1000"]);
    assert!(d.log().contains("starting without it"), "{}", d.log());
    // The API server comes up with the Node: within the 5 s retry, max pods comes from it.
    let (_k8s, _) = k8s_only(&dir.path().join("kubeconfig2"));
    let yaml = format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\nstatus:\n  capacity:\n    pods: \"12\"\n"
    );
    std::fs::write(dir.path().join("node.yaml"), yaml).unwrap();
    kubectl(
        &kc,
        &[
            "apply",
            "-f",
            dir.path().join("node.yaml").to_str().unwrap(),
        ],
    );
    until("max pods from the Node", 20, || {
        d.log().lines().any(|l| {
            l.contains("max pods from Node.status.capacity.pods") && l.contains("\"to\":12")
        })
    });
}

#[test]
fn a_required_api_server_that_refuses_the_token_stops_the_daemon_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_emu, ep, kc, node) = k8s_emulator(dir.path(), &[]);
    let text = std::fs::read_to_string(&kc).unwrap();
    let bad = dir.path().join("bad-kubeconfig");
    let token = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap();
    std::fs::write(&bad, text.replace(token, "wrong")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpc-cni"));
    cmd.args([
        "daemon",
        "--cloud",
        "aws",
        "--kubeconfig",
        bad.to_str().unwrap(),
    ])
    .arg("--socket")
    .arg(dir.path().join("s.sock"))
    .arg("--checkpoint")
    .arg(dir.path().join("ipam.json"))
    .args([
        "--metrics-addr",
        "127.0.0.1:0",
        "--introspection-addr",
        "127.0.0.1:0",
    ])
    .env("AWS_ENDPOINT_URL_EC2", ep["ec2"].as_str().unwrap())
    .env(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        ep["imds"][0]["endpoint"].as_str().unwrap(),
    )
    .env("AWS_ACCESS_KEY_ID", "x")
    .env("AWS_SECRET_ACCESS_KEY", "x")
    .env("AWS_REGION", "us-east-1")
    .env("MY_NODE_NAME", &node)
    .env("ANNOTATE_POD_IP", "true")
    .env("AWS_VPC_K8S_CNI_LOG_FILE", dir.path().join("ipamd.log"))
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let mut child = emu::Kill(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the daemon kept running with a refused token"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = std::mem::replace(&mut child.0, Command::new("true").spawn().unwrap())
        .wait_with_output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ANNOTATE_POD_IP") && err.contains("401"),
        "{err}"
    );
}

#[test]
fn the_python_kubernetes_client_against_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let (_emu, _ep, kc, node) = k8s_emulator(dir.path(), &[]);
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python/k8s_client.py");
    let out = Command::new(awsd::python())
        .arg(script)
        .arg(&kc)
        .arg(&node)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["version"].as_str().unwrap().starts_with("v1."), "{v}");
    assert!(
        v["groups"].to_string().contains("vpcresources.k8s.aws"),
        "{v}"
    );
    assert_eq!(v["capacity_pods"], "29", "m5.large's max pods: {v}");
    assert_eq!(v["watched"], serde_json::json!(["MODIFIED"]), "{v}");
    assert_eq!(v["label"], "yes");
    assert_eq!(v["stale_patch"], 409, "{v}");
    assert_eq!(
        v["features"],
        serde_json::json!([{"name": "SecurityGroupsForPods"}])
    );
    assert_eq!(v["event_message"], "from python");
    assert_eq!(v["wrong_token"], 401);
}
