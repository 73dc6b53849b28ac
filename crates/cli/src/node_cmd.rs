//! `vpc-cni node` (and the program named `aws-vpc-cni`, upstream's main container entrypoint):
//! validate the environment, install `aws-cni` into the host's CNI bin dir, run the daemon as a
//! child, wait until its gRPC health service says SERVING, write `10-aws.conflist` (until then
//! the node stays NotReady), then live and die with the daemon: SIGTERM and SIGINT are forwarded
//! and its exit code is returned.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use vpc_cni_cni::conflist::ConflistParams;

/// Validates every variable (a bad value stops it naming variable and value), installs aws-cni
/// (from beside this program) into HOST_CNI_BIN_PATH, starts `vpc-cni daemon --cloud
/// $VPC_CNI_CLOUD --host-network` as a child, waits for it to be SERVING on its socket, writes
/// 10-aws.conflist into HOST_CNI_CONFDIR_PATH, and exits with the daemon's exit code (SIGTERM
/// and SIGINT forwarded).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Host CNI bin dir [env HOST_CNI_BIN_PATH].
    #[arg(long, env = "HOST_CNI_BIN_PATH", default_value = "/host/opt/cni/bin")]
    cni_bin_dir: PathBuf,
    /// Host CNI configuration dir [env HOST_CNI_CONFDIR_PATH].
    #[arg(
        long,
        env = "HOST_CNI_CONFDIR_PATH",
        default_value = "/host/etc/cni/net.d"
    )]
    cni_conf_dir: PathBuf,
    /// ipamd's socket [env VPC_CNI_IPAMD_SOCKET].
    #[arg(
        long,
        env = "VPC_CNI_IPAMD_SOCKET",
        default_value = "/var/run/aws-node/ipamd.sock"
    )]
    socket: PathBuf,
    /// The daemon's backend [env VPC_CNI_CLOUD]: aws on a node, sim for the simulated VPC.
    #[arg(long, env = "VPC_CNI_CLOUD", default_value = "aws")]
    cloud: String,
    /// More arguments for the daemon, after `--` (e.g. `-- --max-pods 20`).
    #[arg(last = true)]
    daemon_args: Vec<String>,
}

/// Every variable the daemon and the conflist read, checked before anything is installed.
fn validate() -> anyhow::Result<ConflistParams> {
    vpc_cni_ipamd::DaemonConfig::from_lookup(|k| std::env::var(k).ok())
        .context("invalid environment")?;
    let params =
        ConflistParams::from_lookup(|k| std::env::var(k).ok()).context("invalid environment")?;
    crate::init_cmd::go_bool_env("DISABLE_TCP_EARLY_DEMUX")?;
    Ok(params)
}

/// The exit code of a finished child (128 + signal when killed, as a shell reports it).
fn code_of(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
        _ => 1,
    }
}

fn forward(child: &Child, sig: Signal) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), sig);
    }
}

/// Wait until the daemon is SERVING; `Err(code)` when it exited first.
async fn wait_serving(child: &mut Child, socket: &Path) -> Result<(), u8> {
    let started = Instant::now();
    let mut told = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            eprintln!("the daemon exited before it was SERVING ({st})");
            return Err(code_of(st));
        }
        match crate::init_cmd::healthy(socket).await {
            Ok(true) => {
                eprintln!(
                    "ipamd SERVING on {} after {:.1} s",
                    socket.display(),
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Err(e) if told.elapsed() >= Duration::from_secs(10) => {
                eprintln!("waiting for ipamd on {}: {e}", socket.display());
                told = Instant::now();
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Upstream's iptables-wrapper rule: use the backend that holds the host's rules (kubelet's and
/// kube-proxy's); nft when they tie. None when only plain `iptables` exists.
fn iptables_mode() -> Option<&'static str> {
    let rules = |prog: &str| {
        std::process::Command::new(prog)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| l.starts_with("-A ") || l.contains("KUBE-IPTABLES-HINT"))
                    .count()
            })
    };
    match (rules("iptables-legacy-save"), rules("iptables-nft-save")) {
        (Some(l), Some(n)) if l > n => Some("iptables-legacy"),
        (_, Some(_)) => Some("iptables-nft"),
        (Some(_), None) => Some("iptables-legacy"),
        (None, None) => None,
    }
}

async fn supervise(args: Args, params: ConflistParams) -> anyhow::Result<u8> {
    let me = std::env::current_exe().context("finding this program")?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // The daemon alone when it sits beside this program (the image), else `vpc-cni daemon`.
    let agent = me.with_file_name("aws-k8s-agent");
    let mut cmd = if agent.is_file() {
        Command::new(&agent)
    } else {
        let mut c = Command::new(&me);
        c.arg("daemon");
        c
    };
    let iptables = vpc_cni_dataplane::iptables::IPTABLES_ENV;
    if std::env::var_os(iptables).is_none()
        && let Some(mode) = iptables_mode()
    {
        eprintln!("iptables: {mode} (the backend holding the host's rules)");
        cmd.env(iptables, mode);
    }
    let mut child = cmd
        .args(["--cloud", &args.cloud, "--host-network"])
        .args(&args.daemon_args)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the daemon ({})", agent.display()))?;
    eprintln!(
        "started the daemon (pid {})",
        child.id().unwrap_or_default()
    );
    let serving = tokio::select! {
        r = wait_serving(&mut child, &args.socket) => r,
        _ = term.recv() => { forward(&child, Signal::SIGTERM); Err(0) }
        _ = int.recv() => { forward(&child, Signal::SIGINT); Err(0) }
    };
    if serving.is_ok() {
        let mut params = params;
        let primary = crate::init_cmd::default_route_interface();
        params.node_ip = crate::init_cmd::egress_node_ip(&primary, !params.ipv6);
        crate::init_cmd::write_conflist(params, &args.socket, &args.cni_conf_dir)?;
    }
    loop {
        tokio::select! {
            st = child.wait() => return Ok(code_of(st?)),
            _ = term.recv() => forward(&child, Signal::SIGTERM),
            _ = int.recv() => forward(&child, Signal::SIGINT),
        }
    }
}

/// Run the command; the daemon's exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let params = validate()?;
    std::fs::create_dir_all(&args.cni_conf_dir).with_context(|| {
        format!(
            "HOST_CNI_CONFDIR_PATH={}: cannot create it",
            args.cni_conf_dir.display()
        )
    })?;
    std::fs::create_dir_all(&args.cni_bin_dir).with_context(|| {
        format!(
            "HOST_CNI_BIN_PATH={}: cannot create it",
            args.cni_bin_dir.display()
        )
    })?;
    let plugin = std::env::current_exe()?.with_file_name("aws-cni");
    let dst = crate::init_cmd::install_plugins(&plugin, &args.cni_bin_dir)?;
    eprintln!("installed {}", dst.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let code = rt.block_on(supervise(args, params))?;
    Ok(ExitCode::from(code))
}
