//! The plugin's network configuration (stdin) and its `CNI_*` environment, parsed with upstream
//! defaults; bad input is a CNI error naming the field or variable.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CniError, Code};

/// Versions the plugin accepts (upstream `version.All`).
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];
/// Default pod MTU.
pub const DEFAULT_MTU: u32 = 9001;

/// The network configuration of the `aws-cni` plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`.
    pub cni_version: String,
    /// `name` (the IPAM key's network name).
    pub name: String,
    /// `vethPrefix` (default `eni`).
    pub veth_prefix: String,
    /// Pod MTU (`mtu`, a string upstream; invalid or out of 576–9001 becomes 9001).
    pub mtu: u32,
    /// `podSGEnforcingMode` (default `strict`).
    pub pod_sg_enforcing_mode: String,
    /// `pluginLogFile`.
    pub plugin_log_file: String,
    /// `pluginLogLevel`.
    pub plugin_log_level: String,
    /// `prevResult`, as given.
    pub prev_result: Option<Value>,
    /// `runtimeConfig.io.kubernetes.cri.pod-annotations`.
    pub pod_annotations: BTreeMap<String, String>,
    /// GC (CNI 1.1): `cni.dev/valid-attachments` as (container ID, interface) pairs; `None`
    /// when absent.
    pub valid_attachments: Option<Vec<(String, String)>>,
}

#[derive(Deserialize)]
struct RawAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "cniVersion", default)]
    cni_version: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "vethPrefix", default)]
    veth_prefix: Option<String>,
    #[serde(default)]
    mtu: Option<Value>,
    #[serde(rename = "podSGEnforcingMode", default)]
    pod_sg: Option<String>,
    #[serde(rename = "pluginLogFile", default)]
    log_file: Option<String>,
    #[serde(rename = "pluginLogLevel", default)]
    log_level: Option<String>,
    #[serde(rename = "prevResult", default)]
    prev_result: Option<Value>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    valid_attachments: Option<Vec<RawAttachment>>,
}

fn bad(field: &str, why: impl std::fmt::Display) -> CniError {
    CniError::new(
        Code::InvalidNetworkConfig,
        format!("invalid network configuration: {field}: {why}"),
    )
}

impl NetConf {
    /// Parse stdin.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let raw: Raw = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                Code::Decode,
                "failed to decode the network configuration on stdin",
            )
            .with_details(e.to_string())
        })?;
        let cni_version = raw
            .cni_version
            .ok_or_else(|| bad("cniVersion", "missing"))?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                Code::IncompatibleVersion,
                format!("incompatible CNI version {cni_version:?}"),
            )
            .with_details(format!("supported: {}", SUPPORTED_VERSIONS.join(", "))));
        }
        let name = raw
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("name", "missing"))?;
        let veth_prefix = raw.veth_prefix.unwrap_or_else(|| "eni".into());
        if veth_prefix.len() > 4 {
            return Err(bad(
                "vethPrefix",
                format!("{veth_prefix:?} is longer than 4 characters"),
            ));
        }
        if matches!(veth_prefix.as_str(), "eth" | "lo" | "vlan") {
            return Err(bad("vethPrefix", format!("{veth_prefix:?} is reserved")));
        }
        let mtu = match &raw.mtu {
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(Value::Number(n)) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
            _ => None,
        }
        .filter(|m| (576..=9001).contains(m))
        .unwrap_or(DEFAULT_MTU);
        let pod_annotations = raw
            .runtime_config
            .as_ref()
            .and_then(|r| r.get("io.kubernetes.cri.pod-annotations"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(NetConf {
            cni_version,
            name,
            veth_prefix,
            mtu,
            pod_sg_enforcing_mode: raw.pod_sg.unwrap_or_else(|| "strict".into()),
            plugin_log_file: raw.log_file.unwrap_or_default(),
            plugin_log_level: raw.log_level.unwrap_or_default(),
            prev_result: raw.prev_result,
            pod_annotations,
            valid_attachments: raw
                .valid_attachments
                .map(|v| v.into_iter().map(|a| (a.container_id, a.ifname)).collect()),
        })
    }

    /// Whether the pod asked for one address per network card (`k8s.amazonaws.com/nicConfig`).
    pub fn multi_nic(&self) -> bool {
        self.pod_annotations
            .get("k8s.amazonaws.com/nicConfig")
            .is_some_and(|v| v == "multi-nic-attachment")
    }
}

/// The CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// ADD.
    Add,
    /// DEL.
    Del,
    /// CHECK.
    Check,
    /// VERSION.
    Version,
    /// STATUS (1.1.0).
    Status,
    /// GC (1.1.0).
    Gc,
}

