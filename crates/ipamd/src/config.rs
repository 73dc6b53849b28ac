//! Daemon configuration: upstream env vars (spec f) plus the paths and addresses a test or an
//! operator may move. Validated at start; a bad value names the variable, value and rule.

use std::net::SocketAddr;

use std::path::PathBuf;

use ipnet::Ipv4Net;
use vpc_cni_ipam::Settings;
use vpc_cni_ipam::settings::{EnvReader, SettingsError};

/// Default gRPC socket.
pub const DEFAULT_SOCKET: &str = "/var/run/aws-node/ipamd.sock";
/// Default checkpoint.
pub const DEFAULT_CHECKPOINT: &str = "/var/run/aws-node/ipam.json";
/// Default metrics listener (all interfaces, as upstream).
pub const DEFAULT_METRICS: &str = "0.0.0.0:61678";
/// Default introspection listener (loopback only).
pub const DEFAULT_INTROSPECTION: &str = "127.0.0.1:61679";

/// Everything the daemon needs to start.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Warm-pool settings.
    pub settings: Settings,
    /// gRPC unix socket path.
    pub socket: PathBuf,
    /// Checkpoint file (`AWS_VPC_K8S_CNI_BACKING_STORE`).
    pub checkpoint: PathBuf,
    /// Metrics listener, `None` when `DISABLE_METRICS=true`.
    pub metrics: Option<BindAddr>,
    /// Introspection listener, `None` when `DISABLE_INTROSPECTION=true`.
    pub introspection: Option<BindAddr>,
    /// `AWS_VPC_K8S_CNI_EXTERNALSNAT`.
    pub external_snat: bool,
    /// `AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS` (an invalid entry is an error naming it).
    pub exclude_snat_cidrs: Vec<Ipv4Net>,
    /// `NETWORK_POLICY_ENFORCING_MODE` (`""` when unset).
    pub network_policy_mode: String,
    /// Build version string used in the client version handshake.
    pub version: String,
    /// Node pod capacity override (else from the limits table).
    pub max_pods: Option<u32>,
    /// Pool-loop period (upstream 5 s).
    pub cycle: std::time::Duration,
    /// Reconciliation period (upstream 60 s).
    pub reconcile: std::time::Duration,
    /// Period of the security-group refresh (upstream 30 s; off with custom networking).
    pub sg_refresh: std::time::Duration,
    /// Raw upstream env values shown by introspection.
    pub env_snapshot: Vec<(String, String)>,
    /// Host networking settings (spec e.5/e.6).
    pub host: HostSettings,
    /// Configure the node's links, rules and iptables (off: IPAM only).
    pub host_network: bool,
    /// The cloud is simulated: create links standing in for its ENIs first.
    pub sim_links: bool,
    /// `CLUSTER_NAME` (`None` when unset or blank).
    pub cluster_name: Option<String>,
    /// `MANAGE_UNTAGGED_ENI` (default true).
    pub manage_untagged_eni: bool,
    /// `DISABLE_LEAKED_ENI_CLEANUP` (default false).
    pub disable_leaked_eni_cleanup: bool,
    /// How long an assignment may go without a host route before the sweep releases it.
    pub stale_grace: std::time::Duration,
    /// `ENABLE_IPv6`: the node's pods get IPv6 addresses from one /80 on the primary ENI.
    pub ipv6: bool,
    /// `ENABLE_V6_EGRESS` (IPv4 nodes): pods get IPv6 egress addresses, so the node blocks new
    /// connections to that node-local range from elsewhere.
    pub v6_egress: bool,
}

/// Upstream modes this daemon does not implement yet: starting as a plain IPv4 node under them
/// would silently do something else, so each refuses to start naming the variable.
pub const NOT_YET: &[(&str, &str)] = &[("ENABLE_MULTI_NIC", "multi-NIC pods")];

/// Host networking settings from the upstream variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// `AWS_VPC_ENI_MTU` (default 9001).
    pub eni_mtu: u32,
    /// `AWS_VPC_CNI_NODE_PORT_SUPPORT` (default true).
    pub node_port_support: bool,
    /// `AWS_VPC_K8S_CNI_CONNMARK` (default 0x80).
    pub connmark: u32,
    /// `AWS_VPC_K8S_CNI_RANDOMIZESNAT` (default prng).
    pub randomize: vpc_cni_dataplane::snat::Randomize,
    /// `AWS_VPC_K8S_CNI_VETHPREFIX` (default eni).
    pub veth_prefix: String,
    /// `AWS_EXTERNAL_SERVICE_CIDRS`.
    pub external_service_cidrs: Vec<Ipv4Net>,
}

fn cidr_list(
    r: &EnvReader<impl Fn(&str) -> Option<String>>,
    var: &str,
) -> Result<Vec<Ipv4Net>, SettingsError> {
    let Some(raw) = r.raw(var) else {
        return Ok(vec![]);
    };
    raw.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.parse().map_err(|_| SettingsError::Invalid {
                var: var.into(),
                value: raw.clone(),
                expected: format!("comma-separated IPv4 CIDRs ({c:?} is not one)"),
            })
        })
        .collect()
}

