//! IPv6 node groups (`ENABLE_IPv6=true` in a group's env): each node's primary ENI gets one /80
//! at launch, its pods take addresses of it, and no pool is managed — so the subnet's IPv4
//! space holds one address per node, which is what a user compares against IPv4 modes.

use std::collections::BTreeMap;

use vpc_cni_ipam::settings::EnvReader;
use vpc_cni_ipam::{Datastore, IpamKey, Settings, V6Pool};

use super::{Cluster, SimError};
use crate::report::Recorder;
use crate::vpc::Vpc;

/// Whether a group runs in IPv6 mode, with upstream's start-up checks.
pub(super) fn enabled(
    env: &BTreeMap<String, String>,
    settings: &Settings,
    group: &str,
) -> Result<bool, SimError> {
    let r = EnvReader::new(|k| env.get(k).cloned());
    let on = r
        .boolean("ENABLE_IPv6", false)
        .map_err(|e| SimError::Scenario(format!("node group {group}: {e}")))?;
    if on && !settings.prefix_delegation {
        return Err(SimError::Scenario(format!(
            "node group {group}: ENABLE_IPv6=true needs ENABLE_PREFIX_DELEGATION=true"
        )));
    }
    if on && settings.custom_networking {
        return Err(SimError::Scenario(format!(
            "node group {group}: ENABLE_IPv6=true cannot run with custom networking"
        )));
    }
    Ok(on)
}

/// Give a new node's primary ENI its /80 and the datastore its IPv6 pool; `false` (recorded as
/// a launch failure) when the subnet has no IPv6 block.
pub(super) fn setup(vpc: &mut Vpc, ds: &mut Datastore, rec: &mut Recorder, group: &str) -> bool {
    let primary = ds.enis()[0].id.clone();
    match vpc.add_ipv6(&primary, 0, 1) {
        Ok((_, nets)) if !nets.is_empty() => {
            ds.set_v6(V6Pool::new(&primary, nets[0], ds.cooldown()));
            true
        }
        Ok(_) => false,
        Err(e) => {
            rec.node_launch_failures
                .push(format!("{group}: ENABLE_IPv6=true: {e}"));
            false
        }
    }
}

/// Pods holding an IPv6 address on a node.
pub(super) fn assigned(ds: &Datastore) -> u32 {
    ds.v6().map_or(0, |p| p.assigned() as u32)
}

impl Cluster {
    /// A pod's ADD: an address of the /80 in IPv6 mode, else of the IPv4 pool.
    pub(super) fn assign_pod(&mut self, n: u32, key: &IpamKey) -> bool {
        let now = self.now;
        let ds = &mut self.nodes[n as usize].ds;
        if let Some(pool) = ds.v6_mut() {
            pool.assign(key, Default::default(), now);
            return true;
        }
        ds.assign(key, Default::default(), now).is_ok()
    }

    /// A pod's DEL.
    pub(super) fn release_pod(&mut self, n: u32, key: &IpamKey) {
        let now = self.now;
        let ds = &mut self.nodes[n as usize].ds;
        match ds.v6_mut() {
            Some(pool) => {
                pool.unassign(key, now);
            }
            None => {
                ds.unassign(key, now);
            }
        }
    }
}
