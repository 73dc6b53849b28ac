//! The simulated VPC answers like EC2: limits, states, error codes, DeleteOnTermination,
//! throttling and faults.

use std::collections::BTreeMap;

use vpc_cni_ipam::Time;
use vpc_cni_limits::LimitsTable;
use vpc_cni_sim::{Ec2Action, Ec2ErrorCode, Subnet, Throttle, Vpc};

fn vpc(cidr: &str, throttle: bool) -> Vpc {
    let mut v = Vpc::new(42, Throttle::new(throttle, 1.0, Time::ZERO));
    v.add_subnet(Subnet::new("subnet-a", cidr.parse().unwrap(), "us-east-1a").unwrap());
    v
}

fn launch(v: &mut Vpc, ty: &str) -> String {
    let table = LimitsTable::builtin();
    v.run_instance(ty, &table.get(ty).unwrap().limits, "subnet-a", Time::ZERO)
        .unwrap()
}

fn new_eni(v: &mut Vpc, ips: u32, prefixes: u32) -> Result<String, vpc_cni_sim::Ec2Error> {
    v.create_network_interface(
        "subnet-a",
        "aws-K8S-i-1",
        BTreeMap::new(),
        ips,
        prefixes,
        Time::ZERO,
    )
}

#[test]
fn instance_limits_are_enforced_with_aws_error_codes() {
    let mut v = vpc("10.0.0.0/20", false);
    let i = launch(&mut v, "m5.large"); // 3 ENIs × 10 addresses
    let primary = v.instance(&i).unwrap().primary_eni.clone();
    let (ips, _) = v
        .assign_private_ip_addresses(&primary, 9, 0, Time::ZERO)
        .unwrap();
    assert_eq!(ips.len(), 9);
    let err = v
        .assign_private_ip_addresses(&primary, 1, 0, Time::ZERO)
        .unwrap_err();
    assert_eq!(err.code, Ec2ErrorCode::PrivateIpAddressLimitExceeded);
    for d in 1..3 {
        let e = new_eni(&mut v, 0, 0).unwrap();
        v.attach_network_interface(&e, &i, d, Time::ZERO).unwrap();
    }
    let extra = new_eni(&mut v, 0, 0).unwrap();
    let err = v
        .attach_network_interface(&extra, &i, 3, Time::ZERO)
        .unwrap_err();
    assert_eq!(err.code, Ec2ErrorCode::AttachmentLimitExceeded);
    assert_eq!(v.stats().errors["AttachmentLimitExceeded"], 1);
}

#[test]
fn attached_enis_cannot_be_deleted_and_termination_cleans_up() {
    let mut v = vpc("10.0.0.0/24", false);
    let i = launch(&mut v, "m5.large");
    let keep = new_eni(&mut v, 2, 0).unwrap();
    let drop = new_eni(&mut v, 2, 0).unwrap();
    v.attach_network_interface(&keep, &i, 1, Time::ZERO)
        .unwrap();
    v.attach_network_interface(&drop, &i, 2, Time::ZERO)
        .unwrap();
    v.set_delete_on_termination(&drop, true, Time::ZERO)
        .unwrap();
    assert_eq!(
        v.delete_network_interface(&keep, Time::ZERO)
            .unwrap_err()
            .code,
        Ec2ErrorCode::InvalidNetworkInterfaceInUse
    );
    let free_before = v.subnets["subnet-a"].free_addresses();
    v.terminate_instance(&i).unwrap();
    assert!(v.eni(&drop).is_none(), "DeleteOnTermination ENI is gone");
    assert_eq!(
        v.eni(&keep).unwrap().status,
        vpc_cni_sim::EniStatus::Available,
        "the other is left available (leaked)"
    );
    // Primary (1) and the dropped ENI (1 + 2) went back to the subnet.
    assert_eq!(v.subnets["subnet-a"].free_addresses(), free_before + 4);
    v.delete_network_interface(&keep, Time::ZERO).unwrap();
}

