//! [`Cloud`] over the simulated VPC: one instance in an in-process VPC, with the VPC's latencies
//! slept in real time (scaled; 0 for tests).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::Ipv4Net;
use vpc_cni_ipam::Time;
use vpc_cni_limits::InstanceType;
use vpc_cni_sim::discovery::candidates;
use vpc_cni_sim::{Ec2Error, ImdsInterface, Subnet, Throttle, Vpc};

use crate::{Cloud, CloudError, EniPlacement, InstanceMeta, Interface, SubnetFacts};

fn local(code: &str, message: String) -> CloudError {
    CloudError {
        code: code.into(),
        message,
    }
}

fn err(e: Ec2Error) -> CloudError {
    CloudError {
        code: e.code.as_str().to_string(),
        message: e.message,
    }
}

/// One simulated instance in its own simulated VPC, optionally persisted to a state file so
/// the VPC outlives daemon restarts (as a real VPC does).
#[derive(Clone)]
pub struct SimCloud {
    vpc: Arc<Mutex<Vpc>>,
    instance_id: String,
    instance_type: String,
    state_file: Option<PathBuf>,
    subnet_discovery: bool,
}

/// What the state file holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedState {
    vpc: Vpc,
    instance_id: String,
    instance_type: String,
}

impl SimCloud {
    /// Launch `instance` in a fresh VPC with one subnet `cidr`. `latency_scale` scales the
    /// simulated latencies actually slept (1.0 = as configured, 0 = none).
    pub fn launch(
        instance: &InstanceType,
        cidr: Ipv4Net,
        seed: u64,
        latency_scale: f64,
    ) -> Result<Self, CloudError> {
        Self::launch_with_state(instance, cidr, seed, latency_scale, None)
    }

    /// Like [`SimCloud::launch`], but keep the VPC in `state_file`: load it when the file exists
    /// (the same instance, ENIs and addresses as before a restart), save it after every change.
    pub fn launch_with_state(
        instance: &InstanceType,
        cidr: Ipv4Net,
        seed: u64,
        latency_scale: f64,
        state_file: Option<&Path>,
    ) -> Result<Self, CloudError> {
        Self::launch_dual_stack(instance, cidr, None, seed, latency_scale, state_file)
    }

    /// Like [`SimCloud::launch_with_state`]; with `ipv6` (the VPC's /56, or a /64) the subnet is
    /// dual-stack (its first /64) and the instance launches with an IPv6 address.
    pub fn launch_dual_stack(
        instance: &InstanceType,
        cidr: Ipv4Net,
        ipv6: Option<ipnet::Ipv6Net>,
        seed: u64,
        latency_scale: f64,
        state_file: Option<&Path>,
    ) -> Result<Self, CloudError> {
        if let Some(path) = state_file
            && path.exists()
        {
            let bad = |e: String| local("StateFile", format!("{}: {e}", path.display()));
            let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
            let saved: SavedState = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            if saved.instance_type != instance.name {
                return Err(bad(format!(
                    "holds a {} node, not {}: pass --instance-type {} to keep it, or remove the file for a new VPC",
                    saved.instance_type, instance.name, saved.instance_type
                )));
            }
            if let Some(sub) = saved.vpc.subnets.values().next()
                && sub.cidr != cidr
            {
                return Err(bad(format!(
                    "holds subnet {}, not {cidr}: pass --subnet {} to keep it, or remove the file for a new VPC",
                    sub.cidr, sub.cidr
                )));
            }
            return Ok(SimCloud {
                vpc: Arc::new(Mutex::new(saved.vpc)),
                instance_id: saved.instance_id,
                instance_type: saved.instance_type,
                state_file: Some(path.to_path_buf()),
                subnet_discovery: true,
            });
        }
        let mut vpc = Vpc::new(seed, Throttle::new(true, 1.0, Time::ZERO));
        // The VPC's own time-based views (IMDS lag, attaching/detaching) run on the same scale.
        let l = vpc.latency;
        let scale = |ms: u64| (ms as f64 * latency_scale) as u64;
        vpc.latency = vpc_cni_sim::Latency {
            eni_attach_ms: scale(l.eni_attach_ms),
            imds_lag_ms: scale(l.imds_lag_ms),
            assign_ms: scale(l.assign_ms),
            detach_ms: scale(l.detach_ms),
        };
        let mut subnet = Subnet::new("subnet-0sim", cidr, "us-east-1a").map_err(err)?;
        if let Some(v6) = ipv6 {
            vpc.vpc_ipv6_cidrs = vec![v6.trunc()];
            let first = ipnet::Ipv6Net::new(v6.network(), 64.max(v6.prefix_len()))
                .expect("a prefix length of 64 to 128");
            subnet = subnet.with_ipv6(first).map_err(err)?;
        }
        vpc.add_subnet(subnet);
        let id = vpc
            .run_instance(&instance.name, &instance.limits, "subnet-0sim", Time::ZERO)
            .map_err(err)?;
        let c = SimCloud {
            vpc: Arc::new(Mutex::new(vpc)),
            instance_id: id,
            instance_type: instance.name.clone(),
            state_file: state_file.map(Path::to_path_buf),
            subnet_discovery: true,
        };
        c.save();
        Ok(c)
    }

