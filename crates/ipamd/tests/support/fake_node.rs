//! A daemon on the simulated VPC (an m5.large in 10.0.0.0/24, no latency, no metrics or
//! introspection listeners) with the in-memory Kubernetes fake installed: the tests of the
//! Kubernetes side start from here.

use std::sync::Arc;

use vpc_cni_cloud::SimCloud;
use vpc_cni_ipamd::host::NoHost;
use vpc_cni_ipamd::state::Shared;
use vpc_cni_ipamd::{DaemonConfig, init_with_host};
use vpc_cni_k8s::fake::FakeKube;
use vpc_cni_limits::LimitsTable;
use vpc_cni_sim::Vpc;

/// Start it with `env` (upstream variables); `config` adjusts the configuration and `vpc` the
/// simulated VPC before the daemon reads them.
pub async fn start(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    config: impl FnOnce(&mut DaemonConfig),
    vpc: impl FnOnce(&mut Vpc),
) -> (Arc<Shared<SimCloud>>, Arc<FakeKube>) {
    let base = [
        ("DISABLE_METRICS", "true"),
        ("DISABLE_INTROSPECTION", "true"),
    ];
    let mut cfg = DaemonConfig::from_lookup(|k| {
        base.iter()
            .chain(env)
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    cfg.checkpoint = dir.join("ipam.json");
    config(&mut cfg);
    let table = LimitsTable::builtin();
    let cloud = SimCloud::launch(
        table.get("m5.large").unwrap(),
        "10.0.0.0/24".parse().unwrap(),
        1,
        0.0,
    )
    .unwrap();
    vpc(&mut cloud.vpc().lock().unwrap());
    let s = init_with_host(cfg, cloud, &table, Box::new(NoHost))
        .await
        .unwrap();
    let fake = Arc::new(FakeKube::default());
    s.kube.set_client(fake.clone());
    (s, fake)
}
