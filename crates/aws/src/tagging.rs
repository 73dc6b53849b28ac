//! Which attached ENIs ipamd manages and the tags a managed ENI carries (spec c.5, c.7): the
//! pure rules, and their EC2 side (`DescribeNetworkInterfaces` for the tags, `CreateTags` for
//! what is missing, retried 5 times from 500 ms up to 60 s with 30 % jitter as upstream).

use std::collections::BTreeMap;

use aws_sdk_ec2::types::Tag;
use vpc_cni_cloud::{CloudError, EniClasses, ErrorKind, Interface};

use crate::{AwsCloud, AwsOptions, TAG_CLUSTER, TAG_INSTANCE, cloud_error};

/// Tag that takes an ENI away from ipamd when `"true"`.
pub const TAG_NO_MANAGE: &str = "node.k8s.amazonaws.com/no_manage";
/// Owner tag added with the cluster tag.
pub const TAG_OWNER: &str = "eks:eni:owner";
/// Its value.
pub const OWNER_VALUE: &str = "amazon-vpc-cni";

/// The tags every managed ENI of `instance_id` carries: the instance tag, the cluster and owner
/// tags when `CLUSTER_NAME` is set, and `ADDITIONAL_ENI_TAGS`.
pub fn node_tags(opts: &AwsOptions, instance_id: &str) -> BTreeMap<String, String> {
    let mut tags = opts.additional_tags.clone();
    tags.insert(TAG_INSTANCE.into(), instance_id.into());
    if let Some(c) = &opts.cluster_name {
        tags.insert(TAG_CLUSTER.into(), c.clone());
        tags.insert(TAG_OWNER.into(), OWNER_VALUE.into());
    }
    tags
}

/// Whether ipamd manages a non-primary ENI with these tags: `no_manage` decides when present
/// (only `"true"` unmanages), then this node's instance tag, then `MANAGE_UNTAGGED_ENI`.
pub fn is_managed(
    tags: &BTreeMap<String, String>,
    instance_id: &str,
    manage_untagged: bool,
) -> bool {
    if let Some(v) = tags.get(TAG_NO_MANAGE) {
        return v != "true";
    }
    tags.get(TAG_INSTANCE).is_some_and(|i| i == instance_id) || manage_untagged
}

/// The wanted tags that `current` lacks or holds with another value.
pub fn missing_tags(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    wanted
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One attached ENI as EC2 describes it.
struct Described {
    id: String,
    trunk: bool,
    tags: BTreeMap<String, String>,
}

impl AwsCloud {
    /// `DescribeNetworkInterfaces` of `ids`; IDs EC2 no longer knows are dropped (an ENI
    /// detached meanwhile), as upstream's `DescribeAllENIs` does.
    async fn describe_for_tags(&self, ids: &[String]) -> Result<Vec<Described>, CloudError> {
        let mut out = Vec::new();
        let batch = self
            .ec2
            .describe_network_interfaces()
            .set_network_interface_ids(Some(ids.to_vec()))
            .send()
            .await;
        let list = match batch {
            Ok(o) => o.network_interfaces().to_vec(),
            Err(e) => {
                let e = cloud_error("DescribeNetworkInterfaces", e);
                if e.kind() != ErrorKind::NotFound || ids.len() == 1 {
                    return if e.kind() == ErrorKind::NotFound {
                        Ok(out)
                    } else {
                        Err(e)
                    };
                }
                // Which ID is gone is only in the message: ask one by one.
                let mut all = Vec::new();
                for id in ids {
                    all.extend(Box::pin(self.describe_for_tags(std::slice::from_ref(id))).await?);
                }
                return Ok(all);
            }
        };
        for n in list {
            out.push(Described {
                id: n.network_interface_id().unwrap_or_default().to_string(),
                trunk: n.interface_type().is_some_and(|t| t.as_str() == "trunk"),
                tags: n
                    .tag_set()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                    .collect(),
            });
        }
        Ok(out)
    }

    /// `CreateTags` on one ENI, 5 tries with upstream's back-off.
    async fn create_tags(
        &self,
        eni: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        let list: Vec<Tag> = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        crate::backoff::TAG
            .retry(
                "CreateTags",
                || async {
                    self.ec2
                        .create_tags()
                        .resources(eni)
                        .set_tags(Some(list.clone()))
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| cloud_error("CreateTags", e))
                },
                crate::eni::unauthorized,
            )
            .await
    }

    /// Classify the attached ENIs and tag the managed ones that lack this node's tags.
    pub async fn classify_and_tag(&self, attached: &[Interface]) -> Result<EniClasses, CloudError> {
        let primary = attached
            .iter()
            .find(|i| i.device_number == 0)
            .map(|i| i.id.as_str());
        let ids: Vec<String> = attached.iter().map(|i| i.id.clone()).collect();
        if ids.is_empty() {
            return Ok(EniClasses::default());
        }
        let wanted = node_tags(&self.opts, &self.instance_id);
        let mut classes = EniClasses::default();
        for d in self.describe_for_tags(&ids).await? {
            let is_primary = primary == Some(d.id.as_str());
            if !is_primary && !is_managed(&d.tags, &self.instance_id, self.opts.manage_untagged) {
                classes.unmanaged.push(d.id);
                continue;
            }
            // Trunk ENIs belong to the VPC resource controller: never tagged by ipamd.
            if d.trunk {
                classes.trunks.push(d.id);
                continue;
            }
            let missing = missing_tags(&d.tags, &wanted);
            if !missing.is_empty() {
                self.create_tags(&d.id, &missing).await?;
                tracing::info!(eni = %d.id, tags = ?missing.keys().collect::<Vec<_>>(), "tagged a managed ENI");
                classes.tagged.push(d.id);
            }
        }
        Ok(classes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn managed_rules() {
        let cases = [
            (tags(&[(TAG_NO_MANAGE, "true")]), true, false),
            (
                tags(&[(TAG_NO_MANAGE, "true"), (TAG_INSTANCE, "i-1")]),
                true,
                false,
            ),
            (tags(&[(TAG_NO_MANAGE, "false")]), false, true),
            (tags(&[(TAG_NO_MANAGE, "yes")]), false, true),
            (tags(&[(TAG_INSTANCE, "i-1")]), false, true),
            (tags(&[(TAG_INSTANCE, "i-2")]), false, false),
            (tags(&[(TAG_INSTANCE, "i-2")]), true, true),
            (tags(&[]), true, true),
            (tags(&[]), false, false),
        ];
        for (t, untagged, want) in cases {
            assert_eq!(
                is_managed(&t, "i-1", untagged),
                want,
                "{t:?} untagged={untagged}"
            );
        }
    }

    #[test]
    fn node_tags_and_missing() {
        let opts = AwsOptions {
            cluster_name: Some("prod".into()),
            additional_tags: tags(&[("team", "net")]),
            ..Default::default()
        };
        let want = node_tags(&opts, "i-1");
        assert_eq!(
            want,
            tags(&[
                (TAG_INSTANCE, "i-1"),
                (TAG_CLUSTER, "prod"),
                (TAG_OWNER, OWNER_VALUE),
                ("team", "net")
            ])
        );
        assert!(node_tags(&AwsOptions::default(), "i-1").len() == 1);
        let current = tags(&[(TAG_INSTANCE, "i-1"), ("team", "storage"), ("other", "x")]);
        assert_eq!(
            missing_tags(&current, &want),
            tags(&[
                (TAG_CLUSTER, "prod"),
                (TAG_OWNER, OWNER_VALUE),
                ("team", "net")
            ])
        );
        assert!(missing_tags(&want, &want).is_empty());
    }
}
