//! Speed benchmark: `examples/bench-1000-nodes.toml` (1,000 nodes, 24 simulated hours, churn).
//! Prints wall time and pod events; exits non-zero if the run takes 60 s or more or processes
//! fewer than a million pod events. Run with `cargo bench -p vpc-cni-sim --bench thousand_nodes`.

use std::path::PathBuf;
use std::time::Instant;

use vpc_cni_limits::LimitsTable;
use vpc_cni_sim::{Cluster, Scenario};

fn main() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/bench-1000-nodes.toml");
    let sc = Scenario::from_toml(&std::fs::read_to_string(&path).expect("scenario file"))
        .expect("valid scenario");
    let started = Instant::now();
    let cluster = Cluster::new(&sc, &LimitsTable::builtin()).expect("scenario builds");
    let mut cluster = cluster;
    cluster.run_until(cluster.end());
    let events = cluster.pod_events;
    let report = cluster.run();
    let wall = started.elapsed().as_secs_f64();
    println!(
        "bench-1000-nodes: {:.0} simulated s, {events} pod events, {wall:.2} s wall ({:.0} pod events/s); EC2 calls {}",
        report.duration_s,
        events as f64 / wall,
        report.ec2_calls.values().sum::<u64>()
    );
    if wall >= 60.0 || events < 1_000_000 {
        eprintln!("FAILED: goal is ≥ 1,000,000 pod events in < 60 s");
        std::process::exit(1);
    }
}
