//! The image entrypoints, run under upstream's program names (links to `vpc-cni`, as the
//! images lay them out): `grpc-health-probe` with upstream's probe flags and exit codes,
//! `aws-vpc-cni-init` copying plugins and setting sysctls, and `aws-vpc-cni` in a node network
//! namespace: plugin installed, daemon SERVING, conflist written, SIGTERM forwarded, the
//! daemon's exit code returned; a bad variable stops it before anything is installed.

#[allow(dead_code)]
#[path = "support/netns.rs"]
mod netns;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netns::{Ns, require_root};

/// `dir/name` → the vpc-cni binary (and aws-cni beside it, as in the image's /app).
fn link(dir: &Path, name: &str) -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_vpc-cni"));
    let p = dir.join(name);
    if !p.exists() {
        std::os::unix::fs::symlink(&exe, &p).unwrap();
    }
    let plugin = exe.with_file_name("aws-cni");
    let beside = dir.join("aws-cni");
    if !beside.exists() && plugin.exists() {
        std::fs::copy(&plugin, &beside).unwrap();
    }
    p
}

fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn init_copies_plugins_and_sets_sysctls() {
    let d = tempfile::tempdir().unwrap();
    let init = d.path().join("init");
    std::fs::create_dir_all(&init).unwrap();
    let me = link(&init, "aws-vpc-cni-init");
    std::fs::remove_file(init.join("aws-cni")).ok();
    for p in ["portmap", "host-local", "loopback", "bandwidth", "tuning"] {
        std::fs::write(init.join(p), format!("#!{p}")).unwrap();
    }
    let sys = d.path().join("sys");
    for f in [
        "net/ipv4/conf/eth0/rp_filter",
        "net/ipv4/tcp_early_demux",
        "net/ipv6/conf/all/disable_ipv6",
        "net/ipv6/conf/all/forwarding",
        "net/ipv6/conf/eth0/accept_ra",
    ] {
        std::fs::create_dir_all(sys.join(f).parent().unwrap()).unwrap();
        std::fs::write(sys.join(f), "x").unwrap();
    }
    let bin = d.path().join("host-bin");
    let out = Command::new(&me)
        .args(["--primary-interface", "eth0", "--proc-sys"])
        .arg(&sys)
        .env("HOST_CNI_BIN_PATH", &bin)
        .env("DISABLE_TCP_EARLY_DEMUX", "true")
        .env("ENABLE_IPv6", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<String> = std::fs::read_dir(&bin)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    assert_eq!(
        got,
        ["bandwidth", "host-local", "loopback", "portmap", "tuning"]
    );
    let read = |f: &str| std::fs::read_to_string(sys.join(f)).unwrap();
    assert_eq!(read("net/ipv4/conf/eth0/rp_filter"), "2");
    assert_eq!(read("net/ipv4/tcp_early_demux"), "0");
    assert_eq!(read("net/ipv6/conf/all/disable_ipv6"), "0");
    assert_eq!(read("net/ipv6/conf/all/forwarding"), "1");
    assert_eq!(read("net/ipv6/conf/eth0/accept_ra"), "2");
    // A bad boolean stops it (exit 1), naming the variable.
    let out = Command::new(&me)
        .args(["--primary-interface", "eth0"])
        .env("HOST_CNI_BIN_PATH", &bin)
        .env("ENABLE_IPv6", "maybe")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ENABLE_IPv6"));
}

#[test]
fn the_node_entrypoint_serves_writes_the_conflist_and_forwards_sigterm() {
    require_root();
    let d = tempfile::tempdir().unwrap();
    let app = d.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    let entry = link(&app, "aws-vpc-cni");
    let probe = link(&app, "grpc-health-probe");
    let (bin, netd, run) = (
        d.path().join("bin"),
        d.path().join("net.d"),
        d.path().join("run"),
    );
    let socket = run.join("ipamd.sock");
    let env = |c: &mut Command| {
        c.env("HOST_CNI_BIN_PATH", &bin)
            .env("HOST_CNI_CONFDIR_PATH", &netd)
            .env("VPC_CNI_IPAMD_SOCKET", &socket)
            .env("VPC_CNI_CLOUD", "sim")
            .env("AWS_VPC_K8S_CNI_BACKING_STORE", run.join("ipam.json"))
            .env("AWS_VPC_K8S_CNI_LOG_FILE", run.join("ipamd.log"))
            .env("AWS_VPC_K8S_PLUGIN_LOG_FILE", run.join("plugin.log"))
            .env_remove("KUBECONFIG");
    };
    // A bad variable: exit 1 naming it, nothing installed.
    let mut c = Command::new(&entry);
    env(&mut c);
    let out = c.env("WARM_IP_TARGET", "-2").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WARM_IP_TARGET"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!bin.join("aws-cni").exists());

    let ns = Ns::new("entry");
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name]).arg(&entry);
    env(&mut c);
    let log = std::fs::File::create(d.path().join("entry.log")).unwrap();
    let mut child = c
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let logs = || {
        std::fs::read_to_string(d.path().join("entry.log")).unwrap_or_default()
            + &std::fs::read_to_string(run.join("ipamd.log")).unwrap_or_default()
    };
    until("the conflist", 30, || netd.join("10-aws.conflist").exists());
    assert!(bin.join("aws-cni").exists());
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(netd.join("10-aws.conflist")).unwrap())
            .unwrap();
    assert_eq!(conf["plugins"][0]["type"], "aws-cni", "{conf}");

    // Upstream's probe command line, unchanged but for the socket path.
    let probe_run = |addr: &str| {
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(&probe)
            .args([
                &format!("-addr={addr}"),
                "-connect-timeout=5s",
                "-rpc-timeout=5s",
            ])
            .output()
            .unwrap()
    };
    let ok = probe_run(&format!("unix://{}", socket.display()));
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        "status: SERVING"
    );
    let gone = probe_run(&format!("unix://{}", run.join("nope.sock").display()));
    assert_eq!(gone.status.code(), Some(2), "connection failure");
    let bad = Command::new(&probe).arg("-rpc-timeout=5").output().unwrap();
    assert_eq!(bad.status.code(), Some(1), "bad flags");

    // SIGTERM to the entrypoint reaches the daemon; the entrypoint exits with its code.
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM; log: {}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, Some(0), "the daemon's exit code; log: {}", logs());
    assert!(logs().contains("SERVING"), "{}", logs());
    let after = probe_run(&format!("unix://{}", socket.display()));
    assert_eq!(after.status.code(), Some(2), "the daemon is gone");
}
