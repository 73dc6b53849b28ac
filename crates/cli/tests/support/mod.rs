//! Helpers shared by the black-box tests: run the real `vpc-cni` binary.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The reference data directory: `VPC_CNI_TEST_DATA_DIR`, else `../shared/data` beside the repo.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("VPC_CNI_TEST_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        dir.join("instance-limits.json").is_file(),
        "reference data missing at {} (set VPC_CNI_TEST_DATA_DIR)",
        dir.display()
    );
    dir
}

/// The path of `examples/NAME`.
pub fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Output of one run.
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Run `vpc-cni ARGS` with no data directory configured (built-in table only).
pub fn run_builtin(args: &[&str]) -> Run {
    run_with(args, None)
}

/// Run `vpc-cni ARGS --data-dir <reference data>`.
pub fn run(args: &[&str]) -> Run {
    let dir = data_dir();
    run_with(args, Some(dir))
}

fn run_with(args: &[&str], data: Option<PathBuf>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpc-cni"));
    cmd.args(args).env_remove("VPC_CNI_DATA_DIR");
    for var in [
        "WARM_ENI_TARGET",
        "WARM_IP_TARGET",
        "MINIMUM_IP_TARGET",
        "WARM_PREFIX_TARGET",
        "MAX_ENI",
        "ENABLE_PREFIX_DELEGATION",
    ] {
        cmd.env_remove(var);
    }
    if let Some(d) = data {
        cmd.arg("--data-dir").arg(d);
    }
    let out = cmd.output().expect("run vpc-cni");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// Run `vpc-cni plan ARGS --output json` and parse the report.
pub fn plan_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["plan"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "json"]);
    let r = run(&all);
    assert_eq!(r.code, 0, "vpc-cni {all:?} failed: {}", r.stderr);
    serde_json::from_str(&r.stdout).expect("plan JSON")
}

/// Column `field` of every row.
pub fn column(report: &serde_json::Value, field: &str) -> Vec<u64> {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r[field]
                .as_u64()
                .unwrap_or_else(|| panic!("row field {field}"))
        })
        .collect()
}
