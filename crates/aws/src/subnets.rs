//! Subnet discovery (spec c.5): which subnets a new ENI may go to, most free addresses first.
//! The primary ENI's subnet is eligible unless tagged `kubernetes.io/role/cni=0`; another subnet
//! only when tagged `kubernetes.io/role/cni` with a value other than `0`; with a cluster name, a
//! subnet carrying any `cni.networking.k8s.aws/cluster/*` tag must carry this cluster's.

use std::collections::BTreeMap;

use crate::AwsCloud;

/// The role tag.
pub const ROLE_TAG: &str = "kubernetes.io/role/cni";
/// Prefix of the per-cluster tags.
pub const CLUSTER_TAG_PREFIX: &str = "cni.networking.k8s.aws/cluster/";

/// A subnet as `DescribeSubnets` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetView {
    /// ID.
    pub id: String,
    /// `AvailableIpAddressCount`.
    pub free: u32,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// Eligible subnet IDs, most free addresses first (ties: the primary first, then by ID).
pub fn eligible(subnets: &[SubnetView], primary: &str, cluster: Option<&str>) -> Vec<String> {
    let mut ok: Vec<&SubnetView> = subnets
        .iter()
        .filter(|s| {
            let role = s.tags.get(ROLE_TAG).map(String::as_str);
            let by_role = if s.id == primary {
                role != Some("0")
            } else {
                role.is_some_and(|r| r != "0")
            };
            let by_cluster = match cluster {
                Some(c) if s.tags.keys().any(|k| k.starts_with(CLUSTER_TAG_PREFIX)) => {
                    s.tags.contains_key(&format!("{CLUSTER_TAG_PREFIX}{c}"))
                }
                _ => true,
            };
            by_role && by_cluster
        })
        .collect();
    ok.sort_by(|a, b| {
        b.free
            .cmp(&a.free)
            .then_with(|| (a.id != primary).cmp(&(b.id != primary)))
            .then_with(|| a.id.cmp(&b.id))
    });
    ok.into_iter().map(|s| s.id.clone()).collect()
}

impl AwsCloud {
    /// Subnets to try for a new ENI, in order (spec c.5). Discovery off, no placement known or
    /// `DescribeSubnets` failing: the primary subnet (the fallback upstream's README promises).
    pub async fn candidate_subnets(&self) -> Vec<String> {
        let primary = vec![self.primary_subnet.clone()];
        let Some((vpc, az)) = self
            .placement
            .as_ref()
            .filter(|_| self.opts.subnet_discovery)
        else {
            return primary;
        };
        let r = self
            .ec2
            .describe_subnets()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("vpc-id")
                    .values(vpc)
                    .build(),
            )
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("availability-zone")
                    .values(az)
                    .build(),
            )
            .send()
            .await;
        let out = match r {
            Ok(o) => o,
            Err(e) => {
                let e = crate::cloud_error("DescribeSubnets", e);
                tracing::warn!(error = %e.message, "subnet discovery failed; using the primary subnet");
                return primary;
            }
        };
        let views: Vec<SubnetView> = out
            .subnets()
            .iter()
            .map(|s| SubnetView {
                id: s.subnet_id().unwrap_or_default().to_string(),
                free: s.available_ip_address_count().unwrap_or(0).max(0) as u32,
                tags: s
                    .tags()
                    .iter()
                    .filter_map(|t| {
                        Some((t.key()?.to_string(), t.value().unwrap_or("").to_string()))
                    })
                    .collect(),
            })
            .collect();
        eligible(
            &views,
            &self.primary_subnet,
            self.opts.cluster_name.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: &str, free: u32, tags: &[(&str, &str)]) -> SubnetView {
        SubnetView {
            id: id.into(),
            free,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn eligibility_and_order() {
        let subnets = [
            s("primary", 50, &[]),
            s("tagged", 200, &[(ROLE_TAG, "1")]),
            s("untagged", 500, &[]),
            s("off", 900, &[(ROLE_TAG, "0")]),
            s(
                "other-cluster",
                800,
                &[
                    (ROLE_TAG, "1"),
                    ("cni.networking.k8s.aws/cluster/blue", "1"),
                ],
            ),
            s(
                "our-cluster",
                100,
                &[
                    (ROLE_TAG, "1"),
                    ("cni.networking.k8s.aws/cluster/green", "1"),
                ],
            ),
        ];
        assert_eq!(
            eligible(&subnets, "primary", Some("green")),
            ["tagged", "our-cluster", "primary"]
        );
        assert_eq!(
            eligible(&subnets, "primary", None),
            ["other-cluster", "tagged", "our-cluster", "primary"]
        );
        let excluded = [
            s("primary", 50, &[(ROLE_TAG, "0")]),
            s("tagged", 10, &[(ROLE_TAG, "yes")]),
        ];
        assert_eq!(eligible(&excluded, "primary", None), ["tagged"]);
    }
}
