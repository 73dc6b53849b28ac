//! The simulated VPC: subnets, instances and ENIs with EC2's limits, states and error codes.
//! Every daemon-facing action goes through [`Vpc::call`], which applies account-wide throttling,
//! injected faults and the call counters.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use vpc_cni_ipam::Time;
use vpc_cni_limits::InstanceLimits;

use crate::error::{Ec2Error, Ec2ErrorCode};
use crate::rng::Rng;
use crate::subnet::Subnet;
use crate::throttle::{Ec2Action, Throttle};

mod addresses;
mod attach;
mod describe;
mod ipv6;

pub use describe::{EniFilter, EniPage, ImdsInstance, ImdsInterface, SubnetInfo};

/// Latencies of the simulated cloud.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// CreateNetworkInterface + AttachNetworkInterface until the ENI is usable, milliseconds.
    pub eni_attach_ms: u64,
    /// Extra delay before an attached ENI or new address shows in IMDS, milliseconds.
    pub imds_lag_ms: u64,
    /// AssignPrivateIpAddresses round trip, milliseconds.
    pub assign_ms: u64,
    /// How long an ENI stays `detaching` (deleting it meanwhile is `InUse`), milliseconds.
    pub detach_ms: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            eni_attach_ms: 6_000,
            imds_lag_ms: 1_000,
            assign_ms: 300,
            detach_ms: 1_500,
        }
    }
}

/// Injected faults.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Probability that any EC2 call fails with `InternalError`.
    pub error_rate: f64,
    /// Probability that any EC2 call is refused with `RequestLimitExceeded` on top of the token
    /// buckets (a busy account: other clients spending the same budget).
    pub throttle_rate: f64,
    /// Probability that an AttachNetworkInterface fails.
    pub attach_failure_rate: f64,
    /// Extra delay before IMDS shows new interfaces and addresses (stale metadata), milliseconds.
    pub imds_extra_lag_ms: u64,
}

/// An ENI's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EniStatus {
    /// Not attached.
    Available,
    /// Being attached.
    Attaching,
    /// Attached.
    InUse,
    /// Being detached.
    Detaching,
}

/// An ENI's attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Attachment ID.
    pub id: String,
    /// Instance.
    pub instance_id: String,
    /// Device index on the card.
    pub device_index: u32,
    /// Network card.
    pub network_card: u32,
    /// Delete the ENI when the instance terminates.
    pub delete_on_termination: bool,
    /// When it was attached.
    pub at: Time,
}

/// An ENI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimEni {
    /// ENI ID.
    pub id: String,
    /// Subnet ID.
    pub subnet_id: String,
    /// MAC address.
    pub mac: String,
    /// Primary private IP.
    pub primary_ip: Ipv4Addr,
    /// Secondary private IPs.
    pub secondary_ips: Vec<Ipv4Addr>,
    /// Delegated /28 prefixes.
    pub prefixes: Vec<Ipv4Net>,
    /// IPv6 addresses (dual-stack subnets).
    #[serde(default)]
    pub ipv6_addresses: Vec<std::net::Ipv6Addr>,
    /// Delegated IPv6 /80 prefixes.
    #[serde(default)]
    pub ipv6_prefixes: Vec<ipnet::Ipv6Net>,
    /// State.
    pub status: EniStatus,
    /// Attachment, if any.
    pub attachment: Option<Attachment>,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: Time,
    /// Security group IDs.
    pub security_groups: Vec<String>,
    /// Connection tracking timeouts, when set.
    #[serde(default)]
    pub conntrack: Option<ConnTrack>,
}

/// An ENI's connection tracking timeouts in seconds (EC2's `ConnectionTrackingConfiguration`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnTrack {
    /// `TcpEstablishedTimeout`.
    pub tcp_established: Option<u32>,
    /// `UdpStreamTimeout`.
    pub udp_stream: Option<u32>,
    /// `UdpTimeout`.
    pub udp: Option<u32>,
}

impl SimEni {
    /// Address slots in use: primary, secondaries and prefixes each take one.
    pub fn slots(&self) -> u32 {
        1 + self.secondary_ips.len() as u32 + self.prefixes.len() as u32
    }
}

/// An instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    /// Instance ID.
    pub id: String,
    /// Type name.
    pub instance_type: String,
    /// Its limits.
    pub limits: InstanceLimits,
    /// Subnet of the primary ENI.
    pub subnet_id: String,
    /// The primary ENI.
    pub primary_eni: String,
}

/// Call and error counters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CallStats {
    /// Calls by action.
    pub calls: BTreeMap<String, u64>,
    /// Errors by code.
    pub errors: BTreeMap<String, u64>,
}

