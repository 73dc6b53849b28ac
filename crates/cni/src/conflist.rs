//! The `10-aws.conflist` that `vpc-cni init` installs: upstream's shape (spec e.1) with its
//! placeholders filled from the same variables: `aws-cni` → `egress-cni` → `portmap`
//! (→ `bandwidth`, `tuning` when asked for). `egress-cni` is always listed, as upstream does,
//! and `enabled` only in an IPv6 cluster (`ENABLE_V4_EGRESS`, default on) or an IPv4 one with
//! `ENABLE_V6_EGRESS=true` and a node IPv6 address.

use serde_json::{Value, json};

/// What the conflist depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflistParams {
    /// `AWS_VPC_K8S_CNI_VETHPREFIX` (default `eni`).
    pub veth_prefix: String,
    /// `POD_MTU`, else `AWS_VPC_ENI_MTU`, else 9001.
    pub mtu: String,
    /// `POD_SECURITY_GROUP_ENFORCING_MODE` (default `strict`).
    pub pod_sg_enforcing_mode: String,
    /// `AWS_VPC_K8S_CNI_PLUGIN_LOG_FILE`-style plugin log path.
    pub plugin_log_file: String,
    /// Plugin log level.
    pub plugin_log_level: String,
    /// `ENABLE_BANDWIDTH_PLUGIN`.
    pub bandwidth: bool,
    /// `DISABLE_POD_V6`.
    pub disable_pod_v6: bool,
    /// ipamd socket, written only when it is not the default.
    pub ipamd_socket: Option<String>,
    /// `ENABLE_IPv6`.
    pub ipv6: bool,
    /// `ENABLE_V4_EGRESS` (default true; IPv6 clusters).
    pub v4_egress: bool,
    /// `ENABLE_V6_EGRESS` (default false; IPv4 clusters).
    pub v6_egress: bool,
    /// `AWS_VPC_K8S_CNI_RANDOMIZESNAT` for the egress SNAT (default `prng`).
    pub randomize_snat: String,
    /// The egress plugin's log file (`AWS_VPC_K8S_EGRESS_V4_PLUGIN_LOG_FILE` in IPv6 clusters,
    /// `…_V6_…` in IPv4 ones).
    pub egress_log_file: String,
    /// The node address egress traffic is SNATed to: IPv4 in IPv6 clusters, IPv6 in IPv4
    /// clusters (empty: unknown, and IPv6 egress is then off).
    pub node_ip: String,
}

/// The egress plugin's settings for one cluster family (upstream's entrypoint constants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPlan {
    /// `enabled`.
    pub enabled: bool,
    /// The host-local range.
    pub subnet: &'static str,
    /// The route the pod gets through the egress interface.
    pub dst: &'static str,
    /// host-local's `dataDir`.
    pub data_dir: &'static str,
}

impl ConflistParams {
    /// What `egress-cni` gets in this cluster.
    pub fn egress(&self) -> EgressPlan {
        if self.ipv6 {
            EgressPlan {
                enabled: self.v4_egress,
                subnet: "169.254.172.0/22",
                dst: "0.0.0.0/0",
                data_dir: "/run/cni/v6pd/egress-v4-ipam",
            }
        } else {
            EgressPlan {
                enabled: self.v6_egress && !self.node_ip.is_empty(),
                subnet: "fd00::ac:00/118",
                dst: "::/0",
                data_dir: "/run/cni/v4pd/egress-v6-ipam",
            }
        }
    }
}

/// A variable `vpc-cni init` cannot use, with its value and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}={value:?}: expected {expected}")]
pub struct ConflistError {
    /// The variable.
    pub var: String,
    /// Its value.
    pub value: String,
    /// What it accepts.
    pub expected: String,
}

fn bad(var: &str, value: &str, expected: &str) -> ConflistError {
    ConflistError {
        var: var.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

/// Whether `p` is a usable `AWS_VPC_K8S_CNI_VETHPREFIX`: 1 to 4 characters of
/// `[A-Za-z0-9_.-]` (it starts interface names), not `eth`, `lo` or `vlan`.
pub fn veth_prefix_ok(p: &str) -> bool {
    let chars_ok = p
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (1..=4).contains(&p.len()) && chars_ok && !matches!(p, "eth" | "lo" | "vlan")
}

/// What [`veth_prefix_ok`] accepts, for error messages.
pub const VETH_PREFIX_RULE: &str =
    "1 to 4 characters of A-Z a-z 0-9 _ - . (an interface name prefix), not eth, lo or vlan";

/// Go's `strconv.ParseBool` spellings, as the daemon reads booleans.
pub fn go_bool(var: &str, v: &str) -> Result<bool, ConflistError> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(bad(
            var,
            v,
            "true or false (or 1, t, T, TRUE, True, 0, f, F, FALSE, False)",
        )),
    }
}

