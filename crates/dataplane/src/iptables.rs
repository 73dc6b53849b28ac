//! The `iptables` seam: listing a chain and running one command ([`Iptables`]), the `iptables`
//! binary behind it ([`IptablesBin`]), an in-memory [`FakeIptables`], and [`reconcile`], which
//! makes the managed chains hold exactly the rules of [`crate::snat::desired`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::Command;

use crate::snat::ChainRules;
use crate::{DataplaneError, Result};

/// What [`reconcile`] needs of iptables.
pub trait Iptables {
    /// The rules of `chain` in `table` as `iptables -S` prints them without `-A <chain> `;
    /// `None` when the chain does not exist.
    fn list(&self, table: &str, chain: &str) -> Result<Option<Vec<String>>>;
    /// Run `iptables -t <table> <args…>`.
    fn exec(&self, table: &str, args: &[String]) -> Result<()>;
}

/// The `iptables` binary (`-w`: wait for the xtables lock).
#[derive(Debug, Clone)]
pub struct IptablesBin {
    /// Program name or path.
    pub program: String,
}

/// The variable naming the iptables program (the node entrypoint sets it to `iptables-legacy` or
/// `iptables-nft`, whichever holds the host's rules); unset: `iptables`.
pub const IPTABLES_ENV: &str = "VPC_CNI_IPTABLES";

impl Default for IptablesBin {
    fn default() -> Self {
        IptablesBin {
            program: std::env::var(IPTABLES_ENV)
                .ok()
                .filter(|p| !p.trim().is_empty())
                .unwrap_or_else(|| "iptables".into()),
        }
    }
}

impl IptablesBin {
    /// The IPv6 counterpart of [`IptablesBin::default`]: `ip6tables`, or the `ip6tables-…`
    /// sibling of the program `VPC_CNI_IPTABLES` names.
    pub fn v6() -> Self {
        let v4 = Self::default().program;
        let program = match v4.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/{}", name.replacen("iptables", "ip6tables", 1)),
            None => v4.replacen("iptables", "ip6tables", 1),
        };
        IptablesBin { program }
    }

    fn run(&self, table: &str, args: &[String]) -> Result<std::process::Output> {
        Command::new(&self.program)
            .args(["-w", "-t", table])
            .args(args)
            .output()
            .map_err(|e| DataplaneError::Iptables {
                args: format!("-t {table} {}", args.join(" ")),
                message: format!("cannot run {}: {e}", self.program),
            })
    }
}

