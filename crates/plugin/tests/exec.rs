//! The `aws-cni` binary exec'd as a runtime does, for what needs no network namespace:
//! VERSION, and CNI error documents on stdout with exit code 1 for bad input.

use std::io::Write;
use std::process::{Command, Stdio};

fn run(env: &[(&str, &str)], stdin: &str) -> (i32, serde_json::Value, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aws-cni"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code().unwrap(),
        serde_json::from_str(&stdout).unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Environment, stdin, expected CNI error code, a string the error must contain.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, u64, &'a str);

#[test]
fn version_and_error_documents() {
    let (code, v, _) = run(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
    assert_eq!((code, v["cniVersion"].as_str()), (0, Some("1.0.0")));
    assert!(
        v["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "0.4.0")
    );

    let cases: &[Case] = &[
        (&[], "{}", 4, "CNI_COMMAND"),
        (
            &[("CNI_COMMAND", "ADD")],
            r#"{"cniVersion":"0.4.0","name":"n"}"#,
            4,
            "CNI_CONTAINERID",
        ),
        (
            &[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/x"),
            ],
            r#"{"cniVersion":"0.4.0","name":"n","vethPrefix":"toolong"}"#,
            7,
            "vethPrefix",
        ),
        (
            &[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/x"),
            ],
            "{oops",
            6,
            "decode",
        ),
        (
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_NETNS", "/n"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/x"),
            ],
            r#"{"cniVersion":"9.9.9","name":"n"}"#,
            1,
            "9.9.9",
        ),
    ];
    for (env, stdin, want, needle) in cases {
        let (code, v, stderr) = run(env, stdin);
        assert_eq!(code, 1, "{env:?} {stdin}");
        assert_eq!(v["code"].as_u64(), Some(*want), "{env:?} {stdin}: {v}");
        assert!(v.to_string().contains(needle), "{v}");
        assert!(
            stderr.is_empty() || !stderr.contains('{'),
            "errors go to stdout, not stderr: {stderr}"
        );
    }
}