impl ConflistParams {
    /// From variables, with upstream defaults, validated as strictly as the daemon validates its
    /// own: an MTU from 576 to 9001, a veth prefix the kernel and the plugin accept, booleans in
    /// Go's spellings, a known log level and enforcing mode.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConflistError> {
        let set = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let flag = |k: &str| set(k).map_or(Ok(false), |v| go_bool(k, &v));
        let (mtu_var, mtu) = match (set("POD_MTU"), set("AWS_VPC_ENI_MTU")) {
            (Some(m), _) => ("POD_MTU", m),
            (None, Some(m)) => ("AWS_VPC_ENI_MTU", m),
            (None, None) => ("POD_MTU", "9001".to_string()),
        };
        if !mtu.bytes().all(|b| b.is_ascii_digit())
            || !mtu.parse::<u32>().is_ok_and(|m| (576..=9001).contains(&m))
        {
            return Err(bad(mtu_var, &mtu, "an MTU from 576 to 9001"));
        }
        let veth_prefix = set("AWS_VPC_K8S_CNI_VETHPREFIX").unwrap_or_else(|| "eni".into());
        if !veth_prefix_ok(&veth_prefix) {
            return Err(bad(
                "AWS_VPC_K8S_CNI_VETHPREFIX",
                &veth_prefix,
                VETH_PREFIX_RULE,
            ));
        }
        let mode = set("POD_SECURITY_GROUP_ENFORCING_MODE").unwrap_or_else(|| "strict".into());
        if !matches!(mode.as_str(), "strict" | "standard") {
            return Err(bad(
                "POD_SECURITY_GROUP_ENFORCING_MODE",
                &mode,
                "strict or standard",
            ));
        }
        let level = set("AWS_VPC_K8S_PLUGIN_LOG_LEVEL").unwrap_or_else(|| "Debug".into());
        if !matches!(
            level.to_ascii_lowercase().as_str(),
            "trace" | "debug" | "info" | "warn" | "error"
        ) {
            return Err(bad(
                "AWS_VPC_K8S_PLUGIN_LOG_LEVEL",
                &level,
                "DEBUG, INFO, WARN or ERROR (any case)",
            ));
        }
        let ipv6 = flag("ENABLE_IPv6")?;
        let v4_egress =
            set("ENABLE_V4_EGRESS").map_or(Ok(true), |v| go_bool("ENABLE_V4_EGRESS", &v))?;
        let randomize_snat = set("AWS_VPC_K8S_CNI_RANDOMIZESNAT").unwrap_or_else(|| "prng".into());
        if !matches!(randomize_snat.as_str(), "prng" | "hashrandom" | "none") {
            return Err(bad(
                "AWS_VPC_K8S_CNI_RANDOMIZESNAT",
                &randomize_snat,
                "prng, hashrandom or none",
            ));
        }
        let (log_var, log_default) = if ipv6 {
            (
                "AWS_VPC_K8S_EGRESS_V4_PLUGIN_LOG_FILE",
                "/var/log/aws-routed-eni/egress-v4-plugin.log",
            )
        } else {
            (
                "AWS_VPC_K8S_EGRESS_V6_PLUGIN_LOG_FILE",
                "/var/log/aws-routed-eni/egress-v6-plugin.log",
            )
        };
        Ok(ConflistParams {
            ipv6,
            v4_egress,
            v6_egress: flag("ENABLE_V6_EGRESS")?,
            randomize_snat,
            egress_log_file: set(log_var).unwrap_or_else(|| log_default.into()),
            node_ip: String::new(),
            veth_prefix,
            mtu,
            pod_sg_enforcing_mode: mode,
            plugin_log_file: set("AWS_VPC_K8S_PLUGIN_LOG_FILE")
                .unwrap_or_else(|| "/var/log/aws-routed-eni/plugin.log".into()),
            plugin_log_level: level,
            bandwidth: flag("ENABLE_BANDWIDTH_PLUGIN")?,
            disable_pod_v6: flag("DISABLE_POD_V6")?,
            ipamd_socket: None,
        })
    }
}

