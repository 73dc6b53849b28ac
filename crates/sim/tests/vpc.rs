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
}
