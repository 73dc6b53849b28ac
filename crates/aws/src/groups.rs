//! Security groups of new ENIs and their refresh (spec c.9): the primary ENI's groups from IMDS,
//! re-read periodically; a change is applied to the managed ENIs with
//! `ModifyNetworkInterfaceAttribute` (Groups) and used for every ENI created afterwards.

use vpc_cni_cloud::CloudError;

use crate::{AwsCloud, Imds, cloud_error};

/// `security-group-ids` of the interface with MAC `mac` (none when absent).
pub(crate) async fn of_mac(imds: &Imds, mac: &str) -> Result<Vec<String>, CloudError> {
    Ok(imds
        .get(&format!("network/interfaces/macs/{mac}/security-group-ids"))
        .await?
        .map(|s| {
            s.lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default())
}

impl AwsCloud {
    /// The groups new ENIs get: the primary ENI's, as last read.
    pub(crate) fn groups(&self) -> Vec<String> {
        self.primary_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-read the primary ENI's groups; when they changed, give them to `enis` (the primary
    /// itself skipped) and to ENIs created from now on. Returns the new groups on a change. A
    /// failed modify keeps the old set cached, so the next refresh tries again.
    pub async fn refresh_groups(&self, enis: &[String]) -> Result<Option<Vec<String>>, CloudError> {
        let mac = self.imds.required("mac").await?;
        let mut now = of_mac(&self.imds, &mac).await?;
        let mut before = self.groups();
        now.sort();
        before.sort();
        if now == before || now.is_empty() {
            return Ok(None);
        }
        tracing::info!(old = ?before, new = ?now, "primary ENI security groups changed");
        for eni in enis.iter().filter(|e| **e != self.primary_eni) {
            self.ec2
                .modify_network_interface_attribute()
                .network_interface_id(eni)
                .set_groups(Some(now.clone()))
                .send()
                .await
                .map_err(|e| cloud_error("ModifyNetworkInterfaceAttribute", e))?;
        }
        *self
            .primary_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = now.clone();
        Ok(Some(now))
    }
}

impl AwsCloud {
    /// `DescribeSecurityGroups` of `ids`: `InvalidGroup.NotFound` when one does not exist.
    pub async fn groups_exist(&self, ids: &[String]) -> Result<(), CloudError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.ec2
            .describe_security_groups()
            .set_group_ids(Some(ids.to_vec()))
            .send()
            .await
            .map(drop)
            .map_err(|e| cloud_error("DescribeSecurityGroups", e))
    }
}