/// The simulated VPC.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Vpc {
    /// Subnets by ID.
    pub subnets: BTreeMap<String, Subnet>,
    enis: BTreeMap<String, SimEni>,
    instances: BTreeMap<String, Instance>,
    rng: Rng,
    throttle: Throttle,
    /// Injected faults.
    pub faults: Faults,
    /// Latencies.
    pub latency: Latency,
    stats: CallStats,
    serial: u64,
    /// VPC ID.
    pub vpc_id: String,
    /// VPC CIDR blocks (IMDS `vpc-ipv4-cidr-blocks`).
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// VPC IPv6 blocks (IMDS `vpc-ipv6-cidr-blocks`; a dual-stack VPC has one /56).
    #[serde(default)]
    pub vpc_ipv6_cidrs: Vec<ipnet::Ipv6Net>,
    /// Security groups new ENIs get.
    pub default_security_groups: Vec<String>,
    /// Further security groups that exist (an ENI may be given any of these or the defaults).
    #[serde(default)]
    pub security_groups: std::collections::BTreeSet<String>,
    /// Actions refused with `UnauthorizedOperation` (a missing IAM permission, injected).
    #[serde(default)]
    pub denied: std::collections::BTreeSet<String>,
    /// Pending `attaching` → `in-use` and `detaching` → `available` transitions.
    transitions: std::collections::BinaryHeap<std::cmp::Reverse<(Time, String)>>,
}

fn not_found(code: Ec2ErrorCode, what: &str) -> Ec2Error {
    Ec2Error::new(code, format!("The {what} does not exist"))
}

impl Vpc {
    /// An empty VPC.
    pub fn new(seed: u64, throttle: Throttle) -> Self {
        Vpc {
            subnets: BTreeMap::new(),
            enis: BTreeMap::new(),
            instances: BTreeMap::new(),
            rng: Rng::new(seed),
            throttle,
            faults: Faults::default(),
            latency: Latency::default(),
            stats: CallStats::default(),
            serial: 0,
            vpc_id: "vpc-0sim".into(),
            vpc_cidrs: Vec::new(),
            vpc_ipv6_cidrs: Vec::new(),
            default_security_groups: vec!["sg-0sim".into()],
            security_groups: Default::default(),
            denied: Default::default(),
            transitions: std::collections::BinaryHeap::new(),
        }
    }

    /// Add a subnet (its block joins the VPC CIDRs if no VPC block covers it).
    pub fn add_subnet(&mut self, subnet: Subnet) {
        if !self.vpc_cidrs.iter().any(|c| c.contains(&subnet.cidr)) {
            self.vpc_cidrs.push(subnet.cidr);
        }
        self.subnets.insert(subnet.id.clone(), subnet);
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.serial += 1;
        format!("{prefix}-{:017x}", self.serial)
    }

    /// Counters so far.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// Throttling, fault injection and counting for one call of `action`.
    pub fn call(&mut self, action: Ec2Action, now: Time) -> Result<(), Ec2Error> {
        self.settle(now);
        *self
            .stats
            .calls
            .entry(action.name().to_string())
            .or_default() += 1;
        let denied = self.denied.contains(action.name());
        let r = self.throttle.check(action, now).and_then(|()| {
            if denied {
                Err(Ec2Error::new(
                    Ec2ErrorCode::UnauthorizedOperation,
                    format!("You are not authorized to perform this operation. (ec2:{} denied, injected)", action.name()),
                ))
            } else if self.rng.chance(self.faults.throttle_rate) {
                Err(Ec2Error::new(
                    Ec2ErrorCode::RequestLimitExceeded,
                    "Request limit exceeded (injected)",
                ))
            } else if self.rng.chance(self.faults.error_rate) {
                Err(Ec2Error::new(
                    Ec2ErrorCode::InternalError,
                    "An internal error has occurred (injected)",
                ))
            } else {
                Ok(())
            }
        });
        if let Err(e) = &r {
            self.count_error(e);
        }
        r
    }

    fn count_error(&mut self, e: &Ec2Error) {
        *self
            .stats
            .errors
            .entry(e.code.as_str().to_string())
            .or_default() += 1;
    }

    /// Complete the ENI state transitions due by `now`.
    pub fn settle(&mut self, now: Time) {
        while let Some(std::cmp::Reverse((at, _))) = self.transitions.peek() {
            if *at > now {
                break;
            }
            let std::cmp::Reverse((_, id)) = self.transitions.pop().expect("peeked");
            if let Some(e) = self.enis.get_mut(&id) {
                e.status = match e.status {
                    EniStatus::Attaching => EniStatus::InUse,
                    EniStatus::Detaching => EniStatus::Available,
                    other => other,
                };
            }
        }
    }

