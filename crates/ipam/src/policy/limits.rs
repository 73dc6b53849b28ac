//! Per-node limits the policy works within (spec c.1), derived from the instance type and the
//! settings.

use serde::Serialize;
use vpc_cni_limits::{IPS_PER_PREFIX, InstanceLimits};

use crate::settings::Settings;

/// Limits of one node's pool on card 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PoolLimits {
    /// `maxENI`: `MAX_ENI` when it is ≥ 1 and below the instance limit, else the instance limit.
    pub max_eni: u32,
    /// IPv4 addresses per ENI, primary included.
    pub ipv4_per_eni: u32,
    /// Pod addresses one ENI can hold (`maxIPsPerENI`).
    pub max_ips_per_eni: u32,
    /// Prefixes one ENI can hold (0 in secondary-IP mode).
    pub max_prefixes_per_eni: u32,
    /// Node capacity in pods; growth stops once total IPs reach it.
    pub max_pods: u32,
    /// ENIs attached but not managed by ipamd on this card.
    pub unmanaged_enis: u32,
    /// Whether prefix delegation is really in effect (it needs Nitro or bare metal).
    pub prefix_delegation: bool,
    /// Whether a trunk ENI is already attached (security groups for pods).
    pub trunk_attached: bool,
}

impl PoolLimits {
    /// Derive the limits; `max_pods` is the node's pod capacity.
    pub fn new(instance: &InstanceLimits, settings: &Settings, max_pods: u32) -> Self {
        let max_eni = match settings.max_eni {
            Some(n) if n >= 1 && n < instance.eni_limit => n,
            _ => instance.eni_limit,
        };
        // Upstream falls back to secondary IPs (with a warning) on non-Nitro types.
        let prefix_delegation = settings.prefix_delegation && instance.supports_prefix_delegation();
        let per_eni = instance.ipv4_limit.saturating_sub(1);
        PoolLimits {
            max_eni,
            ipv4_per_eni: instance.ipv4_limit,
            max_ips_per_eni: if prefix_delegation {
                per_eni * IPS_PER_PREFIX
            } else {
                per_eni
            },
            max_prefixes_per_eni: if prefix_delegation { per_eni } else { 0 },
            max_pods,
            unmanaged_enis: 0,
            prefix_delegation,
            trunk_attached: false,
        }
    }

    /// CIDRs one ENI can hold in the current mode.
    pub fn max_cidrs_per_eni(&self) -> u32 {
        if self.prefix_delegation {
            self.max_prefixes_per_eni
        } else {
            self.max_ips_per_eni
        }
    }
}
