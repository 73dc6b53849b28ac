//! Warm-pool settings read from the upstream environment variable names (spec f), with upstream
//! defaults. Unlike upstream, which silently falls back to a default on a bad value, a bad value
//! is an error naming the variable, the value and what is allowed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// `WARM_ENI_TARGET`.
pub const WARM_ENI_TARGET: &str = "WARM_ENI_TARGET";
/// `WARM_IP_TARGET`.
pub const WARM_IP_TARGET: &str = "WARM_IP_TARGET";
/// `MINIMUM_IP_TARGET`.
pub const MINIMUM_IP_TARGET: &str = "MINIMUM_IP_TARGET";
/// `WARM_PREFIX_TARGET`.
pub const WARM_PREFIX_TARGET: &str = "WARM_PREFIX_TARGET";
/// `MAX_ENI`.
pub const MAX_ENI: &str = "MAX_ENI";
/// `ENABLE_PREFIX_DELEGATION`.
pub const ENABLE_PREFIX_DELEGATION: &str = "ENABLE_PREFIX_DELEGATION";
/// `AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG`.
pub const CUSTOM_NETWORK_CFG: &str = "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG";
/// `IP_COOLDOWN_PERIOD`.
pub const IP_COOLDOWN_PERIOD: &str = "IP_COOLDOWN_PERIOD";
/// `ENABLE_POD_ENI`.
pub const ENABLE_POD_ENI: &str = "ENABLE_POD_ENI";
/// `AWS_MANAGE_ENIS_NON_SCHEDULABLE`.
pub const MANAGE_ENIS_NON_SCHEDULABLE: &str = "AWS_MANAGE_ENIS_NON_SCHEDULABLE";
/// `DISABLE_NETWORK_RESOURCE_PROVISIONING`.
pub const DISABLE_PROVISIONING: &str = "DISABLE_NETWORK_RESOURCE_PROVISIONING";
/// `ENABLE_SUBNET_DISCOVERY`.
pub const ENABLE_SUBNET_DISCOVERY: &str = "ENABLE_SUBNET_DISCOVERY";
/// `ENABLE_IMDS_ONLY_MODE`.
pub const ENABLE_IMDS_ONLY_MODE: &str = "ENABLE_IMDS_ONLY_MODE";
/// `VPC_CNI_POOL_POLICY` (ours): `aws` (upstream's warm targets) or `adaptive`.
pub const POOL_POLICY: &str = "VPC_CNI_POOL_POLICY";

/// Every variable [`Settings::from_env`] reads.
pub const VARIABLES: &[&str] = &[
    WARM_ENI_TARGET,
    WARM_IP_TARGET,
    MINIMUM_IP_TARGET,
    WARM_PREFIX_TARGET,
    MAX_ENI,
    ENABLE_PREFIX_DELEGATION,
    CUSTOM_NETWORK_CFG,
    IP_COOLDOWN_PERIOD,
    ENABLE_POD_ENI,
    MANAGE_ENIS_NON_SCHEDULABLE,
    DISABLE_PROVISIONING,
    ENABLE_SUBNET_DISCOVERY,
    ENABLE_IMDS_ONLY_MODE,
    POOL_POLICY,
];

/// Which warm-pool policy runs (`VPC_CNI_POOL_POLICY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Upstream ipamd's warm targets, bit for bit.
    #[default]
    Aws,
    /// Sized from observed pod arrivals and cloud delivery time; the upstream targets are
    /// bounds only (`MINIMUM_IP_TARGET` a floor, `MAX_ENI` and max pods caps).
    Adaptive,
}

impl PolicyKind {
    /// The value as written in `VPC_CNI_POOL_POLICY`.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Aws => "aws",
            PolicyKind::Adaptive => "adaptive",
        }
    }

    /// Parse `aws` or `adaptive` (case-insensitive).
    pub fn parse(v: &str) -> Result<Self, SettingsError> {
        match v.trim().to_ascii_lowercase().as_str() {
            "aws" => Ok(PolicyKind::Aws),
            "adaptive" => Ok(PolicyKind::Adaptive),
            _ => Err(invalid(POOL_POLICY, v, "aws or adaptive")),
        }
    }
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The value does not parse or is out of range.
    #[error("invalid {var}={value:?}: expected {expected}")]
    Invalid {
        /// Variable name.
        var: String,
        /// The value given.
        value: String,
        /// What is allowed.
        expected: String,
    },
    /// A combination upstream refuses at start-up.
    #[error("{0}")]
    Conflict(String),
}

