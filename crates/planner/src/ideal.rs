//! An ideal cloud for the planner: every request succeeds at once, addresses come from a private
//! counter and never run out. Only the count of addresses matters to the plan.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use vpc_cni_ipam::{Action, CidrKind, Datastore, DatastoreError, EniSpec, Time};

/// Hands out /32s and aligned /28s from 10.0.0.0/8 and numbers ENIs.
#[derive(Debug, Clone)]
pub struct IdealCloud {
    next_ip: u32,
    next_prefix: u32,
    next_eni: u32,
    ipv4_per_eni: u32,
}

impl IdealCloud {
    /// A cloud whose ENIs carry at most `ipv4_per_eni` addresses (primary included).
    pub fn new(ipv4_per_eni: u32) -> Self {
        IdealCloud {
            // /32s below 10.128.0.0, /28s above: the two never collide.
            next_ip: u32::from(Ipv4Addr::new(10, 0, 0, 10)),
            next_prefix: u32::from(Ipv4Addr::new(10, 128, 0, 0)),
            next_eni: 0,
            ipv4_per_eni,
        }
    }

    fn ip(&mut self) -> Ipv4Addr {
        let ip = Ipv4Addr::from(self.next_ip);
        self.next_ip += 1;
        ip
    }

    fn cidr(&mut self, kind: CidrKind) -> Ipv4Net {
        match kind {
            CidrKind::SecondaryIp => Ipv4Net::new(self.ip(), 32).expect("valid /32"),
            CidrKind::Prefix => {
                let net = Ipv4Net::new(Ipv4Addr::from(self.next_prefix), 28).expect("valid /28");
                self.next_prefix += 16;
                net
            }
        }
    }

    /// Attach the instance's primary ENI (device 0) with no secondary addresses.
    pub fn attach_primary(&mut self, ds: &mut Datastore, now: Time) -> Result<(), DatastoreError> {
        self.attach(ds, now, true).map(|_| ())
    }

    fn attach(
        &mut self,
        ds: &mut Datastore,
        now: Time,
        primary: bool,
    ) -> Result<String, DatastoreError> {
        let device = ds
            .enis()
            .iter()
            .map(|e| e.device_number + 1)
            .max()
            .unwrap_or(0);
        let id = format!("eni-{:017x}", self.next_eni);
        self.next_eni += 1;
        let primary_ip = self.ip();
        ds.add_eni(
            EniSpec {
                id: id.clone(),
                device_number: device,
                is_primary: primary,
                route_table_id: if device == 0 { 254 } else { device + 1 },
                primary_ip: Some(primary_ip),
                subnet_id: "subnet-ideal".into(),
                ..EniSpec::default()
            },
            now,
        )?;
        Ok(id)
    }

    /// Carry out one action on the datastore.
    pub fn apply(
        &mut self,
        ds: &mut Datastore,
        action: &Action,
        now: Time,
    ) -> Result<(), DatastoreError> {
        // EC2 caps a request at the ENI's secondary capacity, as upstream's awsutils does.
        let cap = self.ipv4_per_eni.saturating_sub(1);
        match action {
            Action::AssignToEni { eni, count, kind } => {
                for _ in 0..(*count).min(cap) {
                    let net = self.cidr(*kind);
                    ds.add_cidr(eni, net, *kind == CidrKind::Prefix)?;
                }
            }
            Action::AllocateEni { count, kind } => {
                let id = self.attach(ds, now, false)?;
                for _ in 0..(*count).min(cap) {
                    let net = self.cidr(*kind);
                    ds.add_cidr(&id, net, *kind == CidrKind::Prefix)?;
                }
            }
            // Already removed from the datastore by the policy; nothing to do in an ideal cloud.
            Action::Release { .. } | Action::FreeEni { .. } => {}
        }
        Ok(())
    }
}