/// The `CNI_*` environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub if_name: String,
    /// `CNI_ARGS` as key/value pairs (`K8S_POD_NAME`, `K8S_POD_NAMESPACE`, …).
    pub args: BTreeMap<String, String>,
    /// `CNI_PATH`.
    pub path: String,
}

impl CniEnv {
    /// Read from a variable lookup. Which variables are required depends on the command, as in
    /// upstream skel: ADD needs all of them; DEL may lack `CNI_NETNS`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("VERSION") => Command::Version,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some(other) => {
                return Err(CniError::new(
                    Code::InvalidEnvironment,
                    format!("unknown CNI_COMMAND {other:?}"),
                ));
            }
            None => {
                return Err(CniError::new(
                    Code::InvalidEnvironment,
                    "required env variables [CNI_COMMAND] missing",
                ));
            }
        };
        let value = |k: &str| get(k).filter(|v| !v.is_empty());
        let required: &[&str] = match command {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Version | Command::Status | Command::Gc => &[],
        };
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| value(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                Code::InvalidEnvironment,
                format!("required env variables [{}] missing", missing.join(",")),
            ));
        }
        let mut args = BTreeMap::new();
        for pair in value("CNI_ARGS")
            .unwrap_or_default()
            .split(';')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                CniError::new(
                    Code::InvalidEnvironment,
                    format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
                )
            })?;
            args.insert(k.to_string(), v.to_string());
        }
        Ok(CniEnv {
            command,
            container_id: value("CNI_CONTAINERID").unwrap_or_default(),
            netns: value("CNI_NETNS").unwrap_or_default(),
            if_name: value("CNI_IFNAME").unwrap_or_default(),
            args,
            path: value("CNI_PATH").unwrap_or_default(),
        })
    }

    /// A `CNI_ARGS` value, empty when absent.
    pub fn arg(&self, key: &str) -> &str {
        self.args.get(key).map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netconf_defaults_and_errors() {
        let c =
            NetConf::parse(br#"{"cniVersion":"0.4.0","name":"aws-cni","type":"aws-cni"}"#).unwrap();
        assert_eq!(
            (
                c.veth_prefix.as_str(),
                c.mtu,
                c.pod_sg_enforcing_mode.as_str()
            ),
            ("eni", 9001, "strict")
        );
        let c = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","mtu":"1500","vethPrefix":"abc","runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"k8s.amazonaws.com/nicConfig":"multi-nic-attachment"}}}"#).unwrap();
        assert_eq!(c.mtu, 1500);
        assert!(c.multi_nic());
        assert_eq!(
            NetConf::parse(br#"{"cniVersion":"0.4.0","name":"n","mtu":"100"}"#)
                .unwrap()
                .mtu,
            9001
        );
        let cases: &[(&[u8], Code, &str)] = &[
            (b"not json", Code::Decode, "failed to decode"),
            (
                br#"{"name":"n"}"#,
                Code::InvalidNetworkConfig,
                "cniVersion: missing",
            ),
            (
                br#"{"cniVersion":"9.9.9","name":"n"}"#,
                Code::IncompatibleVersion,
                "9.9.9",
            ),
            (
                br#"{"cniVersion":"0.4.0"}"#,
                Code::InvalidNetworkConfig,
                "name: missing",
            ),
            (
                br#"{"cniVersion":"0.4.0","name":"n","vethPrefix":"toolong"}"#,
                Code::InvalidNetworkConfig,
                "vethPrefix",
            ),
            (
                br#"{"cniVersion":"0.4.0","name":"n","vethPrefix":"eth"}"#,
                Code::InvalidNetworkConfig,
                "reserved",
            ),
        ];
        for (input, code, needle) in cases {
            let e = NetConf::parse(input).unwrap_err();
            assert_eq!(e.code, *code, "{}", String::from_utf8_lossy(input));
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn environment() {
        let full = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/proc/1/ns/net"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
            ),
        ];
        let e = env(&full).unwrap();
        assert_eq!(
            (e.command, e.arg("K8S_POD_NAME"), e.arg("K8S_POD_UID")),
            (Command::Add, "web-0", "")
        );
        let e = env(&full[..3]).unwrap_err();
        assert_eq!(e.code, Code::InvalidEnvironment);
        assert_eq!(
            e.msg,
            "required env variables [CNI_IFNAME,CNI_PATH] missing"
        );
        let mut del = full.to_vec();
        del[0].1 = "DEL";
        del.retain(|(k, _)| *k != "CNI_NETNS");
        assert!(env(&del).is_ok(), "DEL without a netns is allowed");
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        assert!(
            env(&[("CNI_COMMAND", "EXPLODE")])
                .unwrap_err()
                .msg
                .contains("EXPLODE")
        );
    }
}