    fn transition(&mut self, eni: &str, after_ms: u64, now: Time) {
        let at = now.plus(std::time::Duration::from_millis(after_ms));
        self.transitions
            .push(std::cmp::Reverse((at, eni.to_string())));
    }

    /// The ENI, or `InvalidNetworkInterfaceID.NotFound` (counted).
    fn eni_checked(&mut self, id: &str) -> Result<&mut SimEni, Ec2Error> {
        if !self.enis.contains_key(id) {
            let e = not_found(
                Ec2ErrorCode::InvalidNetworkInterfaceIdNotFound,
                &format!("interface ID '{id}'"),
            );
            self.count_error(&e);
            return Err(e);
        }
        Ok(self.enis.get_mut(id).expect("checked"))
    }

    fn subnet_mut(&mut self, id: &str) -> Result<&mut Subnet, Ec2Error> {
        self.subnets.get_mut(id).ok_or_else(|| {
            not_found(
                Ec2ErrorCode::InvalidSubnetIdNotFound,
                &format!("subnet ID '{id}'"),
            )
        })
    }

    /// One ENI.
    pub fn eni(&self, id: &str) -> Option<&SimEni> {
        self.enis.get(id)
    }

    /// All ENIs.
    pub fn enis(&self) -> impl Iterator<Item = &SimEni> {
        self.enis.values()
    }

    /// One instance.
    pub fn instance(&self, id: &str) -> Option<&Instance> {
        self.instances.get(id)
    }

    /// Launch an instance with its primary ENI (RunInstances; not a daemon call, not throttled).
    pub fn run_instance(
        &mut self,
        instance_type: &str,
        limits: &InstanceLimits,
        subnet_id: &str,
        now: Time,
    ) -> Result<String, Ec2Error> {
        let id = self.next_id("i");
        let eni = self.create_eni_inner(
            subnet_id,
            &format!("Primary network interface of {id}"),
            now,
        )?;
        let inst = Instance {
            id: id.clone(),
            instance_type: instance_type.to_string(),
            limits: limits.clone(),
            subnet_id: subnet_id.to_string(),
            primary_eni: eni.clone(),
        };
        self.instances.insert(id.clone(), inst);
        // A node in a dual-stack subnet launches with one IPv6 address (IMDS `ipv6`).
        if self.subnets[subnet_id].ipv6_cidr.is_some() {
            self.add_ipv6(&eni, 1, 0)?;
        }
        self.attach_inner(&eni, &id, 0, now)?;
        if let Some(a) = self.enis.get_mut(&eni).and_then(|e| e.attachment.as_mut()) {
            a.delete_on_termination = true;
        }
        Ok(id)
    }

    fn create_eni_inner(
        &mut self,
        subnet_id: &str,
        description: &str,
        now: Time,
    ) -> Result<String, Ec2Error> {
        let mut rng = self.rng.clone();
        let ip = self.subnet_mut(subnet_id)?.alloc_ip(&mut rng);
        self.rng = rng;
        let ip = ip?;
        let id = self.next_id("eni");
        let mac = format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            (self.serial >> 32) as u8,
            (self.serial >> 24) as u8,
            (self.serial >> 16) as u8,
            (self.serial >> 8) as u8,
            self.serial as u8
        );
        let eni = SimEni {
            id: id.clone(),
            subnet_id: subnet_id.to_string(),
            mac,
            primary_ip: ip,
            secondary_ips: Vec::new(),
            prefixes: Vec::new(),
            ipv6_addresses: Vec::new(),
            ipv6_prefixes: Vec::new(),
            status: EniStatus::Available,
            attachment: None,
            description: description.to_string(),
            tags: BTreeMap::new(),
            created_at: now,
            security_groups: self.default_security_groups.clone(),
            conntrack: None,
        };
        self.enis.insert(id.clone(), eni);
        Ok(id)
    }

    /// `CreateNetworkInterface` with optional secondary IPs or prefixes.
    pub fn create_network_interface(
        &mut self,
        subnet_id: &str,
        description: &str,
        tags: BTreeMap<String, String>,
        secondary_ips: u32,
        prefixes: u32,
        now: Time,
    ) -> Result<String, Ec2Error> {
        self.call(Ec2Action::CreateNetworkInterface, now)?;
        let id = self
            .create_eni_inner(subnet_id, description, now)
            .inspect_err(|e| self.count_error(e))?;
        self.enis.get_mut(&id).expect("just created").tags = tags;
        let grown = if prefixes > 0 {
            self.add_prefixes(&id, prefixes, None).map(drop)
        } else {
            self.add_ips(&id, secondary_ips, None).map(drop)
        };
        if let Err(e) = grown {
            // EC2 creates nothing when the addresses cannot be had.
            self.delete_inner(&id);
            self.count_error(&e);
            return Err(e);
        }
        Ok(id)
    }
}
