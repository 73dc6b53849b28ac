//! Prometheus metrics with upstream's names and labels (spec g.1), rendered in the text
//! exposition format. Hand-written because upstream's counters carry no `_total` suffix, which
//! the `prometheus-client` crate always appends.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Metric kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    /// `_sum` and `_count` series (no quantiles).
    Summary,
}

type Labels = Vec<(&'static str, String)>;

struct Family {
    help: &'static str,
    kind: Kind,
    values: BTreeMap<Labels, f64>,
    counts: BTreeMap<Labels, u64>,
}

/// The daemon's metrics.
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

/// (name, help, kind) of every family, registered at start so they show even at zero.
const FAMILIES: &[(&str, &str, Kind)] = &[
    (
        "vpc_cni_eniconfig_invalid",
        "1 while custom networking cannot allocate an ENI because the node's ENIConfig is missing or invalid (the log and a Node Event name the field)",
        Kind::Gauge,
    ),
    (
        "awscni_stale_assignments_released_count",
        "Assignments released because their pod is gone (by: gc = CNI GC, sweep = no host route for the grace period)",
        Kind::Counter,
    ),
    (
        "awscni_live_pod_address_conflict_count",
        "Addresses a live pod on the host still routes that the pool would otherwise have handed out or dropped (when: restore, assign, sweep)",
        Kind::Counter,
    ),
    (
        "awscni_held_ip_addresses",
        "Addresses kept out of the pool because a live pod on the host uses them without a matching assignment",
        Kind::Gauge,
    ),
    (
        "awscni_add_ip_req_count",
        "The number of add IP address requests",
        Kind::Counter,
    ),
    (
        "awscni_del_ip_req_count",
        "The number of delete IP address requests",
        Kind::Counter,
    ),
    (
        "awscni_no_available_ip_addresses",
        "The number of pod IP assignments that failed for lack of a free address",
        Kind::Counter,
    ),
    (
        "awscni_ipamd_error_count",
        "The number of errors encountered in ipamd",
        Kind::Counter,
    ),
    (
        "awscni_ec2api_req_count",
        "The number of requests made to EC2 APIs by CNI",
        Kind::Counter,
    ),
    (
        "awscni_ec2api_error_count",
        "The number of failed EC2 API requests",
        Kind::Counter,
    ),
    (
        "awscni_aws_api_error_count",
        "The number of times AWS API returns an error",
        Kind::Counter,
    ),
    (
        "awscni_aws_api_latency_ms",
        "AWS API call latency in ms",
        Kind::Summary,
    ),
    (
        "awscni_reconcile_count",
        "The number of times ipamd reconciled on ENIs and IP/prefix addresses",
        Kind::Counter,
    ),
    (
        "awscni_force_removed_enis",
        "The number of ENIs force removed while they had assigned pods",
        Kind::Counter,
    ),
    (
        "awscni_force_removed_ips",
        "The number of IPs force removed while they had assigned pods",
        Kind::Counter,
    ),
    (
        "awscni_eni_allocated",
        "The number of ENIs allocated",
        Kind::Gauge,
    ),
    (
        "awscni_eni_max",
        "The maximum number of ENIs that can be attached to the instance, accounting for unmanaged ENIs",
        Kind::Gauge,
    ),
    (
        "awscni_ip_max",
        "The maximum number of IP addresses that can be allocated to the instance",
        Kind::Gauge,
    ),
    (
        "awscni_total_ip_addresses",
        "The total number of IP addresses",
        Kind::Gauge,
    ),
    (
        "awscni_assigned_ip_addresses",
        "The number of IP addresses assigned to pods",
        Kind::Gauge,
    ),
    (
        "awscni_total_ipv4_prefixes",
        "The total number of IPv4 prefixes",
        Kind::Gauge,
    ),
    (
        "awscni_build_info",
        "VPC CNI Build Information",
        Kind::Gauge,
    ),
];

impl Default for Metrics {
    fn default() -> Self {
        let families = FAMILIES
            .iter()
            .map(|&(name, help, kind)| {
                (
                    name,
                    Family {
                        help,
                        kind,
                        values: BTreeMap::new(),
                        counts: BTreeMap::new(),
                    },
                )
            })
            .collect();
        Metrics {
            families: Mutex::new(families),
        }
    }
}

impl Metrics {
    fn with(&self, name: &'static str, labels: &[(&'static str, &str)], f: impl FnOnce(&mut f64)) {
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let fam = fams
            .get_mut(name)
            .unwrap_or_else(|| panic!("metric {name} is registered"));
        let key = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        f(fam.values.entry(key).or_insert(0.0));
    }

    /// Add one to a counter.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        self.with(name, labels, |v| *v += 1.0);
    }

    /// Add `n` to a counter.
    pub fn inc_by(&self, name: &'static str, labels: &[(&'static str, &str)], n: f64) {
        self.with(name, labels, |v| *v += n);
    }

    /// Record one observation of a summary.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let fam = fams
            .get_mut(name)
            .unwrap_or_else(|| panic!("metric {name} is registered"));
        let key: Labels = labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
        *fam.values.entry(key.clone()).or_insert(0.0) += value;
        *fam.counts.entry(key).or_insert(0) += 1;
    }

    /// Set a gauge.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.with(name, labels, |v| *v = value);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, fam) in fams.iter() {
            let kind = match fam.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Summary => "summary",
            };
            let _ = writeln!(out, "# HELP {name} {}", fam.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let unlabelled = fam.values.is_empty() && fam.kind == Kind::Counter;
            if unlabelled {
                let _ = writeln!(out, "{name} 0");
            }
            for (labels, v) in &fam.values {
                let l: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| {
                        format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                    })
                    .collect();
                let l = if l.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", l.join(","))
                };
                if fam.kind == Kind::Summary {
                    let n = fam.counts.get(labels).copied().unwrap_or(0);
                    let _ = writeln!(out, "{name}_sum{l} {v}");
                    let _ = writeln!(out, "{name}_count{l} {n}");
                } else {
                    let _ = writeln!(out, "{name}{l} {v}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_upstream_names() {
        let m = Metrics::default();
        m.inc("awscni_add_ip_req_count", &[]);
        m.inc("awscni_del_ip_req_count", &[("reason", "PodDeleted")]);
        m.set("awscni_total_ip_addresses", &[], 14.0);
        let text = m.render();
        assert!(
            text.contains("# TYPE awscni_add_ip_req_count counter\nawscni_add_ip_req_count 1\n"),
            "{text}"
        );
        assert!(text.contains("awscni_del_ip_req_count{reason=\"PodDeleted\"} 1"));
        assert!(text.contains("awscni_total_ip_addresses 14"));
        assert!(text.contains("awscni_no_available_ip_addresses 0"));
        m.observe(
            "awscni_aws_api_latency_ms",
            &[("api", "AssignPrivateIpAddresses"), ("error", "false")],
            12.5,
        );
        m.observe(
            "awscni_aws_api_latency_ms",
            &[("api", "AssignPrivateIpAddresses"), ("error", "false")],
            7.5,
        );
        let text = m.render();
        assert!(
            text.contains("# TYPE awscni_aws_api_latency_ms summary"),
            "{text}"
        );
        assert!(
            text.contains(
                "awscni_aws_api_latency_ms_sum{api=\"AssignPrivateIpAddresses\",error=\"false\"} 20"
            ),
            "{text}"
        );
        assert!(text.contains("awscni_aws_api_latency_ms_count{api=\"AssignPrivateIpAddresses\",error=\"false\"} 2"), "{text}");
    }
}
