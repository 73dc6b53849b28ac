//! The daemon's gRPC handlers on any request bytes: AddNetwork, DelNetwork and CheckNetwork
//! messages decoded from the input and served by a real daemon state over the simulated cloud.
//! Every request is answered (success or a status); nothing panics; no address is handed out
//! twice.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tonic::Request;
use vpc_cni_cloud::SimCloud;
use vpc_cni_ipamd::rpc::Service;
use vpc_cni_ipamd::state::Shared;
use vpc_cni_proto::rpc::cni_backend_server::CniBackend;
use vpc_cni_proto::rpc::{AddNetworkRequest, DelNetworkRequest};
use vpc_cni_proto::vpccni::CheckNetworkRequest;
use vpc_cni_proto::vpccni::pod_addresses_server::PodAddresses;

struct World {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared<SimCloud>>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("vpc-cni-fuzz-grpc-{}", std::process::id()));
        let mut cfg = vpc_cni_ipamd::DaemonConfig::from_lookup(|k| match k {
            "WARM_IP_TARGET" => Some("8".into()),
            _ => None,
        })
        .unwrap();
        cfg.checkpoint = dir.join("ipam.json");
        let table = vpc_cni_limits::LimitsTable::builtin();
        let cloud = SimCloud::launch(
            table.get("m5.large").unwrap(),
            "10.0.0.0/24".parse().unwrap(),
            1,
            0.0,
        )
        .unwrap();
        let shared = rt.block_on(async {
            let s = vpc_cni_ipamd::init_with_host(
                cfg,
                cloud,
                &table,
                Box::new(vpc_cni_ipamd::host::NoHost),
            )
            .await
            .unwrap();
            vpc_cni_ipamd::pool::cycle(&s).await;
            s
        });
        World { rt, shared }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let svc = Service::new(w.shared.clone());
    let version = env!("CARGO_PKG_VERSION").to_string();
    w.rt.block_on(async {
        if let Ok(mut r) = AddNetworkRequest::decode(data) {
            if !r.client_version.is_empty() {
                r.client_version = version.clone();
            }
            let _ = svc.add_network(Request::new(r)).await;
        }
        if let Ok(mut r) = DelNetworkRequest::decode(data) {
            if !r.client_version.is_empty() {
                r.client_version = version.clone();
            }
            let _ = svc.del_network(Request::new(r)).await;
        }
        if let Ok(r) = CheckNetworkRequest::decode(data) {
            let _ = svc.check_network(Request::new(r)).await;
        }
    });
    // The invariant that matters: one address, one owner.
    let node = w.shared.lock();
    let mut seen = std::collections::BTreeSet::new();
    for (_, ip, _) in node.ds.assignments() {
        assert!(seen.insert(ip), "{ip} assigned twice");
    }
});
