//! `egress-cni`: the chained plugin that gives pods an interface of the other address family,
//! SNATed to the node (spec e.1, upstream's `cmd/egress-cni-plugin`). It runs after `aws-cni`
//! in the conflist, takes an address from its own host-local-style leases ([`store`]), makes a
//! second veth pair ([`wire`]), SNATs the address to `nodeIP` ([`snat`]) and prints `aws-cni`'s
//! result with the two new interfaces appended. `enabled != "true"` passes the result through.

pub mod conf;
pub mod snat;
pub mod store;
pub mod wire;

use std::path::Path;

use serde_json::{Value, json};
use vpc_cni_cni::{CniEnv, CniError, Code, Command};
use vpc_cni_dataplane::iptables::Iptables;

use crate::log::{Level, Logger};
use conf::{EgressConf, Family};
use store::Leases;
use wire::{EgressNet, EgressSpec};

/// Everything one egress command needs.
pub struct EgressCtx<'a, N, T> {
    /// The configuration.
    pub conf: &'a EgressConf,
    /// `CNI_*`.
    pub env: &'a CniEnv,
    /// The kernel.
    pub net: &'a N,
    /// `iptables` (IPv4 egress) or `ip6tables` (IPv6 egress).
    pub ipt: &'a T,
    /// The log.
    pub log: &'a Logger,
}

fn internal(msg: impl Into<String>) -> CniError {
    CniError::new(Code::Internal, msg)
}

impl<N: EgressNet, T: Iptables> EgressCtx<'_, N, T> {
    fn chain(&self) -> String {
        let prefix = match self.conf.family() {
            Family::V4 => "E4-",
            Family::V6 => "E6-",
        };
        snat::chain_name(prefix, &self.conf.name, &self.env.container_id)
    }

    fn leases(&self) -> Result<Leases, CniError> {
        Leases::open(Path::new(&self.conf.data_dir), &self.conf.name)
            .map_err(|e| internal(format!("egress leases: {e}")))
    }

    /// ADD: `prevResult` with the egress interfaces appended.
    pub async fn add(&self) -> Result<Value, CniError> {
        let Some(prev) = self.conf.prev_result.clone() else {
            return Err(CniError::new(
                Code::InvalidNetworkConfig,
                "must be called as a chained plugin (no prevResult: put egress-cni after aws-cni in the conflist)",
            ));
        };
        if !self.conf.enabled {
            return Ok(prev);
        }
        let node_ip = self.conf.node_ip.ok_or_else(|| {
            CniError::new(
                Code::InvalidNetworkConfig,
                "nodeIP is empty: the node address egress traffic is SNATed to",
            )
        })?;
        if let std::net::IpAddr::V6(a) = node_ip
            && (a.is_unspecified() || a.is_loopback() || a.segments()[0] & 0xffc0 == 0xfe80)
        {
            return Err(CniError::new(
                Code::InvalidNetworkConfig,
                format!(
                    "nodeIP {a}: global unicast IPv6 not found in host primary interface which is mandatory to support IPv6 egress"
                ),
            ));
        }
        let subnet = self.conf.subnet_for_mode()?;
        let leases = self.leases()?;
        let addr = leases
            .reserve(subnet, &self.env.container_id, &self.env.if_name)
            .map_err(|e| {
                internal(format!(
                    "failed to get one address from the egress range: {e}"
                ))
            })?;
        match self.wire(node_ip, subnet, addr).await {
            Ok(made) => Ok(append_interfaces(prev, &made, &self.env.netns)),
            Err(e) => {
                self.log.log(
                    Level::Error,
                    &format!("ADD {}: {e}; rolling back", self.env.container_id),
                );
                let _ = self.net.teardown(&self.env.netns, self.conf.ifname()).await;
                let _ = snat::del(self.ipt, &self.chain());
                let _ = leases.release(&self.env.container_id, &self.env.if_name);
                Err(e)
            }
        }
    }

    async fn wire(
        &self,
        node_ip: std::net::IpAddr,
        subnet: ipnet::IpNet,
        addr: std::net::IpAddr,
    ) -> Result<wire::Made, CniError> {
        let default_route: ipnet::IpNet = match self.conf.family() {
            Family::V4 => "0.0.0.0/0".parse().expect("valid"),
            Family::V6 => "::/0".parse().expect("valid"),
        };
        let spec = EgressSpec {
            ifname: self.conf.ifname().into(),
            main_if: self.env.if_name.clone(),
            addr,
            subnet,
            gateway: store::range(subnet).0,
            route: self.conf.route.unwrap_or(default_route),
            mtu: self.conf.mtu,
        };
        let made = self
            .net
            .setup(&self.env.netns, &spec)
            .await
            .map_err(|e| internal(format!("egress interface {}: {e}", spec.ifname)))?;
        let chain = self.chain();
        let comment = snat::comment(&self.conf.name, &self.env.container_id);
        snat::add(
            self.ipt,
            &snat::Snat {
                chain: &chain,
                comment: &comment,
                node_ip,
                src: addr,
                randomize: &self.conf.randomize_snat,
            },
        )
        .map_err(|e| internal(format!("egress SNAT: {e}")))?;
        self.log.log(
            Level::Info,
            &format!(
                "ADD {}: {} {addr} SNAT to {node_ip} (chain {chain})",
                self.env.container_id, spec.ifname
            ),
        );
        Ok(made)
    }

    /// DEL: lease, SNAT and interface gone; idempotent.
    pub async fn del(&self) -> Result<(), CniError> {
        if !self.conf.enabled {
            return Ok(());
        }
        let released = self
            .leases()?
            .release(&self.env.container_id, &self.env.if_name)
            .map_err(|e| internal(format!("running IPAM plugin failed: {e}")))?;
        snat::del(self.ipt, &self.chain()).map_err(|e| internal(format!("egress SNAT: {e}")))?;
        if let Err(e) = self.net.teardown(&self.env.netns, self.conf.ifname()).await {
            self.log
                .log(Level::Warn, &format!("DEL {}: {e}", self.env.container_id));
        }
        self.log.log(
            Level::Info,
            &format!("DEL {}: released {released:?}", self.env.container_id),
        );
        Ok(())
    }
}

