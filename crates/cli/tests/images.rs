//! The images, built by `scripts/images` (as its unprivileged build user) and run the way a node runs upstream's DaemonSet
//! (Debian's podman with runc, as root; containerd's `ctr` imports the same archives): the init
//! image fills a host directory with the CNI
//! plugins; the node image, with upstream's env, mounts, capabilities and probe command, runs in
//! a node network namespace on the simulated VPC, passes its readiness probe, writes the conflist
//! into the host directory, and serves pods that the host adds with the installed `aws-cni`.

#[allow(dead_code)]
#[path = "support/netns.rs"]
mod netns;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use netns::{Ns, cni_env, exec_plugin, require_root};
use serde_json::Value;

/// podman's defaults exceed this machine's hard limits; crun fails on its cgroup mode.
const RUN: &[&str] = &[
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman (Debian podman + runc) must be installed: scripts/check installs it")
}

fn ok(args: &[&str]) -> String {
    let o = podman(args);
    assert!(
        o.status.success(),
        "podman {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Upstream's aws-node env (surface B.6) plus the fieldRefs, as the DaemonSet gives it.
const UPSTREAM_ENV: &[(&str, &str)] = &[
    ("ADDITIONAL_ENI_TAGS", "{}"),
    ("AWS_VPC_CNI_NODE_PORT_SUPPORT", "true"),
    ("AWS_VPC_ENI_MTU", "9001"),
    ("AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG", "false"),
    ("AWS_VPC_K8S_CNI_EXTERNALSNAT", "false"),
    ("AWS_VPC_K8S_CNI_LOGLEVEL", "DEBUG"),
    (
        "AWS_VPC_K8S_CNI_LOG_FILE",
        "/host/var/log/aws-routed-eni/ipamd.log",
    ),
    ("AWS_VPC_K8S_CNI_RANDOMIZESNAT", "prng"),
    ("AWS_VPC_K8S_CNI_VETHPREFIX", "eni"),
    (
        "AWS_VPC_K8S_PLUGIN_LOG_FILE",
        "/var/log/aws-routed-eni/plugin.log",
    ),
    ("AWS_VPC_K8S_PLUGIN_LOG_LEVEL", "DEBUG"),
    ("DISABLE_INTROSPECTION", "false"),
    ("DISABLE_METRICS", "false"),
    ("DISABLE_NETWORK_RESOURCE_PROVISIONING", "false"),
    ("ENABLE_IMDS_ONLY_MODE", "false"),
    ("ENABLE_IPv4", "true"),
    ("ENABLE_IPv6", "false"),
    ("ENABLE_MULTI_NIC", "false"),
    ("ENABLE_POD_ENI", "false"),
    ("ENABLE_PREFIX_DELEGATION", "false"),
    ("ENABLE_SUBNET_DISCOVERY", "true"),
    ("NETWORK_POLICY_ENFORCING_MODE", "standard"),
    ("VPC_CNI_VERSION", "v1.23.1"),
    ("WARM_ENI_TARGET", "1"),
    ("WARM_PREFIX_TARGET", "1"),
    ("MY_NODE_NAME", "ip-10-0-0-10.ec2.internal"),
    ("MY_POD_NAME", "aws-node-abcde"),
    // The one difference: no EC2 here, the daemon runs on the simulated VPC.
    ("VPC_CNI_CLOUD", "sim"),
];

fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The container removed on drop.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "5", &self.0]);
    }
}

