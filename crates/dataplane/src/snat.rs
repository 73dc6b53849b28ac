//! SNAT and connmark rules (spec e.6) as data: the rules each chain should hold, written the
//! way `iptables -S` prints them so that reconciling compares strings. Applied by
//! [`crate::iptables::reconcile`].

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// Chain of the SNAT rules.
pub const SNAT_CHAIN: &str = "AWS-SNAT-CHAIN-0";
/// Chain of the connmark rules.
pub const CONNMARK_CHAIN: &str = "AWS-CONNMARK-CHAIN-0";

/// `AWS_VPC_K8S_CNI_RANDOMIZESNAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Randomize {
    /// `prng` (default): `--random-fully`.
    Prng,
    /// `hashrandom`: `--random`.
    HashRandom,
    /// `none`.
    None,
}

impl Randomize {
    /// Parse `AWS_VPC_K8S_CNI_RANDOMIZESNAT` (`""` is the default, `prng`); `None` for anything
    /// else (upstream silently falls back to `prng`; the daemon refuses it).
    pub fn parse(v: &str) -> Option<Randomize> {
        match v {
            "" | "prng" => Some(Randomize::Prng),
            "hashrandom" => Some(Randomize::HashRandom),
            "none" => Some(Randomize::None),
            _ => None,
        }
    }
}

/// What the rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnatConfig {
    /// VPC CIDRs (traffic to them is not SNATed).
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// `AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS`.
    pub exclude_cidrs: Vec<Ipv4Net>,
    /// The node's primary IP (SNAT source).
    pub node_ip: Ipv4Addr,
    /// `AWS_VPC_K8S_CNI_RANDOMIZESNAT`.
    pub randomize: Randomize,
    /// `AWS_VPC_K8S_CNI_EXTERNALSNAT`.
    pub external_snat: bool,
    /// `AWS_VPC_K8S_CNI_CONNMARK` (default 0x80).
    pub mark: u32,
    /// Host veth prefix (`AWS_VPC_K8S_CNI_VETHPREFIX`, default `eni`).
    pub veth_prefix: String,
    /// `AWS_VPC_CNI_NODE_PORT_SUPPORT` (default true).
    pub node_port_support: bool,
    /// Name of the primary ENI's link.
    pub primary_if: String,
}

/// The rules one chain should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRules {
    /// Table (`nat`, `mangle`).
    pub table: &'static str,
    /// Chain.
    pub chain: &'static str,
    /// Built-in chain: only rules whose comment starts with `AWS` are ours.
    pub builtin: bool,
    /// The rules in order, as `iptables -S` prints them without `-A <chain>`; `None`: the
    /// (own) chain must not exist.
    pub rules: Option<Vec<String>>,
}

fn ret(cidr: &Ipv4Net, comment: &str) -> String {
    if cidr.prefix_len() == 0 {
        format!("-m comment --comment \"{comment}\" -j RETURN")
    } else {
        format!("-d {cidr} -m comment --comment \"{comment}\" -j RETURN")
    }
}

