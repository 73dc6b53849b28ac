//! Read-side operations of the simulated VPC: `DescribeNetworkInterfaces` with EC2's filters and
//! pagination, `DescribeSubnets`, `CreateTags`, and the IMDS view of an instance's interfaces.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;
use vpc_cni_ipam::Time;

use super::{EniStatus, SimEni, Vpc, not_found};
use crate::error::{Ec2Error, Ec2ErrorCode};
use crate::throttle::Ec2Action;

/// One `DescribeNetworkInterfaces` filter, as EC2 names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EniFilter {
    /// `network-interface-id`.
    Id(Vec<String>),
    /// `attachment.instance-id`.
    InstanceId(String),
    /// `status` (`available`, `in-use`, …).
    Status(EniStatus),
    /// `tag-key`.
    TagKey(String),
    /// `tag:<key>` = value.
    Tag(String, String),
    /// `subnet-id`.
    SubnetId(String),
}

impl EniFilter {
    fn matches(&self, e: &SimEni) -> bool {
        match self {
            Self::Id(ids) => ids.contains(&e.id),
            Self::InstanceId(i) => e.attachment.as_ref().is_some_and(|a| &a.instance_id == i),
            Self::Status(s) => e.status == *s,
            Self::TagKey(k) => e.tags.contains_key(k),
            Self::Tag(k, v) => e.tags.get(k) == Some(v),
            Self::SubnetId(s) => &e.subnet_id == s,
        }
    }
}

/// One subnet as `DescribeSubnets` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubnetInfo {
    /// Subnet ID.
    pub id: String,
    /// CIDR block.
    pub cidr: Ipv4Net,
    /// IPv6 block of a dual-stack subnet.
    pub ipv6_cidr: Option<ipnet::Ipv6Net>,
    /// Availability zone.
    pub az: String,
    /// `AvailableIpAddressCount`.
    pub available: u32,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// Instance-level IMDS metadata (`instance-id`, `instance-type`, `mac`, `local-ipv4`,
/// `placement/availability-zone`, and the VPC's blocks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImdsInstance {
    /// `instance-id`.
    pub instance_id: String,
    /// `instance-type`.
    pub instance_type: String,
    /// `placement/availability-zone`.
    pub availability_zone: String,
    /// `mac` (primary ENI).
    pub mac: String,
    /// `local-ipv4` (primary IP).
    pub local_ipv4: Ipv4Addr,
    /// `vpc-id`.
    pub vpc_id: String,
    /// `vpc-ipv4-cidr-blocks`.
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// `ipv6`: the primary ENI's first IPv6 address (dual-stack only).
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// `vpc-ipv6-cidr-blocks`.
    pub vpc_ipv6_cidrs: Vec<ipnet::Ipv6Net>,
}

/// A page of `DescribeNetworkInterfaces`.
#[derive(Debug, Clone)]
pub struct EniPage {
    /// The ENIs.
    pub enis: Vec<SimEni>,
    /// Token for the next page.
    pub next_token: Option<String>,
}

/// One interface as IMDS shows it under `network/interfaces/macs/<mac>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImdsInterface {
    /// `mac`.
    pub mac: String,
    /// `interface-id`.
    pub interface_id: String,
    /// `device-number`.
    pub device_number: u32,
    /// `network-card`.
    pub network_card: u32,
    /// `subnet-id`.
    pub subnet_id: String,
    /// `subnet-ipv4-cidr-block`.
    pub subnet_cidr: Ipv4Net,
    /// `local-ipv4s` (primary first).
    pub local_ipv4s: Vec<Ipv4Addr>,
    /// `ipv4-prefix`.
    pub ipv4_prefixes: Vec<Ipv4Net>,
    /// `ipv6s`.
    pub ipv6s: Vec<std::net::Ipv6Addr>,
    /// `ipv6-prefix`.
    pub ipv6_prefixes: Vec<ipnet::Ipv6Net>,
    /// `subnet-ipv6-cidr-blocks`.
    pub subnet_ipv6_cidrs: Vec<ipnet::Ipv6Net>,
    /// `security-group-ids`.
    pub security_group_ids: Vec<String>,
    /// `vpc-id`.
    pub vpc_id: String,
}

