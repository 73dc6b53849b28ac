//! The issue's acceptance scenarios, each run from its file under `examples/`.

use std::path::PathBuf;

use vpc_cni_limits::LimitsTable;
use vpc_cni_sim::{Cluster, Report, Scenario};

fn run(name: &str) -> Report {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let sc = Scenario::from_toml(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    Cluster::new(&sc, &LimitsTable::builtin())
        .expect("scenario builds")
        .run()
}

/// Seed 003: 25 pods on 2 prefixes; a burst to 37 ends with 3 prefixes (48 IPs), 11 free; of the
/// 12 burst pods 7 get addresses at once and 5 wait for the new prefix.
#[test]
fn seed_003_prefix_burst() {
    let r = run("seed-003-prefix-burst.toml");
    let g = &r.groups[0];
    assert_eq!(
        (g.end.pods, g.end.prefixes, g.end.attached, g.unused),
        (37, 3, 48, 11)
    );
    assert_eq!(g.wait.pods, 37);
    assert_eq!(g.wait.waited, 5, "5 burst pods wait for the third prefix");
    assert!(g.wait.max_s > 0.0 && g.wait.max_s <= 10.0, "{:?}", g.wait);
    // Just before the burst (10 min): 25 pods on 32 addresses.
    let before = r.series.iter().rfind(|s| s.t_s < 600.0).unwrap();
    assert_eq!(before.groups[0], (32, 25));
}

/// Seed 002: ten r5.xlarge nodes with about 20 pods each hold about 420 addresses under
/// WARM_ENI_TARGET=1 and about 220 under MINIMUM_IP_TARGET=20 / WARM_IP_TARGET=2.
#[test]
fn seed_002_fleet() {
    let r = run("seed-002-fleet.toml");
    let by_name = |n: &str| r.groups.iter().find(|g| g.end.name == n).unwrap();
    let warm_eni = by_name("warm-eni");
    let min_ip = by_name("min-ip");
    assert_eq!(warm_eni.end.pods, 200);
    assert_eq!(min_ip.end.pods, 200);
    assert!(
        (400..=440).contains(&warm_eni.end.attached),
        "{}",
        warm_eni.end.attached
    );
    assert!(
        (210..=230).contains(&min_ip.end.attached),
        "{}",
        min_ip.end.attached
    );
}

/// A /24 shared by prefix-mode nodes runs out; the report says when and why.
#[test]
fn prefix_mode_exhausts_a_slash_24() {
    let r = run("prefix-24-exhaustion.toml");
    let s = &r.subnets[0];
    let e = s.exhausted.as_ref().expect("the /24 runs out");
    assert_eq!(e.code, "InsufficientCidrBlocks");
    assert!(e.why.contains("0 free aligned /28 blocks"), "{}", e.why);
    assert_eq!(s.worst_free_prefix_blocks.0, 0);
    assert!(
        r.groups[0].end.prefixes <= 14,
        "a /24 holds at most 14 aligned /28s"
    );
    assert!(r.errors["InsufficientCidrBlocks"] > 0);
}

/// A fragmented subnet yields InsufficientCidrBlocks while it still has free addresses.
#[test]
fn fragmented_subnet_runs_out_of_blocks_not_addresses() {
    let r = run("fragmented-subnet.toml");
    let s = &r.subnets[0];
    let e = s.exhausted.as_ref().expect("prefixes run out");
    assert_eq!(e.code, "InsufficientCidrBlocks");
    assert_eq!(s.free_prefix_blocks, 0);
    assert!(
        s.free_addresses > 1000,
        "{} free addresses remain",
        s.free_addresses
    );
    assert!(
        r.groups[0].end.pending > 0,
        "pods wait for addresses that cannot be carved"
    );
}

/// 500 nodes launched at once hit RequestLimitExceeded; pods wait as a result.
#[test]
fn five_hundred_nodes_are_throttled() {
    let r = run("launch-500-nodes.toml");
    assert!(r.throttled > 100, "throttled {}", r.throttled);
    assert_eq!(r.errors["RequestLimitExceeded"], r.throttled);
    let g = &r.groups[0];
    assert_eq!(g.end.pods, 10_000, "everyone gets an address eventually");
    assert!(g.wait.p99_s > 30.0, "p99 wait {} s", g.wait.p99_s);
}

/// Same seed, same answer.
#[test]
fn runs_are_deterministic() {
    let a = serde_json::to_string(&run("seed-002-fleet.toml")).unwrap();
    let b = serde_json::to_string(&run("seed-002-fleet.toml")).unwrap();
    assert_eq!(a, b);
}

/// Subnet discovery: the node subnet runs dry; with discovery on the pods move to a new ENI in the
/// tagged subnet without a 120 s pause; with it off they stay pending.
#[test]
fn subnet_discovery_moves_growth_to_a_tagged_subnet() {
    let r = run("subnet-discovery.toml");
    let by_name = |n: &str| r.groups.iter().find(|g| g.end.name == n).unwrap();
    let on = by_name("discovery-on");
    let off = by_name("discovery-off");
    assert_eq!((on.end.pods, on.end.pending), (40, 0), "{:?}", on.end);
    assert!(on.end.enis >= 2, "a second ENI: {:?}", on.end);
    assert!(
        on.wait.max_s < 60.0,
        "no 120 s pause with discovery on: {:?}",
        on.wait
    );
    assert!(off.end.pending > 0, "{:?}", off.end);
    assert!(off.end.pods < 40);
    let sub = |id: &str| r.subnets.iter().find(|s| s.id == id).unwrap();
    assert!(
        sub("subnet-a-pods").free_addresses < 1019,
        "the tagged subnet was used"
    );
    assert_eq!(
        sub("subnet-b-pods").free_addresses,
        1019,
        "never used without discovery"
    );
    assert!(sub("subnet-a-nodes").exhausted.is_some());
}

/// An assign that fails with anything but insufficient addresses (here every call answers
/// `InternalError`) is retried once asking for one and then left: no ENI is created (upstream
/// returns the error), whatever the cycle count.
#[test]
fn other_assign_errors_never_lead_to_a_new_eni() {
    let toml = r#"
duration = "10m"
[vpc]
faults = { error_rate = 1.0 }
[[subnets]]
id = "s"
cidr = "10.9.0.0/24"
[[node_groups]]
name = "g"
instance_type = "m5.large"
count = 1
subnet = "s"
[[workloads]]
kind = "steady"
group = "g"
pods = 5
"#;
    let sc = Scenario::from_toml(toml).unwrap();
    let r = Cluster::new(&sc, &LimitsTable::builtin()).unwrap().run();
    let calls = |a: &str| r.ec2_calls.get(a).copied().unwrap_or(0);
    assert!(calls("AssignPrivateIpAddresses") >= 20, "{:?}", r.ec2_calls);
    assert_eq!(
        calls("AssignPrivateIpAddresses") % 2,
        0,
        "each try is N, then 1"
    );
    assert_eq!(calls("CreateNetworkInterface"), 0, "{:?}", r.ec2_calls);
    assert_eq!(r.groups[0].end.pending, 5);
}

/// A node subnet tagged `kubernetes.io/role/cni=0` (subnet discovery on): the primary ENI is
/// excluded, every pod address comes from ENIs in the tagged subnet, and the node subnet only
/// gives the node its own address.
#[test]
fn an_excluded_node_subnet_gives_pods_nothing() {
    let toml = r#"
duration = "15m"
[[subnets]]
id = "nodes"
cidr = "10.8.0.0/24"
tags = { "kubernetes.io/role/cni" = "0" }
[[subnets]]
id = "pods"
cidr = "10.8.4.0/22"
tags = { "kubernetes.io/role/cni" = "1" }
[[node_groups]]
name = "g"
instance_type = "m5.xlarge"
count = 2
subnet = "nodes"
[[workloads]]
kind = "steady"
group = "g"
pods = 30
"#;
    let sc = Scenario::from_toml(toml).unwrap();
    let r = Cluster::new(&sc, &LimitsTable::builtin()).unwrap().run();
    let g = &r.groups[0];
    assert_eq!((g.end.pods, g.end.pending), (30, 0), "{:?}", g.end);
    let sub = |id: &str| r.subnets.iter().find(|s| s.id == id).unwrap();
    assert_eq!(
        sub("nodes").free_addresses,
        251 - 2,
        "only the two node addresses"
    );
    assert!(sub("pods").free_addresses < 1019 - 30);
}

/// IPv6 mode beside prefix mode in one dual-stack /22: the IPv6 group's 500 pods take no IPv4
/// address (each node holds only its primary IP), while the IPv4 prefix group runs out of
/// aligned /28 blocks with pods pending.
#[test]
fn ipv6_pods_take_no_ipv4_address() {
    let r = run("ipv6-vs-ipv4.toml");
    let (v4, v6) = (&r.groups[0], &r.groups[1]);
    assert_eq!((v6.end.pods, v6.end.pending, v6.end.attached), (500, 0, 0));
    assert_eq!(v6.end.enis, 20, "one ENI per node, no secondary ENI");
    assert!(v4.end.pending > 0, "{:?}", v4.end);
    assert_eq!(v6.wait.max_s, 0.0, "no pool to wait for");
    // A group that asks for IPv6 without prefix delegation is refused, as the daemon refuses it.
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/ipv6-vs-ipv4.toml");
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace(r#"env = { ENABLE_IPv6 = "true", ENABLE_PREFIX_DELEGATION = "true", WARM_PREFIX_TARGET = "1" }"#, r#"env = { ENABLE_IPv6 = "true" }"#);
    let sc = Scenario::from_toml(&text).unwrap();
    let err = Cluster::new(&sc, &LimitsTable::builtin())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("ENABLE_IPv6=true needs ENABLE_PREFIX_DELEGATION=true"),
        "{err}"
    );
}
