//! The EC2 actions the VPC CNI uses, served from the simulated VPC: Query parameters in, EC2's
//! XML out (spec h.1). Pure: the server passes the VPC, the clock and the request.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use vpc_cni_ipam::Time;
use vpc_cni_limits::Hypervisor;
use vpc_cni_sim::{Ec2Error, Ec2ErrorCode, EniFilter, EniStatus, SimEni, Vpc};

use crate::params::Params;
use crate::xml::{el, set, wrap};

/// Owner ID shown on every resource.
pub const OWNER: &str = "111122223333";

/// Why a request failed: an EC2 error code, message and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// EC2 error code (`InvalidParameterValue`, `RequestLimitExceeded`, …).
    pub code: String,
    /// Message.
    pub message: String,
    /// HTTP status.
    pub status: u16,
}

impl From<Ec2Error> for ApiError {
    fn from(e: Ec2Error) -> Self {
        let status = match e.code {
            Ec2ErrorCode::RequestLimitExceeded => 503,
            Ec2ErrorCode::InternalError => 500,
            Ec2ErrorCode::UnauthorizedOperation => 403,
            _ => 400,
        };
        ApiError {
            code: e.code.as_str().to_string(),
            message: e.message,
            status,
        }
    }
}

pub(crate) fn bad(code: &str, message: impl Into<String>) -> ApiError {
    ApiError {
        code: code.into(),
        message: message.into(),
        status: 400,
    }
}

/// A parameter problem: `MissingParameter` when absent, `InvalidParameterValue` when malformed
/// (numbers that do not parse or overflow).
pub(crate) fn param(m: String) -> ApiError {
    if m.starts_with("Invalid value") {
        bad("InvalidParameterValue", m)
    } else {
        bad("MissingParameter", m)
    }
}

/// Largest index EC2 accepts in a `Name.N` list parameter here.
const MAX_LIST_INDEX: u64 = 10_000;

