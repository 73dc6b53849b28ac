//! The daemon in IPv6 mode (`ENABLE_IPv6=true`, sim backend with a dual-stack subnet): one /80 on
//! the primary ENI, 30 pods with distinct addresses of it, the IPv6 parts of the reply, the
//! checkpoint's `ipv6` entries kept across a restart, and the start-up refusals upstream makes.

#[path = "support/grpc.rs"]
mod grpc;
mod support;

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use grpc::{Daemon, add_req, connect};
use ipnet::Ipv6Net;
use vpc_cni_proto::rpc::DelNetworkRequest;

const V6_ENV: [(&str, &str); 4] = [
    ("ENABLE_IPv6", "true"),
    ("ENABLE_IPv4", "false"),
    ("ENABLE_PREFIX_DELEGATION", "true"),
    ("WARM_PREFIX_TARGET", "1"),
];
const V6_ARGS: [&str; 4] = [
    "--instance-type",
    "m5.large",
    "--subnet-ipv6",
    "2600:1f14:abc:de00::/56",
];

fn prefix(d: &Daemon) -> Ipv6Net {
    let v: serde_json::Value = serde_json::from_str(&d.get(d.introspection, "/v1/enis")).unwrap();
    let enis = v["0"]["ENIs"].as_object().unwrap();
    let primary = enis.values().find(|e| e["IsPrimary"] == true).unwrap();
    let cidrs = primary["IPv6Cidrs"].as_object().unwrap();
    assert_eq!(cidrs.len(), 1, "one /80 on the primary ENI: {primary}");
    let (net, c) = cidrs.iter().next().unwrap();
    assert_eq!(c["AddressFamily"], "6");
    net.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_pods_get_distinct_addresses_of_the_nodes_slash_80() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-v6-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = Daemon::start(&dir, &V6_ENV, &V6_ARGS);
    let net = prefix(&d);
    assert_eq!(net.prefix_len(), 80);
    assert!(
        "2600:1f14:abc:de00::/56"
            .parse::<Ipv6Net>()
            .unwrap()
            .contains(&net)
    );
    let mut c = connect(&d.socket()).await;
    let mut ips = BTreeSet::new();
    for i in 0..30 {
        let r = c.add_network(add_req(i)).await.unwrap().into_inner();
        assert!(r.success, "pod {i}: {r:?}");
        let m = &r.ip_allocation_metadata[0];
        assert!(m.i_pv4_addr.is_empty());
        let ip: Ipv6Addr = m.i_pv6_addr.parse().unwrap();
        assert!(net.contains(&ip), "{ip} outside {net}");
        assert_eq!(r.vp_cv6_cid_rs, vec!["2600:1f14:abc:de00::/56".to_string()]);
        ips.insert(ip);
    }
    assert_eq!(ips.len(), 30, "no address is handed out twice");
    let metrics = d.get(d.metrics, "/metrics");
    assert!(metrics.contains("awscni_add_ip_req_count 30"), "{metrics}");
    // As upstream: the /80 counts as 2^48 addresses, its pods as assigned.
    assert!(
        metrics.contains("awscni_assigned_ip_addresses 30"),
        "{metrics}"
    );
    let total = metrics
        .lines()
        .find_map(|l| l.strip_prefix("awscni_total_ip_addresses "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no awscni_total_ip_addresses: {metrics}"));
    assert!(total >= 2f64.powi(48), "{total}");
    // Idempotent per key.
    let again = c.add_network(add_req(4)).await.unwrap().into_inner();
    assert!(ips.contains(&again.ip_allocation_metadata[0].i_pv6_addr.parse().unwrap()));
    // The checkpoint holds upstream's ipv6 entries.
    let ck: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ipam.json")).unwrap()).unwrap();
    let entries = ck["allocations"].as_array().unwrap();
    assert_eq!(entries.len(), 30);
    assert!(
        entries
            .iter()
            .all(|e| e.get("ipv4").is_none() && e["ipv6"].is_string())
    );
    // DEL gives the address back.
    let del = DelNetworkRequest {
        container_id: format!("{:064x}", 4),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        k8s_pod_name: "pod-4".into(),
        k8s_pod_namespace: "default".into(),
        reason: "PodDeleted".into(),
        client_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    let r = c.del_network(del.clone()).await.unwrap().into_inner();
    assert!(ips.contains(&r.ip_allocation_metadata[0].i_pv6_addr.parse().unwrap()));
    assert_eq!(
        c.del_network(del).await.unwrap_err().code(),
        tonic::Code::Unknown
    );
    drop(c);
    drop(d);

    // A restart keeps the /80 (the simulated VPC is kept beside the checkpoint) and the pods.
    let d = Daemon::start(&dir, &V6_ENV, &V6_ARGS);
    assert_eq!(prefix(&d), net);
    let mut c = connect(&d.socket()).await;
    let same = c.add_network(add_req(7)).await.unwrap().into_inner();
    assert!(ips.contains(&same.ip_allocation_metadata[0].i_pv6_addr.parse().unwrap()));
    let new = c.add_network(add_req(100)).await.unwrap().into_inner();
    let new_ip: Ipv6Addr = new.ip_allocation_metadata[0].i_pv6_addr.parse().unwrap();
    assert!(
        !ips.contains(&new_ip)
            || new_ip
                == again.ip_allocation_metadata[0]
                    .i_pv6_addr
                    .parse::<Ipv6Addr>()
                    .unwrap(),
        "a live pod's address is not handed out again"
    );
    assert!(d.log().contains("\"restored\":29"), "{}", d.log());
    let _ = std::fs::remove_dir_all(&dir);
}

fn start_fails(env: &[(&str, &str)], args: &[&str]) -> String {
    let dir = std::env::temp_dir().join(format!("vpc-cni-v6-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(["daemon", "--socket"])
        .arg(dir.join("x.sock"))
        .arg("--checkpoint")
        .arg(dir.join("ipam.json"))
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--introspection-addr",
            "127.0.0.1:0",
        ])
        .args(args)
        .envs(env.iter().copied())
        .env("AWS_VPC_K8S_CNI_LOG_FILE", "stderr")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn ipv6_without_prefix_delegation_or_with_custom_networking_or_no_address_is_refused() {
    let err = start_fails(&[("ENABLE_IPv6", "true")], &V6_ARGS);
    assert!(
        err.contains("ENABLE_IPv6=true needs ENABLE_PREFIX_DELEGATION=true"),
        "{err}"
    );
    let mut env = V6_ENV.to_vec();
    env.push(("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "true"));
    let err = start_fails(&env, &V6_ARGS);
    assert!(
        err.contains("ENABLE_IPv6") && err.contains("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG"),
        "{err}"
    );
    // A node in an IPv4-only subnet has no IPv6 address in IMDS.
    let err = start_fails(&V6_ENV, &["--instance-type", "m5.large", "--sim-ephemeral"]);
    assert!(err.contains("no IPv6 address"), "{err}");
}