/// The warm-pool settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Settings {
    /// ENIs' worth of free IPs to keep (SIP, when no warm IP targets).
    pub warm_eni_target: u32,
    /// Free IPs to keep; 0 = unset.
    pub warm_ip_target: u32,
    /// Floor on total IPs; 0 = unset.
    pub minimum_ip_target: u32,
    /// Free /28 prefixes to keep (PD, when no warm IP targets).
    pub warm_prefix_target: u32,
    /// Cap on ENIs.
    pub max_eni: Option<u32>,
    /// Use /28 prefixes.
    pub prefix_delegation: bool,
    /// Custom networking: no addresses added to the primary ENI.
    pub custom_networking: bool,
    /// Seconds before a released address is reused.
    #[serde(serialize_with = "secs")]
    pub ip_cooldown: Duration,
    /// Security groups for pods: one ENI slot is kept for the trunk.
    pub enable_pod_eni: bool,
    /// Grow and shrink even on unschedulable nodes.
    pub manage_enis_non_schedulable: bool,
    /// Never create/attach/free ENIs or addresses.
    pub disable_provisioning: bool,
    /// Choose among tagged subnets for new ENIs.
    pub subnet_discovery: bool,
    /// No EC2 calls (implies no provisioning).
    pub imds_only: bool,
    /// The warm-pool policy.
    pub pool_policy: PolicyKind,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            warm_eni_target: 1,
            warm_ip_target: 0,
            minimum_ip_target: 0,
            warm_prefix_target: 0,
            max_eni: None,
            prefix_delegation: false,
            custom_networking: false,
            ip_cooldown: Duration::from_secs(30),
            enable_pod_eni: false,
            manage_enis_non_schedulable: false,
            disable_provisioning: false,
            subnet_discovery: true,
            imds_only: false,
            pool_policy: PolicyKind::Aws,
        }
    }
}

/// Upper bound of every target and of `MAX_ENI`.
pub const MAX_TARGET: u32 = 1_000_000;
/// Upper bound of `IP_COOLDOWN_PERIOD`, seconds.
pub const MAX_COOLDOWN_S: u64 = 86_400;

/// Reads typed values from a variable lookup, producing [`SettingsError`]s that name the
/// variable. Shared by every component that reads upstream env vars.
pub struct EnvReader<F: Fn(&str) -> Option<String>> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> EnvReader<F> {
    /// Wrap a lookup (e.g. `|k| std::env::var(k).ok()`).
    pub fn new(lookup: F) -> Self {
        EnvReader { lookup }
    }

    /// The raw value, `None` when unset or blank.
    pub fn raw(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// A non-negative integer.
    pub fn uint(&self, var: &str, default: u32) -> Result<u32, SettingsError> {
        self.uint_min(var, 0).map(|v| v.unwrap_or(default))
    }

    /// An integer of at least `min`, `None` when unset.
    pub fn uint_min(&self, var: &str, min: u32) -> Result<Option<u32>, SettingsError> {
        let Some(v) = self.raw(var) else {
            return Ok(None);
        };
        match v.parse::<u32>() {
            Ok(n) if n >= min => Ok(Some(n)),
            _ => Err(invalid(var, &v, &format!("an integer ≥ {min}"))),
        }
    }

    /// A boolean in Go `strconv.ParseBool` syntax.
    pub fn boolean(&self, var: &str, default: bool) -> Result<bool, SettingsError> {
        let Some(v) = self.raw(var) else {
            return Ok(default);
        };
        match v.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
            _ => Err(invalid(
                var,
                &v,
                "true or false (or 1, t, T, TRUE, True, 0, f, F, FALSE, False)",
            )),
        }
    }
}

