//! ENI attachment lifecycle of the simulated VPC: attach (device indexes, the instance's ENI
//! limit, `attaching` → `in-use`), DeleteOnTermination, detach, delete (`InUse` while attached),
//! and instance termination.

use ipnet::Ipv4Net;
use vpc_cni_ipam::Time;

use super::{Attachment, EniStatus, SimEni, Vpc, not_found};
use crate::error::{Ec2Error, Ec2ErrorCode};
use crate::throttle::Ec2Action;

impl Vpc {
    pub(super) fn attach_inner(
        &mut self,
        eni: &str,
        instance_id: &str,
        device_index: u32,
        now: Time,
    ) -> Result<String, Ec2Error> {
        let inst = self.instances.get(instance_id).ok_or_else(|| {
            not_found(
                Ec2ErrorCode::InvalidInstanceIdNotFound,
                &format!("instance ID '{instance_id}'"),
            )
        })?;
        let max = inst.limits.eni_limit;
        let attached: Vec<u32> = self
            .enis
            .values()
            .filter_map(|e| {
                e.attachment
                    .as_ref()
                    .filter(|a| a.instance_id == instance_id)
                    .map(|a| a.device_index)
            })
            .collect();
        if attached.len() as u32 >= max {
            return Err(Ec2Error::new(
                Ec2ErrorCode::AttachmentLimitExceeded,
                format!(
                    "Interface count {} exceeds the limit for {}",
                    attached.len() + 1,
                    inst.instance_type
                ),
            ));
        }
        if attached.contains(&device_index) {
            return Err(Ec2Error::new(
                Ec2ErrorCode::InvalidParameterValue,
                format!(
                    "Instance '{instance_id}' already has an interface attached at device index '{device_index}'."
                ),
            ));
        }
        let ipv4_limit = inst.limits.ipv4_limit;
        let zone = |subnet: &str| self.subnets.get(subnet).map(|s| s.az.clone());
        let inst_zone = zone(&inst.subnet_id);
        if let Some(e) = self.enis.get(eni)
            && zone(&e.subnet_id) != inst_zone
        {
            return Err(Ec2Error::new(
                Ec2ErrorCode::InvalidParameterCombination,
                format!(
                    "You may not attach a network interface to an instance if they are not in the same availability zone ({eni} is in {}, {instance_id} in {})",
                    zone(&e.subnet_id).unwrap_or_default(),
                    inst_zone.unwrap_or_default()
                ),
            ));
        }
        let id = self.next_id("eni-attach");
        let e = self.enis.get_mut(eni).ok_or_else(|| {
            not_found(
                Ec2ErrorCode::InvalidNetworkInterfaceIdNotFound,
                &format!("interface ID '{eni}'"),
            )
        })?;
        if e.attachment.is_some() {
            return Err(Ec2Error::new(
                Ec2ErrorCode::InvalidParameterValue,
                format!("Interface '{eni}' is already attached"),
            ));
        }
        if e.slots() > ipv4_limit {
            return Err(Ec2Error::new(
                Ec2ErrorCode::PrivateIpAddressLimitExceeded,
                format!("{eni} carries more addresses than the instance type allows"),
            ));
        }
        e.attachment = Some(Attachment {
            id: id.clone(),
            instance_id: instance_id.to_string(),
            device_index,
            network_card: 0,
            delete_on_termination: false,
            at: now,
        });
        e.status = EniStatus::Attaching;
        let delay = if device_index == 0 {
            0
        } else {
            self.latency.eni_attach_ms
        };
        self.transition(eni, delay, now);
        self.settle(now);
        Ok(id)
    }

    /// `AttachNetworkInterface`.
    pub fn attach_network_interface(
        &mut self,
        eni: &str,
        instance_id: &str,
        device_index: u32,
        now: Time,
    ) -> Result<String, Ec2Error> {
        self.call(Ec2Action::AttachNetworkInterface, now)?;
        if self.rng.chance(self.faults.attach_failure_rate) {
            let e = Ec2Error::new(
                Ec2ErrorCode::InternalError,
                format!("attaching {eni} failed (injected)"),
            );
            self.count_error(&e);
            return Err(e);
        }
        self.attach_inner(eni, instance_id, device_index, now)
            .inspect_err(|e| self.count_error(e))
    }