/// Every chain the daemon manages, with its desired rules.
pub fn desired(c: &SnatConfig) -> Vec<ChainRules> {
    let m = format!("{:#x}", c.mark);
    let restore = format!("-j CONNMARK --restore-mark --nfmask {m} --ctmask {m}");
    let veths = format!("{}+", c.veth_prefix);
    let snat_on = !c.external_snat;
    let mut out = Vec::new();
    let snat_chain = snat_on.then(|| {
        let mut r: Vec<String> = c.vpc_cidrs.iter().map(|v| ret(v, "AWS SNAT CHAIN")).collect();
        r.extend(c.exclude_cidrs.iter().map(|v| ret(v, "AWS SNAT CHAIN EXCLUSION")));
        let random = match c.randomize {
            Randomize::Prng => " --random-fully",
            Randomize::HashRandom => " --random",
            Randomize::None => "",
        };
        r.push(format!(
            "! -o vlan+ -m comment --comment \"AWS, SNAT\" -m addrtype ! --dst-type LOCAL -j SNAT --to-source {}{random}",
            c.node_ip
        ));
        r
    });
    let connmark_chain = snat_on.then(|| {
        let mut r: Vec<String> = c
            .vpc_cidrs
            .iter()
            .map(|v| ret(v, "AWS CONNMARK CHAIN, VPC CIDR"))
            .collect();
        r.extend(
            c.exclude_cidrs
                .iter()
                .map(|v| ret(v, "AWS CONNMARK CHAIN, EXCLUDED CIDR")),
        );
        r.push(format!(
            "-m comment --comment \"AWS, CONNMARK\" -j CONNMARK --set-xmark {m}/{m}"
        ));
        r
    });
    out.push(ChainRules {
        table: "nat",
        chain: SNAT_CHAIN,
        builtin: false,
        rules: snat_chain,
    });
    out.push(ChainRules {
        table: "nat",
        chain: CONNMARK_CHAIN,
        builtin: false,
        rules: connmark_chain,
    });
    out.push(ChainRules {
        table: "nat",
        chain: "POSTROUTING",
        builtin: true,
        rules: Some(if snat_on {
            vec![format!(
                "-m comment --comment \"AWS SNAT CHAIN\" -j {SNAT_CHAIN}"
            )]
        } else {
            vec![]
        }),
    });
    out.push(ChainRules {
        table: "nat",
        chain: "PREROUTING",
        builtin: true,
        rules: Some(if snat_on {
            vec![
                format!("-i {veths} -m comment --comment \"AWS, outbound connections\" -j {CONNMARK_CHAIN}"),
                format!("-m comment --comment \"AWS, CONNMARK\" {restore}"),
            ]
        } else {
            vec![]
        }),
    });
    let mut mangle = Vec::new();
    if c.node_port_support {
        mangle.push(format!(
            "-i {} -m comment --comment \"AWS, primary ENI\" -m addrtype --dst-type LOCAL --limit-iface-in -j CONNMARK --set-xmark {m}/{m}",
            c.primary_if
        ));
    }
    if c.node_port_support || snat_on {
        mangle.push(format!(
            "-i {veths} -m comment --comment \"AWS, primary ENI\" {restore}"
        ));
    }
    if c.node_port_support {
        mangle.push(format!(
            "-i vlan+ -m comment --comment \"AWS, primary ENI\" {restore}"
        ));
    }
    out.push(ChainRules {
        table: "mangle",
        chain: "PREROUTING",
        builtin: true,
        rules: Some(mangle),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SnatConfig {
        SnatConfig {
            vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            exclude_cidrs: vec!["0.0.0.0/0".parse().unwrap()],
            node_ip: "10.0.0.10".parse().unwrap(),
            randomize: Randomize::Prng,
            external_snat: false,
            mark: 0x80,
            veth_prefix: "eni".into(),
            node_port_support: true,
            primary_if: "eth0".into(),
        }
    }

    fn chain<'a>(d: &'a [ChainRules], table: &str, chain: &str) -> &'a Option<Vec<String>> {
        &d.iter()
            .find(|c| c.table == table && c.chain == chain)
            .unwrap()
            .rules
    }

    #[test]
    fn snat_chain_per_setting() {
        for (v, tail) in [
            ("prng", " --random-fully"),
            ("hashrandom", " --random"),
            ("none", ""),
            ("", " --random-fully"),
        ] {
            let mut c = cfg();
            c.randomize = Randomize::parse(v).unwrap();
            let d = desired(&c);
            let rules = chain(&d, "nat", SNAT_CHAIN).clone().unwrap();
            assert_eq!(
                rules[0],
                "-d 10.0.0.0/16 -m comment --comment \"AWS SNAT CHAIN\" -j RETURN"
            );
            assert_eq!(
                rules[1], "-m comment --comment \"AWS SNAT CHAIN EXCLUSION\" -j RETURN",
                "0.0.0.0/0 has no -d"
            );
            assert!(
                rules[2].ends_with(&format!("--to-source 10.0.0.10{tail}")),
                "{v}: {}",
                rules[2]
            );
        }
    }

    #[test]
    fn external_snat_removes_snat_and_connmark() {
        let mut c = cfg();
        c.external_snat = true;
        c.node_port_support = false;
        let d = desired(&c);
        assert_eq!(chain(&d, "nat", SNAT_CHAIN), &None);
        assert_eq!(chain(&d, "nat", CONNMARK_CHAIN), &None);
        assert_eq!(chain(&d, "nat", "POSTROUTING"), &Some(vec![]));
        assert_eq!(chain(&d, "mangle", "PREROUTING"), &Some(vec![]));
        c.node_port_support = true;
        assert_eq!(
            chain(&desired(&c), "mangle", "PREROUTING")
                .as_ref()
                .unwrap()
                .len(),
            3
        );
    }
}