impl HostSettings {
    /// Read the variables.
    pub fn from_reader(
        r: &EnvReader<impl Fn(&str) -> Option<String>>,
    ) -> Result<Self, SettingsError> {
        let eni_mtu = r.uint("AWS_VPC_ENI_MTU", 9001)?;
        if !(576..=9001).contains(&eni_mtu) {
            return Err(SettingsError::Invalid {
                var: "AWS_VPC_ENI_MTU".into(),
                value: r.raw("AWS_VPC_ENI_MTU").unwrap_or_default(),
                expected: "an MTU from 576 to 9001".into(),
            });
        }
        let connmark = match r.raw("AWS_VPC_K8S_CNI_CONNMARK") {
            None => 0x80,
            Some(v) => {
                let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => v.parse().ok(),
                };
                parsed
                    .filter(|m| *m != 0)
                    .ok_or_else(|| SettingsError::Invalid {
                        var: "AWS_VPC_K8S_CNI_CONNMARK".into(),
                        value: v.clone(),
                        expected: "a non-zero mark, decimal or 0x-hex (default 0x80)".into(),
                    })?
            }
        };
        let veth_prefix = r
            .raw("AWS_VPC_K8S_CNI_VETHPREFIX")
            .unwrap_or_else(|| "eni".into());
        if !vpc_cni_cni::conflist::veth_prefix_ok(&veth_prefix) {
            return Err(SettingsError::Invalid {
                var: "AWS_VPC_K8S_CNI_VETHPREFIX".into(),
                value: veth_prefix,
                expected: vpc_cni_cni::conflist::VETH_PREFIX_RULE.into(),
            });
        }
        let raw_randomize = r.raw("AWS_VPC_K8S_CNI_RANDOMIZESNAT").unwrap_or_default();
        let randomize =
            vpc_cni_dataplane::snat::Randomize::parse(&raw_randomize).ok_or_else(|| {
                SettingsError::Invalid {
                    var: "AWS_VPC_K8S_CNI_RANDOMIZESNAT".into(),
                    value: raw_randomize.clone(),
                    expected: "prng (default), hashrandom or none".into(),
                }
            })?;
        Ok(HostSettings {
            eni_mtu,
            node_port_support: r.boolean("AWS_VPC_CNI_NODE_PORT_SUPPORT", true)?,
            connmark,
            randomize,
            veth_prefix,
            external_service_cidrs: cidr_list(r, "AWS_EXTERNAL_SERVICE_CIDRS")?,
        })
    }
}

/// Variables shown under `/v1/ipamd-env-settings` and `/v1/networkutils-env-settings`.
pub const IPAMD_ENV: &[&str] = &[
    "WARM_IP_TARGET",
    "WARM_ENI_TARGET",
    "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG",
    "AWS_MANAGE_ENIS_NON_SCHEDULABLE",
    "ENABLE_SUBNET_DISCOVERY",
    "VPC_CNI_POOL_POLICY",
    "ENABLE_IPv6",
];
/// Network variables shown by introspection.
pub const NETWORK_ENV: &[&str] = &[
    "AWS_VPC_K8S_CNI_CONNMARK",
    "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS",
    "AWS_VPC_K8S_CNI_EXTERNALSNAT",
    "AWS_EXTERNAL_SERVICE_CIDRS",
    "AWS_VPC_ENI_MTU",
    "AWS_VPC_K8S_CNI_VETHPREFIX",
    "AWS_VPC_CNI_NODE_PORT_SUPPORT",
    "AWS_VPC_K8S_CNI_RANDOMIZESNAT",
];

/// Where an HTTP listener binds: a TCP address, or a unix socket (`unix:/path`, upstream's form
/// for `INTROSPECTION_BIND_ADDRESS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    /// `HOST:PORT` (`localhost` is 127.0.0.1; `:PORT` is every interface).
    Tcp(SocketAddr),
    /// `unix:/path`.
    Unix(PathBuf),
}

impl std::fmt::Display for BindAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindAddr::Tcp(a) => write!(f, "{a}"),
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Parse a bind address as `var` gives it: `HOST:PORT`, `localhost:PORT`, `:PORT`,
/// `unix:/absolute/path`.
pub fn parse_bind(var: &str, raw: &str) -> Result<BindAddr, SettingsError> {
    let err = || SettingsError::Invalid {
        var: var.into(),
        value: raw.into(),
        expected:
            "HOST:PORT (e.g. 127.0.0.1:61679, localhost:61679, :61679) or unix:/absolute/path"
                .into(),
    };
    if let Some(path) = raw.strip_prefix("unix:") {
        let p = PathBuf::from(path);
        return if p.is_absolute() && path.len() < 108 {
            Ok(BindAddr::Unix(p))
        } else {
            Err(err())
        };
    }
    let fixed = if let Some(port) = raw.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else if raw.starts_with(':') {
        format!("0.0.0.0{raw}")
    } else {
        raw.to_string()
    };
    fixed.parse().map(BindAddr::Tcp).map_err(|_| err())
}

