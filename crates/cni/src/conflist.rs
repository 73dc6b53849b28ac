//! The `10-aws.conflist` that `vpc-cni init` installs: upstream's shape (spec e.1) with its
//! placeholders filled from the same variables. `egress-cni` is not shipped here, so the list
//! is `aws-cni` → `portmap` (→ `bandwidth`, `tuning` when asked for).

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
}

impl ConflistParams {
    /// From variables, with upstream defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let set = |k: &str| get(k).filter(|v| !v.is_empty());
        let yes = |k: &str| set(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        ConflistParams {
            veth_prefix: set("AWS_VPC_K8S_CNI_VETHPREFIX").unwrap_or_else(|| "eni".into()),
            mtu: set("POD_MTU")
                .or_else(|| set("AWS_VPC_ENI_MTU"))
                .unwrap_or_else(|| "9001".into()),
            pod_sg_enforcing_mode: set("POD_SECURITY_GROUP_ENFORCING_MODE")
                .unwrap_or_else(|| "strict".into()),
            plugin_log_file: set("AWS_VPC_K8S_PLUGIN_LOG_FILE")
                .unwrap_or_else(|| "/var/log/aws-routed-eni/plugin.log".into()),
            plugin_log_level: set("AWS_VPC_K8S_PLUGIN_LOG_LEVEL").unwrap_or_else(|| "Debug".into()),
            bandwidth: yes("ENABLE_BANDWIDTH_PLUGIN"),
            disable_pod_v6: yes("DISABLE_POD_V6"),
            ipamd_socket: None,
        }
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
    let mut plugins = vec![
        aws,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_options() {
        let p = ConflistParams::from_lookup(|_| None);
        let v = render(&p);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["disableCheck"], true);
        let plugins = v["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 2);
        assert_eq!(plugins[0]["mtu"], "9001");
        assert_eq!(plugins[0]["vethPrefix"], "eni");
        assert!(plugins[0].get("ipamdSocket").is_none());
        assert_eq!(plugins[1]["type"], "portmap");
        let p = ConflistParams::from_lookup(|k| match k {
            "AWS_VPC_ENI_MTU" => Some("1500".into()),
            "POD_MTU" => Some("1400".into()),
            "ENABLE_BANDWIDTH_PLUGIN" => Some("true".into()),
            "DISABLE_POD_V6" => Some("TRUE".into()),
            _ => None,
        });
        let v = render(&p);
        assert_eq!(v["plugins"][0]["mtu"], "1400", "POD_MTU wins");
        let types: Vec<&str> = v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["aws-cni", "portmap", "bandwidth", "tuning"]);
    }
}
