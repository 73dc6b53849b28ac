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

/// One raw HTTP request to `url` (`http://host:port`): (status, body).
fn raw(url: &str, method: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    let mut req = format!(
        "{method} / HTTP/1.0\r\nHost: {hostport}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|b| b.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Malformed EC2 requests get EC2's error documents (XML with a code), never a panic or a plain
/// text answer: MaxResults out of range, numbers that do not parse or overflow, CreateTags
/// without a resource, an out-of-range list index, a wrong media type, an oversized body.
#[test]
fn malformed_requests_get_ec2_error_documents() {
    let (_emu, ep) = start(&["--instance-type", "m5.large"]);
    let ec2 = ep["ec2"].as_str().unwrap().to_string();
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let cases: &[(&str, &str)] = &[
        (
            "Action=DescribeNetworkInterfaces&MaxResults=0",
            "InvalidParameterValue",
        ),
        (
            "Action=DescribeNetworkInterfaces&MaxResults=99999999999",
            "InvalidParameterValue",
        ),
        (
            "Action=DescribeNetworkInterfaces&MaxResults=abc",
            "InvalidParameterValue",
        ),
        (
            "Action=CreateNetworkInterface&SubnetId=subnet-x&SecondaryPrivateIpAddressCount=4294967296",
            "InvalidParameterValue",
        ),
        (
            "Action=CreateTags&Tag.1.Key=a&Tag.1.Value=b",
            "MissingParameter",
        ),
        (
            "Action=DescribeNetworkInterfaces&NetworkInterfaceId.99999999999=eni-1",
            "InvalidParameterValue",
        ),
        (
            "Action=DescribeNetworkInterfaces&NetworkInterfaceId.0=eni-1",
            "InvalidParameterValue",
        ),
    ];
    for (body, code) in cases {
        let (status, text) = raw(&ec2, "POST", &form, body.as_bytes());
        assert_eq!(status, 400, "{body}: {text}");
        assert!(
            text.contains(&format!("<Code>{code}</Code>")),
            "{body}: {text}"
        );
    }
    let (status, text) = raw(&ec2, "POST", &[("Content-Type", "application/json")], b"{}");
    assert!(
        status == 415 && text.contains("<Code>UnsupportedMediaType</Code>"),
        "{status} {text}"
    );
    let big = vec![b'a'; 2 << 20];
    let (status, text) = raw(&ec2, "POST", &form, &big);
    assert!(
        status == 413 && text.contains("<Code>RequestEntityTooLarge</Code>"),
        "{status} {text}"
    );
    // Still serving after all that.
    let (status, text) = raw(
        &ec2,
        "POST",
        &form,
        b"Action=DescribeNetworkInterfaces&MaxResults=5",
    );
    assert!(
        status == 200 && text.contains("networkInterfaceSet"),
        "{status} {text}"
    );
}
