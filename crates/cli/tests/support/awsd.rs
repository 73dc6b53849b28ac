//! Shared by the tests that run `vpc-cni daemon --cloud aws` against `vpc-cni emulate`: the
//! daemon started against the emulator, EC2's view through boto3, the daemon's view through
//! introspection, and gRPC helpers.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vpc_cni_proto::rpc::AddNetworkRequest;
use vpc_cni_proto::rpc::cni_backend_client::CniBackendClient;

use crate::grpc::Daemon;

pub fn python() -> String {
    std::env::var("VPC_CNI_PYTHON")
        .expect("VPC_CNI_PYTHON must name a Python with boto3 (scripts/check sets it up)")
}

/// Run `tests/python/<script> EC2_ENDPOINT INSTANCE_ID args…` and parse its JSON answer.
pub fn python_json(script: &str, ep: &Value, args: &[&str]) -> Value {
    python_json_on(script, ep, 0, args)
}

/// [`python_json`] for the `k`-th instance of the emulator.
pub fn python_json_on(script: &str, ep: &Value, k: usize, args: &[&str]) -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python")
        .join(script);
    let out = Command::new(python())
        .arg(path)
        .arg(ep["ec2"].as_str().unwrap())
        .arg(ep["imds"][k]["instance_id"].as_str().unwrap())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// EC2's view through boto3.
pub fn ec2_state(ep: &Value) -> Value {
    python_json("emulator_state.py", ep, &[])
}

/// The daemon's view: ENI → CIDRs (/32 per secondary IP, /28 per prefix).
pub fn daemon_state(d: &Daemon) -> BTreeMap<String, BTreeSet<String>> {
    let v: Value = serde_json::from_str(&d.get(d.introspection, "/v1/enis")).unwrap();
    v["0"]["ENIs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, e)| {
            (
                id.clone(),
                e["AvailableIPv4Cidrs"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect(),
            )
        })
        .collect()
}

/// GET a JSON document from the emulator.
pub fn http_get(base: &str, path: &str) -> Value {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    serde_json::from_str(text.split_once("\r\n\r\n").map_or("", |x| x.1)).unwrap()
}

/// `vpc-cni daemon --cloud aws` pointed at the emulator `ep` (first instance), plus `env`/`args`.
pub fn aws_daemon(
    ep: &Value,
    dir: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> Daemon {
    aws_daemon_on(ep, 0, dir, env, args)
}

/// [`aws_daemon`] on the `k`-th instance of the emulator.
pub fn aws_daemon_on(
    ep: &Value,
    k: usize,
    dir: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> Daemon {
    let ec2 = ep["ec2"].as_str().unwrap();
    let imds = ep["imds"][k]["endpoint"].as_str().unwrap();
    let mut all = vec![
        ("AWS_ENDPOINT_URL_EC2", ec2),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds),
        ("AWS_ACCESS_KEY_ID", "emulator"),
        ("AWS_SECRET_ACCESS_KEY", "emulator"),
        ("AWS_REGION", "us-east-1"),
    ];
    all.extend_from_slice(env);
    let mut a = vec!["--cloud", "aws"];
    a.extend_from_slice(args);
    Daemon::start(dir, &all, &a)
}

pub fn req(i: u32) -> AddNetworkRequest {
    crate::grpc::add_req(i)
}

/// Attach ENIs by hand (boto3) as another tool would; returns their IDs.
pub fn attach_by_hand(ep: &Value, spec: &str) -> Vec<String> {
    serde_json::from_value(python_json("attach_enis.py", ep, &[spec])).unwrap()
}

/// Pods that get an address before the first refusal (each AddNetwork retried for 5 s).
pub async fn fill(c: &mut CniBackendClient<tonic::transport::Channel>, limit: u32) -> u32 {
    for i in 0..limit {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.add_network(req(i)).await.unwrap().into_inner().success {
            if Instant::now() > deadline {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    limit
}
