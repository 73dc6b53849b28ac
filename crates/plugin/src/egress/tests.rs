//! The egress command logic against a fake kernel and an in-memory iptables.

use std::cell::RefCell;

use serde_json::json;
use vpc_cni_cni::CniEnv;
use vpc_cni_dataplane::iptables::{FakeIptables, Iptables};
use vpc_cni_dataplane::{DataplaneError, Result};

use super::wire::{EgressNet, EgressSpec, Made};
use super::*;

#[derive(Default)]
struct FakeNet {
    fail: bool,
    made: RefCell<Vec<EgressSpec>>,
    removed: RefCell<Vec<String>>,
}

impl EgressNet for FakeNet {
    async fn setup(&self, _netns: &str, spec: &EgressSpec) -> Result<Made> {
        if self.fail {
            return Err(DataplaneError::NotFound("no such namespace".into()));
        }
        self.made.borrow_mut().push(spec.clone());
        Ok(Made {
            host: ("veth0a1b2c3d".into(), "02:00:00:00:00:01".into()),
            pod: (spec.ifname.clone(), "02:00:00:00:00:02".into()),
        })
    }
    async fn teardown(&self, _netns: &str, ifname: &str) -> Result<()> {
        self.removed.borrow_mut().push(ifname.into());
        Ok(())
    }
}

fn env(cmd: &str) -> CniEnv {
    CniEnv::from_lookup(|k| {
        Some(
            match k {
                "CNI_COMMAND" => cmd,
                "CNI_CONTAINERID" => "c1",
                "CNI_NETNS" => "/var/run/netns/p1",
                "CNI_IFNAME" => "eth0",
                "CNI_PATH" => "/opt/cni/bin",
                _ => return None,
            }
            .to_string(),
        )
    })
    .unwrap()
}

fn conf(dir: &std::path::Path, enabled: bool, node_ip: &str, subnet: &str) -> EgressConf {
    let prev = json!({"cniVersion": "0.4.0", "interfaces": [{"name": "enia"}, {"name": "eth0"}],
                      "ips": [{"version": "6", "interface": 1, "address": "2600::1/128"}]});
    EgressConf::parse(
        json!({"cniVersion": "0.4.0", "name": "aws-cni", "mtu": "9001",
               "enabled": enabled.to_string(), "nodeIP": node_ip,
               "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                        "dataDir": dir}, "prevResult": prev})
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn logger() -> Logger {
    Logger::new("stderr", "error")
}

#[tokio::test]
async fn add_leases_wires_snats_and_del_undoes_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf(dir.path(), true, "10.0.0.5", "169.254.172.0/22");
    let (net, ipt, log) = (FakeNet::default(), FakeIptables::new(), logger());
    let e = env("ADD");
    let ctx = EgressCtx {
        conf: &c,
        env: &e,
        net: &net,
        ipt: &ipt,
        log: &log,
    };
    let out = ctx.add().await.unwrap();
    let ifs = out["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 4, "{out}");
    assert_eq!(
        ifs[3],
        json!({"name": "v4if0", "mac": "02:00:00:00:00:02", "sandbox": "/var/run/netns/p1"})
    );
    assert_eq!(
        out["ips"].as_array().unwrap().len(),
        1,
        "the pod's own addresses only"
    );
    let spec = net.made.borrow()[0].clone();
    assert_eq!(spec.addr.to_string(), "169.254.172.2");
    assert_eq!(spec.gateway.to_string(), "169.254.172.1");
    assert_eq!(spec.route.to_string(), "0.0.0.0/0");
    assert!(dir.path().join("aws-cni/169.254.172.2").exists());
    let chain = snat::chain_name("E4-", "aws-cni", "c1");
    assert_eq!(ipt.rules("nat", &chain).len(), 2);
    assert_eq!(ipt.rules("nat", "POSTROUTING").len(), 1);

    let e = env("DEL");
    let ctx = EgressCtx {
        conf: &c,
        env: &e,
        net: &net,
        ipt: &ipt,
        log: &log,
    };
    ctx.del().await.unwrap();
    assert!(!dir.path().join("aws-cni/169.254.172.2").exists());
    assert!(ipt.list("nat", &chain).unwrap().is_none());
    assert!(ipt.rules("nat", "POSTROUTING").is_empty());
    assert_eq!(*net.removed.borrow(), vec!["v4if0".to_string()]);
    ctx.del().await.unwrap();
}

#[tokio::test]
async fn failed_wiring_gives_the_lease_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf(dir.path(), true, "2600:1f14::5", "fd00::ac:00/118");
    let net = FakeNet {
        fail: true,
        ..FakeNet::default()
    };
    let (ipt, log, e) = (FakeIptables::new(), logger(), env("ADD"));
    let ctx = EgressCtx {
        conf: &c,
        env: &e,
        net: &net,
        ipt: &ipt,
        log: &log,
    };
    let err = ctx.add().await.unwrap_err();
    assert!(
        err.to_json("0.4.0").contains("v6if0"),
        "{}",
        err.to_json("0.4.0")
    );
    assert!(
        Leases::open(dir.path(), "aws-cni")
            .unwrap()
            .all()
            .unwrap()
            .is_empty()
    );
    assert!(
        ipt.list("nat", &snat::chain_name("E6-", "aws-cni", "c1"))
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn disabled_passes_through_and_unchained_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = conf(dir.path(), false, "10.0.0.5", "169.254.172.0/22");
    let (net, ipt, log, e) = (
        FakeNet::default(),
        FakeIptables::new(),
        logger(),
        env("ADD"),
    );
    let ctx = EgressCtx {
        conf: &c,
        env: &e,
        net: &net,
        ipt: &ipt,
        log: &log,
    };
    assert_eq!(ctx.add().await.unwrap(), c.prev_result.clone().unwrap());
    assert!(net.made.borrow().is_empty());
    let mut alone = conf(dir.path(), true, "10.0.0.5", "169.254.172.0/22");
    alone.prev_result = None;
    let ctx = EgressCtx {
        conf: &alone,
        env: &e,
        net: &net,
        ipt: &ipt,
        log: &log,
    };
    assert!(
        ctx.add()
            .await
            .unwrap_err()
            .to_json("0.4.0")
            .contains("chained plugin")
    );
    let mut link_local = conf(dir.path(), true, "fe80::1", "fd00::ac:00/118");
    link_local.prev_result = c.prev_result.clone();
    let ctx = EgressCtx {
        conf: &link_local,
        env: &e,
        net: &net,
        ipt: &ipt,
        log: &log,
    };
    assert!(
        ctx.add()
            .await
            .unwrap_err()
            .to_json("0.4.0")
            .contains("global unicast")
    );
}