    /// Subnet discovery on (the default) or off (`ENABLE_SUBNET_DISCOVERY`): new ENIs go to the
    /// eligible subnets of the instance's AZ, most free first, or to its own subnet only.
    pub fn with_subnet_discovery(mut self, on: bool) -> Self {
        self.subnet_discovery = on;
        self
    }

    /// Subnets to try for a new ENI (spec c.5), with the shared discovery rules.
    fn candidate_subnets(&self, vpc: &Vpc) -> Vec<String> {
        vpc.instance(&self.instance_id)
            .map(|i| candidates(vpc, &i.subnet_id, self.subnet_discovery))
            .unwrap_or_default()
    }

    /// The simulated VPC (for inspection by tests and tools).
    pub fn vpc(&self) -> Arc<Mutex<Vpc>> {
        self.vpc.clone()
    }

    /// The simulated instance's ID.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Unix milliseconds: a clock that continues across restarts.
    fn now(&self) -> Time {
        Time(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        )
    }

    /// Persist the VPC (atomically) when a state file is configured.
    fn save(&self) {
        let Some(path) = &self.state_file else { return };
        let vpc = self.lock().clone();
        let saved = SavedState {
            vpc,
            instance_id: self.instance_id.clone(),
            instance_type: self.instance_type.clone(),
        };
        let tmp = path.with_extension("tmp");
        let written = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|body| {
                use std::io::Write;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&body)?;
                f.sync_all()?;
                std::fs::rename(&tmp, path)
            });
        if let Err(e) = written {
            tracing::error!(path = %path.display(), error = %e, "simulated VPC state not saved");
        }
    }

    async fn sleep_ms(&self, ms: u64) {
        let d = Duration::from_millis(ms);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vpc> {
        self.vpc.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn interface(i: ImdsInterface) -> Interface {
    let mut ips = i.local_ipv4s.into_iter();
    let primary = ips.next().unwrap_or(Ipv4Addr::UNSPECIFIED);
    Interface {
        id: i.interface_id,
        mac: i.mac,
        device_number: i.device_number,
        subnet_id: i.subnet_id,
        subnet_cidr: i.subnet_cidr,
        primary_ip: primary,
        secondary_ips: ips.collect(),
        prefixes: i.ipv4_prefixes,
        ipv6s: i.ipv6s,
        ipv6_prefixes: i.ipv6_prefixes,
        subnet_ipv6_cidrs: i.subnet_ipv6_cidrs,
    }
}

impl Cloud for SimCloud {
    async fn instance(&self) -> Result<InstanceMeta, CloudError> {
        let vpc = self.lock();
        let md = vpc
            .imds_instance(&self.instance_id)
            .ok_or_else(|| CloudError {
                code: "NotFound".into(),
                message: "instance is gone".into(),
            })?;
        Ok(InstanceMeta {
            instance_id: md.instance_id,
            instance_type: self.instance_type.clone(),
            availability_zone: md.availability_zone,
            region: "us-east-1".into(),
            primary_mac: md.mac,
            primary_ip: md.local_ipv4,
            vpc_cidrs: md.vpc_cidrs,
            ipv6: md.ipv6,
            vpc_ipv6_cidrs: md.vpc_ipv6_cidrs,
        })
    }

    async fn interfaces(&self) -> Result<Vec<Interface>, CloudError> {
        let now = self.now();
        let vpc = self.lock();
        Ok(vpc
            .imds_interfaces(&self.instance_id, now)
            .into_iter()
            .map(interface)
            .collect())
    }

    async fn assign(
        &self,
        eni: &str,
        ips: u32,
        prefixes: u32,
    ) -> Result<(Vec<Ipv4Addr>, Vec<Ipv4Net>), CloudError> {
        let ms = self.lock().latency.assign_ms;
        self.sleep_ms(ms).await;
        let now = self.now();
        let r = self
            .lock()
            .assign_private_ip_addresses(eni, ips, prefixes, now)
            .map_err(err);
        self.save();
        r
    }

    async fn unassign(&self, eni: &str, cidrs: &[Ipv4Net]) -> Result<(), CloudError> {
        let now = self.now();
        let r = self
            .lock()
            .unassign_private_ip_addresses(eni, cidrs, now)
            .map_err(err);
        self.save();
        r
    }

    async fn eni_addresses(&self, eni: &str) -> Result<(Vec<Ipv4Addr>, Vec<Ipv4Net>), CloudError> {
        let now = self.now();
        let page = self
            .lock()
            .describe_network_interfaces(
                &[vpc_cni_sim::EniFilter::Id(vec![eni.to_string()])],
                None,
                None,
                now,
            )
            .map_err(err)?;
        let e = page.enis.into_iter().next().ok_or_else(|| CloudError {
            code: "InvalidNetworkInterfaceID.NotFound".into(),
            message: format!("ENI {eni} not described"),
        })?;
        Ok((e.secondary_ips, e.prefixes))
    }

    async fn assign_ipv6_prefixes(
        &self,
        eni: &str,
        count: u32,
    ) -> Result<Vec<ipnet::Ipv6Net>, CloudError> {
        let ms = self.lock().latency.assign_ms;
        self.sleep_ms(ms).await;
        let now = self.now();
        let r = self
            .lock()
            .assign_ipv6_addresses(eni, 0, count, now)
            .map(|(_, nets)| nets)
            .map_err(err);
        self.save();
        r
    }

    async fn unassign_ipv6_prefixes(
        &self,
        eni: &str,
        prefixes: &[ipnet::Ipv6Net],
    ) -> Result<(), CloudError> {
        let now = self.now();
        let r = self
            .lock()
            .unassign_ipv6_addresses(eni, &[], prefixes, now)
            .map(drop)
            .map_err(err);
        self.save();
        r
    }

    async fn allocate_eni(
        &self,
        ips: u32,
        prefixes: u32,
        placement: Option<&EniPlacement>,
    ) -> Result<Interface, CloudError> {
        let now = self.now();
        let (id, wait) = {
            let mut vpc = self.lock();
            let device = vpc.free_device_index(&self.instance_id, now).map_err(err)?;
            if let Some(p) = placement {
                vpc.check_security_groups(&p.security_groups).map_err(err)?;
            }
            let subnets = match placement {
                Some(p) => vec![p.subnet.clone()],
                None => self.candidate_subnets(&vpc),
            };
            let tags = BTreeMap::from([(
                "node.k8s.amazonaws.com/instance_id".to_string(),
                self.instance_id.clone(),
            )]);
            let mut last = None;
            let mut made = None;
            for subnet in subnets {
                match vpc.create_network_interface(
                    &subnet,
                    &format!("aws-K8S-{}", self.instance_id),
                    tags.clone(),
                    ips,
                    prefixes,
                    now,
                ) {
                    Ok(id) => {
                        made = Some(id);
                        break;
                    }
                    // Full: the next eligible subnet, as upstream's AllocENI.
                    Err(e) if e.code.is_insufficient_addresses() => last = Some(err(e)),
                    Err(e) => return Err(err(e)),
                }
            }
            let id = made.ok_or_else(|| {
                last.unwrap_or_else(|| {
                    local(
                        "NoEligibleSubnet",
                        "CreateNetworkInterface: no eligible subnet (the primary subnet is tagged kubernetes.io/role/cni=0)".into(),
                    )
                })
            })?;
            if let Some(p) = placement.filter(|p| !p.security_groups.is_empty()) {
                vpc.set_security_groups_unmetered(&id, &p.security_groups);
            }
            if let Err(e) = vpc.attach_network_interface(&id, &self.instance_id, device, now) {
                let _ = vpc.delete_network_interface(&id, now);
                return Err(err(e));
            }
            vpc.set_delete_on_termination(&id, true, now).map_err(err)?;
            (id, vpc.latency.eni_attach_ms + vpc.latency.imds_lag_ms)
        };
        self.save();
        self.sleep_ms(wait).await;
        // Upstream polls IMDS until the ENI shows; with latency scaled down, read EC2's view.
        let vpc = self.lock();
        let e = vpc.eni(&id).expect("just created");
        let a = e.attachment.as_ref().expect("attached");
        Ok(Interface {
            id: e.id.clone(),
            mac: e.mac.clone(),
            device_number: a.device_index,
            subnet_id: e.subnet_id.clone(),
            subnet_cidr: vpc.subnets[&e.subnet_id].cidr,
            primary_ip: e.primary_ip,
            secondary_ips: e.secondary_ips.clone(),
            prefixes: e.prefixes.clone(),
            ipv6s: e.ipv6_addresses.clone(),
            ipv6_prefixes: e.ipv6_prefixes.clone(),
            subnet_ipv6_cidrs: vpc.subnets[&e.subnet_id].ipv6_cidr.into_iter().collect(),
        })
    }

    async fn subnet(&self, id: &str) -> Result<SubnetFacts, CloudError> {
        let vpc = self.lock();
        let s = vpc.subnets.get(id).ok_or_else(|| {
            local(
                "InvalidSubnetID.NotFound",
                format!("The subnet ID '{id}' does not exist"),
            )
        })?;
        Ok(SubnetFacts {
            id: s.id.clone(),
            vpc_id: vpc.vpc_id.clone(),
            zone: s.az.clone(),
            cidr: s.cidr,
        })
    }

    async fn check_security_groups(&self, ids: &[String]) -> Result<(), CloudError> {
        self.lock().check_security_groups(ids).map_err(err)
    }

    async fn excluded_subnets(&self, subnets: &[String]) -> Result<Vec<String>, CloudError> {
        if !self.subnet_discovery {
            return Ok(Vec::new());
        }
        let vpc = self.lock();
        Ok(subnets
            .iter()
            .filter(|id| {
                vpc.subnets
                    .get(*id)
                    .is_some_and(|s| vpc_cni_sim::discovery::excluded(&s.tags, None))
            })
            .cloned()
            .collect())
    }

    async fn free_eni(&self, eni: &str) -> Result<(), CloudError> {
        let now = self.now();
        let detach_ms = {
            let mut vpc = self.lock();
            vpc.detach_network_interface(eni, now).map_err(err)?;
            vpc.latency.detach_ms
        };
        // Upstream waits 2 s between detach and delete; the ENI must have left `detaching`.
        self.sleep_ms(detach_ms).await;
        let now = self.now().max(Time(now.as_millis() + detach_ms));
        let r = self.lock().delete_network_interface(eni, now).map_err(err);
        self.save();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpc_cni_limits::LimitsTable;

    #[tokio::test]
    async fn sim_cloud_round_trip() {
        let t = LimitsTable::builtin().get("m5.large").unwrap().clone();
        let c = SimCloud::launch(&t, "10.0.0.0/20".parse().unwrap(), 1, 0.0).unwrap();
        let md = c.instance().await.unwrap();
        assert_eq!(md.instance_type, "m5.large");
        let ifs = c.interfaces().await.unwrap();
        assert_eq!(ifs.len(), 1);
        let (ips, _) = c.assign(&ifs[0].id, 3, 0).await.unwrap();
        assert_eq!(ips.len(), 3);
        let eni = c.allocate_eni(0, 2, None).await.unwrap();
        assert_eq!((eni.device_number, eni.prefixes.len()), (1, 2));
        c.unassign(&eni.id, &eni.prefixes[..1]).await.unwrap();
        c.free_eni(&eni.id).await.unwrap();
        assert!(c.vpc().lock().unwrap().eni(&eni.id).is_none());
        let e = c.assign(&ifs[0].id, 7, 0).await.unwrap_err();
        assert_eq!(e.code, "PrivateIpAddressLimitExceeded");
    }
}
