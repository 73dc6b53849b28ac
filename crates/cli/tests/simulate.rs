//! `vpc-cni simulate` end to end: summary, JSON, time series, chart, errors.

mod support;

use support::{example, run_builtin};

#[test]
fn summary_series_and_chart() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("s.csv");
    let json = dir.join("s.json");
    let svg = dir.join("c.svg");
    let ex = example("seed-003-prefix-burst.toml");
    let r = run_builtin(&[
        "simulate",
        &ex,
        "--series",
        csv.to_str().unwrap(),
        "--chart",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("seed-003 prefix burst"), "{}", r.stdout);
    assert!(
        r.stdout.contains("EC2 calls: AssignPrivateIpAddresses=2"),
        "{}",
        r.stdout
    );
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        csv_text
            .starts_with("t_s,ng_attached,ng_assigned,subnet-a_free,subnet-a_free_prefix_blocks\n")
    );
    assert_eq!(
        csv_text.lines().count(),
        1 + 21,
        "header and a sample a minute from 0 to 20 minutes"
    );
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg_text.starts_with("<svg")
            && svg_text.contains("ng attached")
            && svg_text.contains("subnet-a free")
    );
    let r = run_builtin(&[
        "simulate",
        &ex,
        "--output",
        "json",
        "--series",
        json.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(report["groups"][0]["pods"], 37);
    assert_eq!(report["groups"][0]["prefixes"], 3);
    assert_eq!(report["subnets"][0]["cidr"], "10.0.0.0/20");
    let series: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(series.as_array().unwrap().len(), 21);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_scenarios_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-sim-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "typo.toml",
            "duration = \"1h\"\nsubnet = []\n",
            "unknown field `subnet`",
        ),
        (
            "env.toml",
            "duration = \"1h\"\n[[subnets]]\nid = \"s\"\ncidr = \"10.0.0.0/24\"\n[[node_groups]]\nname = \"g\"\ninstance_type = \"m5.large\"\ncount = 1\nsubnet = \"s\"\nenv = { WARM_IP_TARGET = \"lots\" }\n",
            "invalid WARM_IP_TARGET=\"lots\"",
        ),
        (
            "type.toml",
            "duration = \"1h\"\n[[subnets]]\nid = \"s\"\ncidr = \"10.0.0.0/24\"\n[[node_groups]]\nname = \"g\"\ninstance_type = \"m5.larj\"\ncount = 1\nsubnet = \"s\"\n",
            "did you mean m5.large",
        ),
    ];
    for (name, body, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let r = run_builtin(&["simulate", path.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{name}");
        assert!(r.stderr.contains(needle), "{name}: {}", r.stderr);
        assert!(
            r.stderr.contains(name),
            "error names the file: {}",
            r.stderr
        );
    }
    let r = run_builtin(&["simulate", "/nonexistent.toml"]);
    assert!(r.code == 1 && r.stderr.contains("cannot read /nonexistent.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scale_down_terminates_nodes_and_workloads_replace_pods() {
    let dir = std::env::temp_dir().join(format!("vpc-cni-sim-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scale.toml");
    std::fs::write(&path, "duration = \"30m\"\n[[subnets]]\nid = \"s\"\ncidr = \"10.0.0.0/22\"\n[[node_groups]]\nname = \"g\"\ninstance_type = \"m5.large\"\ncount = 4\nsubnet = \"s\"\nscale = [{ at = \"10m\", count = 6 }, { at = \"20m\", count = 2 }]\n[[workloads]]\nkind = \"steady\"\ngroup = \"g\"\npods = 40\n").unwrap();
    let r = run_builtin(&["simulate", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let g = &report["groups"][0];
    assert_eq!(g["nodes"], 2);
    // Two m5.large hold at most 2 × 27 pods: all 40 are back, on the two remaining nodes.
    assert_eq!(g["pods"], 40);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Custom networking: a node subnet and a separate pod subnet per zone. Without the scale event
/// the simulation holds exactly what `plan --pod-subnet` predicts in each subnet; with it, the
/// node subnet of zone a and the pod subnet of zone b run out, each reported as such; and
/// `max-pods --cni-custom-networking-enabled` agrees with plan's max pods.
#[test]
fn custom_networking_subnets_match_the_planner_and_run_out_separately() {
    let text = std::fs::read_to_string(example("custom-networking.toml")).unwrap();
    let steady = text
        .replace("scale = [{ at = \"40m\", count = 70 }]", "")
        .replace("duration = \"1h\"", "duration = \"30m\"");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steady.toml");
    std::fs::write(&path, steady).unwrap();
    let r = run_builtin(&["simulate", path.to_str().unwrap(), "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sim: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let free = |id: &str| {
        sim["subnets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {sim}"))["free_addresses"]
            .as_i64()
            .unwrap()
    };
    let p = run_builtin(&[
        "plan",
        "--instance-type",
        "m5.xlarge",
        "--pods",
        "42",
        "--nodes",
        "20",
        "--subnet",
        "10.0.0.0/26",
        "--pod-subnet",
        "100.64.0.0/21",
        "--output",
        "json",
    ]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let plan: serde_json::Value = serde_json::from_str(&p.stdout).unwrap();
    assert_eq!(
        plan["subnet"]["free_addresses"].as_i64().unwrap(),
        free("subnet-a-nodes")
    );
    assert_eq!(
        plan["pod_subnet"]["free_addresses"].as_i64().unwrap(),
        free("subnet-a-pods")
    );
    assert_eq!(plan["subnet"]["free_addresses"], 39, "{plan}");
    assert_eq!(sim["groups"][0]["pods"], 840, "{sim}");

    let m = run_builtin(&[
        "max-pods",
        "--instance-type",
        "m5.xlarge",
        "--cni-custom-networking-enabled",
        "--cni-version",
        "1.19.0",
    ]);
    assert_eq!(
        m.stdout.trim(),
        plan["max_pods"].to_string(),
        "{}",
        m.stderr
    );
    assert_eq!(m.stdout.trim(), "44");

    let r = run_builtin(&["simulate", &example("custom-networking.toml")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Subnet subnet-a-nodes (nodes of zone-a) ran out at 2400 s: InsufficientFreeAddressesInSubnet"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("Subnet subnet-b-pods (pods of zone-b (ENIConfig)) ran out"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("Subnet subnet-a-pods ("),
        "zone a's pod subnet has room: {}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("Subnet subnet-b-nodes ("),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("Node launches failed (11×): zone-a"),
        "{}",
        r.stdout
    );

    let bad = text.replace(
        "pod_subnet = \"subnet-b-pods\"",
        "pod_subnet = \"subnet-a-pods\"",
    );
    std::fs::write(&path, bad).unwrap();
    let r = run_builtin(&["simulate", path.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("pod_subnet \"subnet-a-pods\" is in us-east-1a, the node subnet \"subnet-b-nodes\" in us-east-1b"), "{}", r.stderr);
}
