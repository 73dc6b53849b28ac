//! The ENI lifecycle on EC2: create (subnet, description, tags, the primary ENI's connection
//! tracking timeouts), attach at the lowest free
//! device index, DeleteOnTermination, delete on a failed attach; detach then delete, retried
//! while EC2 still reports the ENI in use.

use aws_sdk_ec2::types::{
    ConnectionTrackingSpecificationRequest, NetworkInterfaceAttachmentChanges, ResourceType, Tag,
    TagSpecification,
};
use vpc_cni_cloud::{CloudError, EniPlacement, ErrorKind};

use crate::{AwsCloud, TAG_CREATED_AT, backoff, cloud_error, sweep, tagging};

/// The primary ENI's connection tracking timeouts as a creation parameter; `None` when unset or
/// unreadable (new ENIs then get EC2's defaults, as upstream on error).
pub(crate) async fn primary_conntrack(
    ec2: &aws_sdk_ec2::Client,
    primary: &str,
) -> Option<ConnectionTrackingSpecificationRequest> {
    let out = match ec2
        .describe_network_interfaces()
        .network_interface_ids(primary)
        .send()
        .await
    {
        Ok(o) => o,
        Err(e) => {
            let e = cloud_error("DescribeNetworkInterfaces", e);
            tracing::warn!(code = %e.code, error = %e.message, "primary ENI's connection tracking unknown; new ENIs get EC2's defaults");
            return None;
        }
    };
    let ct = out
        .network_interfaces()
        .first()?
        .connection_tracking_configuration()?;
    Some(
        ConnectionTrackingSpecificationRequest::builder()
            .set_tcp_established_timeout(ct.tcp_established_timeout())
            .set_udp_stream_timeout(ct.udp_stream_timeout())
            .set_udp_timeout(ct.udp_timeout())
            .build(),
    )
}

/// A call whose target no longer exists has nothing left to do: `*.NotFound` counts as done.
fn gone_is_done<T>(r: Result<T, CloudError>) -> Result<(), CloudError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Missing IAM permissions do not go away by retrying.
pub(crate) fn unauthorized(e: &CloudError) -> bool {
    e.kind() == ErrorKind::Unauthorized
}

impl AwsCloud {
    /// Tags of a new ENI: this node's tags and its creation time (the leak sweep's clock).
    fn tags(&self) -> Vec<Tag> {
        let mut tags = tagging::node_tags(&self.opts, &self.instance_id);
        tags.insert(TAG_CREATED_AT.into(), sweep::rfc3339_now());
        tags.into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect()
    }

    async fn free_device_index(&self) -> Result<u32, CloudError> {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(&self.instance_id)
            .send()
            .await
            .map_err(|e| cloud_error("DescribeInstances", e))?;
        let used: Vec<u32> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .flat_map(|i| i.network_interfaces())
            .filter_map(|n| n.attachment().and_then(|a| a.device_index()))
            .filter_map(|d| u32::try_from(d).ok())
            .collect();
        Ok((1..)
            .find(|d| !used.contains(d))
            .expect("some index is free"))
    }

    /// `DeleteNetworkInterface`, retried (12 tries, 500 ms → 60 s) while EC2 refuses, e.g. an
    /// ENI still detaching; an ENI already gone counts as deleted.
    pub(crate) async fn delete_eni(&self, eni: &str) -> Result<(), CloudError> {
        backoff::DELETE
            .retry(
                "DeleteNetworkInterface",
                || async {
                    gone_is_done(
                        self.ec2
                            .delete_network_interface()
                            .network_interface_id(eni)
                            .send()
                            .await
                            .map_err(|e| cloud_error("DeleteNetworkInterface", e)),
                    )
                },
                unauthorized,
            )
            .await
    }

