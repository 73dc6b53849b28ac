//! ADD results in upstream's shape (spec e.3) for each CNI version, and reading them back from
//! `prevResult` on DEL. Upstream stores the route table in the container interface's `mac` and
//! the VLAN ID / device number in a fake `dummy<hash>` interface; DEL relies on both.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Value, json};

/// One pod address with what DEL needs to undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIp {
    /// The address (IPv6 in an IPv6 cluster).
    pub ip: IpAddr,
    /// Route table of its ENI (254 = main).
    pub route_table: i32,
    /// Device number of its ENI.
    pub device_number: i32,
    /// Host-side veth name.
    pub host_veth: String,
    /// Container-side interface name.
    pub container_if: String,
    /// `dummy<hash>` name.
    pub dummy: String,
    /// VLAN ID (0 for regular pods).
    pub vlan_id: i32,
}

/// The ADD result for `ips`, converted to `version`.
pub fn add_result(version: &str, netns: &str, ips: &[PodIp]) -> Value {
    if version == "0.1.0" || version == "0.2.0" {
        let first = ips.first().map(|p| IpNet::from(p.ip));
        let key = if first.is_some_and(|n| n.addr().is_ipv6()) {
            "ip6"
        } else {
            "ip4"
        };
        let ip = first.map(|n| n.to_string()).unwrap_or_default();
        return json!({ "cniVersion": version, key: { "ip": ip }, "dns": {} });
    }
    let mut interfaces = Vec::new();
    let mut addrs = Vec::new();
    for p in ips {
        interfaces.push(json!({ "name": p.host_veth }));
        let idx = interfaces.len();
        interfaces.push(
            json!({ "name": p.container_if, "mac": p.route_table.to_string(), "sandbox": netns }),
        );
        let mut a = json!({ "interface": idx, "address": IpNet::from(p.ip).to_string() });
        if version.starts_with("0.") {
            a["version"] = json!(if p.ip.is_ipv6() { "6" } else { "4" });
        }
        addrs.push(a);
    }
    for p in ips {
        interfaces.push(json!({ "name": p.dummy, "mac": p.vlan_id.to_string(), "sandbox": p.device_number.to_string() }));
    }
    json!({ "cniVersion": version, "interfaces": interfaces, "ips": addrs, "dns": {} })
}

/// What DEL recovers from a `prevResult` (when ipamd cannot be asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrevIp {
    /// The address.
    pub ip: IpAddr,
    /// Route table (from the container interface's `mac`, else device number + 1).
    pub route_table: i32,
    /// VLAN ID from the dummy interface (0 = regular pod).
    pub vlan_id: i32,
}

/// Read a `prevResult` written by [`add_result`] (or by upstream).
pub fn parse_prev(prev: &Value) -> Vec<PrevIp> {
    let interfaces = prev["interfaces"].as_array().cloned().unwrap_or_default();
    let dummies: Vec<&Value> = interfaces
        .iter()
        .filter(|i| i["name"].as_str().is_some_and(|n| n.starts_with("dummy")))
        .collect();
    let mut out = Vec::new();
    for (k, ip) in prev["ips"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let Some(addr) = ip["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
        else {
            continue;
        };
        let iface = ip["interface"]
            .as_u64()
            .and_then(|i| interfaces.get(i as usize));
        let dummy = dummies.get(k);
        let device: Option<i32> = dummy
            .and_then(|d| d["sandbox"].as_str())
            .and_then(|s| s.parse().ok());
        let route_table = iface
            .and_then(|i| i["mac"].as_str())
            .and_then(|m| m.parse().ok())
            .or(device.map(|d| if d == 0 { 254 } else { d + 1 }))
            .unwrap_or(254);
        let vlan_id = dummy
            .and_then(|d| d["mac"].as_str())
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        out.push(PrevIp {
            ip: addr,
            route_table,
            vlan_id,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodIp {
        PodIp {
            ip: "10.0.1.5".parse().unwrap(),
            route_table: 3,
            device_number: 2,
            host_veth: "enib5faff8a083".into(),
            container_if: "eth0".into(),
            dummy: "dummyb5faff8a083".into(),
            vlan_id: 0,
        }
    }

    #[test]
    fn upstream_shape_and_versions() {
        let r = add_result("0.4.0", "/proc/42/ns/net", &[pod()]);
        let want = json!({
            "cniVersion": "0.4.0",
            "interfaces": [
                {"name": "enib5faff8a083"},
                {"name": "eth0", "mac": "3", "sandbox": "/proc/42/ns/net"},
                {"name": "dummyb5faff8a083", "mac": "0", "sandbox": "2"}
            ],
            "ips": [{"version": "4", "interface": 1, "address": "10.0.1.5/32"}],
            "dns": {}
        });
        assert_eq!(r, want);
        let r1 = add_result("1.0.0", "/n", &[pod()]);
        assert!(
            r1["ips"][0].get("version").is_none(),
            "1.0.0 has no ips[].version"
        );
        assert_eq!(
            add_result("0.2.0", "/n", &[pod()])["ip4"]["ip"],
            "10.0.1.5/32"
        );
    }

    #[test]
    fn ipv6_pods_get_128s_and_version_6() {
        let mut p = pod();
        p.ip = "2001:db8:0:1:7::5".parse().unwrap();
        p.route_table = 254;
        let r = add_result("0.4.0", "/n", &[p.clone()]);
        assert_eq!(
            r["ips"][0],
            json!({"version": "6", "interface": 1, "address": "2001:db8:0:1:7::5/128"})
        );
        assert_eq!(parse_prev(&r)[0].ip, p.ip);
        assert_eq!(
            add_result("0.2.0", "/n", &[p])["ip6"]["ip"],
            "2001:db8:0:1:7::5/128"
        );
    }

    #[test]
    fn prev_result_round_trip() {
        let r = add_result("0.4.0", "/n", &[pod()]);
        assert_eq!(
            parse_prev(&r),
            vec![PrevIp {
                ip: "10.0.1.5".parse().unwrap(),
                route_table: 3,
                vlan_id: 0
            }]
        );
        // Before v1.20 upstream kept no table in `mac`: it is derived from the device number.
        let mut old = r.clone();
        old["interfaces"][1]["mac"] = json!("");
        assert_eq!(parse_prev(&old)[0].route_table, 3);
        assert!(parse_prev(&json!({})).is_empty());
    }
}
