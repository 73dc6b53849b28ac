//! Hostile input and careless settings (issue 12's defects), each a regression test: the daemon
//! refuses bad settings naming variable and value, leaves shared directories alone, cleans up
//! after crashes, keeps a backup of the checkpoint it rewrites, refuses what the CNI spec cannot
//! produce, stops on SIGTERM whatever its clients do; the plugin never writes to stdout's name.

#[allow(dead_code)]
#[path = "support/grpc.rs"]
mod grpc;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use grpc::{Daemon, connect};
use vpc_cni_proto::rpc::AddNetworkRequest;

/// A child process killed when the test ends, also by a panic (an orphan would keep the test
/// harness's output pipe open).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `vpc-cni daemon` with `env` (and nothing of the test's own environment that matters):
/// (exit code, stderr).
fn daemon_start_error(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vpc-cni"));
    cmd.args(["daemon", "--sim-latency-scale", "0", "--socket"])
        .arg(dir.path().join("s.sock"))
        .arg("--checkpoint")
        .arg(dir.path().join("ipam.json"))
        .env("AWS_VPC_K8S_CNI_LOG_FILE", dir.path().join("ipamd.log"))
        .env("DISABLE_METRICS", "true")
        .env("DISABLE_INTROSPECTION", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("daemon with {env:?} did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_settings_stop_the_daemon_naming_variable_and_value() {
    let cases: &[(&str, &str, &str)] = &[
        ("MANAGE_UNTAGGED_ENI", "nope", "true or false"),
        ("ENABLE_SUBNET_DISCOVERY", "maybe", "true or false"),
        ("DISABLE_LEAKED_ENI_CLEANUP", "yes", "true or false"),
        (
            "AWS_VPC_K8S_CNI_LOGLEVEL",
            "warning",
            "DEBUG, INFO, WARN or ERROR",
        ),
        (
            "AWS_VPC_K8S_CNI_LOGLEVEL",
            "LOUD",
            "DEBUG, INFO, WARN or ERROR",
        ),
        ("AWS_VPC_K8S_CNI_LOGLEVEL", "", "DEBUG, INFO, WARN or ERROR"),
        ("ENABLE_IPv6", "maybe", "true or false"),
        ("ENABLE_MULTI_NIC", "1", "multi-NIC pods is not implemented"),
        ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "yes", "true or false"),
        ("ENABLE_POD_ENI", "sure", "true or false"),
        (
            "AWS_VPC_K8S_CNI_RANDOMIZESNAT",
            "sometimes",
            "prng (default), hashrandom or none",
        ),
        (
            "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS",
            "10.0.0.0/8,bogus",
            "\"bogus\" is not one",
        ),
        ("AWS_VPC_K8S_CNI_VETHPREFIX", "a/b", "interface name prefix"),
        ("AWS_VPC_ENI_MTU", "+3", "an MTU from 576 to 9001"),
    ];
    for (var, value, expected) in cases {
        let (code, err) = daemon_start_error(&[(var, value)]);
        assert_eq!(code, Some(1), "{var}={value:?}: {err}");
        assert!(
            err.contains(&format!("{var}={value:?}")) && err.contains(expected),
            "{var}={value:?}: {err}"
        );
        // Said once, not repeated down the error chain.
        assert_eq!(err.matches(expected).count(), 1, "{err}");
    }
    // Go's spellings of false are accepted for the modes not implemented yet.
    let (code, err) =
        daemon_start_error(&[("ENABLE_IPv6", "f"), ("AWS_VPC_K8S_CNI_LOGLEVEL", "LOUD")]);
    assert!(
        code == Some(1) && err.contains("AWS_VPC_K8S_CNI_LOGLEVEL"),
        "{err}"
    );
}

#[test]
fn an_existing_socket_directory_keeps_its_mode() {
    let shared = tempfile::tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let d = Daemon::start(shared.path(), &[("WARM_IP_TARGET", "1")], &[]);
    let mode = std::fs::metadata(shared.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o1777, "sticky bit and world-write kept");
    drop(d);
    // A missing one is created 0755.
    let parent = tempfile::tempdir().unwrap();
    let fresh = parent.path().join("made");
    let child = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(["daemon", "--sim-latency-scale", "0", "--socket"])
        .arg(fresh.join("s.sock"))
        .arg("--checkpoint")
        .arg(parent.path().join("ipam.json"))
        .env("AWS_VPC_K8S_CNI_LOG_FILE", parent.path().join("ipamd.log"))
        .env("DISABLE_METRICS", "true")
        .env("DISABLE_INTROSPECTION", "true")
        .spawn()
        .unwrap();
    let child = Reaped(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fresh.join("s.sock").exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o7777;
    drop(child);
    assert_eq!(mode, 0o755);
}

#[test]
fn crash_leftovers_are_cleaned_and_the_checkpoint_is_backed_up() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ipam.json");
    std::fs::write(
        &ckpt,
        r#"{"version":"vpc-cni-ipam/1","allocations":[{"networkName":"aws-cni","containerID":"gone","ifName":"eth0","ipv4":"10.9.9.9","allocationTimestamp":1}]}"#,
    )
    .unwrap();
    for n in ["ipam.json.tmp123", "ipam.json.tmp45678"] {
        std::fs::write(dir.path().join(n), "half a write").unwrap();
    }
    std::fs::write(dir.path().join("ipam.json.tmpfoo"), "not ours").unwrap();
    let d = Daemon::start(dir.path(), &[], &[]);
    assert!(!dir.path().join("ipam.json.tmp123").exists());
    assert!(!dir.path().join("ipam.json.tmp45678").exists());
    assert!(
        dir.path().join("ipam.json.tmpfoo").exists(),
        "only <name>.tmp<pid> files go"
    );
    let bak = std::fs::read_to_string(dir.path().join("ipam.json.bak")).unwrap();
    assert!(
        bak.contains("10.9.9.9"),
        "the dropped entry is kept in the backup"
    );
    let log = d.log();
    assert!(log.contains("removed temporary checkpoint files"), "{log}");
    assert!(
        log.contains("gone/eth0 10.9.9.9"),
        "every dropped entry is logged: {log}"
    );
    drop(d);

    // A dangling symlink is not a fresh node.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/nonexistent/ipam.json", dir.path().join("ipam.json")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(["daemon", "--checkpoint"])
        .arg(dir.path().join("ipam.json"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .env("AWS_VPC_K8S_CNI_LOG_FILE", dir.path().join("ipamd.log"))
        .env("DISABLE_METRICS", "true")
        .env("DISABLE_INTROSPECTION", "true")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("a symlink to /nonexistent/ipam.json"), "{err}");
}

#[tokio::test]
async fn sigterm_completes_while_a_client_holds_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), &[], &[]);
    let _silent = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    let started = Instant::now();
    let st = Command::new("kill")
        .args(["-TERM", &d.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            assert!(st.success(), "{st:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still running 15 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn keys_the_cni_spec_cannot_produce_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[("WARM_IP_TARGET", "2")], &[]);
    let mut c = connect(&d.socket()).await;
    let base = AddNetworkRequest {
        k8s_pod_name: "p".into(),
        k8s_pod_namespace: "default".into(),
        container_id: "c1".into(),
        if_name: "eth0".into(),
        network_name: "aws-cni".into(),
        client_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    };
    let cases = [
        (
            AddNetworkRequest {
                container_id: "x".repeat(3 << 20),
                ..base.clone()
            },
            "ContainerID is 3145728 bytes long; at most 256",
        ),
        (
            AddNetworkRequest {
                container_id: "../../etc".into(),
                ..base.clone()
            },
            "ContainerID \"../../etc\" has characters outside",
        ),
        (
            AddNetworkRequest {
                if_name: "eth0-much-too-long".into(),
                ..base.clone()
            },
            "IfName is 18 bytes long; at most 15",
        ),
        (
            AddNetworkRequest {
                network_name: "a b".into(),
                ..base.clone()
            },
            "NetworkName \"a b\" has characters outside",
        ),
    ];
    for (req, want) in cases {
        let e = c.add_network(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains(want), "{}", e.message());
    }
    let text = std::fs::read_to_string(dir.path().join("ipam.json")).unwrap_or_default();
    assert!(text.len() < 4096, "nothing oversized stored");
}

#[test]
fn the_plugin_never_creates_a_file_called_stdout_and_names_bad_commands() {
    let cwd = tempfile::tempdir().unwrap();
    let plugin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_vpc-cni")).with_file_name("aws-cni");
    let conf = r#"{"cniVersion":"1.0.0","name":"aws-cni","type":"aws-cni","pluginLogFile":"stdout","ipamdSocket":"/nonexistent.sock"}"#;
    let run = |cmd: &std::ffi::OsStr| {
        use std::io::Write;
        let mut child = Command::new(&plugin)
            .current_dir(cwd.path())
            .env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", "c1")
            .env("CNI_NETNS", "/var/run/netns/none")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/opt/cni/bin")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(std::ffi::OsStr::new("STATUS"));
    assert!(!cwd.path().join("stdout").exists(), "no file named stdout");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"code\":50"));
    use std::os::unix::ffi::OsStrExt;
    let out = run(std::ffi::OsStr::from_bytes(b"AD\xffD"));
    let doc = String::from_utf8_lossy(&out.stdout);
    assert!(
        !doc.contains("missing"),
        "an invalid command is not a missing one: {doc}"
    );
}

#[test]
fn init_refuses_bad_variables_before_installing_anything() {
    for (var, value) in [
        ("POD_MTU", "abc"),
        ("AWS_VPC_K8S_CNI_VETHPREFIX", "toolong"),
        ("ENABLE_BANDWIDTH_PLUGIN", "yes"),
        ("DISABLE_POD_V6", "yes"),
        ("DISABLE_TCP_EARLY_DEMUX", "maybe"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
            .args(["init", "--wait-timeout", "1", "--skip-sysctls"])
            .arg("--cni-bin-dir")
            .arg(dir.path().join("bin"))
            .arg("--cni-conf-dir")
            .arg(dir.path().join("net.d"))
            .arg("--socket")
            .arg(dir.path().join("none.sock"))
            .env(var, value)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{var}: {err}");
        assert!(err.contains(&format!("{var}={value:?}")), "{err}");
        assert!(
            !dir.path().join("bin").exists(),
            "nothing installed with {var}={value}"
        );
        assert!(!dir.path().join("net.d").exists());
    }
}

#[test]
fn init_names_the_directory_variable_it_cannot_use() {
    for var in ["HOST_CNI_BIN_PATH", "HOST_CNI_CONFDIR_PATH"] {
        let dir = tempfile::tempdir().unwrap();
        // A file where a directory is expected: creating under it fails for root too.
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
            .args(["init", "--wait-timeout", "1", "--skip-sysctls"])
            .arg("--socket")
            .arg(dir.path().join("none.sock"))
            .env("HOST_CNI_BIN_PATH", dir.path().join("bin"))
            .env("HOST_CNI_CONFDIR_PATH", dir.path().join("net.d"))
            .env(var, file.join("sub"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{var}: {err}");
        assert!(err.contains(&format!("{var} (")), "{var} named: {err}");
        assert!(
            !dir.path().join("bin/aws-cni").exists(),
            "nothing installed"
        );
    }
}

#[test]
fn introspection_binds_upstreams_unix_form_and_localhost() {
    let dir = tempfile::tempdir().unwrap();
    let intro = dir.path().join("intro.sock");
    let port = grpc::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(["daemon", "--sim-latency-scale", "0", "--socket"])
        .arg(dir.path().join("s.sock"))
        .arg("--checkpoint")
        .arg(dir.path().join("ipam.json"))
        .env("AWS_VPC_K8S_CNI_LOG_FILE", dir.path().join("ipamd.log"))
        .env(
            "INTROSPECTION_BIND_ADDRESS",
            format!("unix:{}", intro.display()),
        )
        .env("VPC_CNI_METRICS_BIND_ADDRESS", format!("localhost:{port}"))
        .spawn()
        .unwrap();
    let child = Reaped(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("s.sock").exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(["inspect", "--output", "json", "--addr"])
        .arg(format!("unix:{}", intro.display()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("TotalIPs"), "{text}");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    write!(s, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut m = String::new();
    s.read_to_string(&mut m).unwrap();
    assert!(m.contains("awscni_eni_allocated"), "{m}");
    drop(child);
    let (code, err) = daemon_start_error(&[
        ("DISABLE_INTROSPECTION", "false"),
        ("INTROSPECTION_BIND_ADDRESS", "unix:relative.sock"),
    ]);
    assert!(
        code == Some(1) && err.contains("unix:/absolute/path"),
        "{err}"
    );
}

/// The daemon's CPU time so far (utime + stime), in seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Idle TCP clients on the metrics port under a 128-descriptor limit (the probe: 244 of them
/// blocked every AddNetwork for over a minute, and the accept loop spun writing ~80 MB/s of
/// log): the plugin's socket keeps answering, the CPU stays idle, the log stays small.
#[tokio::test]
async fn idle_http_clients_cannot_starve_the_plugins_socket() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = grpc::free_port();
    let child = Command::new("prlimit")
        .arg("--nofile=128:128")
        .arg(env!("CARGO_BIN_EXE_vpc-cni"))
        .args(["daemon", "--sim-latency-scale", "0", "--socket"])
        .arg(dir.path().join("s.sock"))
        .arg("--checkpoint")
        .arg(dir.path().join("ipam.json"))
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{metrics}"))
        .env("AWS_VPC_K8S_CNI_LOG_FILE", dir.path().join("ipamd.log"))
        .env("DISABLE_INTROSPECTION", "true")
        .env("WARM_IP_TARGET", "3")
        .spawn()
        .expect("prlimit (util-linux) runs the daemon");
    let child = Reaped(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("s.sock").exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let idle: Vec<std::net::TcpStream> = (0..244)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", metrics)).ok())
        .collect();
    assert!(idle.len() > 128, "{} connections made", idle.len());
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = cpu_s(child.0.id());
    let socket = dir.path().join("s.sock");
    let attempt = async {
        let mut c = connect(&socket).await;
        loop {
            let r = c
                .add_network(AddNetworkRequest {
                    k8s_pod_name: "p".into(),
                    k8s_pod_namespace: "default".into(),
                    container_id: "c1".into(),
                    if_name: "eth0".into(),
                    network_name: "aws-cni".into(),
                    client_version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                })
                .await;
            if r.is_ok_and(|r| r.into_inner().success) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ok = tokio::time::timeout(Duration::from_millis(1500), attempt)
        .await
        .is_ok();
    assert!(
        ok,
        "AddNetwork answered within 1.5 s with 244 idle HTTP clients"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_s(child.0.id()) - cpu0;
    let log = std::fs::metadata(dir.path().join("ipamd.log"))
        .unwrap()
        .len();
    drop(idle);
    drop(child);
    assert!(cpu < 1.0, "daemon used {cpu:.2} s of CPU in ~2.5 s");
    assert!(log < 200_000, "log grew to {log} bytes");
}
