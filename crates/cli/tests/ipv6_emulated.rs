//! The daemon in IPv6 mode with `--cloud aws` (aws-sdk-ec2, the SDK's IMDSv2 client) against
//! `vpc-cni emulate --ipv6-cidr`: the primary ENI gets one /80 with `AssignIpv6Addresses`, EC2 (read
//! with boto3) and IMDS show it, and pods get addresses from it.

#[allow(dead_code)]
#[path = "support/awsd.rs"]
mod awsd;
#[allow(dead_code)]
#[path = "support/emu.rs"]
mod emu;
#[allow(dead_code)]
#[path = "support/grpc.rs"]
mod grpc;

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use awsd::{aws_daemon, ec2_state, python, python_json, req};
use emu::emulator;
use grpc::connect;
use ipnet::Ipv6Net;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slash_80_is_assigned_in_ec2_seen_in_imds_and_serves_pods() {
    let (_emu, ep) = emulator(&[
        "--instance-type",
        "m5.large",
        "--ipv6-cidr",
        "2600:1f14:abc:de00::/56",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("ENABLE_IPv6", "true"),
        ("ENABLE_IPv4", "false"),
        ("ENABLE_PREFIX_DELEGATION", "true"),
        ("WARM_PREFIX_TARGET", "1"),
    ];
    let d = aws_daemon(&ep, dir.path(), &env, &["--reconcile-ms", "300"]);
    let ec2 = ec2_state(&ep);
    let attached = ec2["attached"].as_object().unwrap();
    let primary = attached.values().find(|e| e["device"] == 0).unwrap();
    let v6: Vec<&str> = primary["ipv6_prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(v6.len(), 1, "one /80 on the primary ENI in EC2: {primary}");
    let net: Ipv6Net = v6[0].parse().unwrap();
    assert_eq!(net.prefix_len(), 80);
    // IMDS shows the same prefix for the primary ENI's MAC.
    let imds = ep["imds"][0]["endpoint"].as_str().unwrap();
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/imds_get.py");
    let run = |path: &str| {
        let out = std::process::Command::new(python())
            .arg(&script)
            .args([imds, path])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mac = run("mac");
    assert_eq!(
        run(&format!("network/interfaces/macs/{mac}/ipv6-prefix")),
        net.to_string()
    );

    let mut c = connect(&d.socket()).await;
    let mut ips = BTreeSet::new();
    for i in 0..12 {
        let r = c.add_network(req(i)).await.unwrap().into_inner();
        assert!(r.success, "pod {i}: {r:?}");
        let ip: Ipv6Addr = r.ip_allocation_metadata[0].i_pv6_addr.parse().unwrap();
        assert!(net.contains(&ip), "{ip} outside {net}");
        assert_eq!(r.vp_cv6_cid_rs, vec!["2600:1f14:abc:de00::/56".to_string()]);
        ips.insert(ip);
    }
    assert_eq!(ips.len(), 12);
    assert!(
        d.log().contains("AssignIpv6Addresses") || d.log().contains("IPv6 mode"),
        "{}",
        d.log()
    );

    // The /80 unassigned behind the daemon's back: reconcile notices (IMDS twice), drops the
    // pods that lost their addresses, and serves new pods from a new /80 it assigns.
    let gone: Vec<String> =
        serde_json::from_value(python_json("unassign_ipv6_prefixes.py", &ep, &[])).unwrap();
    assert_eq!(gone, vec![net.to_string()]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !d.log().contains("no longer on the primary ENI") {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let ec2 = ec2_state(&ep);
    let primary = ec2["attached"]
        .as_object()
        .unwrap()
        .values()
        .find(|e| e["device"] == 0)
        .unwrap()
        .clone();
    let now: Ipv6Net = primary["ipv6_prefixes"][0]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(now, net, "a new /80: {primary}");
    let r = c.add_network(req(100)).await.unwrap().into_inner();
    let ip: Ipv6Addr = r.ip_allocation_metadata[0].i_pv6_addr.parse().unwrap();
    assert!(now.contains(&ip), "{ip} from the new {now}");
    let again = c.add_network(req(0)).await.unwrap().into_inner();
    let ip0: Ipv6Addr = again.ip_allocation_metadata[0].i_pv6_addr.parse().unwrap();
    assert!(
        now.contains(&ip0),
        "a dropped pod asking again gets a new address: {ip0}"
    );
}
