//! IMDS paths (spec h.2) of one simulated instance, answered from the VPC. `None` is a 404.

use vpc_cni_ipam::Time;
use vpc_cni_sim::Vpc;

fn lines<T: ToString>(v: impl IntoIterator<Item = T>) -> String {
    v.into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text at `path` (below `/latest/meta-data/`) for `instance_id` at `now`.
pub fn metadata(
    vpc: &Vpc,
    instance_id: &str,
    region: &str,
    path: &str,
    now: Time,
) -> Option<String> {
    let inst = vpc.imds_instance(instance_id)?;
    let path = path.trim_end_matches('/');
    let simple = match path {
        "" => {
            let mut top = vec!["instance-id", "instance-type", "local-ipv4", "mac"];
            if inst.ipv6.is_some() {
                top.push("ipv6");
            }
            top.extend(["network/", "placement/"]);
            Some(lines(top))
        }
        "ipv6" => inst.ipv6.map(|a| a.to_string()),
        "instance-id" => Some(inst.instance_id.clone()),
        "instance-type" => Some(inst.instance_type.clone()),
        "local-ipv4" => Some(inst.local_ipv4.to_string()),
        "mac" => Some(inst.mac.clone()),
        "placement" => Some(lines(["availability-zone", "region"])),
        "placement/availability-zone" => Some(inst.availability_zone.clone()),
        "placement/region" => Some(region.to_string()),
        "network" => Some("interfaces/".into()),
        "network/interfaces" => Some("macs/".into()),
        _ => None,
    };
    if simple.is_some() {
        return simple;
    }
    let interfaces = vpc.imds_interfaces(instance_id, now);
    if path == "network/interfaces/macs" {
        return Some(lines(interfaces.iter().map(|i| format!("{}/", i.mac))));
    }
    let rest = path.strip_prefix("network/interfaces/macs/")?;
    let (mac, field) = rest.split_once('/').unwrap_or((rest, ""));
    let i = interfaces.iter().find(|i| i.mac == mac)?;
    match field {
        "" => {
            let mut f = vec![
                "device-number",
                "interface-id",
                "local-ipv4s",
                "mac",
                "network-card",
                "security-group-ids",
                "subnet-id",
                "subnet-ipv4-cidr-block",
                "vpc-id",
                "vpc-ipv4-cidr-blocks",
            ];
            if !i.ipv4_prefixes.is_empty() {
                f.push("ipv4-prefix");
            }
            if !i.ipv6s.is_empty() {
                f.push("ipv6s");
            }
            if !i.ipv6_prefixes.is_empty() {
                f.push("ipv6-prefix");
            }
            if !i.subnet_ipv6_cidrs.is_empty() {
                f.extend(["subnet-ipv6-cidr-blocks", "vpc-ipv6-cidr-blocks"]);
            }
            f.sort_unstable();
            Some(lines(f))
        }
        "device-number" => Some(i.device_number.to_string()),
        "interface-id" => Some(i.interface_id.clone()),
        "local-ipv4s" => Some(lines(&i.local_ipv4s)),
        "mac" => Some(i.mac.clone()),
        "network-card" => Some(i.network_card.to_string()),
        "security-group-ids" => Some(lines(&i.security_group_ids)),
        "subnet-id" => Some(i.subnet_id.clone()),
        "subnet-ipv4-cidr-block" => Some(i.subnet_cidr.to_string()),
        "vpc-id" => Some(i.vpc_id.clone()),
        "vpc-ipv4-cidr-blocks" => Some(lines(&inst.vpc_cidrs)),
        "ipv4-prefix" if !i.ipv4_prefixes.is_empty() => Some(lines(&i.ipv4_prefixes)),
        // Like the other list paths, absent (404) when empty.
        "ipv6s" if !i.ipv6s.is_empty() => Some(lines(&i.ipv6s)),
        "ipv6-prefix" if !i.ipv6_prefixes.is_empty() => Some(lines(&i.ipv6_prefixes)),
        "subnet-ipv6-cidr-blocks" if !i.subnet_ipv6_cidrs.is_empty() => {
            Some(lines(&i.subnet_ipv6_cidrs))
        }
        "vpc-ipv6-cidr-blocks" if !inst.vpc_ipv6_cidrs.is_empty() => {
            Some(lines(&inst.vpc_ipv6_cidrs))
        }
        _ => None,
    }
}