    /// `ModifyNetworkInterfaceAttribute` (DeleteOnTermination).
    pub fn set_delete_on_termination(
        &mut self,
        eni: &str,
        value: bool,
        now: Time,
    ) -> Result<(), Ec2Error> {
        self.call(Ec2Action::ModifyNetworkInterfaceAttribute, now)?;
        match self.enis.get_mut(eni).and_then(|e| e.attachment.as_mut()) {
            Some(a) => {
                a.delete_on_termination = value;
                Ok(())
            }
            None => Err(not_found(
                Ec2ErrorCode::InvalidAttachmentIdNotFound,
                &format!("attachment of '{eni}'"),
            )),
        }
    }

    /// `DetachNetworkInterface` (the ENI becomes `available` at once in this model).
    pub fn detach_network_interface(&mut self, eni: &str, now: Time) -> Result<(), Ec2Error> {
        self.call(Ec2Action::DetachNetworkInterface, now)?;
        match self.enis.get_mut(eni) {
            Some(e) if e.attachment.is_some() => {
                e.attachment = None;
                e.status = EniStatus::Detaching;
                let after = self.latency.detach_ms;
                self.transition(eni, after, now);
                Ok(())
            }
            _ => {
                let e = not_found(
                    Ec2ErrorCode::InvalidAttachmentIdNotFound,
                    &format!("attachment of '{eni}'"),
                );
                self.count_error(&e);
                Err(e)
            }
        }
    }

    /// `DeleteNetworkInterface`: refused while attached.
    pub fn delete_network_interface(&mut self, eni: &str, now: Time) -> Result<(), Ec2Error> {
        self.call(Ec2Action::DeleteNetworkInterface, now)?;
        let r = match self.enis.get(eni) {
            None => Err(not_found(
                Ec2ErrorCode::InvalidNetworkInterfaceIdNotFound,
                &format!("interface ID '{eni}'"),
            )),
            Some(e) if e.attachment.is_some() || e.status == EniStatus::Detaching => {
                Err(Ec2Error::new(
                    Ec2ErrorCode::InvalidNetworkInterfaceInUse,
                    format!("The interface {eni} is currently in use."),
                ))
            }
            Some(_) => {
                self.delete_inner(eni);
                Ok(())
            }
        };
        r.inspect_err(|e| self.count_error(e))
    }

    pub(super) fn delete_inner(&mut self, eni: &str) {
        if let Some(e) = self.enis.remove(eni) {
            let subnet = self
                .subnets
                .get_mut(&e.subnet_id)
                .expect("ENI subnet exists");
            subnet.release(Ipv4Net::new(e.primary_ip, 32).expect("/32"));
            for ip in e.secondary_ips {
                subnet.release(Ipv4Net::new(ip, 32).expect("/32"));
            }
            for p in e.prefixes {
                subnet.release(p);
            }
        }
    }

    /// The lowest free device index of an instance (what the daemon reads via DescribeInstances).
    pub fn free_device_index(&mut self, instance_id: &str, now: Time) -> Result<u32, Ec2Error> {
        self.call(Ec2Action::DescribeFiltered, now)?;
        let used: Vec<u32> = self
            .attached(instance_id)
            .map(|e| e.attachment.as_ref().expect("attached").device_index)
            .collect();
        Ok((0..100).find(|i| !used.contains(i)).unwrap_or(100))
    }

    /// ENIs attached to an instance, device order.
    pub fn attached<'a>(&'a self, instance_id: &'a str) -> impl Iterator<Item = &'a SimEni> + 'a {
        let mut v: Vec<&SimEni> = self
            .enis
            .values()
            .filter(move |e| {
                e.attachment
                    .as_ref()
                    .is_some_and(|a| a.instance_id == instance_id)
            })
            .collect();
        v.sort_by_key(|e| e.attachment.as_ref().map(|a| a.device_index));
        v.into_iter()
    }

    /// Terminate an instance: ENIs with DeleteOnTermination are deleted, others become available.
    pub fn terminate_instance(&mut self, instance_id: &str) -> Result<(), Ec2Error> {
        if self.instances.remove(instance_id).is_none() {
            return Err(not_found(
                Ec2ErrorCode::InvalidInstanceIdNotFound,
                &format!("instance ID '{instance_id}'"),
            ));
        }
        let attached: Vec<(String, bool)> = self
            .enis
            .values()
            .filter_map(|e| {
                e.attachment
                    .as_ref()
                    .filter(|a| a.instance_id == instance_id)
                    .map(|a| (e.id.clone(), a.delete_on_termination))
            })
            .collect();
        for (id, delete) in attached {
            if delete {
                self.delete_inner(&id);
            } else if let Some(e) = self.enis.get_mut(&id) {
                e.attachment = None;
                e.status = EniStatus::Available;
            }
        }
        Ok(())
    }
}