/// `docker load` takes the Docker archives: a private `dockerd` (Debian's docker.io) on the
/// private containerd, with no bridge, no iptables and no forwarding, so the host's network is
/// left as it is.
fn docker_loads(dir: &Path, containerd: &Path, version: &str) {
    let root = dir.join("docker");
    let sock = root.join("docker.sock");
    let mut dockerd = Command::new("dockerd")
        .args(["--data-root", root.join("data").to_str().unwrap()])
        .args(["--exec-root", root.join("exec").to_str().unwrap()])
        .args(["--pidfile", root.join("docker.pid").to_str().unwrap()])
        .args(["-H", &format!("unix://{}", sock.display())])
        .args(["--containerd", containerd.to_str().unwrap()])
        .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
        .args([
            "--ip-forward=false",
            "--ip-masq=false",
            "--storage-driver",
            "vfs",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dockerd (Debian docker.io) must be installed: scripts/check installs it");
    // Debian's client, of the daemon's version (a newer client elsewhere in PATH may not be).
    let client = if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    };
    let docker = |args: &[&str]| {
        Command::new(client)
            .args(["-H", &format!("unix://{}", sock.display())])
            .args(args)
            .output()
            .unwrap()
    };
    until("dockerd's API", 60, || docker(&["info"]).status.success());
    for name in ["vpc-cni-rs", "vpc-cni-rs-init"] {
        let archive = dir.join("out").join(format!("{name}.docker.tar"));
        let o = docker(&["load", "-q", "-i", archive.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "docker load {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let listed = docker(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let _ = dockerd.kill();
    let _ = dockerd.wait();
    for name in ["vpc-cni-rs", "vpc-cni-rs-init"] {
        assert!(
            listed.contains(&format!("localhost/{name}:{version}")),
            "docker image ls: {listed}"
        );
    }
}

/// A user without a subordinate id range is told what to add, before anything is built.
#[test]
fn a_user_without_subordinate_ids_is_told_what_to_add() {
    require_root();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new("runuser")
        .args(["-u", "nobody", "--", "bash"])
        .arg(root.join("scripts/images"))
        .arg("/nonexistent/out")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("needs a subordinate id range for nobody in /etc/subuid")
            && err.contains("usermod --add-subuids"),
        "{err}"
    );
}

fn build(out: &Path) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new("bash")
        .arg(root.join("scripts/images"))
        .arg(out)
        .env("VPC_CNI_IMAGE_PROFILE", "dev")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "scripts/images: {text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

/// The image was built by a non-root user, yet what the build copied in belongs to root: every
/// entry of the Docker archive's layer under `dirs` is owned by 0:0.
fn owned_by_root(archive: &Path, dirs: &[&str]) {
    let manifest = Command::new("tar")
        .args(["-xOf", archive.to_str().unwrap(), "manifest.json"])
        .output()
        .unwrap();
    let manifest: Value = serde_json::from_slice(&manifest.stdout).expect("manifest.json");
    let layer = manifest[0]["Layers"][0].as_str().expect("one layer");
    let listing = Command::new("bash")
        .arg("-c")
        .arg(r#"tar -xOf "$0" "$1" | tar -tv --numeric-owner"#)
        .args([archive.to_str().unwrap(), layer])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let mut seen = 0;
    for line in listing.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let path = cols.last().copied().unwrap_or("");
        let path = if cols.len() > 2 && cols[cols.len() - 2] == "->" {
            cols[cols.len() - 3]
        } else {
            path
        };
        if dirs.iter().any(|d| path.starts_with(d)) {
            seen += 1;
            assert_eq!(cols[1], "0/0", "{}: {line}", archive.display());
        }
    }
    assert!(seen >= 3, "{}: nothing under {dirs:?}", archive.display());
}

#[test]
fn images_run_with_upstreams_daemonset_spec() {
    require_root();
    let d = tempfile::tempdir().unwrap();
    let report = build(&d.path().join("out"));
    let version = env!("CARGO_PKG_VERSION");
    // Run as root, the script builds as its unprivileged build user (mmdebstrap unshare mode,
    // rootless podman).
    assert_eq!(
        report.matches(", built by vpc-cni-build").count(),
        2,
        "{report}"
    );
    // Nothing of the build user is left running (rootless podman's pause process is stopped).
    until("the build user's processes to end", 10, || {
        !Command::new("pgrep")
            .args(["-u", "vpc-cni-build"])
            .status()
            .unwrap()
            .success()
    });
    let out = d.path().join("out");
    owned_by_root(
        &out.join("vpc-cni-rs.docker.tar"),
        &["app/", "usr/share/vpc-cni/"],
    );
    owned_by_root(&out.join("vpc-cni-rs-init.docker.tar"), &["init/"]);
    for name in ["vpc-cni-rs", "vpc-cni-rs-init"] {
        assert!(
            report.contains(&format!("{name}: localhost/{name}:{version}, image ")),
            "{report}"
        );
        ok(&["rmi", "-f", &format!("localhost/{name}:{version}")]);
        let archive = d.path().join("out").join(format!("{name}.oci.tar"));
        ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    }

    // containerd takes the same archives (`ctr image import`), a private instance of it.
    let ctrd = d.path().join("containerd");
    let sock = ctrd.join("ctrd.sock");
    let mut containerd = Command::new("containerd")
        .args(["--root", ctrd.join("root").to_str().unwrap()])
        .args(["--state", ctrd.join("state").to_str().unwrap()])
        .args(["--address", sock.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("containerd (Debian containerd) must be installed: scripts/check installs it");
    until("containerd's socket", 30, || sock.exists());
    // `ctr` against the private containerd, in its own namespace.
    let ctr = |args: &[&str]| {
        Command::new("ctr")
            .args(["--address", sock.to_str().unwrap(), "-n", "vfy"])
            .args(args)
            .output()
            .unwrap()
    };
    for name in ["vpc-cni-rs", "vpc-cni-rs-init"] {
        let archive = d.path().join("out").join(format!("{name}.oci.tar"));
        let o = ctr(&["image", "import", archive.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "ctr image import {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let listed = ctr(&["image", "ls", "-q"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for name in ["vpc-cni-rs", "vpc-cni-rs-init"] {
        assert!(
            listed.contains(&format!("localhost/{name}:{version}")),
            "{listed}"
        );
    }
    docker_loads(d.path(), &sock, version);
    let _ = containerd.kill();
    let _ = containerd.wait();

    // The init container: privileged, the host's CNI bin dir mounted.
    let host_bin = d.path().join("opt-cni-bin");
    std::fs::create_dir_all(&host_bin).unwrap();
    let mut args = vec!["run", "--rm", "--privileged", "--network", "none"];
    args.extend_from_slice(RUN);
    let mount = format!("{}:/host/opt/cni/bin", host_bin.display());
    let init_image = format!("localhost/vpc-cni-rs-init:{version}");
    args.extend([
        "-v",
        &mount,
        "-e",
        "DISABLE_TCP_EARLY_DEMUX=false",
        "-e",
        "ENABLE_IPv6=false",
    ]);
    // No IMDS here to name the primary interface by MAC: the loopback stands in.
    args.extend([init_image.as_str(), "--primary-interface", "lo"]);
    ok(&args);
    let mut plugins: Vec<String> = std::fs::read_dir(&host_bin)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    plugins.sort();
    assert_eq!(
        plugins,
        ["bandwidth", "host-local", "loopback", "portmap", "tuning"]
    );

    // The node container: upstream's env, capabilities, mounts; a node network namespace.
    let run_dir = Path::new("/var/run/aws-node");
    std::fs::create_dir_all(run_dir).unwrap();
    assert!(
        std::os::unix::net::UnixStream::connect(run_dir.join("ipamd.sock")).is_err(),
        "another daemon serves /var/run/aws-node/ipamd.sock on this machine: stop it first"
    );
    let _ = std::fs::remove_file(run_dir.join("ipamd.sock"));
    let net_d = d.path().join("etc-cni-net.d");
    let logs = d.path().join("var-log");
    let lock = d.path().join("xtables.lock");
    std::fs::write(&lock, "").unwrap();
    let node = Ns::new("image");
    // What the node's AMI does (the container's /proc/sys is read-only, as on a cluster).
    node.sh("sysctl -qw net.ipv4.ip_forward=1");
    let ns_path = format!("ns:{}", node.path());
    let name = format!("vpc-cni-rs-test-{}", std::process::id());
    let mut args = vec!["run", "-d", "--name", &name, "--network", &ns_path];
    args.extend_from_slice(RUN);
    args.extend(["--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW"]);
    let mounts = [
        format!("{}:/host/opt/cni/bin", host_bin.display()),
        format!("{}:/host/etc/cni/net.d", net_d.display()),
        format!("{}:/host/var/log/aws-routed-eni", logs.display()),
        "/var/run/aws-node:/var/run/aws-node".to_string(),
        format!("{}:/run/xtables.lock", lock.display()),
    ];
    std::fs::create_dir_all(&net_d).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    for m in &mounts {
        args.extend(["-v", m]);
    }
    let env: Vec<String> = UPSTREAM_ENV
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in &env {
        args.extend(["-e", e]);
    }
    let image = format!("localhost/vpc-cni-rs:{version}");
    args.push(&image);
    ok(&args);
    let _c = Container(name.clone());
    let log = || {
        String::from_utf8_lossy(&podman(&["logs", &name]).stderr).into_owned()
            + &std::fs::read_to_string(logs.join("ipamd.log")).unwrap_or_default()
    };
    // Upstream's readiness probe, exactly as the manifest runs it.
    let probe = [
        "exec",
        &name,
        "/app/grpc-health-probe",
        "-addr=unix:///var/run/aws-node/ipamd.sock",
        "-connect-timeout=5s",
        "-rpc-timeout=5s",
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !podman(&probe).status.success() {
        assert!(
            Instant::now() < deadline,
            "readiness probe never passed; log: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    until("the conflist on the host", 30, || {
        net_d.join("10-aws.conflist").exists()
    });
    assert!(
        host_bin.join("aws-cni").exists(),
        "aws-cni installed on the host"
    );
    let list: Value =
        serde_json::from_str(&std::fs::read_to_string(net_d.join("10-aws.conflist")).unwrap())
            .unwrap();
    let mut conf = list["plugins"][0].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();

    // The host adds a pod with the installed plugin, as a runtime does; it is wired.
    let pod = Ns::new("imgpod");
    let add = |cmd: &str| {
        exec_plugin(
            Some(&node),
            &host_bin.join("aws-cni"),
            &cni_env(cmd, "c0", &pod.path(), "web-0"),
            &conf,
        )
    };
    let mut r = add("ADD");
    for _ in 0..100 {
        if r.code == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        r = add("ADD");
    }
    assert_eq!(r.code, 0, "ADD: {} {}; log: {}", r.stdout, r.stderr, log());
    let ip = r.json["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_string();
    assert!(node.ping(&ip), "node → pod {ip}");
    let del = add("DEL");
    assert_eq!(del.code, 0, "DEL: {} {}", del.stdout, del.stderr);
}
