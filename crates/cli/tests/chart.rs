//! The Helm chart and the committed manifest: rendered by Helm's engine (helm-python-sdk),
//! in sync with `config/vpc-cni-rs.yaml`, every object valid for two Kubernetes versions
//! (kubernetes-validate), and every rendering applied with Debian's `kubectl` to the Kubernetes
//! API emulator, where the DaemonSet reads back with upstream's probes, paths and env.

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

use std::path::PathBuf;
use std::process::Command;

use kubectl::{json, kubectl};

const PODMONITOR_CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: podmonitors.monitoring.coreos.com\nspec:\n  group: monitoring.coreos.com\n  scope: Namespaced\n  names: {plural: podmonitors, singular: podmonitor, kind: PodMonitor}\n  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]\n";

#[test]
fn chart_renders_validates_matches_the_manifest_and_applies() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(awsd::python())
        .arg(root.join("tests/python/chart.py"))
        .arg("check")
        .arg(root.join("charts/aws-vpc-cni"))
        .arg(root.join("config/vpc-cni-rs.yaml"))
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "chart.py check: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["objects"]["default"], 5, "{report}");

    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let (_emu, _ep) = emu::emulator(&[
        "--kubernetes-only",
        "--k8s-addr",
        "127.0.0.1:0",
        "--kubeconfig",
        kc.to_str().unwrap(),
    ]);
    let crd = dir.path().join("podmonitor-crd.yaml");
    std::fs::write(&crd, PODMONITOR_CRD).unwrap();
    kubectl(&kc, &["apply", "-f", crd.to_str().unwrap()]);
    for name in [
        "default",
        "custom-networking",
        "monitoring",
        "annotate-sgp",
        "upstream-values",
    ] {
        let f = out.path().join(format!("{name}.yaml"));
        let applied = kubectl(&kc, &["apply", "-f", f.to_str().unwrap()]);
        assert!(
            applied.contains("daemonset.apps/aws-node"),
            "{name}: {applied}"
        );
    }
    // The last rendering applied (upstream's values file) and what every one keeps.
    let ds = json(&kc, &["get", "daemonset", "aws-node", "-n", "kube-system"]);
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["name"], "aws-node");
    assert_eq!(c["image"], "localhost/vpc-cni-rs:v1.23.1");
    assert_eq!(
        c["readinessProbe"]["exec"]["command"],
        serde_json::json!([
            "/app/grpc-health-probe",
            "-addr=unix:///var/run/aws-node/ipamd.sock",
            "-connect-timeout=5s",
            "-rpc-timeout=5s"
        ])
    );
    assert_eq!(
        c["resources"]["limits"]["memory"], "256Mi",
        "a memory limit by default"
    );
    assert_eq!(pod["initContainers"][0]["name"], "aws-vpc-cni-init");
    assert_eq!(pod["hostNetwork"], true);
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for m in [
        "/host/opt/cni/bin",
        "/host/etc/cni/net.d",
        "/var/run/aws-node",
        "/run/xtables.lock",
    ] {
        assert!(mounts.contains(&m), "{m} in {mounts:?}");
    }
    let configs = json(&kc, &["get", "eniconfigs"]);
    assert_eq!(configs["items"].as_array().unwrap().len(), 2, "{configs}");
    // The last rendering has no ENABLE_POD_ENI: applying it took the CNINode rule away again.
    let role = json(&kc, &["get", "clusterrole", "aws-node"]);
    assert!(!role["rules"].to_string().contains("cninodes"), "{role}");
    assert!(role["rules"].to_string().contains("eniconfigs"), "{role}");
}
