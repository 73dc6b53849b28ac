//! `vpc-cni simulate --compare` / `--policy` and `vpc-cni plan --policy` end to end.

mod support;

use support::{example, run_builtin};

#[test]
fn compare_prints_both_policies_side_by_side_with_a_verdict_and_a_chart() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("c.svg");
    let ex = example("fragmented-subnet.toml");
    let r = run_builtin(&[
        "simulate",
        &ex,
        "--compare",
        "aws,adaptive",
        "--chart",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for want in [
        "Policy",
        "Idle mean",
        "Wait p50/p99/max (s)",
        "Pending",
        "EC2 calls",
        "Throttled",
        "Subnet low-water",
    ] {
        assert!(r.stdout.contains(want), "{want} missing: {}", r.stdout);
    }
    assert!(
        r.stdout.contains("│ aws ") && r.stdout.contains("│ adaptive "),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("adaptive against aws: idle mean"),
        "{}",
        r.stdout
    );
    assert!(r.stderr.contains("[2/2]"), "progress per run: {}", r.stderr);
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.contains("aws idle") && chart.contains("adaptive idle"),
        "{chart}"
    );

    let j = run_builtin(&[
        "simulate",
        &ex,
        "--compare",
        "aws,adaptive",
        "--output",
        "json",
    ]);
    assert_eq!(j.code, 0, "{}", j.stderr);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["policy"], "adaptive");
    // Prefix mode on a fragmented subnet: the adaptive policy's /32 fallback leaves no pod
    // pending where upstream's policy leaves some.
    assert!(runs[0]["pending"].as_u64().unwrap() > 0);
    assert_eq!(runs[1]["pending"], 0);
    assert!(v["beaten_by"]["adaptive"].as_array().unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sweep_expands_the_aws_runs_and_each_setting_gets_a_column() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sc = dir.join("s.toml");
    std::fs::write(
        &sc,
        r#"name = "small sweep"
duration = "30m"
[[subnets]]
id = "s"
cidr = "10.0.0.0/20"
[[node_groups]]
name = "g"
instance_type = "m5.large"
count = 4
subnet = "s"
[[workloads]]
kind = "churn"
group = "g"
rate = 0.1
lifetime = "5m"
[sweep]
WARM_IP_TARGET = [1, 3]
ENABLE_PREFIX_DELEGATION = [false, true]
"#,
    )
    .unwrap();
    let r = run_builtin(&[
        "simulate",
        sc.to_str().unwrap(),
        "--compare",
        "aws,adaptive",
        "--threads",
        "2",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("comparing 6 run(s)"), "{}", r.stderr);
    assert!(r.stdout.contains("aws (as written)"), "{}", r.stdout);
    assert!(
        r.stdout.contains("WARM_IP_TARGET") && r.stdout.contains("ENABLE_PREFIX_DELEGATION"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("aws run(s)") || r.stdout.contains("No aws run of the 5"),
        "{}",
        r.stdout
    );

    // Without --compare the sweep is pointed out, and --policy runs one policy.
    let one = run_builtin(&["simulate", sc.to_str().unwrap(), "--policy", "adaptive"]);
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert!(one.stderr.contains("--compare"), "{}", one.stderr);
    // A policy name that does not exist names what does.
    let bad = run_builtin(&["simulate", sc.to_str().unwrap(), "--compare", "aws,smart"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("aws or adaptive"), "{}", bad.stderr);
    // A swept variable the simulator does not read is refused by name.
    std::fs::write(
        &sc,
        std::fs::read_to_string(&sc)
            .unwrap()
            .replace("WARM_IP_TARGET = [1, 3]", "WARM_IP_TARGTE = [1]"),
    )
    .unwrap();
    let typo = run_builtin(&[
        "simulate",
        sc.to_str().unwrap(),
        "--compare",
        "aws,adaptive",
    ]);
    assert_ne!(typo.code, 0);
    assert!(typo.stderr.contains("WARM_IP_TARGTE"), "{}", typo.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plan_policy_adaptive_holds_one_warm_address_at_steady_state() {
    let r = run_builtin(&[
        "plan",
        "--instance-type",
        "m5.large",
        "--policy",
        "adaptive",
        "--pods",
        "0,5,20",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["settings"]["VPC_CNI_POOL_POLICY"], "adaptive");
    assert!(
        v["settings"].get("WARM_ENI_TARGET").is_none(),
        "ignored targets are not listed"
    );
    let unused: Vec<u64> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["unused_ips"].as_u64().unwrap())
        .collect();
    assert_eq!(unused, [1, 1, 1], "{}", r.stdout);
    // The same node under upstream's default holds an ENI's worth or more.
    let aws = run_builtin(&[
        "plan",
        "--instance-type",
        "m5.large",
        "--pods",
        "0,5,20",
        "--output",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&aws.stdout).unwrap();
    assert!(
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["unused_ips"].as_u64().unwrap() >= 7)
    );
    // Prefix mode needs no WARM_PREFIX_TARGET under the adaptive policy.
    let pd = run_builtin(&[
        "plan",
        "--instance-type",
        "m5.large",
        "--policy",
        "adaptive",
        "--prefix-delegation",
        "--pods",
        "3",
    ]);
    assert_eq!(pd.code, 0, "{}", pd.stderr);
    assert!(
        !pd.stdout.contains("WARM_PREFIX_TARGET=1 assumed"),
        "{}",
        pd.stdout
    );
}
