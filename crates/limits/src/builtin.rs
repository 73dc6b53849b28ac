//! The built-in instance types: common types typed in from AWS's public EC2 documentation
//! ("Maximum IP addresses per network interface"), so the tools work with no data directory.
//! A test checks each entry against the reference data.

use crate::table::{Hypervisor, InstanceLimits, InstanceType, NetworkCard};

/// (name, ENIs on card 0, IPv4 per ENI, default vCPUs, hypervisor, bare metal, cards × max ENIs)
type Row = (&'static str, u32, u32, u32, Hypervisor, bool, u32);

use Hypervisor::{Nitro, Unknown, Xen};

const ROWS: &[Row] = &[
    ("t3.nano", 2, 2, 2, Nitro, false, 1),
    ("t3.micro", 2, 2, 2, Nitro, false, 1),
    ("t3.small", 3, 4, 2, Nitro, false, 1),
    ("t3.medium", 3, 6, 2, Nitro, false, 1),
    ("t3.large", 3, 12, 2, Nitro, false, 1),
    ("t3.xlarge", 4, 15, 4, Nitro, false, 1),
    ("t3.2xlarge", 4, 15, 8, Nitro, false, 1),
    ("m5.large", 3, 10, 2, Nitro, false, 1),
    ("m5.xlarge", 4, 15, 4, Nitro, false, 1),
    ("m5.2xlarge", 4, 15, 8, Nitro, false, 1),
    ("m5.4xlarge", 8, 30, 16, Nitro, false, 1),
    ("m5.8xlarge", 8, 30, 32, Nitro, false, 1),
    ("m5.metal", 15, 50, 96, Unknown, true, 1),
    ("m6i.large", 3, 10, 2, Nitro, false, 1),
    ("c5.large", 3, 10, 2, Nitro, false, 1),
    ("c5n.18xlarge", 15, 50, 72, Nitro, false, 1),
    ("c6in.32xlarge", 8, 50, 128, Nitro, false, 2),
    ("r5.xlarge", 4, 15, 4, Nitro, false, 1),
    ("m4.xlarge", 4, 15, 4, Xen, false, 1),
    ("m4.4xlarge", 8, 30, 16, Xen, false, 1),
    ("p3dn.24xlarge", 15, 50, 96, Nitro, false, 1),
];

/// Every built-in type.
pub fn entries() -> impl Iterator<Item = InstanceType> {
    ROWS.iter().map(
        |&(name, enis, ips, vcpus, hypervisor, bare_metal, cards)| InstanceType {
            name: name.to_string(),
            limits: InstanceLimits {
                eni_limit: enis,
                ipv4_limit: ips,
                default_network_card_index: 0,
                network_cards: (0..cards)
                    .map(|index| NetworkCard {
                        index,
                        max_enis: enis,
                    })
                    .collect(),
                hypervisor,
                bare_metal,
            },
            vcpus: Some(vcpus),
        },
    )
}