impl Iptables for IptablesBin {
    fn list(&self, table: &str, chain: &str) -> Result<Option<Vec<String>>> {
        // The whole table: asking for a missing chain gives a different error per backend.
        let out = self.run(table, &["-S".into()])?;
        if !out.status.success() {
            return Err(DataplaneError::Iptables {
                args: format!("-t {table} -S"),
                message: String::from_utf8_lossy(&out.stderr).trim().into(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let exists = text.lines().any(|l| {
            l.strip_prefix("-N ")
                .or_else(|| l.strip_prefix("-P "))
                .and_then(|r| r.split(' ').next())
                == Some(chain)
        });
        if !exists {
            return Ok(None);
        }
        let prefix = format!("-A {chain} ");
        Ok(Some(
            text.lines()
                .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
                .collect(),
        ))
    }

    fn exec(&self, table: &str, args: &[String]) -> Result<()> {
        let out = self.run(table, args)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(DataplaneError::Iptables {
                args: format!("-t {table} {}", args.join(" ")),
                message: String::from_utf8_lossy(&out.stderr).trim().into(),
            })
        }
    }
}

/// Split a rule as `iptables -S` prints it into arguments (double quotes group words).
pub fn split_args(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for ch in rule.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn join_args(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.contains(' ') || a.is_empty() {
                format!("\"{a}\"")
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_ours(rule: &str) -> bool {
    rule.contains("--comment \"AWS") || rule.contains("--comment AWS")
}

fn cmd(op: &str, chain: &str, extra: &[&str], rule: Option<&str>) -> Vec<String> {
    let mut v = vec![op.to_string(), chain.to_string()];
    v.extend(extra.iter().map(|s| s.to_string()));
    if let Some(r) = rule {
        v.extend(split_args(r));
    }
    v
}

/// Make every chain of `want` hold exactly its rules; returns the commands that changed
/// something (empty when all was already in place).
pub fn reconcile(ipt: &dyn Iptables, want: &[ChainRules]) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    let mut run = |table: &str, args: Vec<String>| -> Result<()> {
        changes.push(format!("-t {table} {}", join_args(&args)));
        ipt.exec(table, &args)
    };
    // Own chains first, so the jumps below have a target.
    for c in want.iter().filter(|c| !c.builtin) {
        let Some(rules) = &c.rules else { continue };
        let current = match ipt.list(c.table, c.chain)? {
            Some(r) => r,
            None => {
                run(c.table, cmd("-N", c.chain, &[], None))?;
                vec![]
            }
        };
        if &current == rules {
            continue;
        }
        for r in current.iter().filter(|r| !rules.contains(r)) {
            run(c.table, cmd("-D", c.chain, &[], Some(r)))?;
        }
        for (i, r) in rules.iter().enumerate() {
            if !current.contains(r) {
                run(
                    c.table,
                    cmd("-I", c.chain, &[&(i + 1).to_string()], Some(r)),
                )?;
            }
        }
        if ipt.list(c.table, c.chain)?.as_ref() != Some(rules) {
            // Someone reordered the chain: rebuild it.
            run(c.table, cmd("-F", c.chain, &[], None))?;
            for r in rules {
                run(c.table, cmd("-A", c.chain, &[], Some(r)))?;
            }
        }
    }
    for c in want.iter().filter(|c| c.builtin) {
        let rules = c.rules.clone().unwrap_or_default();
        let current = ipt.list(c.table, c.chain)?.unwrap_or_default();
        for r in current.iter().filter(|r| is_ours(r) && !rules.contains(r)) {
            run(c.table, cmd("-D", c.chain, &[], Some(r)))?;
        }
        for r in rules.iter().filter(|r| !current.contains(r)) {
            run(c.table, cmd("-A", c.chain, &[], Some(r)))?;
        }
    }
    for c in want.iter().filter(|c| !c.builtin && c.rules.is_none()) {
        if ipt.list(c.table, c.chain)?.is_some() {
            run(c.table, cmd("-F", c.chain, &[], None))?;
            run(c.table, cmd("-X", c.chain, &[], None))?;
        }
    }
    Ok(changes)
}

/// In-memory iptables: chains as lists of rule strings, built-in chains pre-created.
#[derive(Debug, Default)]
pub struct FakeIptables {
    chains: RefCell<BTreeMap<(String, String), Vec<String>>>,
}

impl FakeIptables {
    /// Empty `nat` and `mangle` tables with their built-in chains.
    pub fn new() -> Self {
        let f = FakeIptables::default();
        for (t, c) in [
            ("nat", "PREROUTING"),
            ("nat", "POSTROUTING"),
            ("nat", "OUTPUT"),
            ("mangle", "PREROUTING"),
        ] {
            f.chains.borrow_mut().insert((t.into(), c.into()), vec![]);
        }
        f
    }

    /// The rules of a chain (panics on a missing chain: test helper).
    pub fn rules(&self, table: &str, chain: &str) -> Vec<String> {
        self.chains.borrow()[&(table.to_string(), chain.to_string())].clone()
    }
}

impl Iptables for FakeIptables {
    fn list(&self, table: &str, chain: &str) -> Result<Option<Vec<String>>> {
        Ok(self
            .chains
            .borrow()
            .get(&(table.to_string(), chain.to_string()))
            .cloned())
    }

    fn exec(&self, table: &str, args: &[String]) -> Result<()> {
        let fail = |m: &str| DataplaneError::Iptables {
            args: join_args(args),
            message: m.into(),
        };
        let key = (
            table.to_string(),
            args.get(1).cloned().ok_or_else(|| fail("no chain"))?,
        );
        let mut chains = self.chains.borrow_mut();
        match args[0].as_str() {
            "-N" => {
                if chains.insert(key, vec![]).is_some() {
                    return Err(fail("Chain already exists"));
                }
            }
            "-X" => {
                chains.remove(&key).ok_or_else(|| fail("No chain"))?;
            }
            op => {
                let rules = chains
                    .get_mut(&key)
                    .ok_or_else(|| fail("No chain/target/match by that name"))?;
                match op {
                    "-F" => rules.clear(),
                    "-A" => rules.push(join_args(&args[2..])),
                    "-I" => {
                        let pos: usize = args[2].parse().map_err(|_| fail("bad position"))?;
                        rules.insert((pos - 1).min(rules.len()), join_args(&args[3..]));
                    }
                    "-C" => {
                        let r = join_args(&args[2..]);
                        if !rules.contains(&r) {
                            return Err(fail(
                                "Bad rule (does a matching rule exist in that chain?)",
                            ));
                        }
                    }
                    "-D" if args.len() == 3 && args[2].parse::<usize>().is_ok() => {
                        let n: usize = args[2].parse().expect("checked");
                        if n == 0 || n > rules.len() {
                            return Err(fail("Index of deletion too big"));
                        }
                        rules.remove(n - 1);
                    }
                    "-D" => {
                        let r = join_args(&args[2..]);
                        let i = rules
                            .iter()
                            .position(|x| *x == r)
                            .ok_or_else(|| fail("Bad rule"))?;
                        rules.remove(i);
                    }
                    _ => return Err(fail("unsupported")),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snat::{Randomize, SNAT_CHAIN, SnatConfig, desired};

    fn cfg() -> SnatConfig {
        SnatConfig {
            vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            exclude_cidrs: vec![],
            node_ip: "10.0.0.10".parse().unwrap(),
            randomize: Randomize::Prng,
            external_snat: false,
            mark: 0x80,
            veth_prefix: "eni".into(),
            node_port_support: true,
            primary_if: "eth0".into(),
        }
    }

    #[test]
    fn split_and_join_round_trip() {
        let r = "-d 10.0.0.0/16 -m comment --comment \"AWS SNAT CHAIN\" -j RETURN";
        let a = split_args(r);
        assert_eq!(a[5], "AWS SNAT CHAIN");
        assert_eq!(join_args(&a), r);
    }

    #[test]
    fn reconcile_converges_and_is_idempotent() {
        let f = FakeIptables::new();
        f.exec("nat", &cmd("-A", "POSTROUTING", &[], Some("-j MASQUERADE")))
            .unwrap();
        f.exec(
            "nat",
            &cmd(
                "-A",
                "POSTROUTING",
                &[],
                Some("-m comment --comment \"AWS stale\" -j ACCEPT"),
            ),
        )
        .unwrap();
        let want = desired(&cfg());
        assert!(!reconcile(&f, &want).unwrap().is_empty());
        for c in &want {
            let have = f.list(c.table, c.chain).unwrap();
            let ours: Option<Vec<String>> =
                have.map(|v| v.into_iter().filter(|r| !c.builtin || is_ours(r)).collect());
            assert_eq!(ours, c.rules, "{} {}", c.table, c.chain);
        }
        assert!(
            f.rules("nat", "POSTROUTING")
                .contains(&"-j MASQUERADE".to_string()),
            "foreign rules stay"
        );
        assert_eq!(
            reconcile(&f, &want).unwrap(),
            Vec::<String>::new(),
            "second pass changes nothing"
        );

        // A new exclusion lands before the SNAT rule; switching to external SNAT removes it all.
        let mut c = cfg();
        c.exclude_cidrs = vec!["192.168.0.0/16".parse().unwrap()];
        reconcile(&f, &desired(&c)).unwrap();
        let chain = f.rules("nat", SNAT_CHAIN);
        assert!(
            chain[1].contains("192.168.0.0/16") && chain[2].contains("-j SNAT"),
            "{chain:?}"
        );
        c.external_snat = true;
        reconcile(&f, &desired(&c)).unwrap();
        assert_eq!(f.list("nat", SNAT_CHAIN).unwrap(), None);
        assert_eq!(
            f.rules("nat", "POSTROUTING"),
            vec!["-j MASQUERADE".to_string()]
        );
    }
}
