//! The EC2/IMDS emulator: the simulated VPC served on loopback over the EC2 Query API and IMDSv2,
//! so any AWS SDK (and this project's `aws` backend) can be pointed at it with
//! `AWS_ENDPOINT_URL_EC2` and `AWS_EC2_METADATA_SERVICE_ENDPOINT`. Throttling, latency and
//! faults of the simulated VPC apply.

mod conntrack;
pub mod ec2;
mod ec2_groups;
mod ec2_ipv6;
pub mod imds;
pub mod params;
pub mod server;
pub mod xml;

use std::net::SocketAddr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use vpc_cni_ipam::Time;
use vpc_cni_limits::InstanceType;
use vpc_cni_sim::{Ec2Error, Subnet, Throttle, Vpc};

pub use server::{EmulatorError, Shared};

/// What to emulate.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// One simulated instance per entry.
    pub instances: Vec<InstanceType>,
    /// The first subnet instances live in (`subnet-0emu`, zone `<region>a`; also the VPC block).
    pub subnet: Ipv4Net,
    /// Further subnets (`subnet-1emu`, `subnet-2emu`, … in this order): node subnets share the
    /// instances round-robin with the first; pod subnets hold no instance (custom networking).
    pub extra_subnets: Vec<SubnetSpec>,
    /// Security groups that exist besides the VPC's default one (`sg-0sim`).
    pub security_groups: Vec<String>,
    /// Seed of the VPC.
    pub seed: u64,
    /// Scale of the latencies actually waited (0 = none).
    pub latency_scale: f64,
    /// Probability of an injected `InternalError` per EC2 call.
    pub error_rate: f64,
    /// Probability of an injected `RequestLimitExceeded` per EC2 call (on top of the buckets).
    pub throttle_rate: f64,
    /// IPv6 block of a dual-stack VPC (a /56; the subnet gets its first /64).
    pub ipv6_cidr: Option<ipnet::Ipv6Net>,
    /// Region reported by IMDS.
    pub region: String,
}

/// A subnet beyond the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetSpec {
    /// Its block.
    pub cidr: Ipv4Net,
    /// Its availability zone (full name, e.g. `us-east-1b`).
    pub zone: String,
    /// A pod subnet: no instance is placed in it.
    pub pod_only: bool,
}

/// The ID of the `k`-th subnet (0: the first, then the extra ones in order).
pub fn subnet_id(k: usize) -> String {
    format!("subnet-{k}emu")
}

/// A running emulator.
pub struct Running {
    /// The shared state (the VPC inside, for tests that compare).
    pub shared: Arc<Shared>,
    /// EC2 endpoint.
    pub ec2: SocketAddr,
    /// (instance ID, IMDS endpoint) per instance.
    pub imds: Vec<(String, SocketAddr)>,
}

/// Build the VPC with its instances.
pub fn build_vpc(cfg: &EmulatorConfig) -> Result<(Vpc, Vec<String>), Ec2Error> {
    let mut vpc = Vpc::new(cfg.seed, Throttle::new(true, 1.0, Time::ZERO));
    // Attach time, IMDS lag and call latencies all run on the same scale.
    let l = vpc.latency;
    let scale = |ms: u64| (ms as f64 * cfg.latency_scale) as u64;
    vpc.latency = vpc_cni_sim::Latency {
        eni_attach_ms: scale(l.eni_attach_ms),
        imds_lag_ms: scale(l.imds_lag_ms),
        assign_ms: scale(l.assign_ms),
        detach_ms: scale(l.detach_ms),
    };
    vpc.vpc_cidrs = vec![cfg.subnet];
    vpc.faults.error_rate = cfg.error_rate;
    vpc.faults.throttle_rate = cfg.throttle_rate;
    let mut subnet = Subnet::new("subnet-0emu", cfg.subnet, &format!("{}a", cfg.region))?;
    if let Some(v6) = cfg.ipv6_cidr {
        if v6.prefix_len() > 64 {
            return Err(Ec2Error::new(
                vpc_cni_sim::Ec2ErrorCode::InvalidParameterValue,
                format!("VPC IPv6 block {v6}: expected a /56 (at most /64)"),
            ));
        }
        vpc.vpc_ipv6_cidrs = vec![v6.trunc()];
        let first = ipnet::Ipv6Net::new(v6.network(), 64).expect("/64");
        subnet = subnet.with_ipv6(first)?;
    }
    vpc.add_subnet(subnet);
    let mut homes = vec![subnet_id(0)];
    for (k, spec) in cfg.extra_subnets.iter().enumerate() {
        let id = subnet_id(k + 1);
        if vpc.subnets.values().any(|s| overlaps(s.cidr, spec.cidr)) {
            return Err(Ec2Error::new(
                vpc_cni_sim::Ec2ErrorCode::InvalidParameterValue,
                format!("subnet {}: overlaps another subnet of the VPC", spec.cidr),
            ));
        }
        vpc.add_subnet(Subnet::new(&id, spec.cidr, &spec.zone)?);
        if !spec.pod_only {
            homes.push(id);
        }
    }
    vpc.security_groups = cfg.security_groups.iter().cloned().collect();
    let mut ids = Vec::new();
    for (n, t) in cfg.instances.iter().enumerate() {
        let home = &homes[n % homes.len()];
        ids.push(vpc.run_instance(&t.name, &t.limits, home, Time::ZERO)?);
    }
    Ok((vpc, ids))
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Start the EC2 listener on `ec2_addr` and one IMDS listener per instance on `imds_addr`
/// (port 0: any free port each).
pub async fn start(
    cfg: &EmulatorConfig,
    ec2_addr: SocketAddr,
    imds_addr: SocketAddr,
) -> Result<Running, Box<dyn std::error::Error + Send + Sync>> {
    let (vpc, ids) = build_vpc(cfg).map_err(|e| format!("{}: {}", e.code.as_str(), e.message))?;
    let shared = Shared::new(vpc, &cfg.region);
    let ec2 = server::serve(ec2_addr, server::ec2_router(shared.clone())).await?;
    let mut imds = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let mut addr = imds_addr;
        if addr.port() != 0 {
            addr.set_port(addr.port() + k as u16);
        }
        imds.push((
            id.clone(),
            server::serve(addr, server::imds_router(shared.clone(), id)).await?,
        ));
    }
    Ok(Running { shared, ec2, imds })
}
