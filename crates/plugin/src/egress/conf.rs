//! The `egress-cni` network configuration as upstream's conflist writes it (spec e.1): `mtu`,
//! `enabled`, `randomizeSNAT` and `nodeIP` as strings, a host-local style `ipam` section (one
//! range, one route, `dataDir`), log settings, and the `prevResult` of `aws-cni`. The family
//! of `nodeIP` picks the mode: an IPv4 node address gives pods of an IPv6 cluster an IPv4
//! egress interface, an IPv6 one gives pods of an IPv4 cluster an IPv6 one.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;
use vpc_cni_cni::{CniError, Code};

/// Pod-side name of the IPv4 egress interface (upstream's `v4if0`).
pub const V4_IFNAME: &str = "v4if0";
/// Pod-side name of the IPv6 egress interface (upstream's `v6if0`).
pub const V6_IFNAME: &str = "v6if0";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    mtu: Option<String>,
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default, rename = "randomizeSNAT")]
    randomize_snat: Option<String>,
    #[serde(default, rename = "nodeIP")]
    node_ip: Option<String>,
    #[serde(default)]
    ipam: Option<RawIpam>,
    #[serde(default)]
    plugin_log_file: Option<String>,
    #[serde(default)]
    plugin_log_level: Option<String>,
    #[serde(default)]
    prev_result: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    ranges: Vec<Vec<RawRange>>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    data_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawRange {
    subnet: String,
}

#[derive(Debug, Deserialize)]
struct RawRoute {
    dst: String,
}

/// Which family the egress interface carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 egress for pods of an IPv6 cluster (`ENABLE_V4_EGRESS`).
    V4,
    /// IPv6 egress for pods of an IPv4 cluster (`ENABLE_V6_EGRESS`).
    V6,
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct EgressConf {
    /// `cniVersion`.
    pub cni_version: String,
    /// The network name (the runtime puts the conflist's name here).
    pub name: String,
    /// `mtu` (upstream parses it as an integer and fails otherwise).
    pub mtu: u32,
    /// `enabled == "true"`; otherwise ADD passes `prevResult` through.
    pub enabled: bool,
    /// `randomizeSNAT`: `prng` (default), `hashrandom` or `none`.
    pub randomize_snat: String,
    /// `nodeIP` (the SNAT source), when set.
    pub node_ip: Option<IpAddr>,
    /// The egress range (`ipam.ranges[0][0].subnet`).
    pub subnet: Option<IpNet>,
    /// The route the pod gets through the egress interface (`ipam.routes[0].dst`).
    pub route: Option<IpNet>,
    /// Where the address leases live (`ipam.dataDir`, host-local's default otherwise).
    pub data_dir: String,
    /// `pluginLogFile`.
    pub log_file: String,
    /// `pluginLogLevel`.
    pub log_level: String,
    /// `aws-cni`'s result.
    pub prev_result: Option<Value>,
}

fn bad(msg: String) -> CniError {
    CniError::new(Code::InvalidNetworkConfig, msg)
}

