//! Subnet discovery (spec c.5): which subnets a new ENI may go to, most free addresses first.
//! The primary ENI's subnet is eligible unless tagged `kubernetes.io/role/cni=0`; another subnet
//! only when tagged `kubernetes.io/role/cni` with a value other than `0`; with a cluster name, a
//! subnet carrying any `cni.networking.k8s.aws/cluster/*` tag must carry this cluster's.

use vpc_cni_cloud::CloudError;

use crate::AwsCloud;

pub use vpc_cni_sim::discovery::{CLUSTER_TAG_PREFIX, ROLE_TAG, SubnetView, eligible, excluded};

impl AwsCloud {
    /// Of `subnets`, those excluded from pod addresses (subnet discovery on; else none).
    pub async fn excluded_of(&self, subnets: &[String]) -> Result<Vec<String>, CloudError> {
        if !self.opts.subnet_discovery || subnets.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .ec2
            .describe_subnets()
            .set_subnet_ids(Some(subnets.to_vec()))
            .send()
            .await
            .map_err(|e| crate::cloud_error("DescribeSubnets", e))?;
        Ok(out
            .subnets()
            .iter()
            .filter(|s| {
                let tags = s
                    .tags()
                    .iter()
                    .filter_map(|t| {
                        Some((t.key()?.to_string(), t.value().unwrap_or("").to_string()))
                    })
                    .collect();
                excluded(&tags, self.opts.cluster_name.as_deref())
            })
            .filter_map(|s| s.subnet_id().map(str::to_string))
            .collect())
    }

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

impl AwsCloud {
    /// `DescribeSubnets` of one subnet: its VPC, zone and block (custom networking checks an
    /// ENIConfig's subnet against the node's with this).
    pub async fn subnet_facts(&self, id: &str) -> Result<vpc_cni_cloud::SubnetFacts, CloudError> {
        let out = self
            .ec2
            .describe_subnets()
            .subnet_ids(id)
            .send()
            .await
            .map_err(|e| crate::cloud_error("DescribeSubnets", e))?;
        let s = out
            .subnets()
            .iter()
            .find(|s| s.subnet_id() == Some(id))
            .ok_or_else(|| CloudError {
                code: "InvalidSubnetID.NotFound".into(),
                message: format!("DescribeSubnets: the subnet ID '{id}' does not exist"),
            })?;
        let cidr = s.cidr_block().unwrap_or_default();
        Ok(vpc_cni_cloud::SubnetFacts {
            id: id.to_string(),
            vpc_id: s.vpc_id().unwrap_or_default().to_string(),
            zone: s.availability_zone().unwrap_or_default().to_string(),
            cidr: cidr.parse().map_err(|_| CloudError {
                code: "InvalidResponse".into(),
                message: format!("DescribeSubnets: {id}: cidrBlock {cidr:?} is not an IPv4 block"),
            })?,
        })
    }
}
