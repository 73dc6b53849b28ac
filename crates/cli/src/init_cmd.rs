//! `vpc-cni init`: what upstream's init container and entrypoint do around ipamd — install the
//! plugin into the CNI bin dir, wait until ipamd's gRPC health service says SERVING, apply the
//! node sysctls, and only then write `10-aws.conflist` (so the node stays NotReady until IPAM
//! works).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use vpc_cni_cni::conflist::{ConflistParams, render};

/// Installs the aws-cni plugin into the CNI bin dir, waits for ipamd to report SERVING on its
/// socket, applies the node sysctls (rp_filter=2 on the primary interface, tcp_early_demux per
/// DISABLE_TCP_EARLY_DEMUX), then writes 10-aws.conflist (aws-cni → portmap, upstream
/// shape; MTU from POD_MTU / AWS_VPC_ENI_MTU, veth prefix from AWS_VPC_K8S_CNI_VETHPREFIX,
/// bandwidth with ENABLE_BANDWIDTH_PLUGIN, tuning with DISABLE_POD_V6). Files are written to a
/// temporary name and renamed, so a runtime never reads half a file.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// CNI binary directory [env HOST_CNI_BIN_PATH].
    #[arg(long, env = "HOST_CNI_BIN_PATH", default_value = "/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    /// CNI configuration directory [env HOST_CNI_CONFDIR_PATH].
    #[arg(long, env = "HOST_CNI_CONFDIR_PATH", default_value = "/etc/cni/net.d")]
    cni_conf_dir: PathBuf,
    /// The aws-cni binary to install (default: `aws-cni` beside this program).
    #[arg(long, value_name = "PATH")]
    plugin: Option<PathBuf>,
    /// ipamd's gRPC socket to wait for [env VPC_CNI_IPAMD_SOCKET].
    #[arg(
        long,
        env = "VPC_CNI_IPAMD_SOCKET",
        default_value = "/var/run/aws-node/ipamd.sock"
    )]
    socket: PathBuf,
    /// Primary interface for rp_filter=2 (skipped with a warning when absent).
    #[arg(long, default_value = "eth0")]
    primary_interface: String,
    /// Give up waiting for ipamd after this many seconds (0: wait forever, as upstream).
    #[arg(long, default_value_t = 0)]
    wait_timeout: u64,
    /// Do not touch sysctls (e.g. when the node is set up by other means).
    #[arg(long)]
    skip_sysctls: bool,
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("vpc-cni-tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

fn install_plugin(args: &Args) -> anyhow::Result<PathBuf> {
    let src = match &args.plugin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("aws-cni"),
    };
    install_plugins(&src, &args.cni_bin_dir)
}

/// Install `aws-cni` (at `src`) and the `egress-cni` beside it, as upstream's entrypoint copies
/// both; the path of the first.
pub(crate) fn install_plugins(src: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let dst = install_file(src, dir)?;
    let egress = src.with_file_name("egress-cni");
    if !egress.exists() {
        bail!(
            "{} is missing beside {} (build both with `cargo build -p aws-cni`): the conflist chains it",
            egress.display(),
            src.display()
        );
    }
    let e = install_file(&egress, dir)?;
    eprintln!("installed {}", e.display());
    Ok(dst)
}

/// The interface of the node's IPv4 default route (`eth0` when there is none): the primary
/// ENI's link on EC2, whatever udev named it.
pub(crate) fn default_route_interface() -> String {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "route", "show", "default"])
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap_or("eth0")
        .to_string()
}

/// The node addresses `egress-cni` SNATs to: `VPC_CNI_NODE_IP` when set, else the first global
/// address of the family on the primary interface (what IMDS's `local-ipv4` / `ipv6` name on
/// EC2). IPv4 for IPv6 clusters, IPv6 for IPv4 clusters.
pub(crate) fn egress_node_ip(primary_if: &str, want_v6: bool) -> String {
    if let Ok(v) = std::env::var("VPC_CNI_NODE_IP")
        && !v.trim().is_empty()
    {
        return v.trim().to_string();
    }
    let family = if want_v6 { "-6" } else { "-4" };
    let out = std::process::Command::new("ip")
        .args([
            family, "-o", "addr", "show", "dev", primary_if, "scope", "global",
        ])
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.split_whitespace()
        .skip_while(|w| *w != "inet" && *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string()
}

/// Copy `src` into `dir` under its own name, atomically, mode 0755.
pub(crate) fn install_file(src: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
    let bytes = std::fs::read(src).with_context(|| {
        format!(
            "reading {} (build the plugin with `cargo build --release -p aws-cni`)",
            src.display()
        )
    })?;
    let name = src.file_name().context("a file to install")?;
    let dst = dir.join(name);
    write_atomic(&dst, &bytes, 0o755)?;
    Ok(dst)
}

/// A boolean variable in Go's spellings (unset or blank: false).
pub(crate) fn go_bool_env(var: &str) -> anyhow::Result<bool> {
    match std::env::var(var).unwrap_or_default().trim() {
        "" => Ok(false),
        v => Ok(vpc_cni_cni::conflist::go_bool(var, v)?),
    }
}

fn sysctls(args: &Args, disable_demux: bool) -> anyhow::Result<()> {
    let rp = format!(
        "/proc/sys/net/ipv4/conf/{}/rp_filter",
        args.primary_interface
    );
    if Path::new(&rp).exists() {
        std::fs::write(&rp, "2").with_context(|| format!("writing 2 to {rp}"))?;
        eprintln!("set {rp} = 2");
    } else {
        eprintln!(
            "warning: no interface {:?}; rp_filter left alone",
            args.primary_interface
        );
    }
    let demux = "/proc/sys/net/ipv4/tcp_early_demux";
    if Path::new(demux).exists() {
        let v = if disable_demux { "0" } else { "1" };
        std::fs::write(demux, v).with_context(|| format!("writing {v} to {demux}"))?;
        eprintln!("set {demux} = {v}");
    }
    Ok(())
}

pub(crate) async fn healthy(socket: &Path) -> Result<bool, String> {
    let path = socket.to_path_buf();
    let channel = Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|e| format!("health check: {}", e.message()))?;
    Ok(reply.into_inner().status == ServingStatus::Serving as i32)
}

