//! Subnet discovery's rules (spec c.5, c.7), pure so the AWS backend, the simulated node and the
//! cluster simulator share them: which subnets a new ENI may go to, most free addresses first,
//! and which subnets are excluded from pod addresses. The primary ENI's subnet is eligible unless
//! tagged `kubernetes.io/role/cni=0`; another subnet only when tagged `kubernetes.io/role/cni`
//! with a value other than `0`; with a cluster name, a subnet carrying any
//! `cni.networking.k8s.aws/cluster/*` tag must carry this cluster's.

use std::collections::BTreeMap;

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

fn cluster_ok(tags: &BTreeMap<String, String>, cluster: Option<&str>) -> bool {
    match cluster {
        Some(c) if tags.keys().any(|k| k.starts_with(CLUSTER_TAG_PREFIX)) => {
            tags.contains_key(&format!("{CLUSTER_TAG_PREFIX}{c}"))
        }
        _ => true,
    }
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
            by_role && cluster_ok(&s.tags, cluster)
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

/// Subnets of `vpc` a new ENI of an instance in `primary` may go to, in order: with subnet
/// discovery the eligible subnets of `primary`'s AZ, most free first; without it `primary`
/// alone (unless it is tagged `=0`).
pub fn candidates(vpc: &crate::Vpc, primary: &str, discovery: bool) -> Vec<String> {
    let az = vpc.subnets.get(primary).map(|s| s.az.clone());
    let views: Vec<SubnetView> = vpc
        .subnets
        .values()
        .filter(|s| discovery || s.id == primary)
        .filter(|s| Some(&s.az) == az.as_ref())
        .map(|s| SubnetView {
            id: s.id.clone(),
            free: s.free_addresses(),
            tags: s.tags.clone(),
        })
        .collect();
    eligible(&views, primary, None)
}

/// Whether ENIs in a subnet with these tags are excluded from pod addresses (upstream
/// `IsExcludedForPodIPs`): tagged `kubernetes.io/role/cni=0`, or tagged for other clusters only.
pub fn excluded(tags: &BTreeMap<String, String>, cluster: Option<&str>) -> bool {
    match tags.get(ROLE_TAG).map(String::as_str) {
        Some("0") => true,
        Some(_) => !cluster_ok(tags, cluster),
        None => false,
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
    fn exclusion() {
        assert!(excluded(&s("a", 0, &[(ROLE_TAG, "0")]).tags, None));
        assert!(!excluded(&s("a", 0, &[]).tags, Some("green")));
        let blue = s(
            "a",
            0,
            &[
                (ROLE_TAG, "1"),
                ("cni.networking.k8s.aws/cluster/blue", "1"),
            ],
        );
        assert!(excluded(&blue.tags, Some("green")));
        assert!(!excluded(&blue.tags, Some("blue")));
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