impl Vpc {
    /// `DescribeNetworkInterfaces`: all filters must match; `max_results` pages by ENI ID.
    pub fn describe_network_interfaces(
        &mut self,
        filters: &[EniFilter],
        max_results: Option<usize>,
        next_token: Option<&str>,
        now: Time,
    ) -> Result<EniPage, Ec2Error> {
        let class = if filters.is_empty() && max_results.is_none() {
            Ec2Action::DescribeUnfiltered
        } else {
            Ec2Action::DescribeFiltered
        };
        self.call(class, now)?;
        if let Some(EniFilter::Id(ids)) = filters.iter().find(|f| matches!(f, EniFilter::Id(_)))
            && let Some(missing) = ids.iter().find(|id| !self.enis.contains_key(*id))
        {
            let e = not_found(
                Ec2ErrorCode::InvalidNetworkInterfaceIdNotFound,
                &format!("network interface '{missing}'"),
            );
            self.count_error(&e);
            return Err(e);
        }
        let start = next_token.unwrap_or("");
        let limit = max_results.unwrap_or(usize::MAX);
        let mut matched = self
            .enis
            .range::<str, _>((std::ops::Bound::Excluded(start), std::ops::Bound::Unbounded))
            .map(|(_, e)| e)
            .filter(|e| filters.iter().all(|f| f.matches(e)));
        let enis: Vec<SimEni> = matched.by_ref().take(limit).cloned().collect();
        let next_token =
            (matched.next().is_some()).then(|| enis.last().expect("a full page").id.clone());
        Ok(EniPage { enis, next_token })
    }

    /// `DescribeSubnets`: every subnet in `az` (or all).
    pub fn describe_subnets(
        &mut self,
        az: Option<&str>,
        now: Time,
    ) -> Result<Vec<SubnetInfo>, Ec2Error> {
        self.call(Ec2Action::DescribeFiltered, now)?;
        Ok(self
            .subnets
            .values()
            .filter(|s| az.is_none_or(|z| s.az == z))
            .map(|s| SubnetInfo {
                id: s.id.clone(),
                ipv6_cidr: s.ipv6_cidr,
                cidr: s.cidr,
                az: s.az.clone(),
                available: s.free_addresses(),
                tags: s.tags.clone(),
            })
            .collect())
    }

    /// `CreateTags` on an ENI.
    pub fn create_tags(
        &mut self,
        eni: &str,
        tags: &BTreeMap<String, String>,
        now: Time,
    ) -> Result<(), Ec2Error> {
        self.call(Ec2Action::CreateTags, now)?;
        let e = self.eni_checked(eni)?;
        e.tags
            .extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(())
    }

    /// Whether a security group exists (a default one or one added to `security_groups`).
    pub fn security_group_exists(&self, group: &str) -> bool {
        self.default_security_groups.iter().any(|g| g == group)
            || self.security_groups.contains(group)
    }

    /// `InvalidGroup.NotFound` naming the first unknown group.
    pub fn check_security_groups(&self, groups: &[String]) -> Result<(), Ec2Error> {
        match groups.iter().find(|g| !self.security_group_exists(g)) {
            Some(g) => Err(Ec2Error::new(
                Ec2ErrorCode::InvalidGroupNotFound,
                format!("The security group '{g}' does not exist"),
            )),
            None => Ok(()),
        }
    }

    /// `DescribeSecurityGroups` by group ID (every group when `ids` is empty); an unknown ID
    /// fails the call with `InvalidGroup.NotFound`, as EC2 does.
    pub fn describe_security_groups(
        &mut self,
        ids: &[String],
        now: Time,
    ) -> Result<Vec<String>, Ec2Error> {
        self.call(Ec2Action::DescribeFiltered, now)?;
        self.check_security_groups(ids)
            .inspect_err(|e| self.count_error(e))?;
        if !ids.is_empty() {
            return Ok(ids.to_vec());
        }
        let mut all = self.default_security_groups.clone();
        all.extend(self.security_groups.iter().cloned());
        Ok(all)
    }

    /// Security groups given at creation (part of `CreateNetworkInterface`, not a call).
    pub fn set_security_groups_unmetered(&mut self, eni: &str, groups: &[String]) {
        if let Some(e) = self.enis.get_mut(eni) {
            e.security_groups = groups.to_vec();
        }
    }

