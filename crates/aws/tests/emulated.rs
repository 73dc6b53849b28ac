//! The backend against the in-process emulator of a dual-stack VPC: the IPv6 actions and IMDS
//! paths, tags and the primary's connection tracking on new ENIs, TagENI on the primary, EC2's
//! error on an IPv4-only VPC.

use std::net::{Ipv6Addr, SocketAddr};

use ipnet::Ipv6Net;
use vpc_cni_aws::{AwsCloud, AwsOptions};
use vpc_cni_cloud::Cloud;
use vpc_cni_emulator::{EmulatorConfig, start};
use vpc_cni_limits::LimitsTable;

fn config(ipv6: Option<&str>) -> EmulatorConfig {
    EmulatorConfig {
        instances: vec![LimitsTable::builtin().get("m5.large").unwrap().clone()],
        subnet: "10.0.0.0/20".parse().unwrap(),
        extra_subnets: Vec::new(),
        security_groups: Vec::new(),
        seed: 1,
        latency_scale: 0.0,
        error_rate: 0.0,
        throttle_rate: 0.0,
        ipv6_cidr: ipv6.map(|c| c.parse().unwrap()),
        region: "us-east-1".into(),
    }
}

/// The SDK pointed at the emulator with dummy credentials (it checks no signature; nothing
/// else is asked for credentials, so no request leaves loopback).
fn sdk_config(ec2: SocketAddr) -> aws_config::ConfigLoader {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://{ec2}"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "emulator", "emulator", None, None, "test",
        ))
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_paths_and_actions_and_tagging_against_the_emulator() {
    let emu = start(&config(Some("2001:db8:1200::/56")), any_port(), any_port())
        .await
        .unwrap();
    // The primary ENI has connection tracking timeouts set: new ENIs get the same.
    let ct = vpc_cni_sim::ConnTrack {
        tcp_established: Some(350),
        udp_stream: Some(60),
        udp: Some(30),
    };
    {
        let mut vpc = emu.shared.vpc.lock().unwrap();
        let primary = vpc.instance(&emu.imds[0].0).unwrap().primary_eni.clone();
        vpc.set_conntrack_unmetered(&primary, ct);
    }
    let opts = AwsOptions {
        cluster_name: Some("emu".into()),
        ..Default::default()
    };
    let imds = vpc_cni_aws::Imds::at(&format!("http://{}", emu.imds[0].1)).unwrap();
    let cloud = AwsCloud::connect_with(opts, imds, sdk_config(emu.ec2))
        .await
        .unwrap();
    let meta = cloud.instance().await.unwrap();
    let node_ip: Ipv6Addr = "2001:db8:1200::4".parse().unwrap();
    assert_eq!(meta.ipv6, Some(node_ip));
    assert_eq!(
        meta.vpc_ipv6_cidrs,
        ["2001:db8:1200::/56".parse::<Ipv6Net>().unwrap()]
    );
    let primary = cloud.interfaces().await.unwrap().remove(0);
    assert_eq!(primary.ipv6s, [node_ip]);
    assert_eq!(
        primary.subnet_ipv6_cidrs,
        ["2001:db8:1200::/64".parse::<Ipv6Net>().unwrap()]
    );
    assert!(primary.ipv6_prefixes.is_empty());

    // AssignIpv6Addresses(Ipv6PrefixCount=1): a /80 of the subnet's /64, shown by IMDS.
    let got = cloud.assign_ipv6_prefixes(&primary.id, 1).await.unwrap();
    assert_eq!(got, ["2001:db8:1200:0:1::/80".parse::<Ipv6Net>().unwrap()]);
    let seen = cloud.interfaces().await.unwrap().remove(0);
    assert_eq!(seen.ipv6_prefixes, got);
    cloud
        .unassign_ipv6_prefixes(&primary.id, &got)
        .await
        .unwrap();
    assert!(
        cloud.interfaces().await.unwrap()[0]
            .ipv6_prefixes
            .is_empty()
    );
    let stats = emu.shared.vpc.lock().unwrap().stats().clone();
    assert_eq!(stats.calls["AssignIpv6Addresses"], 1);
    assert_eq!(stats.calls["UnassignIpv6Addresses"], 1);

    // The primary ENI has no CNI tags yet: TagENI gives it this node's (cluster, owner too).
    let classes = cloud
        .manage_enis(std::slice::from_ref(&primary))
        .await
        .unwrap();
    assert_eq!(classes.tagged, std::slice::from_ref(&primary.id));
    assert!(classes.unmanaged.is_empty());
    {
        let vpc = emu.shared.vpc.lock().unwrap();
        let tags = &vpc.eni(&primary.id).unwrap().tags;
        assert_eq!(
            tags["node.k8s.amazonaws.com/instance_id"],
            cloud.instance_id()
        );
        assert_eq!(tags["cluster.k8s.amazonaws.com/name"], "emu");
        assert_eq!(tags["eks:eni:owner"], "amazon-vpc-cni");
    }
    // Tagged already: nothing to do, no second CreateTags.
    let again = cloud
        .manage_enis(std::slice::from_ref(&primary))
        .await
        .unwrap();
    assert!(again.tagged.is_empty());
    assert_eq!(
        emu.shared.vpc.lock().unwrap().stats().calls["CreateTags"],
        1
    );

    // A new ENI carries the tags and createdAt from the start.
    let (eni, _) = cloud.create_and_attach(2, 0, None).await.unwrap();
    {
        let vpc = emu.shared.vpc.lock().unwrap();
        let tags = &vpc.eni(&eni).unwrap().tags;
        assert!(
            tags["node.k8s.amazonaws.com/createdAt"].ends_with('Z'),
            "{tags:?}"
        );
        assert_eq!(tags["eks:eni:owner"], "amazon-vpc-cni");
        assert_eq!(
            vpc.eni(&eni).unwrap().conntrack,
            Some(ct),
            "copied from the primary"
        );
    }
    cloud.detach_and_delete(&eni).await.unwrap();

    // An IPv4-only VPC refuses the IPv6 action with EC2's error; IMDS lists no IPv6.
    let v4 = start(&config(None), any_port(), any_port()).await.unwrap();
    let conf = sdk_config(v4.ec2)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let v4_primary = v4
        .shared
        .vpc
        .lock()
        .unwrap()
        .instance(&v4.imds[0].0)
        .unwrap()
        .primary_eni
        .clone();
    let other = AwsCloud::from_parts(
        aws_sdk_ec2::Client::new(&conf),
        &v4.imds[0].0,
        "subnet-0emu",
        Vec::new(),
        None,
        AwsOptions::default(),
    );
    let err = other
        .assign_ipv6_prefixes(&v4_primary, 1)
        .await
        .unwrap_err();
    assert_eq!(err.code, "InvalidParameterValue");
    assert!(
        err.message.contains("no IPv6 CIDR block"),
        "{}",
        err.message
    );
}