#[test]
fn prefixes_fail_on_a_fragmented_subnet_and_nothing_leaks() {
    let mut v = vpc("10.0.0.0/26", false);
    let i = launch(&mut v, "m5.4xlarge");
    let primary = v.instance(&i).unwrap().primary_eni.clone();
    // Scatter /32s until no aligned /28 remains.
    while v.subnets["subnet-a"].free_prefix_blocks() > 0 {
        v.assign_private_ip_addresses(&primary, 1, 0, Time::ZERO)
            .unwrap();
    }
    let free = v.subnets["subnet-a"].free_addresses();
    assert!(free > 0);
    let err = v
        .assign_private_ip_addresses(&primary, 0, 1, Time::ZERO)
        .unwrap_err();
    assert_eq!(err.code, Ec2ErrorCode::InsufficientCidrBlocks);
    assert!(err.code.is_insufficient_addresses());
    let err = new_eni(&mut v, 0, 1).unwrap_err();
    assert_eq!(err.code, Ec2ErrorCode::InsufficientCidrBlocks);
    assert_eq!(
        v.subnets["subnet-a"].free_addresses(),
        free,
        "a failed create leaves nothing behind"
    );
}

#[test]
fn throttling_and_faults() {
    let mut v = vpc("10.0.0.0/20", true);
    let i = launch(&mut v, "m5.large");
    let primary = v.instance(&i).unwrap().primary_eni.clone();
    let mut throttled = 0;
    for _ in 0..150 {
        if let Err(e) = v.unassign_private_ip_addresses(&primary, &[], Time::ZERO) {
            assert_eq!(e.code, Ec2ErrorCode::RequestLimitExceeded);
            throttled += 1;
        }
    }
    assert_eq!(throttled, 50);
    assert_eq!(
        v.stats().calls[Ec2Action::UnassignPrivateIpAddresses.name()],
        150
    );
    let mut v = vpc("10.0.0.0/20", false);
    v.faults.error_rate = 0.3;
    let failures = (0..1000)
        .filter(|_| v.call(Ec2Action::CreateTags, Time::ZERO).is_err())
        .count();
    assert!((250..350).contains(&failures), "{failures}");
    v.faults.error_rate = 0.0;
    v.faults.throttle_rate = 0.2;
    let before = v
        .stats()
        .errors
        .get("RequestLimitExceeded")
        .copied()
        .unwrap_or(0);
    let refused = (0..1000)
        .filter(|_| {
            v.call(Ec2Action::DescribeFiltered, Time(10_000_000))
                .is_err_and(|e| e.code == Ec2ErrorCode::RequestLimitExceeded)
        })
        .count();
    assert!((150..250).contains(&refused), "{refused}");
    assert_eq!(
        v.stats().errors["RequestLimitExceeded"] - before,
        refused as u64
    );
}

#[test]
fn describe_filters_pagination_tags_and_imds() {
    use vpc_cni_sim::{EniFilter, EniStatus};
    let mut v = vpc("10.0.0.0/20", false);
    v.latency.imds_lag_ms = 1_000;
    let i = launch(&mut v, "m5.large");
    let mut ids = Vec::new();
    for n in 0..5 {
        let tags = BTreeMap::from([("node.k8s.amazonaws.com/instance_id".to_string(), i.clone())]);
        let e = v
            .create_network_interface(
                "subnet-a",
                "aws-K8S-x",
                if n < 3 { tags } else { BTreeMap::new() },
                0,
                1,
                Time::ZERO,
            )
            .unwrap();
        ids.push(e);
    }
    v.attach_network_interface(&ids[0], &i, 1, Time::from_secs(10))
        .unwrap();
    let tagged_available = [
        EniFilter::TagKey("node.k8s.amazonaws.com/instance_id".into()),
        EniFilter::Status(EniStatus::Available),
    ];
    let page = v
        .describe_network_interfaces(&tagged_available, None, None, Time::ZERO)
        .unwrap();
    assert_eq!(page.enis.len(), 2);
    // Pagination by two over the 6 ENIs (primary included).
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let p = v
            .describe_network_interfaces(&[], Some(2), token.as_deref(), Time::ZERO)
            .unwrap();
        seen.extend(p.enis.iter().map(|e| e.id.clone()));
        match p.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6);
    let err = v
        .describe_network_interfaces(
            &[EniFilter::Id(vec!["eni-nope".into()])],
            None,
            None,
            Time::ZERO,
        )
        .unwrap_err();
    assert_eq!(err.code, Ec2ErrorCode::InvalidNetworkInterfaceIdNotFound);
    v.create_tags(
        &ids[4],
        &BTreeMap::from([("k".into(), "v".into())]),
        Time::ZERO,
    )
    .unwrap();
    assert_eq!(v.eni(&ids[4]).unwrap().tags["k"], "v");
    // IMDS shows the new ENI only after the lag.
    assert_eq!(v.imds_interfaces(&i, Time::from_secs(10)).len(), 1);
    let imds = v.imds_interfaces(&i, Time::from_secs(11));
    assert_eq!(imds.len(), 2);
    assert_eq!(imds[1].device_number, 1);
    assert_eq!(imds[1].ipv4_prefixes.len(), 1);
    assert_eq!(imds[1].local_ipv4s[0], v.eni(&ids[0]).unwrap().primary_ip);
    let subnets = v.describe_subnets(Some("us-east-1a"), Time::ZERO).unwrap();
    assert_eq!(subnets.len(), 1);
}

