//! The real AWS backend of ipamd: the [`Cloud`] trait over EC2 (`aws-sdk-ec2`) and IMDSv2 (the
//! `aws-config` IMDS client). Endpoints follow the SDK's environment (`AWS_ENDPOINT_URL_EC2`,
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`), so the same code runs against EC2 on a node and
//! against `vpc-cni emulate` in tests. This is the only crate that compiles the SDK.

mod backoff;
mod eni;
mod groups;
mod imds;
pub mod ipv6;
pub mod limits_sync;
pub mod subnets;
pub mod sweep;
pub mod tagging;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use ipnet::{Ipv4Net, Ipv6Net};
use vpc_cni_cloud::{
    Cloud, CloudError, EniClasses, EniPlacement, InstanceMeta, Interface, SubnetFacts,
};

pub use imds::Imds;

/// Tag naming the instance an ENI was made for (the leak sweep's key).
pub const TAG_INSTANCE: &str = "node.k8s.amazonaws.com/instance_id";
/// Tag naming the cluster.
pub const TAG_CLUSTER: &str = "cluster.k8s.amazonaws.com/name";
/// Tag with the ENI's creation time.
pub const TAG_CREATED_AT: &str = "node.k8s.amazonaws.com/createdAt";

/// Settings of the backend (upstream variables); `Default` has upstream's defaults.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// `CLUSTER_NAME` (tag `cluster.k8s.amazonaws.com/name` when set).
    pub cluster_name: Option<String>,
    /// `ADDITIONAL_ENI_TAGS` (JSON object).
    pub additional_tags: BTreeMap<String, String>,
    /// Maximum attempts per EC2 call, throttling included (SDK standard retry, capped
    /// exponential back-off with jitter).
    pub max_attempts: u32,
    /// `ENABLE_SUBNET_DISCOVERY` (upstream default true): new ENIs may go to other subnets of
    /// the AZ tagged `kubernetes.io/role/cni`, most free addresses first.
    pub subnet_discovery: bool,
    /// `MANAGE_UNTAGGED_ENI` (upstream default true): whether an attached ENI without this
    /// node's instance tag is managed.
    pub manage_untagged: bool,
}

impl Default for AwsOptions {
    fn default() -> Self {
        AwsOptions {
            cluster_name: None,
            additional_tags: BTreeMap::new(),
            max_attempts: 10,
            subnet_discovery: true,
            manage_untagged: true,
        }
    }
}

/// Upstream's test for a new ENI being usable: all requested addresses visible, or, partially,
/// more than one IPv4 address (secondary-IP mode) or more than one prefix (prefix mode).
pub fn usable(i: &Interface, ips: u32, prefixes: u32) -> bool {
    if prefixes > 0 {
        i.prefixes.len() as u32 >= prefixes || i.prefixes.len() > 1
    } else {
        i.secondary_ips.len() as u32 >= ips || !i.secondary_ips.is_empty()
    }
}

/// Map an SDK error to the daemon's [`CloudError`] by AWS error code.
pub fn cloud_error<E>(op: &str, e: aws_sdk_ec2::error::SdkError<E>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = e.code().unwrap_or("").to_string();
    let message = e.message().map(str::to_string).unwrap_or_else(|| {
        let mut s = e.to_string();
        let mut cur = std::error::Error::source(&e);
        while let Some(c) = cur {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cur = c.source();
        }
        s
    });
    CloudError {
        code: if code.is_empty() {
            "RequestFailed".into()
        } else {
            code
        },
        message: format!("{op}: {message}"),
    }
}

/// EC2 and IMDS of the node this runs on.
#[derive(Debug, Clone)]
pub struct AwsCloud {
    ec2: aws_sdk_ec2::Client,
    imds: Imds,
    opts: AwsOptions,
    instance_id: String,
    primary_subnet: String,
    /// Groups new ENIs get (the primary ENI's; shared by clones, refreshed every 30 s).
    primary_groups: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The primary ENI's ID (empty when built from parts).
    primary_eni: String,
    /// (VPC ID, availability zone) for subnet discovery; `None`: unknown, primary subnet only.
    placement: Option<(String, String)>,
    /// The primary ENI's connection tracking timeouts, copied to new ENIs (upstream does).
    conntrack: Option<aws_sdk_ec2::types::ConnectionTrackingSpecificationRequest>,
}

fn parse_ip(s: &str, what: &str) -> Result<Ipv4Addr, CloudError> {
    s.trim().parse().map_err(|_| CloudError {
        code: "ImdsInvalid".into(),
        message: format!("{what}: {s:?} is not an IPv4 address"),
    })
}

fn parse_net(s: &str, what: &str) -> Result<Ipv4Net, CloudError> {
    s.trim().parse().map_err(|_| CloudError {
        code: "ImdsInvalid".into(),
        message: format!("{what}: {s:?} is not an IPv4 CIDR"),
    })
}

impl AwsCloud {
    /// Connect: IMDS for the instance facts and region, then an EC2 client in that region.
    pub async fn connect(opts: AwsOptions) -> Result<Self, CloudError> {
        let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        Self::connect_with(opts, Imds::new(), loader).await
    }

    /// Like [`AwsCloud::connect`] with a given metadata client and SDK configuration (endpoint,
    /// credentials); the region from IMDS and the retry policy are set on top.
    pub async fn connect_with(
        opts: AwsOptions,
        imds: Imds,
        loader: aws_config::ConfigLoader,
    ) -> Result<Self, CloudError> {
        let instance_id = imds.required("instance-id").await?;
        let region = match imds.get("placement/region").await? {
            Some(r) => r,
            None => {
                let az = imds.required("placement/availability-zone").await?;
                az.trim_end_matches(|c: char| c.is_ascii_alphabetic())
                    .to_string()
            }
        };
        let retry = aws_config::retry::RetryConfig::standard()
            .with_max_attempts(opts.max_attempts.max(1))
            .with_max_backoff(Duration::from_secs(20));
        let conf = loader
            .region(aws_config::Region::new(region))
            .retry_config(retry)
            .load()
            .await;
        let ec2 = aws_sdk_ec2::Client::new(&conf);
        let primary_eni = imds
            .required(&format!(
                "network/interfaces/macs/{}/interface-id",
                imds.required("mac").await?
            ))
            .await?;
        let conntrack = eni::primary_conntrack(&ec2, &primary_eni).await;
        let mac = imds.required("mac").await?;
        let primary_subnet = imds
            .required(&format!("network/interfaces/macs/{mac}/subnet-id"))
            .await?;
        let primary_groups = groups::of_mac(&imds, &mac).await?;
        let vpc = imds
            .required(&format!("network/interfaces/macs/{mac}/vpc-id"))
            .await?;
        let az = imds.required("placement/availability-zone").await?;
        Ok(AwsCloud {
            ec2,
            imds,
            opts,
            instance_id,
            primary_subnet,
            primary_groups: std::sync::Arc::new(std::sync::Mutex::new(primary_groups)),
            primary_eni,
            placement: Some((vpc, az)),
            conntrack,
        })
    }

    /// A backend from parts (no IMDS needed): for tools and for EC2 look-alikes such as moto.
    pub fn from_parts(
        ec2: aws_sdk_ec2::Client,
        instance_id: &str,
        subnet: &str,
        groups: Vec<String>,
        placement: Option<(String, String)>,
        opts: AwsOptions,
    ) -> Self {
        AwsCloud {
            ec2,
            imds: Imds::new(),
            opts,
            instance_id: instance_id.to_string(),
            primary_subnet: subnet.to_string(),
            primary_groups: std::sync::Arc::new(std::sync::Mutex::new(groups)),
            primary_eni: String::new(),
            placement,
            conntrack: None,
        }
    }

    /// The EC2 client (for the leak sweep and `limits sync`).
    pub fn ec2(&self) -> &aws_sdk_ec2::Client {
        &self.ec2
    }

    /// This instance's ID.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The interface with MAC `mac`; `None` for one without IPv4 addresses (an EFA-only or
    /// IPv6-only interface: upstream leaves those alone) or on a network card other than 0.
    async fn interface(&self, mac: &str) -> Result<Option<Interface>, CloudError> {
        let base = format!("network/interfaces/macs/{mac}");
        let local: Vec<Ipv4Addr> = self
            .imds
            .get(&format!("{base}/local-ipv4s"))
            .await?
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse_ip(l, "local-ipv4s"))
            .collect::<Result<_, _>>()?;
        let Some(&primary_ip) = local.first() else {
            tracing::debug!(
                mac,
                "interface without IPv4 addresses (EFA-only or IPv6-only) skipped"
            );
            return Ok(None);
        };
        // Only the default card's interfaces: the daemon manages card 0 (no multi-card yet).
        let card = self.imds.get(&format!("{base}/network-card")).await?;
        if card.as_deref().is_some_and(|c| c.trim() != "0") {
            tracing::debug!(mac, card = ?card, "interface on another network card skipped");
            return Ok(None);
        }
        let (ipv6s, ipv6_prefixes, subnet_ipv6_cidrs) = self.interface_ipv6(&base).await?;
        let prefixes = match self.imds.get(&format!("{base}/ipv4-prefix")).await? {
            Some(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| parse_net(l, "ipv4-prefix"))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let device = self.imds.required(&format!("{base}/device-number")).await?;
        Ok(Some(Interface {
            id: self.imds.required(&format!("{base}/interface-id")).await?,
            mac: mac.to_string(),
            device_number: device.trim().parse().map_err(|_| CloudError {
                code: "ImdsInvalid".into(),
                message: format!("device-number {device:?}"),
            })?,
            subnet_id: self.imds.required(&format!("{base}/subnet-id")).await?,
            subnet_cidr: parse_net(
                &self
                    .imds
                    .required(&format!("{base}/subnet-ipv4-cidr-block"))
                    .await?,
                "subnet-ipv4-cidr-block",
            )?,
            primary_ip,
            secondary_ips: local.iter().skip(1).copied().collect(),
            prefixes,
            ipv6s,
            ipv6_prefixes,
            subnet_ipv6_cidrs,
        }))
    }

    /// Wait until IMDS shows the new ENI (upstream polls the same way after attach).
    /// Poll IMDS (12 polls, 100 ms → 60 s) until the new ENI is usable: every requested
    /// address visible, or more than one IPv4 address / prefix (upstream's partial rule). One
    /// still short after the last poll is returned as it is; one never seen is an error (it
    /// stays attached, and reconciliation adopts it later, as upstream).
    async fn wait_in_imds(
        &self,
        mac: &str,
        ips: u32,
        prefixes: u32,
    ) -> Result<Interface, CloudError> {
        let seen = std::sync::Mutex::new(None);
        let polled = backoff::IMDS_WAIT
            .retry(
                "waitForENIAndIPsAttached",
                || async {
                    let macs = self
                        .imds
                        .get("network/interfaces/macs")
                        .await?
                        .unwrap_or_default();
                    let listed = macs.lines().any(|m| m.trim_end_matches('/') == mac);
                    let i = if listed {
                        self.interface(mac).await?
                    } else {
                        None
                    };
                    match i {
                        Some(i) if usable(&i, ips, prefixes) => Ok(i),
                        other => {
                            let shown = other.is_some();
                            if let Some(i) = other {
                                *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(i);
                            }
                            Err(CloudError {
                                code: "ImdsTimeout".into(),
                                message: format!(
                                    "waitForENIAndIPsAttached: ENI {mac} {} in IMDS after 12 polls",
                                    if shown {
                                        "still short of addresses"
                                    } else {
                                        "not shown"
                                    }
                                ),
                            })
                        }
                    }
                },
                |_| false,
            )
            .await;
        match (polled, seen.into_inner().unwrap_or_else(|p| p.into_inner())) {
            (Ok(i), _) => Ok(i),
            (Err(_), Some(i)) => Ok(i),
            (Err(e), None) => Err(e),
        }
    }
}

impl Cloud for AwsCloud {
    async fn instance(&self) -> Result<InstanceMeta, CloudError> {
        let mac = self.imds.required("mac").await?;
        let vpc_cidrs = self
            .imds
            .required(&format!(
                "network/interfaces/macs/{mac}/vpc-ipv4-cidr-blocks"
            ))
            .await?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse_net(l, "vpc-ipv4-cidr-blocks"))
            .collect::<Result<_, _>>()?;
        let (ipv6, vpc_ipv6_cidrs) = self.instance_ipv6(&mac).await?;
        let az = self.imds.required("placement/availability-zone").await?;
        Ok(InstanceMeta {
            instance_id: self.instance_id.clone(),
            instance_type: self.imds.required("instance-type").await?,
            region: az
                .trim_end_matches(|c: char| c.is_ascii_alphabetic())
                .to_string(),
            availability_zone: az,
            primary_mac: mac,
            primary_ip: parse_ip(&self.imds.required("local-ipv4").await?, "local-ipv4")?,
            vpc_cidrs,
            ipv6,
            vpc_ipv6_cidrs,
        })
    }

    async fn interfaces(&self) -> Result<Vec<Interface>, CloudError> {
        let macs = self.imds.required("network/interfaces/macs").await?;
        let mut out = Vec::new();
        for mac in macs
            .lines()
            .map(|m| m.trim().trim_end_matches('/'))
            .filter(|m| !m.is_empty())
        {
            out.extend(self.interface(mac).await?);
        }
        out.sort_by_key(|i| i.device_number);
        Ok(out)
    }

    async fn assign(
        &self,
        eni: &str,
        ips: u32,
        prefixes: u32,
    ) -> Result<(Vec<Ipv4Addr>, Vec<Ipv4Net>), CloudError> {
        let mut req = self
            .ec2
            .assign_private_ip_addresses()
            .network_interface_id(eni);
        req = if prefixes > 0 {
            req.ipv4_prefix_count(prefixes as i32)
        } else {
            req.secondary_private_ip_address_count(ips as i32)
        };
        let out = req
            .send()
            .await
            .map_err(|e| cloud_error("AssignPrivateIpAddresses", e))?;
        let got_ips = out
            .assigned_private_ip_addresses()
            .iter()
            .filter_map(|a| a.private_ip_address())
            .map(|a| parse_ip(a, "AssignPrivateIpAddresses"))
            .collect::<Result<_, _>>()?;
        let got_prefixes = out
            .assigned_ipv4_prefixes()
            .iter()
            .filter_map(|p| p.ipv4_prefix())
            .map(|p| parse_net(p, "AssignPrivateIpAddresses"))
            .collect::<Result<_, _>>()?;
        Ok((got_ips, got_prefixes))
    }

    async fn unassign(&self, eni: &str, cidrs: &[Ipv4Net]) -> Result<(), CloudError> {
        let mut req = self
            .ec2
            .unassign_private_ip_addresses()
            .network_interface_id(eni);
        for c in cidrs {
            req = if c.prefix_len() == 32 {
                req.private_ip_addresses(c.addr().to_string())
            } else {
                req.ipv4_prefixes(c.to_string())
            };
        }
        req.send()
            .await
            .map(|_| ())
            .map_err(|e| cloud_error("UnassignPrivateIpAddresses", e))
    }

    async fn allocate_eni(
        &self,
        ips: u32,
        prefixes: u32,
        placement: Option<&EniPlacement>,
    ) -> Result<Interface, CloudError> {
        let (_, mac) = self.create_and_attach(ips, prefixes, placement).await?;
        self.wait_in_imds(&mac, ips, prefixes).await
    }

    async fn subnet(&self, id: &str) -> Result<SubnetFacts, CloudError> {
        self.subnet_facts(id).await
    }

    async fn check_security_groups(&self, ids: &[String]) -> Result<(), CloudError> {
        self.groups_exist(ids).await
    }

    async fn free_eni(&self, eni: &str) -> Result<(), CloudError> {
        self.detach_and_delete(eni).await
    }

    async fn eni_addresses(&self, eni: &str) -> Result<(Vec<Ipv4Addr>, Vec<Ipv4Net>), CloudError> {
        let out = self
            .ec2
            .describe_network_interfaces()
            .network_interface_ids(eni)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeNetworkInterfaces", e))?;
        let Some(ni) = out.network_interfaces().first() else {
            return Err(CloudError {
                code: "InvalidNetworkInterfaceID.NotFound".into(),
                message: format!("DescribeNetworkInterfaces: {eni} not in the answer"),
            });
        };
        let ips = ni
            .private_ip_addresses()
            .iter()
            .filter(|a| a.primary() != Some(true))
            .filter_map(|a| a.private_ip_address())
            .map(|a| parse_ip(a, "DescribeNetworkInterfaces"))
            .collect::<Result<_, _>>()?;
        let prefixes = ni
            .ipv4_prefixes()
            .iter()
            .filter_map(|p| p.ipv4_prefix())
            .map(|p| parse_net(p, "DescribeNetworkInterfaces"))
            .collect::<Result<_, _>>()?;
        Ok((ips, prefixes))
    }

    async fn assign_ipv6_prefixes(
        &self,
        eni: &str,
        count: u32,
    ) -> Result<Vec<Ipv6Net>, CloudError> {
        self.assign_ipv6_prefix_count(eni, count).await
    }

    async fn unassign_ipv6_prefixes(
        &self,
        eni: &str,
        prefixes: &[Ipv6Net],
    ) -> Result<(), CloudError> {
        self.unassign_ipv6_prefix_list(eni, prefixes).await
    }

    async fn refresh_security_groups(
        &self,
        enis: &[String],
    ) -> Result<Option<Vec<String>>, CloudError> {
        self.refresh_groups(enis).await
    }

    async fn excluded_subnets(&self, subnets: &[String]) -> Result<Vec<String>, CloudError> {
        self.excluded_of(subnets).await
    }

    async fn manage_enis(&self, attached: &[Interface]) -> Result<EniClasses, CloudError> {
        self.classify_and_tag(attached).await
    }

    async fn instance_type(
        &self,
        name: &str,
    ) -> Result<Option<vpc_cni_limits::InstanceType>, CloudError> {
        let out = self
            .ec2
            .describe_instance_types()
            .instance_types(aws_sdk_ec2::types::InstanceType::from(name))
            .send()
            .await
            .map_err(|e| cloud_error("DescribeInstanceTypes", e))?;
        Ok(out
            .instance_types()
            .first()
            .and_then(limits_sync::convert)
            .map(|s| vpc_cni_limits::InstanceType {
                name: name.to_string(),
                limits: s.limits,
                vcpus: s.vcpus,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_eni_is_usable_per_upstreams_rule() {
        let eni = |ips: usize, prefixes: usize| Interface {
            id: "eni-1".into(),
            mac: String::new(),
            device_number: 1,
            subnet_id: String::new(),
            subnet_cidr: "10.0.0.0/24".parse().unwrap(),
            primary_ip: Ipv4Addr::new(10, 0, 0, 5),
            secondary_ips: (0..ips)
                .map(|n| Ipv4Addr::new(10, 0, 0, 10 + n as u8))
                .collect(),
            prefixes: (0..prefixes)
                .map(|n| Ipv4Net::new(Ipv4Addr::new(10, 0, 1, 16 * n as u8), 28).unwrap())
                .collect(),
            ipv6s: Vec::new(),
            ipv6_prefixes: Vec::new(),
            subnet_ipv6_cidrs: Vec::new(),
        };
        // (visible IPs, visible prefixes, requested IPs, requested prefixes, usable)
        let cases = [
            (0, 0, 0, 0, true),
            (0, 0, 9, 0, false),
            (1, 0, 9, 0, true),
            (9, 0, 9, 0, true),
            (0, 0, 0, 1, false),
            (0, 1, 0, 1, true),
            (0, 1, 0, 3, false),
            (0, 2, 0, 3, true),
        ];
        for (ips, prefixes, want_ips, want_prefixes, ok) in cases {
            assert_eq!(
                usable(&eni(ips, prefixes), want_ips, want_prefixes),
                ok,
                "{ips} IPs {prefixes} prefixes for {want_ips}/{want_prefixes}"
            );
        }
    }
}