fn addr(var: &str, raw: &str) -> Result<BindAddr, SettingsError> {
    parse_bind(var, raw)
}

impl DaemonConfig {
    /// Read from a variable lookup (the process environment in production).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String> + Clone,
    ) -> Result<Self, SettingsError> {
        let settings = Settings::from_lookup(lookup.clone())?;
        let r = EnvReader::new(lookup.clone());
        let metrics = if r.boolean("DISABLE_METRICS", false)? {
            None
        } else {
            Some(addr(
                "VPC_CNI_METRICS_BIND_ADDRESS",
                &r.raw("VPC_CNI_METRICS_BIND_ADDRESS")
                    .unwrap_or(DEFAULT_METRICS.into()),
            )?)
        };
        let introspection = if r.boolean("DISABLE_INTROSPECTION", false)? {
            None
        } else {
            Some(addr(
                "INTROSPECTION_BIND_ADDRESS",
                &r.raw("INTROSPECTION_BIND_ADDRESS")
                    .unwrap_or(DEFAULT_INTROSPECTION.into()),
            )?)
        };
        let mode = r.raw("NETWORK_POLICY_ENFORCING_MODE").unwrap_or_default();
        if !matches!(mode.as_str(), "" | "none" | "strict" | "standard") {
            return Err(SettingsError::Invalid {
                var: "NETWORK_POLICY_ENFORCING_MODE".into(),
                value: mode,
                expected: "none, strict or standard (invalid Network policy mode)".into(),
            });
        }
        for (var, what) in NOT_YET {
            if r.boolean(var, false)? {
                return Err(SettingsError::Invalid {
                    var: var.to_string(),
                    value: r.raw(var).unwrap_or_default(),
                    expected: format!(
                        "false: {what} is not implemented by this daemon yet (it would run as a plain IPv4 node)"
                    ),
                });
            }
        }
        let ipv6 = ipv6_mode(&r, &settings)?;
        let exclude = cidr_list(&r, "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS")?;
        let env_snapshot = IPAMD_ENV
            .iter()
            .chain(NETWORK_ENV)
            .filter_map(|k| lookup(k).map(|v| (k.to_string(), v)))
            .collect();
        Ok(DaemonConfig {
            settings,
            socket: r
                .raw("VPC_CNI_IPAMD_SOCKET")
                .map_or(PathBuf::from(DEFAULT_SOCKET), PathBuf::from),
            checkpoint: r
                .raw("AWS_VPC_K8S_CNI_BACKING_STORE")
                .map_or(PathBuf::from(DEFAULT_CHECKPOINT), PathBuf::from),
            metrics,
            introspection,
            external_snat: r.boolean("AWS_VPC_K8S_CNI_EXTERNALSNAT", false)?,
            exclude_snat_cidrs: exclude,
            network_policy_mode: mode,
            version: env!("CARGO_PKG_VERSION").to_string(),
            max_pods: None,
            cycle: std::time::Duration::from_secs(5),
            reconcile: std::time::Duration::from_secs(60),
            sg_refresh: std::time::Duration::from_secs(30),
            env_snapshot,
            host: HostSettings::from_reader(&r)?,
            host_network: false,
            sim_links: false,
            cluster_name: r.raw("CLUSTER_NAME"),
            manage_untagged_eni: r.boolean("MANAGE_UNTAGGED_ENI", true)?,
            disable_leaked_eni_cleanup: r.boolean("DISABLE_LEAKED_ENI_CLEANUP", false)?,
            stale_grace: std::time::Duration::from_secs(300),
            v6_egress: !ipv6 && r.boolean("ENABLE_V6_EGRESS", false)?,
            ipv6,
        })
    }
}

/// `ENABLE_IPv6` with upstream's start-up checks (`isConfigValid`): IPv6 needs prefix
/// delegation and refuses custom networking; `ENABLE_IPv4=true` beside it is both families,
/// which upstream refuses too.
fn ipv6_mode<F: Fn(&str) -> Option<String>>(
    r: &EnvReader<F>,
    settings: &Settings,
) -> Result<bool, SettingsError> {
    let v6 = r.boolean("ENABLE_IPv6", false)?;
    if !v6 {
        return Ok(false);
    }
    let conflict = |m: String| Err(SettingsError::Conflict(m));
    if !settings.prefix_delegation {
        return conflict(
            "ENABLE_IPv6=true needs ENABLE_PREFIX_DELEGATION=true (an IPv6 node hands out addresses from one /80 prefix)".into(),
        );
    }
    if settings.custom_networking {
        return conflict(
            "ENABLE_IPv6=true cannot run with AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=true (upstream refuses the pair)".into(),
        );
    }
    if r.raw("ENABLE_IPv4").is_some() && r.boolean("ENABLE_IPv4", false)? {
        return conflict(
            "ENABLE_IPv6=true with ENABLE_IPv4=true: one family per node (set ENABLE_IPv4=false)"
                .into(),
        );
    }
    Ok(true)
}
