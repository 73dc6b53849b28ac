//! `vpc-cni limits sync` against `moto_server`, whose DescribeInstanceTypes carries real EC2
//! data: the table it writes loads, gives the calculator's answers, and agrees with the
//! reference table on the types both know.

#[allow(dead_code)]
#[path = "support/emu.rs"]
mod emu;
mod support;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use emu::Kill;
use serde_json::Value;

#[test]
fn sync_from_describe_instance_types() {
    let python =
        std::path::PathBuf::from(std::env::var("VPC_CNI_PYTHON").expect(
            "VPC_CNI_PYTHON must name a Python with moto[server] (scripts/check sets it up)",
        ));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _moto = Kill(
        Command::new(python.with_file_name("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]')"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args([
            "limits",
            "sync",
            "--regions",
            "us-east-1,us-west-2",
            "--out",
        ])
        .arg(dir.path())
        .env("AWS_ENDPOINT_URL_EC2", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("instance types"), "{text}");

    let ours: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("instance-limits.json")).unwrap(),
    )
    .unwrap();
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(support::data_dir().join("instance-limits.json")).unwrap(),
    )
    .unwrap();
    let ours = ours.as_object().unwrap();
    assert!(ours.len() > 1000, "{} types", ours.len());
    let (mut shared, mut same) = (0, 0);
    for (name, r) in reference.as_object().unwrap() {
        if let Some(o) = ours.get(name) {
            shared += 1;
            if o["eni_limit"] == r["eni_limit"]
                && o["ipv4_limit"] == r["ipv4_limit"]
                && o["network_cards"] == r["network_cards"]
            {
                same += 1;
            }
        }
    }
    eprintln!(
        "limits sync: {} types; {same} of {shared} shared with the reference agree exactly",
        ours.len()
    );
    assert!(same * 100 >= shared * 98, "{same} of {shared} agree");
    // Multi-card types keep the default card's ENIs.
    if let Some(p5) = ours.get("p5.48xlarge") {
        assert_eq!(
            p5["eni_limit"], reference["p5.48xlarge"]["eni_limit"],
            "{p5}"
        );
    }
    for (t, want) in [("m5.large", "29"), ("c5n.18xlarge", "737")] {
        let mp = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
            .args([
                "max-pods",
                "--instance-type",
                t,
                "--cni-version",
                "1.19.0",
                "--show-max-allowed",
                "--data-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&mp.stdout).trim(),
            want,
            "{t}: {}",
            String::from_utf8_lossy(&mp.stderr)
        );
    }
}
