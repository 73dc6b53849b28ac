//! `vpc-cni max-pods` against an independent reading of the calculator's rules, for every
//! instance type of the reference data, plus its command-line contract.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::{data_dir, run, run_builtin};

/// The calculator's rules, written again from spec d.2 straight over the raw JSON files.
fn oracle(
    limits: &Value,
    vcpus: Option<u64>,
    pd: bool,
    custom: bool,
    max_eni: Option<u64>,
    v19: bool,
) -> (u64, u64) {
    let mut enis = limits["eni_limit"].as_u64().unwrap();
    if let Some(m) = max_eni {
        enis = enis.min(m);
    }
    if custom {
        enis -= 1;
    }
    let ips = limits["ipv4_limit"].as_u64().unwrap();
    let raw = if limits["hypervisor"] == "nitro" && pd && v19 {
        enis * ((ips - 1) * 16) + 2
    } else {
        enis * (ips - 1) + 2
    };
    let cap = if vcpus.is_some_and(|v| v > 30) {
        250
    } else {
        110
    };
    (raw, raw.min(cap))
}

fn load(name: &str) -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(data_dir().join(name)).expect("reference data");
    serde_json::from_str(&text).expect("JSON")
}

#[test]
fn all_1391_types_agree_with_the_calculator_rules() {
    let limits = load("instance-limits.json");
    let vcpus = load("instance-vcpus.json");
    assert_eq!(limits.len(), 1391);
    for (flags, custom, max_eni, v19) in [
        (vec![], false, None, true),
        (vec!["--cni-custom-networking-enabled"], true, None, true),
        (vec!["--cni-max-eni", "2"], false, Some(2), true),
    ] {
        let version = if v19 { "1.19.0" } else { "1.8.0" };
        let mut args = vec![
            "max-pods",
            "--all",
            "--cni-version",
            version,
            "--output",
            "json",
        ];
        args.extend(flags.iter().copied());
        let r = run(&args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let rows: Vec<Value> = serde_json::from_str(&r.stdout).expect("JSON rows");
        assert_eq!(rows.len(), 1391);
        for row in rows {
            let ty = row["instance_type"].as_str().unwrap();
            let v = vcpus.get(ty).and_then(Value::as_u64);
            let (sip, sip_capped) = oracle(&limits[ty], v, false, custom, max_eni, v19);
            let (pd, pd_capped) = oracle(&limits[ty], v, true, custom, max_eni, v19);
            assert_eq!(
                row["secondary_ip_max_pods"].as_u64(),
                Some(sip),
                "{ty} {flags:?}"
            );
            assert_eq!(
                row["secondary_ip_max_pods_capped"].as_u64(),
                Some(sip_capped),
                "{ty}"
            );
            assert_eq!(row["prefix_max_pods"].as_u64(), Some(pd), "{ty} {flags:?}");
            assert_eq!(
                row["prefix_max_pods_capped"].as_u64(),
                Some(pd_capped),
                "{ty}"
            );
        }
    }
}

#[test]
fn single_type_prints_one_integer() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--instance-type", "m5.8xlarge", "--cni-version", "1.11.2"],
            "234",
        ),
        (
            &[
                "--instance-type",
                "m5.8xlarge",
                "--cni-version",
                "1.11.2",
                "--cni-prefix-delegation-enabled",
            ],
            "250",
        ),
        (
            &[
                "--instance-type",
                "c6in.32xlarge",
                "--cni-version",
                "1.18.0",
                "--show-max-allowed",
            ],
            "394",
        ),
        (
            &["--instance-type", "m4.xlarge", "--cni-version", "1.7.5"],
            "58",
        ),
        (
            &[
                "--instance-type",
                "p5.48xlarge",
                "--cni-version",
                "1.19.0",
                "--show-max-allowed",
            ],
            "100",
        ),
        (
            &[
                "--instance-type",
                "m5.large",
                "--cni-version",
                "1.8.0",
                "--cni-prefix-delegation-enabled",
            ],
            "29",
        ),
        (
            &[
                "--instance-type",
                "m5.large",
                "--cni-version",
                "1.19.0",
                "--cni-custom-networking-enabled",
            ],
            "20",
        ),
        // An IPv6 node: prefix delegation's number (m5.large 110 after the cap, m5.8xlarge 250).
        (
            &[
                "--instance-type",
                "m5.large",
                "--cni-version",
                "1.19.0",
                "--ipv6",
            ],
            "110",
        ),
        (
            &[
                "--instance-type",
                "m5.8xlarge",
                "--cni-version",
                "1.19.0",
                "--ipv6",
            ],
            "250",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["max-pods"];
        all.extend_from_slice(args);
        let r = run(&all);
        assert_eq!(
            (r.code, r.stdout.as_str()),
            (0, format!("{want}\n").as_str()),
            "{args:?}: {}",
            r.stderr
        );
    }
}

#[test]
fn works_without_a_data_directory_for_builtin_types() {
    let r = run_builtin(&[
        "max-pods",
        "--instance-type",
        "p3dn.24xlarge",
        "--cni-version",
        "1.19.0",
    ]);
    assert_eq!((r.code, r.stdout.trim()), (0, "250"));
    let r = run_builtin(&[
        "max-pods",
        "--instance-type",
        "x9z.huge",
        "--cni-version",
        "1.19.0",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("unknown instance type \"x9z.huge\""),
        "{}",
        r.stderr
    );
}

#[test]
fn usage_errors_exit_1() {
    let cases: &[(&[&str], &str)] = &[
        (&["--instance-type", "m5.large"], "--cni-version"),
        (&["--cni-version", "1.19.0"], "--instance-type"),
        (
            &["--instance-type", "m5.large", "--cni-version", "banana"],
            "invalid CNI version",
        ),
        (
            &[
                "--instance-type",
                "m5.large",
                "--cni-version",
                "1.19.0",
                "--bogus",
            ],
            "--bogus",
        ),
        (
            &[
                "--instance-type",
                "m5.large",
                "--cni-version",
                "1.19.0",
                "--cni-max-eni",
            ],
            "--cni-max-eni",
        ),
        (
            &["--instance-type", "m5.larg", "--cni-version", "1.19.0"],
            "did you mean m5.large",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["max-pods"];
        all.extend_from_slice(args);
        let r = run(&all);
        assert_eq!(r.code, 1, "{args:?}");
        assert!(
            r.stdout.is_empty(),
            "{args:?} printed to stdout: {}",
            r.stdout
        );
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn help_explains_every_flag() {
    let r = run_builtin(&["max-pods", "--help"]);
    assert_eq!(r.code, 0);
    for flag in [
        "--instance-type",
        "--cni-version",
        "--cni-custom-networking-enabled",
        "--cni-prefix-delegation-enabled",
        "--cni-max-eni",
        "--show-max-allowed",
        "--ipv6",
        "--all",
        "--output",
        "--data-dir",
    ] {
        assert!(r.stdout.contains(flag), "help lacks {flag}");
    }
}