fn invalid(var: &str, value: &str, expected: &str) -> SettingsError {
    SettingsError::Invalid {
        var: var.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

impl Settings {
    /// Read the settings from a variable lookup.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let r = EnvReader::new(lookup);
        let d = Settings::default();
        let s = Settings {
            warm_eni_target: r.uint(WARM_ENI_TARGET, d.warm_eni_target)?,
            warm_ip_target: r.uint(WARM_IP_TARGET, 0)?,
            minimum_ip_target: r.uint(MINIMUM_IP_TARGET, 0)?,
            warm_prefix_target: r.uint(WARM_PREFIX_TARGET, 0)?,
            max_eni: r.uint_min(MAX_ENI, 1)?,
            prefix_delegation: r.boolean(ENABLE_PREFIX_DELEGATION, false)?,
            custom_networking: r.boolean(CUSTOM_NETWORK_CFG, false)?,
            ip_cooldown: Duration::from_secs(u64::from(r.uint(IP_COOLDOWN_PERIOD, 30)?)),
            enable_pod_eni: r.boolean(ENABLE_POD_ENI, false)?,
            manage_enis_non_schedulable: r.boolean(MANAGE_ENIS_NON_SCHEDULABLE, false)?,
            disable_provisioning: r.boolean(DISABLE_PROVISIONING, false)?,
            subnet_discovery: r.boolean(ENABLE_SUBNET_DISCOVERY, true)?,
            imds_only: r.boolean(ENABLE_IMDS_ONLY_MODE, false)?,
            pool_policy: r
                .raw(POOL_POLICY)
                .map(|v| PolicyKind::parse(&v))
                .transpose()?
                .unwrap_or_default(),
        };
        s.validate()?;
        Ok(s)
    }

    /// Read the settings from a map (e.g. a DaemonSet's `env` list).
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Self, SettingsError> {
        Self::from_lookup(|k| map.get(k).cloned())
    }

    /// The start-up checks upstream applies to these settings, plus bounds: no node holds a
    /// million addresses, and past that the arithmetic of the targets has no meaning.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for (var, v) in [
            (WARM_ENI_TARGET, self.warm_eni_target),
            (WARM_IP_TARGET, self.warm_ip_target),
            (MINIMUM_IP_TARGET, self.minimum_ip_target),
            (WARM_PREFIX_TARGET, self.warm_prefix_target),
            (MAX_ENI, self.max_eni.unwrap_or(1)),
        ] {
            if v > MAX_TARGET {
                return Err(invalid(
                    var,
                    &v.to_string(),
                    &format!("an integer ≤ {MAX_TARGET} (no node comes near it)"),
                ));
            }
        }
        if self.ip_cooldown.as_secs() > MAX_COOLDOWN_S {
            return Err(invalid(
                IP_COOLDOWN_PERIOD,
                &self.ip_cooldown.as_secs().to_string(),
                &format!("seconds ≤ {MAX_COOLDOWN_S} (one day)"),
            ));
        }
        // The adaptive policy sizes the pool itself: prefix mode needs no target there.
        if self.prefix_delegation
            && self.pool_policy == PolicyKind::Aws
            && self.warm_ip_target == 0
            && self.warm_prefix_target == 0
            && self.minimum_ip_target == 0
        {
            return Err(SettingsError::Conflict(format!(
                "{ENABLE_PREFIX_DELEGATION}=true needs {WARM_PREFIX_TARGET}, {WARM_IP_TARGET} or \
                 {MINIMUM_IP_TARGET} above 0 (the upstream entrypoint refuses to start otherwise); \
                 the shipped manifest sets {WARM_PREFIX_TARGET}=1"
            )));
        }
        Ok(())
    }

    /// `WARM_IP_TARGET > 0 || MINIMUM_IP_TARGET > 0`: these then override the ENI/prefix targets.
    pub fn warm_ip_targets_defined(&self) -> bool {
        self.warm_ip_target > 0 || self.minimum_ip_target > 0
    }

    /// Whether EC2 may be asked to grow or shrink the pool.
    pub fn provisioning_enabled(&self) -> bool {
        !self.disable_provisioning && !self.imds_only
    }

    /// The settings as upstream variable names and values (for `--output json` and docs).
    pub fn to_env(&self) -> BTreeMap<&'static str, String> {
        let mut m = BTreeMap::new();
        m.insert(WARM_ENI_TARGET, self.warm_eni_target.to_string());
        m.insert(WARM_IP_TARGET, self.warm_ip_target.to_string());
        m.insert(MINIMUM_IP_TARGET, self.minimum_ip_target.to_string());
        m.insert(WARM_PREFIX_TARGET, self.warm_prefix_target.to_string());
        if let Some(n) = self.max_eni {
            m.insert(MAX_ENI, n.to_string());
        }
        m.insert(ENABLE_PREFIX_DELEGATION, self.prefix_delegation.to_string());
        m.insert(CUSTOM_NETWORK_CFG, self.custom_networking.to_string());
        m.insert(IP_COOLDOWN_PERIOD, self.ip_cooldown.as_secs().to_string());
        if self.pool_policy != PolicyKind::Aws {
            // The adaptive policy ignores the warm targets: listing them would mislead.
            for var in [WARM_ENI_TARGET, WARM_IP_TARGET, WARM_PREFIX_TARGET] {
                m.remove(var);
            }
            m.insert(POOL_POLICY, self.pool_policy.to_string());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_map(&map)
    }

    #[test]
    fn defaults_are_upstreams() {
        let s = parse(&[]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.warm_eni_target, 1);
        assert_eq!(s.ip_cooldown, Duration::from_secs(30));
        assert!(s.subnet_discovery);
    }

    #[test]
    fn values_parse() {
        let s = parse(&[
            ("WARM_IP_TARGET", "5"),
            ("MINIMUM_IP_TARGET", " 25 "),
            ("WARM_PREFIX_TARGET", "1"),
            ("ENABLE_PREFIX_DELEGATION", "True"),
            ("MAX_ENI", "2"),
            ("IP_COOLDOWN_PERIOD", "0"),
        ])
        .unwrap();
        assert_eq!(
            (s.warm_ip_target, s.minimum_ip_target, s.warm_prefix_target),
            (5, 25, 1)
        );
        assert!(s.prefix_delegation && s.warm_ip_targets_defined());
        assert_eq!(s.max_eni, Some(2));
        assert_eq!(s.ip_cooldown, Duration::ZERO);
    }

    #[test]
    fn bad_values_name_variable_value_and_rule() {
        let cases: &[(&str, &str, &str)] = &[
            ("WARM_IP_TARGET", "five", "integer ≥ 0"),
            ("WARM_ENI_TARGET", "-1", "integer ≥ 0"),
            ("MAX_ENI", "0", "integer ≥ 1"),
            ("ENABLE_PREFIX_DELEGATION", "yes", "true or false"),
            ("IP_COOLDOWN_PERIOD", "1.5", "integer ≥ 0"),
        ];
        for (var, value, rule) in cases {
            let err = parse(&[(var, value)]).unwrap_err().to_string();
            assert!(
                err.contains(var) && err.contains(value) && err.contains(rule),
                "{err}"
            );
        }
    }

    #[test]
    fn prefix_delegation_needs_a_target() {
        let err = parse(&[("ENABLE_PREFIX_DELEGATION", "true")]).unwrap_err();
        assert!(matches!(err, SettingsError::Conflict(_)));
        assert!(
            parse(&[
                ("ENABLE_PREFIX_DELEGATION", "true"),
                ("MINIMUM_IP_TARGET", "1")
            ])
            .is_ok()
        );
    }

    #[test]
    fn pool_policy_parses_and_adaptive_needs_no_prefix_target() {
        assert_eq!(parse(&[]).unwrap().pool_policy, PolicyKind::Aws);
        let s = parse(&[
            (POOL_POLICY, "Adaptive"),
            ("ENABLE_PREFIX_DELEGATION", "true"),
        ])
        .unwrap();
        assert_eq!(s.pool_policy, PolicyKind::Adaptive);
        let err = parse(&[(POOL_POLICY, "smart")]).unwrap_err().to_string();
        assert!(
            err.contains(POOL_POLICY) && err.contains("smart") && err.contains("aws or adaptive"),
            "{err}"
        );
    }
}
