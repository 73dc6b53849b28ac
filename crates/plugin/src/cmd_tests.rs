//! The command logic against fakes of ipamd and the kernel: rollback on ADD, DEL's fallbacks,
//! CHECK's preconditions, error codes.

use std::cell::RefCell;

use serde_json::json;
use vpc_cni_cni::{CniEnv, Code, NetConf};
use vpc_cni_dataplane::DataplaneError;
use vpc_cni_dataplane::pod::{PodNetwork, PodSpec};
use vpc_cni_proto::rpc::{
    AddNetworkReply, AddNetworkRequest, DelNetworkReply, DelNetworkRequest, IpAllocationMetadata,
};
use vpc_cni_proto::vpccni::{CheckNetworkReply, CheckNetworkRequest, GcReply, GcRequest};

use crate::cmd::Ctx;
use crate::ipamd::{Ipamd, IpamdError};
use crate::log::Logger;

#[derive(Default)]
struct FakeIpamd {
    down: bool,
    add_status: Option<tonic::Status>,
    del_status: Option<tonic::Status>,
    no_address: bool,
    /// CHECK: the daemon lost the pod (`Some("")`) or holds another address.
    check_ip: Option<String>,
    /// An IPv6 node: ADD answers with `IPv6Addr` (this text) and no IPv4 address.
    v6: Option<String>,
    dels: RefCell<Vec<String>>,
}

fn meta(ip: &str, table: i32) -> IpAllocationMetadata {
    IpAllocationMetadata {
        i_pv4_addr: ip.into(),
        device_number: table - 1,
        route_table_id: table,
        ..Default::default()
    }
}

