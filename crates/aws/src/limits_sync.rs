//! `limits sync`: the instance table (the `instance-limits.json` / `instance-vcpus.json`
//! schema) from EC2 `DescribeInstanceTypes`, every page, per region. `eni_limit` is the default
//! network card's ENI count, as the max-pods formula uses.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::InstanceTypeInfo;
use vpc_cni_cloud::CloudError;
use vpc_cni_limits::{Hypervisor, InstanceLimits, NetworkCard};

use crate::cloud_error;

/// One type as the table holds it, with its vCPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedType {
    /// Limits.
    pub limits: InstanceLimits,
    /// `VCpuInfo.DefaultVCpus`.
    pub vcpus: Option<u32>,
}

/// Convert one `InstanceTypeInfo`; `None` when EC2 gives no network information.
pub fn convert(t: &InstanceTypeInfo) -> Option<SyncedType> {
    let n = t.network_info()?;
    let default_card = n.default_network_card_index().unwrap_or(0).max(0) as u32;
    let cards: Vec<NetworkCard> = n
        .network_cards()
        .iter()
        .map(|c| NetworkCard {
            index: c.network_card_index().unwrap_or(0).max(0) as u32,
            max_enis: c.maximum_network_interfaces().unwrap_or(0).max(0) as u32,
        })
        .collect();
    let total = n.maximum_network_interfaces().unwrap_or(0).max(0) as u32;
    // The default card's ENIs (several-card types: not the instance total).
    let eni_limit = cards
        .iter()
        .find(|c| c.index == default_card)
        .map_or(total, |c| c.max_enis);
    let hypervisor = match t.hypervisor().map(|h| h.as_str()) {
        Some("nitro") => Hypervisor::Nitro,
        Some("xen") => Hypervisor::Xen,
        _ => Hypervisor::Unknown,
    };
    Some(SyncedType {
        limits: InstanceLimits {
            eni_limit,
            ipv4_limit: n.ipv4_addresses_per_interface().unwrap_or(0).max(0) as u32,
            default_network_card_index: default_card,
            network_cards: if cards.is_empty() {
                vec![NetworkCard {
                    index: 0,
                    max_enis: total,
                }]
            } else {
                cards
            },
            hypervisor,
            bare_metal: t.bare_metal().unwrap_or(false),
        },
        vcpus: t
            .v_cpu_info()
            .and_then(|v| v.default_v_cpus())
            .and_then(|v| u32::try_from(v).ok()),
    })
}

/// Every instance type `client`'s region offers, page by page; `progress` gets the running count.
pub async fn describe_all(
    client: &aws_sdk_ec2::Client,
    mut progress: impl FnMut(usize),
) -> Result<BTreeMap<String, SyncedType>, CloudError> {
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .describe_instance_types()
            .max_results(100)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| cloud_error("DescribeInstanceTypes", e))?;
        for t in page.instance_types() {
            if let (Some(name), Some(s)) = (
                t.instance_type().map(|n| n.as_str().to_string()),
                convert(t),
            ) {
                out.insert(name, s);
            }
        }
        progress(out.len());
        token = page
            .next_token()
            .map(str::to_string)
            .filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// An EC2 client for `region` from the SDK's environment (credentials, endpoint overrides).
pub async fn client_for_region(region: &str) -> aws_sdk_ec2::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .load()
        .await;
    aws_sdk_ec2::Client::new(&conf)
}

/// Every type of every region in `regions`, merged (the first region's answer wins).
pub async fn sync_regions(
    regions: &[String],
    mut progress: impl FnMut(&str, usize),
) -> Result<BTreeMap<String, SyncedType>, CloudError> {
    let mut merged = BTreeMap::new();
    for region in regions {
        let client = client_for_region(region).await;
        let found = describe_all(&client, |n| progress(region, n))
            .await
            .map_err(|e| CloudError {
                code: e.code,
                message: format!("{region}: {}", e.message),
            })?;
        for (k, v) in found {
            merged.entry(k).or_insert(v);
        }
    }
    Ok(merged)
}