async fn wait_for_ipamd(args: &Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last_note = Instant::now();
    loop {
        match healthy(&args.socket).await {
            Ok(true) => {
                eprintln!(
                    "ipamd at {} is SERVING ({:.1} s)",
                    args.socket.display(),
                    start.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Ok(false) => {}
            Err(e) if last_note.elapsed() >= Duration::from_secs(5) => {
                eprintln!(
                    "waiting for ipamd at {} ({:.0} s): {e}",
                    args.socket.display(),
                    start.elapsed().as_secs_f64()
                );
                last_note = Instant::now();
            }
            Err(_) => {}
        }
        if args.wait_timeout > 0 && start.elapsed() >= Duration::from_secs(args.wait_timeout) {
            bail!(
                "ipamd at {} was not SERVING within {} s; the conflist was not written (start `vpc-cni daemon` first)",
                args.socket.display(),
                args.wait_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    // Every variable is checked before anything is installed or waited for.
    let params = ConflistParams::from_lookup(|k| std::env::var(k).ok())?;
    let disable_demux = go_bool_env("DISABLE_TCP_EARLY_DEMUX")?;
    // Both directories too: a configuration directory that cannot be written would otherwise
    // be found only after the wait for ipamd.
    for (dir, var) in [
        (&args.cni_bin_dir, "HOST_CNI_BIN_PATH (--cni-bin-dir)"),
        (&args.cni_conf_dir, "HOST_CNI_CONFDIR_PATH (--cni-conf-dir)"),
    ] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{var}={}: cannot create the directory", dir.display()))?;
    }
    let dst = install_plugin(&args)?;
    eprintln!("installed {}", dst.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(wait_for_ipamd(&args))?;
    // After ipamd is up: with a simulated VPC the primary link is the daemon's own making.
    if !args.skip_sysctls {
        sysctls(&args, disable_demux)?;
    }
    let mut params = params;
    params.node_ip = egress_node_ip(&args.primary_interface, !params.ipv6);
    if !params.ipv6 && params.v6_egress && params.node_ip.is_empty() {
        eprintln!(
            "warning: ENABLE_V6_EGRESS=true, but {} has no global IPv6 address: IPv6 egress stays off",
            args.primary_interface
        );
    }
    write_conflist(params, &args.socket, &args.cni_conf_dir)?;
    Ok(())
}

/// Render and write `10-aws.conflist` into `dir` (atomically); a socket other than upstream's
/// goes into the conflist, and the plugin then logs beside it.
pub(crate) fn write_conflist(
    mut params: ConflistParams,
    socket: &Path,
    dir: &Path,
) -> anyhow::Result<PathBuf> {
    if socket != Path::new("/var/run/aws-node/ipamd.sock") {
        params.ipamd_socket = Some(socket.display().to_string());
        // A node of the user's own making (a network namespace on a laptop): the plugin logs
        // beside the socket they chose, not under /var/log.
        if std::env::var_os("AWS_VPC_K8S_PLUGIN_LOG_FILE").is_none()
            && let Some(parent) = socket.parent().filter(|d| !d.as_os_str().is_empty())
        {
            params.plugin_log_file = parent.join("plugin.log").display().to_string();
        }
    }
    let conf = dir.join("10-aws.conflist");
    let template = std::env::var("VPC_CNI_CONFLIST_TEMPLATE")
        .unwrap_or_else(|_| "/app/10-aws.conflist".into());
    let doc = match std::fs::read_to_string(&template) {
        // Upstream's image and chart (`cniConfig`) put a template there: it wins, as upstream.
        Ok(text) => {
            eprintln!("conflist from the template {template}");
            vpc_cni_cni::conflist::from_template(&text, &params)
                .map_err(|e| anyhow::anyhow!("{template}: {e}"))?
        }
        Err(_) => render(&params),
    };
    let text = serde_json::to_string_pretty(&doc)?;
    write_atomic(&conf, format!("{text}\n").as_bytes(), 0o644)?;
    eprintln!("wrote {}", conf.display());
    Ok(conf)
}