impl Ipamd for FakeIpamd {
    async fn add(&self, _: AddNetworkRequest) -> Result<AddNetworkReply, IpamdError> {
        if self.down {
            return Err(IpamdError::Unreachable {
                socket: "/x.sock".into(),
                reason: "No such file".into(),
            });
        }
        if let Some(s) = &self.add_status {
            return Err(IpamdError::Rpc(s.clone()));
        }
        if let Some(v6) = &self.v6 {
            return Ok(AddNetworkReply {
                success: true,
                ip_allocation_metadata: vec![IpAllocationMetadata {
                    i_pv6_addr: v6.clone(),
                    route_table_id: 254,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        Ok(AddNetworkReply {
            success: !self.no_address,
            ip_allocation_metadata: if self.no_address {
                vec![]
            } else {
                vec![meta("10.0.1.5", 3)]
            },
            ..Default::default()
        })
    }
    async fn del(&self, r: DelNetworkRequest) -> Result<DelNetworkReply, IpamdError> {
        self.dels.borrow_mut().push(r.reason.clone());
        if self.down {
            return Err(IpamdError::Unreachable {
                socket: "/x.sock".into(),
                reason: "refused".into(),
            });
        }
        if let Some(s) = &self.del_status {
            return Err(IpamdError::Rpc(s.clone()));
        }
        Ok(DelNetworkReply {
            success: true,
            ip_allocation_metadata: vec![meta("10.0.1.9", 2)],
            ..Default::default()
        })
    }
    async fn check(&self, r: CheckNetworkRequest) -> Result<CheckNetworkReply, IpamdError> {
        let ip = self.check_ip.clone().unwrap_or(r.i_pv4_addr);
        Ok(CheckNetworkReply {
            assigned: !ip.is_empty(),
            i_pv4_addr: ip,
        })
    }
    async fn gc(&self, _: GcRequest) -> Result<GcReply, IpamdError> {
        Ok(GcReply {
            released: vec![meta("10.0.1.9", 2)],
        })
    }
    async fn reachable(&self) -> Result<(), IpamdError> {
        if self.down {
            Err(IpamdError::Unreachable {
                socket: "/x.sock".into(),
                reason: "gone".into(),
            })
        } else {
            Ok(())
        }
    }
}

#[derive(Default)]
struct FakeNet {
    fail_setup: bool,
    missing: Vec<String>,
    setups: RefCell<Vec<PodSpec>>,
    teardowns: RefCell<Vec<PodSpec>>,
}

impl PodNetwork for FakeNet {
    async fn setup(&self, _: &str, pods: &[PodSpec]) -> Result<(), DataplaneError> {
        self.setups.borrow_mut().extend_from_slice(pods);
        if self.fail_setup {
            Err(DataplaneError::NotFound("netns vanished".into()))
        } else {
            Ok(())
        }
    }
    async fn teardown(&self, _: Option<&str>, pods: &[PodSpec]) -> Vec<DataplaneError> {
        self.teardowns.borrow_mut().extend_from_slice(pods);
        vec![DataplaneError::NotFound("route already gone".into())]
    }
    async fn check(&self, _: &str, _: &[PodSpec]) -> Result<Vec<String>, DataplaneError> {
        Ok(self.missing.clone())
    }
}

fn env(cmd: &str) -> CniEnv {
    CniEnv::from_lookup(|k| {
        Some(
            match k {
                "CNI_COMMAND" => cmd,
                "CNI_CONTAINERID" => "abc",
                "CNI_NETNS" => "/var/run/netns/p",
                "CNI_IFNAME" => "eth0",
                "CNI_PATH" => "/opt/cni/bin",
                "CNI_ARGS" => "K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-57ff979f67-qqbdh",
                _ => return None,
            }
            .to_string(),
        )
    })
    .unwrap()
}

fn conf(version: &str, prev: Option<serde_json::Value>) -> NetConf {
    let mut c = json!({"cniVersion": version, "name": "aws-cni", "mtu": "1500"});
    if let Some(p) = prev {
        c["prevResult"] = p;
    }
    NetConf::parse(c.to_string().as_bytes()).unwrap()
}

fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn prev() -> serde_json::Value {
    json!({"cniVersion": "0.4.0",
        "interfaces": [{"name": "enib5faff8a083"}, {"name": "eth0", "mac": "4", "sandbox": "/n"}, {"name": "dummyb5faff8a083", "mac": "0", "sandbox": "3"}],
        "ips": [{"version": "4", "interface": 1, "address": "10.0.1.7/32"}]})
}

#[test]
fn add_wires_the_pod_and_answers_in_upstream_shape() {
    let (ipamd, net, log) = (
        FakeIpamd::default(),
        FakeNet::default(),
        Logger::new("/dev/null", ""),
    );
    let (c, e) = (conf("0.4.0", None), env("ADD"));
    let ctx = Ctx {
        conf: &c,
        env: &e,
        ipamd: &ipamd,
        net: &net,
        log: &log,
    };
    let r = block(ctx.add()).unwrap();
    assert_eq!(r["interfaces"][0]["name"], "enib5faff8a083");
    assert_eq!(r["interfaces"][1]["mac"], "3");
    assert_eq!(r["ips"][0]["address"], "10.0.1.5/32");
    let s = &net.setups.borrow()[0];
    assert_eq!(
        (s.mtu, s.route_table, s.container_if.as_str()),
        (1500, 3, "eth0")
    );
    assert!(ipamd.dels.borrow().is_empty());
}

#[test]
fn ipv6_replies_wire_a_128_and_answer_version_6() {
    let log = Logger::new("/dev/null", "");
    let (c, e) = (conf("0.4.0", None), env("ADD"));
    let ipamd = FakeIpamd {
        v6: Some("2600:1f14:abc:de00:1::7".into()),
        ..FakeIpamd::default()
    };
    let net = FakeNet::default();
    let ctx = Ctx {
        conf: &c,
        env: &e,
        ipamd: &ipamd,
        net: &net,
        log: &log,
    };
    let r = block(ctx.add()).unwrap();
    assert_eq!(
        r["ips"][0],
        json!({"version": "6", "interface": 1, "address": "2600:1f14:abc:de00:1::7/128"})
    );
    assert_eq!(r["interfaces"][1]["mac"], "254");
    let s = net.setups.borrow()[0].clone();
    assert!(s.is_v6());
    assert_eq!(s.gateway().to_string(), "fe80::1");
    assert_eq!(s.host().to_string(), "2600:1f14:abc:de00:1::7/128");
    let bad = FakeIpamd {
        v6: Some("not-an-address".into()),
        ..FakeIpamd::default()
    };
    let ctx = Ctx {
        conf: &c,
        env: &e,
        ipamd: &bad,
        net: &net,
        log: &log,
    };
    let err = block(ctx.add()).unwrap_err();
    assert!(
        err.to_json("0.4.0").contains("invalid IPv6 address"),
        "{}",
        err.to_json("0.4.0")
    );
}

#[test]
fn add_failure_rolls_back_and_releases() {
    let (ipamd, log) = (FakeIpamd::default(), Logger::new("/dev/null", ""));
    let net = FakeNet {
        fail_setup: true,
        ..FakeNet::default()
    };
    let (c, e) = (conf("0.4.0", None), env("ADD"));
    let ctx = Ctx {
        conf: &c,
        env: &e,
        ipamd: &ipamd,
        net: &net,
        log: &log,
    };
    let err = block(ctx.add()).unwrap_err();
    assert!(
        err.msg
            .starts_with("add command: failed to setup network: netns vanished"),
        "{err}"
    );
    assert_eq!(net.teardowns.borrow().len(), 1, "rolled back");
    assert_eq!(*ipamd.dels.borrow(), vec!["SetupNSFailed".to_string()]);
}

#[test]
fn add_errors_from_ipamd() {
    let log = Logger::new("/dev/null", "");
    let (c, e, net) = (conf("1.0.0", None), env("ADD"), FakeNet::default());
    let cases = [
        (
            FakeIpamd {
                down: true,
                ..Default::default()
            },
            Code::TryAgainLater,
            "ipamd is unreachable at /x.sock",
        ),
        (
            FakeIpamd {
                add_status: Some(tonic::Status::failed_precondition("wrong client version")),
                ..Default::default()
            },
            Code::Internal,
            "Error received from AddNetwork gRPC call: rpc error",
        ),
        (
            FakeIpamd {
                no_address: true,
                ..Default::default()
            },
            Code::Internal,
            "add cmd: failed to assign an IP address to container",
        ),
    ];
    for (ipamd, code, needle) in cases {
        let ctx = Ctx {
            conf: &c,
            env: &e,
            ipamd: &ipamd,
            net: &net,
            log: &log,
        };
        let err = block(ctx.add()).unwrap_err();
        assert_eq!(err.code, code, "{err}");
        assert!(err.msg.contains(needle), "{err}");
    }
    assert!(
        net.setups.borrow().is_empty(),
        "nothing wired without an address"
    );
}

#[test]
fn del_paths() {
    let log = Logger::new("/dev/null", "");
    let e = env("DEL");
    let c = conf("0.4.0", Some(prev()));
    // Normal: unwire what ipamd released.
    let (ipamd, net) = (FakeIpamd::default(), FakeNet::default());
    block(
        Ctx {
            conf: &c,
            env: &e,
            ipamd: &ipamd,
            net: &net,
            log: &log,
        }
        .del(),
    )
    .unwrap();
    assert_eq!(net.teardowns.borrow()[0].ip.to_string(), "10.0.1.9");
    assert_eq!(*ipamd.dels.borrow(), vec!["PodDeleted".to_string()]);
    // Unreachable and unknown pod: prevResult, success.
    for ipamd in [
        FakeIpamd {
            down: true,
            ..Default::default()
        },
        FakeIpamd {
            del_status: Some(tonic::Status::unknown("datastore: unknown pod")),
            ..Default::default()
        },
        FakeIpamd {
            del_status: Some(tonic::Status::internal("checkpoint write failed")),
            ..Default::default()
        },
    ] {
        let net = FakeNet::default();
        block(
            Ctx {
                conf: &c,
                env: &e,
                ipamd: &ipamd,
                net: &net,
                log: &log,
            }
            .del(),
        )
        .unwrap();
        let t = &net.teardowns.borrow()[0];
        assert_eq!(
            (
                t.ip.to_string().as_str(),
                t.route_table,
                t.host_veth.as_str()
            ),
            ("10.0.1.7", 4, "enib5faff8a083")
        );
    }
}

#[test]
fn check_preconditions_and_report() {
    let (ipamd, log) = (FakeIpamd::default(), Logger::new("/dev/null", ""));
    let e = env("CHECK");
    let net = FakeNet {
        missing: vec!["host rule prio 512 to 10.0.1.7/32 lookup 254 is missing".into()],
        ..Default::default()
    };
    let old = conf("0.3.1", Some(prev()));
    let err = block(
        Ctx {
            conf: &old,
            env: &e,
            ipamd: &ipamd,
            net: &net,
            log: &log,
        }
        .check(),
    )
    .unwrap_err();
    assert_eq!(err.code, Code::IncompatibleVersion);
    let none = conf("1.0.0", None);
    let err = block(
        Ctx {
            conf: &none,
            env: &e,
            ipamd: &ipamd,
            net: &net,
            log: &log,
        }
        .check(),
    )
    .unwrap_err();
    assert_eq!(err.code, Code::InvalidNetworkConfig);
    let c = conf("1.0.0", Some(prev()));
    let err = block(
        Ctx {
            conf: &c,
            env: &e,
            ipamd: &ipamd,
            net: &net,
            log: &log,
        }
        .check(),
    )
    .unwrap_err();
    assert!(err.details.contains("prio 512"), "{err}");
    let ok = FakeNet::default();
    block(
        Ctx {
            conf: &c,
            env: &e,
            ipamd: &ipamd,
            net: &ok,
            log: &log,
        }
        .check(),
    )
    .unwrap();
    for (held, want) in [
        ("", "ipamd holds no address for container"),
        ("10.0.1.99", "ipamd holds 10.0.1.99"),
    ] {
        let lost = FakeIpamd {
            check_ip: Some(held.into()),
            ..Default::default()
        };
        let err = block(
            Ctx {
                conf: &c,
                env: &e,
                ipamd: &lost,
                net: &ok,
                log: &log,
            }
            .check(),
        )
        .unwrap_err();
        assert!(err.msg.contains(want), "{err}");
    }
    let down = FakeIpamd {
        down: true,
        ..Default::default()
    };
    let err = block(
        Ctx {
            conf: &c,
            env: &e,
            ipamd: &down,
            net: &ok,
            log: &log,
        }
        .status(),
    )
    .unwrap_err();
    assert_eq!(err.code, Code::PluginNotAvailable);
}