/// `prev` with the host end and the pod end appended to `interfaces`.
pub fn append_interfaces(mut prev: Value, made: &wire::Made, netns: &str) -> Value {
    let extra = [
        json!({"name": made.host.0, "mac": made.host.1}),
        json!({"name": made.pod.0, "mac": made.pod.1, "sandbox": netns}),
    ];
    match prev["interfaces"].as_array_mut() {
        Some(list) => list.extend(extra),
        None => prev["interfaces"] = Value::Array(extra.to_vec()),
    }
    prev
}

/// Run one `egress-cni` invocation: stdout text and exit code.
pub fn run(env: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> crate::Outcome {
    let (version, cni_env) = match crate::begin(env, stdin) {
        Ok(v) => v,
        Err(done) => return done,
    };
    let conf = match EgressConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return crate::fail(e, &version),
    };
    let log = Logger::new(&conf.log_file, &conf.log_level);
    let rt = match crate::runtime(&version) {
        Ok(rt) => rt,
        Err(done) => return done,
    };
    let ipt = match conf.family() {
        Family::V4 => vpc_cni_dataplane::iptables::IptablesBin::default(),
        Family::V6 => vpc_cni_dataplane::iptables::IptablesBin::v6(),
    };
    let ctx = EgressCtx {
        conf: &conf,
        env: &cni_env,
        net: &wire::EgressNetlink,
        ipt: &ipt,
        log: &log,
    };
    let result = rt.block_on(async {
        match cni_env.command {
            Command::Add => ctx.add().await.map(|v| v.to_string()),
            Command::Del => ctx.del().await.map(|()| String::new()),
            // Upstream's egress plugin has no CHECK, STATUS or GC handler either.
            _ => Ok(String::new()),
        }
    });
    crate::finish(result, &log, &cni_env, &conf.cni_version)
}

#[cfg(test)]
mod tests;