#[test]
fn instance_metadata_security_groups_and_instance_types() {
    let mut v = vpc("10.0.0.0/20", false);
    let i = launch(&mut v, "m5.large");
    let md = v.imds_instance(&i).unwrap();
    assert_eq!(
        (md.instance_type.as_str(), md.availability_zone.as_str()),
        ("m5.large", "us-east-1a")
    );
    assert_eq!(md.vpc_cidrs, vec!["10.0.0.0/20".parse().unwrap()]);
    let primary = v.instance(&i).unwrap().primary_eni.clone();
    assert_eq!(md.local_ipv4, v.eni(&primary).unwrap().primary_ip);
    assert_eq!(
        v.set_security_groups(&primary, &["sg-new".to_string()], Time::ZERO)
            .unwrap_err()
            .code,
        Ec2ErrorCode::InvalidGroupNotFound
    );
    v.security_groups.insert("sg-new".into());
    v.set_security_groups(&primary, &["sg-new".to_string()], Time::ZERO)
        .unwrap();
    assert_eq!(
        v.imds_interfaces(&i, Time::from_secs(5))[0].security_group_ids,
        vec!["sg-new".to_string()]
    );
    assert_eq!(
        v.describe_instance_type("m5.large", Time::ZERO)
            .unwrap()
            .eni_limit,
        3
    );
    assert_eq!(
        v.describe_instance_type("x1.none", Time::ZERO)
            .unwrap_err()
            .code,
        Ec2ErrorCode::InvalidParameterValue
    );
}

#[test]
fn attaching_and_detaching_states() {
    use vpc_cni_sim::{EniFilter, EniStatus};
    let mut v = vpc("10.0.0.0/20", false);
    let i = launch(&mut v, "m5.large");
    let e = new_eni(&mut v, 1, 0).unwrap();
    v.attach_network_interface(&e, &i, 1, Time::ZERO).unwrap();
    let status = |v: &mut Vpc, t: u64| {
        v.describe_network_interfaces(
            &[EniFilter::Id(vec![e.clone()])],
            None,
            None,
            Time::from_secs(t),
        )
        .unwrap()
        .enis[0]
            .status
    };
    assert_eq!(status(&mut v, 1), EniStatus::Attaching);
    assert_eq!(
        status(&mut v, 6),
        EniStatus::InUse,
        "usable after eni_attach_ms (6 s)"
    );
    v.detach_network_interface(&e, Time::from_secs(10)).unwrap();
    assert_eq!(status(&mut v, 10), EniStatus::Detaching);
    let err = v
        .delete_network_interface(&e, Time::from_secs(10))
        .unwrap_err();
    assert_eq!(
        err.code,
        Ec2ErrorCode::InvalidNetworkInterfaceInUse,
        "still detaching"
    );
    v.delete_network_interface(&e, Time::from_secs(12)).unwrap();
}