    /// `ModifyNetworkInterfaceAttribute` with `Groups` (security-group refresh).
    pub fn set_security_groups(
        &mut self,
        eni: &str,
        groups: &[String],
        now: Time,
    ) -> Result<(), Ec2Error> {
        self.call(Ec2Action::ModifyNetworkInterfaceAttribute, now)?;
        self.check_security_groups(groups)?;
        self.eni_checked(eni)?.security_groups = groups.to_vec();
        Ok(())
    }

    /// Connection tracking timeouts as part of another call (`CreateNetworkInterface`).
    pub fn set_conntrack_unmetered(&mut self, eni: &str, ct: super::ConnTrack) {
        if let Some(e) = self.enis.get_mut(eni) {
            e.conntrack = Some(ct);
        }
    }

    /// `ModifyNetworkInterfaceAttribute` with `ConnectionTrackingSpecification`.
    pub fn set_conntrack(
        &mut self,
        eni: &str,
        ct: super::ConnTrack,
        now: Time,
    ) -> Result<(), Ec2Error> {
        self.call(Ec2Action::ModifyNetworkInterfaceAttribute, now)?;
        self.eni_checked(eni)?.conntrack = Some(ct);
        Ok(())
    }

    /// `DescribeInstanceTypes` for types this VPC's instances use: (ENIs, IPv4 per ENI,
    /// hypervisor) as the limits table holds them.
    pub fn describe_instance_type(
        &mut self,
        instance_type: &str,
        now: Time,
    ) -> Result<vpc_cni_limits::InstanceLimits, Ec2Error> {
        self.call(Ec2Action::DescribeFiltered, now)?;
        self.instances
            .values()
            .find(|i| i.instance_type == instance_type)
            .map(|i| i.limits.clone())
            .ok_or_else(|| {
                Ec2Error::new(
                    Ec2ErrorCode::InvalidParameterValue,
                    format!(
                        "The following supplied instance types do not exist: [{instance_type}]"
                    ),
                )
            })
    }

    /// Instance-level IMDS metadata.
    pub fn imds_instance(&self, instance_id: &str) -> Option<ImdsInstance> {
        let i = self.instances.get(instance_id)?;
        let primary = self.enis.get(&i.primary_eni)?;
        Some(ImdsInstance {
            instance_id: i.id.clone(),
            instance_type: i.instance_type.clone(),
            availability_zone: self.subnets[&i.subnet_id].az.clone(),
            mac: primary.mac.clone(),
            local_ipv4: primary.primary_ip,
            vpc_id: self.vpc_id.clone(),
            vpc_cidrs: self.vpc_cidrs.clone(),
            ipv6: primary.ipv6_addresses.first().copied(),
            vpc_ipv6_cidrs: self.vpc_ipv6_cidrs.clone(),
        })
    }

    /// What IMDS shows for an instance at `now`: the primary interface (there since boot, as the
    /// instance's own `mac` is) and attached interfaces older than the IMDS lag (plus any
    /// injected staleness), device order.
    pub fn imds_interfaces(&self, instance_id: &str, now: Time) -> Vec<ImdsInterface> {
        let lag = Duration::from_millis(self.latency.imds_lag_ms + self.faults.imds_extra_lag_ms);
        self.attached(instance_id)
            .filter(|e| {
                e.attachment
                    .as_ref()
                    .is_some_and(|a| a.device_index == 0 || now.since(a.at) >= lag)
            })
            .map(|e| {
                let a = e.attachment.as_ref().expect("attached");
                let mut local = vec![e.primary_ip];
                local.extend(&e.secondary_ips);
                ImdsInterface {
                    mac: e.mac.clone(),
                    interface_id: e.id.clone(),
                    device_number: a.device_index,
                    network_card: a.network_card,
                    subnet_id: e.subnet_id.clone(),
                    subnet_cidr: self.subnets[&e.subnet_id].cidr,
                    local_ipv4s: local,
                    ipv4_prefixes: e.prefixes.clone(),
                    ipv6s: e.ipv6_addresses.clone(),
                    ipv6_prefixes: e.ipv6_prefixes.clone(),
                    subnet_ipv6_cidrs: self.subnets[&e.subnet_id].ipv6_cidr.into_iter().collect(),
                    security_group_ids: e.security_groups.clone(),
                    vpc_id: self.vpc_id.clone(),
                }
            })
            .collect()
    }
}