impl EgressConf {
    /// Parse stdin; errors name the field and what it should be.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let raw: Raw = serde_json::from_slice(stdin)
            .map_err(|e| CniError::new(Code::Decode, format!("failed to parse config: {e}")))?;
        let mtu_text = raw.mtu.unwrap_or_else(|| "9001".into());
        let mtu = mtu_text
            .trim()
            .parse::<u32>()
            .map_err(|_| bad(format!("failed to parse MTU: {mtu_text:?} is not a number")))?;
        let node_ip = match raw.node_ip.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(t) => Some(
                t.parse::<IpAddr>()
                    .map_err(|_| bad(format!("nodeIP {t:?} is not an IPv4 or IPv6 address")))?,
            ),
        };
        let ipam = raw.ipam;
        if let Some(i) = &ipam
            && !i.kind.is_empty()
            && i.kind != "host-local"
        {
            return Err(bad(format!(
                "ipam.type {:?}: this plugin keeps host-local's leases itself and accepts only host-local",
                i.kind
            )));
        }
        let subnet = match ipam.as_ref().and_then(|i| i.ranges.first()?.first()) {
            Some(r) => Some(r.subnet.parse::<IpNet>().map_err(|_| {
                bad(format!(
                    "ipam.ranges[0][0].subnet {:?} is not a CIDR",
                    r.subnet
                ))
            })?),
            None => None,
        };
        let route = match ipam.as_ref().and_then(|i| i.routes.first()) {
            Some(r) => Some(
                r.dst
                    .parse::<IpNet>()
                    .map_err(|_| bad(format!("ipam.routes[0].dst {:?} is not a CIDR", r.dst)))?,
            ),
            None => None,
        };
        Ok(EgressConf {
            cni_version: raw.cni_version,
            name: raw.name,
            mtu,
            enabled: raw.enabled.as_deref() == Some("true"),
            randomize_snat: raw.randomize_snat.unwrap_or_default(),
            node_ip,
            subnet,
            route,
            data_dir: ipam
                .and_then(|i| i.data_dir)
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "/var/lib/cni/networks".into()),
            log_file: raw.plugin_log_file.unwrap_or_default(),
            log_level: raw.plugin_log_level.unwrap_or_else(|| "Debug".into()),
            prev_result: raw.prev_result,
        })
    }

    /// The mode, from the family of `nodeIP` (none: IPv4, as upstream treats a missing one).
    pub fn family(&self) -> Family {
        match self.node_ip {
            Some(IpAddr::V6(_)) => Family::V6,
            _ => Family::V4,
        }
    }

    /// Pod-side interface name of the mode.
    pub fn ifname(&self) -> &'static str {
        match self.family() {
            Family::V4 => V4_IFNAME,
            Family::V6 => V6_IFNAME,
        }
    }

    /// The egress range, checked against the mode.
    pub fn subnet_for_mode(&self) -> Result<IpNet, CniError> {
        let s = self.subnet.ok_or_else(|| {
            bad("ipam.ranges[0][0].subnet is missing: the egress range (169.254.172.0/22 or fd00::ac:00/118)".into())
        })?;
        let ok = matches!(
            (self.family(), s),
            (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_))
        );
        if !ok {
            return Err(bad(format!(
                "ipam subnet {s} is not of the family of nodeIP {:?}",
                self.node_ip.map(|i| i.to_string()).unwrap_or_default()
            )));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(node_ip: &str, subnet: &str) -> Vec<u8> {
        serde_json::json!({
            "cniVersion": "0.4.0", "name": "aws-cni", "type": "egress-cni", "mtu": "9001",
            "enabled": "true", "randomizeSNAT": "prng", "nodeIP": node_ip,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/run/cni/v6pd/egress-v4-ipam"},
            "pluginLogFile": "/tmp/x.log", "pluginLogLevel": "DEBUG"
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn modes_follow_the_node_address() {
        let c = EgressConf::parse(&conf("10.0.0.5", "169.254.172.0/22")).unwrap();
        assert_eq!(
            (c.family(), c.ifname(), c.mtu, c.enabled),
            (Family::V4, "v4if0", 9001, true)
        );
        assert_eq!(c.data_dir, "/run/cni/v6pd/egress-v4-ipam");
        assert!(c.subnet_for_mode().is_ok());
        let c = EgressConf::parse(&conf("2600:1f14::5", "fd00::ac:00/118")).unwrap();
        assert_eq!((c.family(), c.ifname()), (Family::V6, "v6if0"));
        let mixed = EgressConf::parse(&conf("10.0.0.5", "fd00::ac:00/118")).unwrap();
        assert!(mixed.subnet_for_mode().is_err());
    }

    #[test]
    fn bad_fields_are_named() {
        for (text, want) in [
            (r#"{"mtu":"big"}"#, "MTU"),
            (r#"{"nodeIP":"ten"}"#, "nodeIP"),
            (r#"{"ipam":{"type":"dhcp"}}"#, "ipam.type"),
            (r#"{"ipam":{"ranges":[[{"subnet":"x"}]]}}"#, "subnet"),
        ] {
            let e = EgressConf::parse(text.as_bytes()).unwrap_err();
            assert!(
                e.to_json("0.4.0").contains(want),
                "{text}: {}",
                e.to_json("0.4.0")
            );
        }
        let off = EgressConf::parse(br#"{"enabled":"false"}"#).unwrap();
        assert!(!off.enabled);
    }
}