/// Render the conflist.
pub fn render(p: &ConflistParams) -> Value {
    let mut aws = json!({
        "name": "aws-cni",
        "type": "aws-cni",
        "vethPrefix": p.veth_prefix,
        "mtu": p.mtu,
        "podSGEnforcingMode": p.pod_sg_enforcing_mode,
        "pluginLogFile": p.plugin_log_file,
        "pluginLogLevel": p.plugin_log_level,
        "capabilities": {"io.kubernetes.cri.pod-annotations": true}
    });
    if let Some(s) = &p.ipamd_socket {
        aws["ipamdSocket"] = json!(s);
    }
    let e = p.egress();
    let egress = json!({
        "name": "egress-cni",
        "type": "egress-cni",
        "mtu": p.mtu,
        "enabled": e.enabled.to_string(),
        "randomizeSNAT": p.randomize_snat,
        "nodeIP": p.node_ip,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": e.subnet}]],
            "routes": [{"dst": e.dst}],
            "dataDir": e.data_dir
        },
        "pluginLogFile": p.egress_log_file,
        "pluginLogLevel": p.plugin_log_level
    });
    let mut plugins = vec![
        aws,
        egress,
        json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
    ];
    if p.bandwidth {
        plugins.push(json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}));
    }
    if p.disable_pod_v6 {
        plugins.push(json!({"type": "tuning", "sysctl": {
            "net.ipv6.conf.all.disable_ipv6": "1",
            "net.ipv6.conf.default.disable_ipv6": "1",
            "net.ipv6.conf.lo.disable_ipv6": "1"
        }}));
    }
    json!({"cniVersion": "0.4.0", "name": "aws-cni", "disableCheck": true, "plugins": plugins})
}

