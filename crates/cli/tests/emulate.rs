//! `vpc-cni emulate` from outside: boto3 (an AWS SDK that parses EC2's XML by the service model)
//! drives every EC2 action the CNI uses, and plain HTTP checks the IMDSv2 token flow.

#[allow(dead_code)]
#[path = "support/emu.rs"]
mod emu;

use std::process::Command;

use emu::{Kill, emulator};

fn start(extra: &[&str]) -> (Kill, serde_json::Value) {
    emulator(extra)
}

/// Run `tests/python/<script>` against the first instance of `ep`; its messages on failure.
fn run_check(script: &str, ep: &serde_json::Value) {
    let python = std::env::var("VPC_CNI_PYTHON")
        .expect("VPC_CNI_PYTHON must name a Python with boto3 (scripts/check sets it up)");
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python")
        .join(script);
    let out = Command::new(&python)
        .arg(path)
        .arg(ep["ec2"].as_str().unwrap())
        .arg(ep["imds"][0]["endpoint"].as_str().unwrap())
        .arg(ep["imds"][0]["instance_id"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn boto3_and_imdsv2_against_the_emulator() {
    let (_emu, ep) = start(&["--instance-type", "m5.large", "--instance-type", "t3.small"]);
    assert_eq!(ep["imds"].as_array().unwrap().len(), 2, "{ep}");
    run_check("emulator_check.py", &ep);
}

#[test]
fn ipv6_actions_and_imds_paths_of_a_dual_stack_vpc() {
    let (_emu, ep) = start(&["--ipv6-cidr", "2001:db8:1200::/56"]);
    run_check("emulator_ipv6_check.py", &ep);
}

#[test]
fn refuses_non_loopback_and_bad_rates() {
    let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(["emulate", "--ec2-addr", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (flag, want) in [
        (
            ["--error-rate", "2"],
            "--error-rate 2: expected a probability",
        ),
        (
            ["--throttle-rate", "1.5"],
            "--throttle-rate 1.5: expected a probability",
        ),
        (["--ipv6-cidr", "2001:db8::/80"], "expected a /56"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
            .arg("emulate")
            .args(flag)
            .args(["--ec2-addr", "127.0.0.1:0", "--imds-addr", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{flag:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn max_pods_reads_the_instance_type_from_imds() {
    let (_emu, ep) = start(&["--instance-type", "m5.xlarge"]);
    let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args([
            "max-pods",
            "--instance-type-from-imds",
            "--cni-version",
            "1.19.0",
        ])
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            ep["imds"][0]["endpoint"].as_str().unwrap(),
        )
        .env_remove("VPC_CNI_DATA_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "58",
        "m5.xlarge: 4 × (15 − 1) + 2"
    );
}