/// Every `Name.N` key must carry an index from 1 to [`MAX_LIST_INDEX`]: EC2 refuses the rest.
fn check_indexes(p: &Params) -> Result<(), ApiError> {
    for k in p.keys() {
        for part in k.split('.').skip(1) {
            if part.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty() {
                let ok = part
                    .parse::<u64>()
                    .is_ok_and(|n| (1..=MAX_LIST_INDEX).contains(&n));
                if !ok {
                    return Err(bad(
                        "InvalidParameterValue",
                        format!(
                            "Invalid index '{part}' in parameter {k}: expected 1 to {MAX_LIST_INDEX}"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// ISO-8601 UTC for a simulated time, counted from `epoch_secs`.
pub fn timestamp(epoch_secs: u64, t: Time) -> String {
    Time(epoch_secs * 1000 + t.0).rfc3339(true)
}

/// One request's context.
pub struct Ctx<'a> {
    /// The VPC.
    pub vpc: &'a mut Vpc,
    /// Now.
    pub now: Time,
    /// Wall-clock seconds of simulated time zero.
    pub epoch: u64,
}

fn tag_set(tags: &BTreeMap<String, String>) -> String {
    set(
        "tagSet",
        tags.iter().map(|(k, v)| el("key", k) + &el("value", v)),
    )
}

fn eni_xml(c: &Ctx<'_>, e: &SimEni) -> String {
    let az = c
        .vpc
        .subnets
        .get(&e.subnet_id)
        .map(|s| s.az.clone())
        .unwrap_or_default();
    let status = match e.status {
        EniStatus::Available => "available",
        EniStatus::Attaching => "attaching",
        EniStatus::InUse => "in-use",
        EniStatus::Detaching => "detaching",
    };
    let mut x = el("networkInterfaceId", &e.id)
        + &el("subnetId", &e.subnet_id)
        + &el("vpcId", &c.vpc.vpc_id)
        + &el("availabilityZone", az)
        + &el("description", &e.description)
        + &el("ownerId", OWNER)
        + &el("requesterManaged", "false")
        + &el("status", status)
        + &el("macAddress", &e.mac)
        + &el("privateIpAddress", e.primary_ip)
        + &el("sourceDestCheck", "true")
        + &el("interfaceType", "interface")
        + &set(
            "groupSet",
            e.security_groups
                .iter()
                .map(|g| el("groupId", g) + &el("groupName", g)),
        );
    if let Some(a) = &e.attachment {
        let st = if e.status == EniStatus::Attaching {
            "attaching"
        } else if e.status == EniStatus::Detaching {
            "detaching"
        } else {
            "attached"
        };
        x += &wrap(
            "attachment",
            el("attachmentId", &a.id)
                + &el("instanceId", &a.instance_id)
                + &el("instanceOwnerId", OWNER)
                + &el("deviceIndex", a.device_index)
                + &el("networkCardIndex", a.network_card)
                + &el("status", st)
                + &el("attachTime", timestamp(c.epoch, a.at))
                + &el("deleteOnTermination", a.delete_on_termination),
        );
    }
    x += &tag_set(&e.tags);
    let mut addrs = vec![el("privateIpAddress", e.primary_ip) + &el("primary", "true")];
    addrs.extend(
        e.secondary_ips
            .iter()
            .map(|ip| el("privateIpAddress", ip) + &el("primary", "false")),
    );
    x += &set("privateIpAddressesSet", addrs);
    x += &set(
        "ipv4PrefixSet",
        e.prefixes.iter().map(|p| el("ipv4Prefix", p)),
    );
    x + &crate::ec2_ipv6::eni_sets(e) + &crate::conntrack::xml(e.conntrack.as_ref())
}

fn eni_filters(p: &Params, vpc_id: String) -> Result<Vec<EniFilter>, ApiError> {
    let mut out = Vec::new();
    let ids = p.list("NetworkInterfaceId");
    // One VPC: a vpc-id filter naming another matches nothing.
    if p.filters()
        .iter()
        .any(|(n, v)| n == "vpc-id" && !v.contains(&vpc_id))
    {
        out.push(EniFilter::Id(vec![]));
    }
    if !ids.is_empty() {
        out.push(EniFilter::Id(ids));
    }
    for (name, values) in p.filters() {
        let first = values.first().cloned().unwrap_or_default();
        out.push(match name.as_str() {
            "network-interface-id" => EniFilter::Id(values),
            "vpc-id" => continue,
            "attachment.instance-id" => EniFilter::InstanceId(first),
            "subnet-id" => EniFilter::SubnetId(first),
            "tag-key" => EniFilter::TagKey(first),
            "status" => EniFilter::Status(match first.as_str() {
                "available" => EniStatus::Available,
                "in-use" => EniStatus::InUse,
                "attaching" => EniStatus::Attaching,
                "detaching" => EniStatus::Detaching,
                other => {
                    return Err(bad(
                        "InvalidParameterValue",
                        format!("Value ({other}) for parameter status is invalid"),
                    ));
                }
            }),
            n if n.starts_with("tag:") => EniFilter::Tag(n[4..].to_string(), first),
            other => {
                return Err(bad(
                    "InvalidParameterValue",
                    format!("The filter '{other}' is invalid"),
                ));
            }
        });
    }
    Ok(out)
}

fn describe_enis(c: &mut Ctx<'_>, p: &Params) -> Result<String, ApiError> {
    let filters = eni_filters(p, c.vpc.vpc_id.clone())?;
    for id in p.list("NetworkInterfaceId") {
        if c.vpc.eni(&id).is_none() {
            return Err(bad(
                "InvalidNetworkInterfaceID.NotFound",
                format!("The networkInterface ID '{id}' does not exist"),
            ));
        }
    }
    let max = p.number("MaxResults").map_err(param)?.map(|m| m as usize);
    if let Some(m) = max
        && !(5..=1000).contains(&m)
    {
        return Err(bad(
            "InvalidParameterValue",
            format!(
                "Value ( {m} ) for parameter maxResults is invalid. Parameter must be between 5 and 1000."
            ),
        ));
    }
    let page = c
        .vpc
        .describe_network_interfaces(&filters, max, p.get("NextToken"), c.now)?;
    let mut body = set(
        "networkInterfaceSet",
        page.enis.iter().map(|e| eni_xml(c, e)).collect::<Vec<_>>(),
    );
    if let Some(t) = page.next_token {
        body += &el("nextToken", t);
    }
    Ok(body)
}

fn create_eni(c: &mut Ctx<'_>, p: &Params) -> Result<String, ApiError> {
    let subnet = p.required("SubnetId").map_err(param)?.to_string();
    let ips = p
        .number("SecondaryPrivateIpAddressCount")
        .map_err(param)?
        .unwrap_or(0);
    let prefixes = p.number("Ipv4PrefixCount").map_err(param)?.unwrap_or(0);
    if ips > 0 && prefixes > 0 {
        return Err(bad(
            "InvalidParameterCombination",
            "SecondaryPrivateIpAddressCount and Ipv4PrefixCount cannot both be specified",
        ));
    }
    let description = p.get("Description").unwrap_or("").to_string();
    let groups = p.list("SecurityGroupId");
    c.vpc.check_security_groups(&groups)?;
    crate::ec2_ipv6::check_create(c, &subnet, p)?;
    let id = c.vpc.create_network_interface(
        &subnet,
        &description,
        p.tag_specifications(),
        ips,
        prefixes,
        c.now,
    )?;
    if !groups.is_empty() {
        // Not an API call of its own: the groups come with the creation.
        c.vpc.set_security_groups_unmetered(&id, &groups);
    }
    crate::ec2_ipv6::on_create(c, &id, p)?;
    if let Some(ct) = crate::conntrack::from_params(p)? {
        c.vpc.set_conntrack_unmetered(&id, ct);
    }
    let e = c.vpc.eni(&id).expect("just created").clone();
    Ok(wrap("networkInterface", eni_xml(c, &e)))
}

fn attach(c: &mut Ctx<'_>, p: &Params) -> Result<String, ApiError> {
    let eni = p.required("NetworkInterfaceId").map_err(param)?.to_string();
    let instance = p.required("InstanceId").map_err(param)?.to_string();
    let index = p
        .number("DeviceIndex")
        .map_err(param)?
        .ok_or_else(|| param("The request must contain the parameter DeviceIndex".into()))?;
    let card = p.number("NetworkCardIndex").map_err(param)?.unwrap_or(0);
    if card != 0 {
        return Err(bad(
            "InvalidParameterValue",
            format!("Network card index {card} is not supported by the simulated VPC"),
        ));
    }
    let id = c
        .vpc
        .attach_network_interface(&eni, &instance, index, c.now)?;
    Ok(el("attachmentId", id) + &el("networkCardIndex", card))
}

fn eni_of_attachment(c: &Ctx<'_>, attachment: &str) -> Result<String, ApiError> {
    c.vpc
        .enis()
        .find(|e| e.attachment.as_ref().is_some_and(|a| a.id == attachment))
        .map(|e| e.id.clone())
        .ok_or_else(|| {
            bad(
                "InvalidAttachmentID.NotFound",
                format!("The attachment ID '{attachment}' does not exist"),
            )
        })
}

fn modify(c: &mut Ctx<'_>, p: &Params) -> Result<String, ApiError> {
    let eni = p.required("NetworkInterfaceId").map_err(param)?.to_string();
    if let Some(v) = p.get("Attachment.DeleteOnTermination") {
        c.vpc.set_delete_on_termination(&eni, v == "true", c.now)?;
    } else if let Some(ct) = crate::conntrack::from_params(p)? {
        c.vpc.set_conntrack(&eni, ct, c.now)?;
    } else {
        let groups = p.list("SecurityGroupId");
        if groups.is_empty() {
            return Err(bad(
                "InvalidParameterCombination",
                "No attribute to modify: give Attachment.DeleteOnTermination or SecurityGroupId.N",
            ));
        }
        c.vpc.set_security_groups(&eni, &groups, c.now)?;
    }
    Ok(el("return", "true"))
}

fn assign(c: &mut Ctx<'_>, p: &Params) -> Result<String, ApiError> {
    let eni = p.required("NetworkInterfaceId").map_err(param)?.to_string();
    let ips = p
        .number("SecondaryPrivateIpAddressCount")
        .map_err(param)?
        .unwrap_or(0);
    let prefixes = p.number("Ipv4PrefixCount").map_err(param)?.unwrap_or(0);
    if ips == 0 && prefixes == 0 {
        return Err(bad(
            "InvalidParameterValue",
            "Give SecondaryPrivateIpAddressCount or Ipv4PrefixCount (explicit addresses are not supported by the simulated VPC)",
        ));
    }
    let (got_ips, got_prefixes) = c
        .vpc
        .assign_private_ip_addresses(&eni, ips, prefixes, c.now)?;
    Ok(el("networkInterfaceId", &eni)
        + &set(
            "assignedPrivateIpAddressesSet",
            got_ips.iter().map(|ip| el("privateIpAddress", ip)),
        )
        + &set(
            "assignedIpv4PrefixSet",
            got_prefixes.iter().map(|p| el("ipv4Prefix", p)),
        )
        + &el("return", "true"))
}

fn unassign(c: &mut Ctx<'_>, p: &Params) -> Result<String, ApiError> {
    let eni = p.required("NetworkInterfaceId").map_err(param)?.to_string();
    let mut cidrs: Vec<Ipv4Net> = Vec::new();
    for ip in p.list("PrivateIpAddress") {
        let a: std::net::Ipv4Addr = ip.parse().map_err(|_| {
            bad(
                "InvalidParameterValue",
                format!("Invalid IPv4 address {ip}"),
            )
        })?;
        cidrs.push(Ipv4Net::new(a, 32).expect("/32"));
    }
    for pfx in p.list("Ipv4Prefix") {
        cidrs.push(pfx.parse().map_err(|_| {
            bad(
                "InvalidParameterValue",
                format!("Invalid IPv4 prefix {pfx}"),
            )
        })?);
    }
    c.vpc.unassign_private_ip_addresses(&eni, &cidrs, c.now)?;
    Ok(el("return", "true"))
}

fn describe_instances(c: &mut Ctx<'_>, p: &Params) -> Result<String, ApiError> {
    let ids = p.list("InstanceId");
    c.vpc
        .call(vpc_cni_sim::Ec2Action::DescribeFiltered, c.now)?;
    let mut items = Vec::new();
    for id in &ids {
        let Some(inst) = c.vpc.instance(id).cloned() else {
            return Err(bad(
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{id}' does not exist"),
            ));
        };
        let enis: Vec<SimEni> = c.vpc.attached(id).cloned().collect();
        let primary_ip = c
            .vpc
            .eni(&inst.primary_eni)
            .map(|e| e.primary_ip.to_string())
            .unwrap_or_default();
        let az = c
            .vpc
            .subnets
            .get(&inst.subnet_id)
            .map(|s| s.az.clone())
            .unwrap_or_default();
        let instance = el("instanceId", &inst.id)
            + &el("instanceType", &inst.instance_type)
            + &wrap("instanceState", el("code", 16) + &el("name", "running"))
            + &wrap("placement", el("availabilityZone", az))
            + &el("privateIpAddress", primary_ip)
            + &el("subnetId", &inst.subnet_id)
            + &el("vpcId", &c.vpc.vpc_id)
            + &set(
                "networkInterfaceSet",
                enis.iter().map(|e| eni_xml(c, e)).collect::<Vec<_>>(),
            );
        items.push(
            el("reservationId", format!("r-{}", &inst.id[2..]))
                + &el("ownerId", OWNER)
                + &set("instancesSet", [instance]),
        );
    }
    Ok(set("reservationSet", items))
}

fn describe_subnets(c: &mut Ctx<'_>, p: &Params) -> Result<String, ApiError> {
    let mut az = None;
    let mut ids = p.list("SubnetId");
    for (name, values) in p.filters() {
        match name.as_str() {
            "availability-zone" => az = values.first().cloned(),
            "vpc-id" if values.iter().all(|v| *v != c.vpc.vpc_id) => {
                return Ok(set("subnetSet", Vec::<String>::new()));
            }
            "vpc-id" => {}
            "subnet-id" => ids.extend(values),
            other => {
                return Err(bad(
                    "InvalidParameterValue",
                    format!("The filter '{other}' is invalid"),
                ));
            }
        }
    }
    let subnets = c.vpc.describe_subnets(az.as_deref(), c.now)?;
    let vpc_id = c.vpc.vpc_id.clone();
    Ok(set(
        "subnetSet",
        subnets
            .iter()
            .filter(|s| ids.is_empty() || ids.contains(&s.id))
            .map(|s| {
                el("subnetId", &s.id)
                    + &el("state", "available")
                    + &el("vpcId", &vpc_id)
                    + &el("cidrBlock", s.cidr)
                    + &el("availableIpAddressCount", s.available)
                    + &el("availabilityZone", &s.az)
                    + &el("ownerId", OWNER)
                    + &crate::ec2_ipv6::subnet_set(s)
                    + &tag_set(&s.tags)
            })
            .collect::<Vec<_>>(),
    ))
}

fn describe_instance_types(c: &mut Ctx<'_>, p: &Params) -> Result<String, ApiError> {
    let mut items = Vec::new();
    for t in p.list("InstanceType") {
        let l = c.vpc.describe_instance_type(&t, c.now)?;
        let hypervisor = match l.hypervisor {
            Hypervisor::Nitro => el("hypervisor", "nitro"),
            Hypervisor::Xen => el("hypervisor", "xen"),
            Hypervisor::Unknown => String::new(),
        };
        let cards = l
            .network_cards
            .iter()
            .map(|n| el("networkCardIndex", n.index) + &el("maximumNetworkInterfaces", n.max_enis));
        items.push(
            el("instanceType", &t)
                + &hypervisor
                + &el("bareMetal", l.bare_metal)
                + &wrap(
                    "networkInfo",
                    el("maximumNetworkInterfaces", l.eni_limit)
                        + &el("ipv4AddressesPerInterface", l.ipv4_limit)
                        + &el("defaultNetworkCardIndex", l.default_network_card_index)
                        + &set("networkCards", cards.collect::<Vec<_>>()),
                ),
        );
    }
    Ok(set("instanceTypeSet", items))
}

/// Run one action; the body of its response document.
pub fn handle(c: &mut Ctx<'_>, action: &str, p: &Params) -> Result<String, ApiError> {
    check_indexes(p)?;
    c.vpc.settle(c.now);
    match action {
        "DescribeNetworkInterfaces" => describe_enis(c, p),
        "CreateNetworkInterface" => create_eni(c, p),
        "AttachNetworkInterface" => attach(c, p),
        "DetachNetworkInterface" => {
            let a = p.required("AttachmentId").map_err(param)?.to_string();
            let eni = eni_of_attachment(c, &a)?;
            c.vpc.detach_network_interface(&eni, c.now)?;
            Ok(el("return", "true"))
        }
        "DeleteNetworkInterface" => {
            let eni = p.required("NetworkInterfaceId").map_err(param)?.to_string();
            c.vpc.delete_network_interface(&eni, c.now)?;
            Ok(el("return", "true"))
        }
        "ModifyNetworkInterfaceAttribute" => modify(c, p),
        "CreateTags" => {
            let tags = p.tags();
            let resources = p.list("ResourceId");
            if resources.is_empty() {
                return Err(param(
                    "The request must contain the parameter ResourceId".into(),
                ));
            }
            for r in resources {
                c.vpc.create_tags(&r, &tags, c.now)?;
            }
            Ok(el("return", "true"))
        }
        "AssignPrivateIpAddresses" => assign(c, p),
        "UnassignPrivateIpAddresses" => unassign(c, p),
        "AssignIpv6Addresses" => crate::ec2_ipv6::assign(c, p),
        "UnassignIpv6Addresses" => crate::ec2_ipv6::unassign(c, p),
        "DescribeInstances" => describe_instances(c, p),
        "TerminateInstances" => {
            let mut items = Vec::new();
            for id in p.list("InstanceId") {
                c.vpc.terminate_instance(&id)?;
                items.push(
                    el("instanceId", &id)
                        + &wrap("currentState", el("code", 48) + &el("name", "terminated")),
                );
            }
            Ok(set("instancesSet", items))
        }
        "DescribeSubnets" => describe_subnets(c, p),
        "DescribeSecurityGroups" => crate::ec2_groups::describe(c, p),
        "DescribeInstanceTypes" => describe_instance_types(c, p),
        "" => Err(bad(
            "MissingAction",
            "The request must contain the parameter Action",
        )),
        other => Err(bad(
            "InvalidAction",
            format!(
                "The action {other} is not valid for this web service (the emulator serves the actions the VPC CNI uses)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0, Time(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            timestamp(1_795_425_943, Time(1_500)),
            "2026-11-23T09:25:44.500Z"
        );
        assert_eq!(timestamp(951_782_400, Time(0)), "2000-02-29T00:00:00.000Z");
    }
}
