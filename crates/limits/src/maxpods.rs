//! Max-pods arithmetic of the EKS `max-pods-calculator.sh` (spec d.1/d.2).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::LimitsError;
use crate::table::{Hypervisor, InstanceType};

/// Addresses in one /28 prefix.
pub const IPS_PER_PREFIX: u32 = 16;
/// Pods on host networking that max pods leaves room for (aws-node, kube-proxy).
pub const HOST_NETWORK_PODS: u32 = 2;
/// The calculator's cap for types with at most 30 vCPUs.
pub const SMALL_CAP: u32 = 110;
/// The calculator's cap for types with more than 30 vCPUs.
pub const LARGE_CAP: u32 = 250;
/// vCPU count above which the large cap applies.
pub const LARGE_CAP_VCPUS: u32 = 30;

/// A VPC CNI version as the calculator reads it: only major and minor matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CniVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl CniVersion {
    /// Whether prefix delegation exists in this version (> 1.8, as the calculator tests it).
    pub fn supports_prefix_delegation(&self) -> bool {
        self.major > 1 || (self.major == 1 && self.minor > 8)
    }
}

impl FromStr for CniVersion {
    type Err = LimitsError;

    /// Accepts `1.19.0`, `v1.19.0`, `1.19.0-eksbuild.1` and `1.19`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LimitsError::BadCniVersion(s.to_string());
        let trimmed = s.trim().trim_start_matches('v');
        let mut parts = trimmed.split(['.', '-', '+']);
        let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        Ok(CniVersion { major, minor })
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The calculator's flags.
#[derive(Debug, Clone, Copy)]
pub struct MaxPodsOptions {
    /// `--cni-version`.
    pub cni_version: CniVersion,
    /// `--cni-custom-networking-enabled`: the primary ENI carries no pods.
    pub custom_networking: bool,
    /// `--cni-prefix-delegation-enabled`.
    pub prefix_delegation: bool,
    /// `--cni-max-eni N`.
    pub max_eni: Option<u32>,
}

/// Which formula produced the raw number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Formula {
    /// `ENIs × (IPv4 per ENI − 1) + 2`.
    SecondaryIp,
    /// `ENIs × ((IPv4 per ENI − 1) × 16) + 2`.
    Prefix,
}

/// A max-pods answer with the figures behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MaxPods {
    /// ENIs the formula used (after `--cni-max-eni` and custom networking).
    pub enis: u32,
    /// IPv4 addresses per ENI.
    pub ipv4_per_eni: u32,
    /// The formula applied.
    pub formula: Formula,
    /// The uncapped number (`--show-max-allowed`).
    pub max_allowed: u32,
    /// The cap that applies (110 or 250).
    pub cap: u32,
    /// Whether the vCPU count was unknown (the cap then defaults to 110, as the script does).
    pub vcpus_unknown: bool,
    /// `min(cap, max_allowed)`: what the calculator prints by default.
    pub recommended: u32,
}

/// Compute max pods exactly as `max-pods-calculator.sh` does.
pub fn max_pods(t: &InstanceType, opts: &MaxPodsOptions) -> MaxPods {
    let mut enis = t.limits.eni_limit;
    if let Some(max) = opts.max_eni {
        enis = enis.min(max);
    }
    if opts.custom_networking {
        enis = enis.saturating_sub(1);
    }
    let ips = t.limits.ipv4_limit;
    // The script tests the hypervisor string, so bare metal (no hypervisor) never gets the
    // prefix formula even though the CNI supports prefixes there.
    let formula = if t.limits.hypervisor == Hypervisor::Nitro
        && opts.prefix_delegation
        && opts.cni_version.supports_prefix_delegation()
    {
        Formula::Prefix
    } else {
        Formula::SecondaryIp
    };
    let max_allowed = raw_max_pods(enis, ips, formula);
    let (cap, vcpus_unknown) = match t.vcpus {
        Some(v) if v > LARGE_CAP_VCPUS => (LARGE_CAP, false),
        Some(_) => (SMALL_CAP, false),
        None => (SMALL_CAP, true),
    };
    MaxPods {
        enis,
        ipv4_per_eni: ips,
        formula,
        max_allowed,
        cap,
        vcpus_unknown,
        recommended: max_allowed.min(cap),
    }
}

/// The bare formula for `enis` ENIs of `ipv4_per_eni` addresses.
pub fn raw_max_pods(enis: u32, ipv4_per_eni: u32, formula: Formula) -> u32 {
    let per_eni = ipv4_per_eni.saturating_sub(1);
    let per_eni = match formula {
        Formula::SecondaryIp => per_eni,
        Formula::Prefix => per_eni * IPS_PER_PREFIX,
    };
    enis * per_eni + HOST_NETWORK_PODS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LimitsTable;

    fn opts(v: &str, pd: bool) -> MaxPodsOptions {
        MaxPodsOptions {
            cni_version: v.parse().unwrap(),
            custom_networking: false,
            prefix_delegation: pd,
            max_eni: None,
        }
    }

    #[test]
    fn calculator_test_cases() {
        // amazon-eks-ami templates/test/cases/max-pods-cni-*.sh and spec d.1.
        let table = LimitsTable::builtin();
        let cases: &[(&str, &str, bool, u32, u32)] = &[
            ("m5.8xlarge", "1.11.2", false, 234, 234),
            ("m5.8xlarge", "1.11.2", true, 250, 3714),
            ("c6in.32xlarge", "1.18.0", false, 250, 394),
            ("m4.xlarge", "1.7.5", false, 58, 58),
            ("m5.large", "1.9.0", true, 110, 434),
            ("m5.large", "1.8.0", true, 29, 29),
            ("t3.small", "1.19.0", false, 11, 11),
            ("p3dn.24xlarge", "1.19.0", false, 250, 737),
            ("m5.metal", "1.19.0", true, 250, 737),
        ];
        for &(ty, v, pd, want, allowed) in cases {
            let got = max_pods(table.get(ty).unwrap(), &opts(v, pd));
            assert_eq!(
                (got.recommended, got.max_allowed),
                (want, allowed),
                "{ty} {v} pd={pd}"
            );
        }
    }

    #[test]
    fn custom_networking_and_max_eni() {
        let table = LimitsTable::builtin();
        let m5 = table.get("m5.large").unwrap();
        let mut o = opts("1.19.0", false);
        o.custom_networking = true;
        assert_eq!(max_pods(m5, &o).recommended, 20);
        o.max_eni = Some(2);
        assert_eq!(max_pods(m5, &o).recommended, 11);
        o.custom_networking = false;
        o.max_eni = Some(10);
        assert_eq!(max_pods(m5, &o).recommended, 29);
    }

    #[test]
    fn version_parsing() {
        for (s, ok) in [
            ("1.9.0", true),
            ("v1.19.0-eksbuild.1", true),
            ("1.10", true),
            ("1", false),
            ("x.y.z", false),
            ("", false),
        ] {
            assert_eq!(s.parse::<CniVersion>().is_ok(), ok, "{s}");
        }
        assert!(
            !"1.8.9"
                .parse::<CniVersion>()
                .unwrap()
                .supports_prefix_delegation()
        );
        assert!(
            "1.9.0"
                .parse::<CniVersion>()
                .unwrap()
                .supports_prefix_delegation()
        );
        assert!(
            "2.0.0"
                .parse::<CniVersion>()
                .unwrap()
                .supports_prefix_delegation()
        );
    }
}
