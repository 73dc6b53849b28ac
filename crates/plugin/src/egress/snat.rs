//! The egress address's SNAT to the node address, as upstream's egress plugin writes it: a
//! chain per container in `nat` (`E4-`/`E6-` + the first hex digits of SHA-512 of network name
//! and container ID, 28 characters in all, the CNI plugins' naming rule) holding an ACCEPT for
//! multicast and the SNAT, and a `POSTROUTING -s <egress address> -j <chain>` jump; every rule
//! carries the comment `name: "<network>" id: "<container>"`. Removal finds the jump by the
//! chain it names, so DEL works even when the pod's namespace (and address) is gone.

use std::net::IpAddr;

use sha2::{Digest, Sha512};
use vpc_cni_dataplane::DataplaneError;
use vpc_cni_dataplane::iptables::Iptables;

/// The CNI plugins' limit on chain names they generate.
const MAX_CHAIN: usize = 28;
/// The CNI plugins' limit on comments.
const MAX_COMMENT: usize = 256;

/// The chain of (`network`, `container`) with `prefix` (`E4-` or `E6-`).
pub fn chain_name(prefix: &str, network: &str, container: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{}", &hex[..MAX_CHAIN - prefix.len()])
}

/// The comment on every rule of (`network`, `container`).
pub fn comment(network: &str, container: &str) -> String {
    let mut c = format!("name: \"{network}\" id: \"{container}\"");
    c.truncate(MAX_COMMENT);
    c
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Append `rule` to `chain` unless it is there (`-C` first, as `AppendUnique`).
fn append_unique(ipt: &dyn Iptables, chain: &str, rule: &[String]) -> Result<(), DataplaneError> {
    let mut check = args(&["-C", chain]);
    check.extend(rule.iter().cloned());
    if ipt.exec("nat", &check).is_ok() {
        return Ok(());
    }
    let mut add = args(&["-A", chain]);
    add.extend(rule.iter().cloned());
    ipt.exec("nat", &add)
}

/// What one SNAT needs.
#[derive(Debug, Clone)]
pub struct Snat<'a> {
    /// The chain.
    pub chain: &'a str,
    /// The comment.
    pub comment: &'a str,
    /// The node address (SNAT source).
    pub node_ip: IpAddr,
    /// The pod's egress address.
    pub src: IpAddr,
    /// `randomizeSNAT`.
    pub randomize: &'a str,
}

/// Create the chain and its rules and the jump (each only once).
pub fn add(ipt: &dyn Iptables, s: &Snat<'_>) -> Result<(), DataplaneError> {
    if ipt.list("nat", s.chain)?.is_none() {
        ipt.exec("nat", &args(&["-N", s.chain]))?;
    }
    let multicast = if s.node_ip.is_ipv4() {
        "224.0.0.0/4"
    } else {
        "ff00::/8"
    };
    let c = s.comment;
    append_unique(
        ipt,
        s.chain,
        &args(&[
            "-d",
            multicast,
            "-j",
            "ACCEPT",
            "-m",
            "comment",
            "--comment",
            c,
        ]),
    )?;
    let node = s.node_ip.to_string();
    let mut snat = args(&[
        "-j",
        "SNAT",
        "--to-source",
        &node,
        "-m",
        "comment",
        "--comment",
        c,
    ]);
    match s.randomize {
        "none" => {}
        "hashrandom" => snat.push("--random".into()),
        _ => snat.push("--random-fully".into()),
    }
    append_unique(ipt, s.chain, &snat)?;
    let src = s.src.to_string();
    append_unique(
        ipt,
        "POSTROUTING",
        &args(&["-s", &src, "-j", s.chain, "-m", "comment", "--comment", c]),
    )
}

/// Remove the jumps to `chain` and the chain; a chain already gone is success.
pub fn del(ipt: &dyn Iptables, chain: &str) -> Result<(), DataplaneError> {
    let jump = format!("-j {chain}");
    let rules = ipt.list("nat", "POSTROUTING")?.unwrap_or_default();
    // Highest position first: deleting one renumbers those after it.
    for (i, r) in rules.iter().enumerate().rev() {
        let targets_chain = r
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0] == "-j" && w[1] == chain);
        if targets_chain || r.ends_with(&jump) {
            ipt.exec("nat", &args(&["-D", "POSTROUTING", &(i + 1).to_string()]))?;
        }
    }
    if ipt.list("nat", chain)?.is_some() {
        ipt.exec("nat", &args(&["-F", chain]))?;
        ipt.exec("nat", &args(&["-X", chain]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpc_cni_dataplane::iptables::FakeIptables;

    #[test]
    fn names_follow_the_cni_plugins_rule() {
        let c = chain_name("E4-", "aws-cni", "c1");
        assert_eq!(c.len(), 28);
        assert!(c.starts_with("E4-") && c[3..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(c, chain_name("E4-", "aws-cni", "c2"));
        assert_eq!(comment("aws-cni", "c1"), "name: \"aws-cni\" id: \"c1\"");
        assert_eq!(comment("n", &"x".repeat(400)).len(), 256);
    }

    #[test]
    fn add_is_idempotent_and_del_removes_everything() {
        let ipt = FakeIptables::new();
        let chain = chain_name("E4-", "aws-cni", "c1");
        let cm = comment("aws-cni", "c1");
        let s = Snat {
            chain: &chain,
            comment: &cm,
            node_ip: "10.0.0.5".parse().unwrap(),
            src: "169.254.172.2".parse().unwrap(),
            randomize: "prng",
        };
        add(&ipt, &s).unwrap();
        add(&ipt, &s).unwrap();
        let rules = ipt.rules("nat", &chain);
        assert_eq!(rules.len(), 2, "{rules:?}");
        assert!(rules[0].contains("-d 224.0.0.0/4 -j ACCEPT"));
        assert!(rules[1].contains("--to-source 10.0.0.5") && rules[1].ends_with("--random-fully"));
        assert_eq!(ipt.rules("nat", "POSTROUTING").len(), 1);
        del(&ipt, &chain).unwrap();
        assert!(ipt.rules("nat", "POSTROUTING").is_empty());
        assert!(ipt.list("nat", &chain).unwrap().is_none());
        del(&ipt, &chain).unwrap();
    }
}
