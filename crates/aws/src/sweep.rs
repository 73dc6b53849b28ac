//! The leaked-ENI sweep (spec i, `cleanUpLeakedENIs`): `available` ENIs made by the CNI
//! (instance tag, `aws-K8S-` description) in this VPC — and this cluster when it is named —
//! are tagged with their first sighting and deleted once that is 5 minutes old.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::{Filter, Tag};
use vpc_cni_cloud::CloudError;

use crate::{AwsCloud, TAG_CLUSTER, TAG_CREATED_AT, TAG_INSTANCE, cloud_error};

/// Minimum age (since first sighting) before a leaked ENI is deleted.
pub const GRACE: Duration = Duration::from_secs(300);

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// ENIs deleted.
    pub deleted: Vec<String>,
    /// ENIs seen for the first time and tagged `createdAt`.
    pub tagged: Vec<String>,
    /// ENIs younger than the grace period.
    pub young: Vec<String>,
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-11-23T09:00:00Z`, fractions allowed).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let ss = t.next()?.split('.').next()?.parse::<i64>().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// Format seconds since the epoch as RFC 3339 UTC.
pub fn format_rfc3339(secs: u64) -> String {
    vpc_cni_ipam::Time::from_secs(secs).rfc3339(false)
}

/// Now as the RFC 3339 text of the `createdAt` tag.
pub fn rfc3339_now() -> String {
    format_rfc3339(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

impl AwsCloud {
    /// One sweep over the VPC (or the cluster); `delete = false` only reports.
    pub async fn sweep_leaked(
        &self,
        vpc_id: &str,
        delete: bool,
    ) -> Result<SweepReport, CloudError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut filters = vec![
            Filter::builder()
                .name("tag-key")
                .values(TAG_INSTANCE)
                .build(),
            Filter::builder().name("status").values("available").build(),
            Filter::builder().name("vpc-id").values(vpc_id).build(),
        ];
        if let Some(c) = &self.opts.cluster_name {
            filters.push(
                Filter::builder()
                    .name(format!("tag:{TAG_CLUSTER}"))
                    .values(c)
                    .build(),
            );
        }
        let mut report = SweepReport::default();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .ec2
                .describe_network_interfaces()
                .set_filters(Some(filters.clone()))
                .max_results(1000)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| cloud_error("DescribeNetworkInterfaces", e))?;
            for ni in page.network_interfaces() {
                let id = ni.network_interface_id().unwrap_or_default().to_string();
                if !ni.description().unwrap_or_default().starts_with("aws-K8S-") {
                    continue;
                }
                let created = ni
                    .tag_set()
                    .iter()
                    .find(|t| t.key() == Some(TAG_CREATED_AT))
                    .and_then(|t| t.value());
                match created.map(parse_rfc3339) {
                    None => {
                        if delete {
                            self.ec2
                                .create_tags()
                                .resources(&id)
                                .tags(
                                    Tag::builder()
                                        .key(TAG_CREATED_AT)
                                        .value(format_rfc3339(now))
                                        .build(),
                                )
                                .send()
                                .await
                                .map_err(|e| cloud_error("CreateTags", e))?;
                        }
                        report.tagged.push(id);
                    }
                    Some(Some(t)) if now.saturating_sub(t) < GRACE.as_secs() => {
                        report.young.push(id)
                    }
                    // Old, or unparsable (upstream counts that as old too).
                    Some(_) => {
                        if delete {
                            self.delete_eni(&id).await?;
                        }
                        report.deleted.push(id);
                    }
                }
            }
            token = page
                .next_token()
                .map(str::to_string)
                .filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        for secs in [0, 951_782_400, 1_795_425_943] {
            assert_eq!(parse_rfc3339(&format_rfc3339(secs)), Some(secs));
        }
        assert_eq!(
            parse_rfc3339("2026-11-23T09:25:43.123Z"),
            Some(1_795_425_943)
        );
        for bad in [
            "",
            "2026-11-23",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-11-23T09:25:43+01:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
