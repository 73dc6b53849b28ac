//! The dataplane of the VPC CNI: what the plugin does to a pod's network namespace and the
//! host's routing on ADD/DEL/CHECK (spec e.3/e.4), what ipamd does to the node (ENI links,
//! per-ENI route tables and rules, node rules: spec e.5) and the SNAT/connmark rules (spec e.6).
//!
//! Pure parts (what should exist: [`pod::PodSpec`], [`snat::desired`], [`node::EniLink`]) are
//! separate from the rtnetlink and `iptables` appliers, and each I/O seam is a narrow trait
//! ([`pod::PodNetwork`], [`iptables::Iptables`]) with a fake for tests.

pub mod iptables;
pub mod netns;
pub mod nl;
pub mod node;
pub mod owners;
pub mod pod;
pub mod snat;
pub mod veth;

pub use rtnetlink::Handle;

use std::net::Ipv4Addr;

/// Errors of the dataplane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// A network namespace could not be opened or entered.
    #[error("network namespace {path}: {source}")]
    Netns {
        /// The namespace path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error("{op}: {source}")]
    Netlink {
        /// What was being done ("add route 10.0.1.5/32 dev eni…").
        op: String,
        /// The netlink error.
        source: rtnetlink::Error,
    },
    /// An object the operation needs does not exist.
    #[error("{0}")]
    NotFound(String),
    /// An `iptables` command failed.
    #[error("iptables {args}: {message}")]
    Iptables {
        /// The arguments.
        args: String,
        /// Its stderr or the spawn error.
        message: String,
    },
    /// Local I/O (sysctl files, /dev/urandom).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

impl DataplaneError {
    pub(crate) fn netlink(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Self {
        let op = op.into();
        move |source| DataplaneError::Netlink { op, source }
    }
}

/// Result alias.
pub type Result<T, E = DataplaneError> = std::result::Result<T, E>;

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;
/// Priority of the `to <pod IP> lookup main` rule.
pub const PRIO_TO_POD: u32 = 512;
/// Priority of the `fwmark` rule.
pub const PRIO_FWMARK: u32 = 1024;
/// Priority of the external service CIDR rules.
pub const PRIO_EXTERNAL_SERVICE: u32 = 1535;
/// Priority of the `from <pod IP> lookup <ENI table>` rule.
pub const PRIO_FROM_POD: u32 = 1536;
/// Priority of the `from <ENI primary IP> lookup <ENI table>` rule.
pub const PRIO_FROM_ENI: u32 = 32765;

/// The gateway of pod interface `index` (169.254.1.1 for the first).
pub fn pod_gateway(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(169, 254, 1, (index + 1).min(254) as u8)
}

/// Format a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok())
        .collect::<Option<_>>()?;
    parts.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_gateways() {
        assert_eq!(
            parse_mac("02:0a:ff:00:01:9c"),
            Some([2, 10, 255, 0, 1, 156])
        );
        assert_eq!(format_mac(&[2, 10, 255, 0, 1, 156]), "02:0a:ff:00:01:9c");
        for bad in ["", "02:0a", "zz:00:00:00:00:00", "00:00:00:00:00:00:00"] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(pod_gateway(0), Ipv4Addr::new(169, 254, 1, 1));
        assert_eq!(pod_gateway(2), Ipv4Addr::new(169, 254, 1, 3));
    }
}