/// Upstream's conflist template (`/app/10-aws.conflist`, which the chart's `cniConfig` replaces
/// with a ConfigMap): its `__PLACEHOLDER__`s filled from `p`, then the bandwidth and tuning
/// plugins chained as [`render`] does. An error names what is wrong with the text.
pub fn from_template(text: &str, p: &ConflistParams) -> Result<Value, String> {
    let e = p.egress();
    let enabled = e.enabled.to_string();
    let filled = [
        ("__VETHPREFIX__", p.veth_prefix.as_str()),
        ("__MTU__", p.mtu.as_str()),
        ("__PODSGENFORCINGMODE__", p.pod_sg_enforcing_mode.as_str()),
        ("__PLUGINLOGFILE__", p.plugin_log_file.as_str()),
        ("__PLUGINLOGLEVEL__", p.plugin_log_level.as_str()),
        ("__EGRESSPLUGINLOGFILE__", p.egress_log_file.as_str()),
        ("__EGRESSPLUGINLOGLEVEL__", p.plugin_log_level.as_str()),
        ("__EGRESSPLUGINENABLED__", enabled.as_str()),
        ("__EGRESSPLUGINIPAMSUBNET__", e.subnet),
        ("__EGRESSPLUGINIPAMDST__", e.dst),
        ("__EGRESSPLUGINIPAMDATADIR__", e.data_dir),
        ("__RANDOMIZESNAT__", p.randomize_snat.as_str()),
        ("__NODEIP__", p.node_ip.as_str()),
    ]
    .iter()
    .fold(text.to_string(), |t, (k, v)| t.replace(k, v));
    let mut v: Value =
        serde_json::from_str(&filled).map_err(|e| format!("not a JSON conflist: {e}"))?;
    let plugins = v["plugins"].as_array_mut().ok_or("no \"plugins\" list")?;
    let defaults = render(p);
    for extra in defaults["plugins"].as_array().into_iter().flatten().skip(3) {
        if !plugins.iter().any(|x| x["type"] == extra["type"]) {
            plugins.push(extra.clone());
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_template_is_filled_and_chained() {
        let lookup = |k: &str| {
            [
                ("AWS_VPC_K8S_CNI_VETHPREFIX", "abc"),
                ("ENABLE_BANDWIDTH_PLUGIN", "true"),
            ]
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
        };
        let mut p = ConflistParams::from_lookup(lookup).unwrap();
        p.node_ip = "10.0.0.5".into();
        let t = r#"{"cniVersion":"0.4.0","name":"aws-cni","disableCheck":true,"plugins":[
            {"name":"aws-cni","type":"aws-cni","vethPrefix":"__VETHPREFIX__","mtu":"__MTU__",
             "podSGEnforcingMode":"__PODSGENFORCINGMODE__","pluginLogFile":"__PLUGINLOGFILE__",
             "pluginLogLevel":"__PLUGINLOGLEVEL__"},
            {"name":"egress-cni","type":"egress-cni","enabled":"__EGRESSPLUGINENABLED__",
             "randomizeSNAT":"__RANDOMIZESNAT__","nodeIP":"__NODEIP__"},
            {"type":"portmap","capabilities":{"portMappings":true},"snat":true}]}"#;
        let v = from_template(t, &p).unwrap();
        assert_eq!(v["plugins"][0]["vethPrefix"], "abc");
        assert_eq!(v["plugins"][0]["mtu"], "9001");
        assert_eq!(v["plugins"][1]["randomizeSNAT"], "prng");
        assert_eq!(v["plugins"][1]["nodeIP"], "10.0.0.5");
        assert_eq!(v["plugins"][3]["type"], "bandwidth", "{v}");
        assert!(from_template("{", &p).unwrap_err().contains("JSON"));
        assert!(from_template("{}", &p).unwrap_err().contains("plugins"));
    }

    #[test]
    fn defaults_and_options() {
        let p = ConflistParams::from_lookup(|_| None).unwrap();
        let v = render(&p);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["disableCheck"], true);
        let plugins = v["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 3);
        assert_eq!(plugins[0]["mtu"], "9001");
        assert_eq!(plugins[0]["vethPrefix"], "eni");
        assert!(plugins[0].get("ipamdSocket").is_none());
        assert_eq!(plugins[1]["type"], "egress-cni");
        assert_eq!(
            plugins[1]["enabled"], "false",
            "IPv4 cluster without ENABLE_V6_EGRESS"
        );
        assert_eq!(
            plugins[1]["ipam"]["ranges"][0][0]["subnet"],
            "fd00::ac:00/118"
        );
        assert_eq!(plugins[2]["type"], "portmap");
        let p = ConflistParams::from_lookup(|k| match k {
            "AWS_VPC_ENI_MTU" => Some("1500".into()),
            "POD_MTU" => Some("1400".into()),
            "ENABLE_BANDWIDTH_PLUGIN" => Some("true".into()),
            "DISABLE_POD_V6" => Some("TRUE".into()),
            _ => None,
        })
        .unwrap();
        let v = render(&p);
        assert_eq!(v["plugins"][0]["mtu"], "1400", "POD_MTU wins");
        let types: Vec<&str> = v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["aws-cni", "egress-cni", "portmap", "bandwidth", "tuning"]
        );
    }

    #[test]
    fn egress_per_cluster_family() {
        let with = |vars: &'static [(&'static str, &'static str)], node_ip: &str| {
            let mut p = ConflistParams::from_lookup(|k| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
            .unwrap();
            p.node_ip = node_ip.into();
            render(&p)["plugins"][1].clone()
        };
        let v6 = with(&[("ENABLE_IPv6", "true")], "10.0.0.5");
        assert_eq!(
            (v6["enabled"].as_str(), v6["nodeIP"].as_str()),
            (Some("true"), Some("10.0.0.5"))
        );
        assert_eq!(v6["ipam"]["dataDir"], "/run/cni/v6pd/egress-v4-ipam");
        assert_eq!(v6["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(
            v6["pluginLogFile"],
            "/var/log/aws-routed-eni/egress-v4-plugin.log"
        );
        let off = with(
            &[("ENABLE_IPv6", "true"), ("ENABLE_V4_EGRESS", "false")],
            "10.0.0.5",
        );
        assert_eq!(off["enabled"], "false");
        let v4 = with(&[("ENABLE_V6_EGRESS", "true")], "2600:1f14::5");
        assert_eq!(
            (v4["enabled"].as_str(), v4["ipam"]["dataDir"].as_str()),
            (Some("true"), Some("/run/cni/v4pd/egress-v6-ipam"))
        );
        let no_v6_address = with(&[("ENABLE_V6_EGRESS", "true")], "");
        assert_eq!(
            no_v6_address["enabled"], "false",
            "upstream turns it off without a node IPv6"
        );
    }

    #[test]
    fn bad_values_are_refused_naming_variable_and_value() {
        let cases = [
            ("POD_MTU", "abc", "an MTU from 576 to 9001"),
            ("AWS_VPC_ENI_MTU", "+3", "an MTU from 576 to 9001"),
            ("AWS_VPC_K8S_CNI_VETHPREFIX", "toolong", "1 to 4 characters"),
            ("AWS_VPC_K8S_CNI_VETHPREFIX", "a/b", "1 to 4 characters"),
            ("ENABLE_BANDWIDTH_PLUGIN", "yes", "true or false"),
            ("DISABLE_POD_V6", "yes", "true or false"),
            ("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "LOUD", "DEBUG, INFO"),
            (
                "POD_SECURITY_GROUP_ENFORCING_MODE",
                "lax",
                "strict or standard",
            ),
        ];
        for (var, value, want) in cases {
            let e = ConflistParams::from_lookup(|k| (k == var).then(|| value.to_string()))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("{var}={value:?}")) && e.contains(want),
                "{e}"
            );
        }
        // Go's other spellings count.
        let p =
            ConflistParams::from_lookup(|k| (k == "ENABLE_BANDWIDTH_PLUGIN").then(|| "1".into()))
                .unwrap();
        assert!(p.bandwidth);
    }
}