    /// Create an ENI (subnet and groups of the primary ENI, or the placement's under custom
    /// networking; upstream description and tags),
    /// attach it at the lowest free device index, set DeleteOnTermination; an ENI whose attach
    /// failed is deleted. Returns (ENI ID, MAC).
    pub async fn create_and_attach(
        &self,
        ips: u32,
        prefixes: u32,
        placement: Option<&EniPlacement>,
    ) -> Result<(String, String), CloudError> {
        let candidates = match placement {
            Some(p) => vec![p.subnet.clone()],
            None => self.candidate_subnets().await,
        };
        let groups = match placement {
            Some(p) if !p.security_groups.is_empty() => p.security_groups.clone(),
            _ => self.groups(),
        };
        let mut last = None;
        let mut made = None;
        for subnet in &candidates {
            let mut create = self
                .ec2
                .create_network_interface()
                .subnet_id(subnet)
                .description(format!("aws-K8S-{}", self.instance_id))
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::NetworkInterface)
                        .set_tags(Some(self.tags()))
                        .build(),
                );
            for g in &groups {
                create = create.groups(g);
            }
            if let Some(ct) = &self.conntrack {
                create = create.connection_tracking_specification(ct.clone());
            }
            create = if prefixes > 0 {
                create.ipv4_prefix_count(prefixes as i32)
            } else if ips > 0 {
                create.secondary_private_ip_address_count(ips as i32)
            } else {
                create
            };
            match create.send().await {
                Ok(m) => {
                    made = Some(m);
                    break;
                }
                // A full subnet: the next candidate may have room.
                Err(e) => {
                    let e = cloud_error("CreateNetworkInterface", e);
                    let full = e.is_insufficient_addresses();
                    last = Some(e);
                    if !full {
                        break;
                    }
                }
            }
        }
        let Some(made) = made else {
            return Err(last.unwrap_or(CloudError { code: "NoEligibleSubnet".into(), message: "CreateNetworkInterface: no eligible subnet (the primary subnet is tagged kubernetes.io/role/cni=0)".into() }));
        };
        let ni = made.network_interface().ok_or_else(|| CloudError {
            code: "InvalidResponse".into(),
            message: "CreateNetworkInterface returned no interface".into(),
        })?;
        let eni = ni.network_interface_id().unwrap_or_default().to_string();
        let mac = ni.mac_address().unwrap_or_default().to_string();
        let attached = async {
            let index = self.free_device_index().await?;
            let att = self
                .ec2
                .attach_network_interface()
                .network_interface_id(&eni)
                .instance_id(&self.instance_id)
                .device_index(index as i32)
                .network_card_index(0)
                .send()
                .await
                .map_err(|e| cloud_error("AttachNetworkInterface", e))?;
            let attachment = att.attachment_id().unwrap_or_default().to_string();
            self.ec2
                .modify_network_interface_attribute()
                .network_interface_id(&eni)
                .attachment(
                    NetworkInterfaceAttachmentChanges::builder()
                        .attachment_id(attachment)
                        .delete_on_termination(true)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| cloud_error("ModifyNetworkInterfaceAttribute", e))?;
            Ok::<_, CloudError>(())
        }
        .await;
        if let Err(e) = attached {
            // Never leave a created ENI behind: it would be a leak.
            if let Err(d) = self.delete_eni(&eni).await {
                tracing::error!(eni = %eni, error = %d.message, "failed to delete an ENI whose attach failed");
            }
            return Err(e);
        }
        tracing::info!(eni = %eni, "ENI created and attached");
        Ok((eni, mac))
    }

    /// Detach (when attached) and delete, retrying while EC2 reports the ENI in use.
    pub async fn detach_and_delete(&self, eni: &str) -> Result<(), CloudError> {
        let out = match self
            .ec2
            .describe_network_interfaces()
            .network_interface_ids(eni)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => match cloud_error("DescribeNetworkInterfaces", e) {
                // Already gone: nothing to free.
                e if e.kind() == ErrorKind::NotFound => return Ok(()),
                e => return Err(e),
            },
        };
        if let Some(att) = out
            .network_interfaces()
            .first()
            .and_then(|n| n.attachment())
            .and_then(|a| a.attachment_id())
        {
            backoff::DETACH
                .retry(
                    "DetachNetworkInterface",
                    || async {
                        // Detached meanwhile: go on to the delete.
                        gone_is_done(
                            self.ec2
                                .detach_network_interface()
                                .attachment_id(att)
                                .send()
                                .await
                                .map_err(|e| cloud_error("DetachNetworkInterface", e)),
                        )
                    },
                    unauthorized,
                )
                .await?;
        }
        // No fixed pause before the delete (upstream sleeps 2 s): it retries while detaching.
        self.delete_eni(eni).await
    }
}
