//! `vpc-cni daemon`: run ipamd.

use std::path::PathBuf;

use anyhow::Context;
use ipnet::Ipv4Net;
use vpc_cni_cloud::SimCloud;
use vpc_cni_ipamd::DaemonConfig;

use crate::common::DataArgs;

/// Which cloud backend the daemon talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CloudKind {
    /// An in-process simulated VPC with one instance of --instance-type (no AWS account).
    Sim,
    /// The real EC2 API and IMDSv2 through the AWS SDK (instance facts from IMDS; endpoints from
    /// AWS_ENDPOINT_URL_EC2 and AWS_EC2_METADATA_SERVICE_ENDPOINT, e.g. `vpc-cni emulate`).
    Aws,
}

/// Runs ipamd, the node IPAM daemon: the upstream gRPC contract (rpc.CNIBackend) on a unix
/// socket, the checkpoint, the warm-pool loop, metrics on :61678 and introspection on
/// 127.0.0.1:61679. Settings come from the upstream env vars (WARM_ENI_TARGET, WARM_IP_TARGET,
/// MINIMUM_IP_TARGET, WARM_PREFIX_TARGET, MAX_ENI, ENABLE_PREFIX_DELEGATION, …); a bad value stops
/// the daemon with an error naming it. Logs are JSON lines to AWS_VPC_K8S_CNI_LOG_FILE (or
/// stdout) at AWS_VPC_K8S_CNI_LOGLEVEL. SIGTERM stops taking requests, flushes the checkpoint and
/// exits 0.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cloud backend.
    #[arg(long, value_enum, default_value = "sim")]
    cloud: CloudKind,
    /// Instance type of the simulated node (--cloud sim).
    #[arg(long, default_value = "m5.large")]
    instance_type: String,
    /// Subnet CIDR of the simulated VPC (--cloud sim).
    #[arg(long, default_value = "10.0.0.0/20")]
    subnet: Ipv4Net,
    /// IPv6 block of the simulated VPC (a /56, e.g. 2600:1f14:abc:de00::/56; --cloud sim): the
    /// subnet becomes dual-stack (its first /64) and the node gets an IPv6 address, as
    /// `ENABLE_IPv6=true` needs.
    #[arg(long, value_name = "CIDR")]
    subnet_ipv6: Option<ipnet::Ipv6Net>,
    /// Seed of the simulated VPC (--cloud sim).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the simulated VPC is kept so it survives daemon restarts, as a real node's EC2 does
    /// (--cloud sim) [default: sim-vpc.json beside the checkpoint].
    #[arg(long, value_name = "PATH")]
    sim_state: Option<PathBuf>,
    /// Build a new simulated VPC at every start and keep nothing (--cloud sim). Pods a previous
    /// run wired keep their addresses: the daemon holds the ones the host still routes.
    #[arg(long, conflicts_with = "sim_state")]
    sim_ephemeral: bool,
    /// Scale of the simulated EC2 latencies actually waited (1 = realistic, 0 = none).
    #[arg(long, default_value_t = 1.0)]
    sim_latency_scale: f64,
    /// gRPC unix socket [env VPC_CNI_IPAMD_SOCKET; default /var/run/aws-node/ipamd.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Checkpoint file [env AWS_VPC_K8S_CNI_BACKING_STORE; default /var/run/aws-node/ipam.json].
    #[arg(long, value_name = "PATH")]
    checkpoint: Option<PathBuf>,
    /// Metrics listener [env VPC_CNI_METRICS_BIND_ADDRESS; default 0.0.0.0:61678].
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Introspection listener: HOST:PORT, localhost:PORT, :PORT or unix:/path [env
    /// INTROSPECTION_BIND_ADDRESS; default 127.0.0.1:61679].
    #[arg(long, value_name = "ADDR")]
    introspection_addr: Option<String>,
    /// Node pod capacity (default: from the instance table).
    #[arg(long)]
    max_pods: Option<u32>,
    /// Configure the node's networking as upstream ipamd does: each ENI's link, route table and
    /// rules, the fwmark and external-service rules, and the SNAT/connmark iptables rules. With
    /// --cloud sim it first creates links (dummy, or an empty bridge where the kernel has no
    /// dummy driver) with the simulated ENIs' MACs, puts the node IP on eth0 and enables
    /// forwarding: run it inside a network namespace (`ip netns exec node vpc-cni daemon
    /// --host-network`), never on your own machine's namespace.
    #[arg(long)]
    host_network: bool,
    /// Pool-loop period in milliseconds (upstream: 5000); the last one given wins.
    #[arg(long, default_value_t = 5000, hide = true, overrides_with = "cycle_ms")]
    cycle_ms: u64,
    /// Period of the reconciliation with IMDS in milliseconds (upstream: 60000).
    #[arg(long, default_value_t = 60_000, hide = true)]
    reconcile_ms: u64,
    /// Period of the security-group refresh in milliseconds (upstream: 30000).
    #[arg(long, default_value_t = 30_000, hide = true)]
    sg_refresh_ms: u64,
    /// With --host-network: release an assignment whose pod has had no host route for this
    /// long (a DEL that never reached the daemon), in milliseconds (checked at every
    /// reconciliation).
    #[arg(long, default_value_t = 300_000, hide = true)]
    stale_grace_ms: u64,
    /// Kubernetes: this kubeconfig (else KUBECONFIG, else the in-cluster service account; none
    /// of them: no Kubernetes, max pods from the instance table). MY_NODE_NAME names the Node;
    /// CLUSTER_ENDPOINT replaces the server; ANNOTATE_POD_IP, VPC_CNI_STARTUP_TAINT apply.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// How long to wait for an optional API server before starting without it (upstream 30 s).
    #[arg(long, default_value_t = 30_000, hide = true)]
    k8s_wait_ms: u64,
    #[command(flatten)]
    data: DataArgs,
}

/// Log to `AWS_VPC_K8S_CNI_LOG_FILE`, else `default_file`. HTTP/2 and gRPC transport internals
/// stay at INFO whatever the level: at DEBUG they were five lines of frames per request.
fn init_logging(default_file: &str) -> anyhow::Result<()> {
    let raw = std::env::var("AWS_VPC_K8S_CNI_LOGLEVEL").unwrap_or_else(|_| "DEBUG".into());
    let level = raw.to_lowercase();
    if !matches!(
        level.as_str(),
        "trace" | "debug" | "info" | "warn" | "error"
    ) {
        anyhow::bail!(
            "invalid AWS_VPC_K8S_CNI_LOGLEVEL={raw:?}: expected DEBUG, INFO, WARN or ERROR (any case)"
        );
    }
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{level},h2=info,hyper=info,hyper_util=info,tonic=info,tower=info"
    ))
    .with_context(|| {
        format!("invalid AWS_VPC_K8S_CNI_LOGLEVEL={raw:?}: expected DEBUG, INFO, WARN or ERROR")
    })?;
    let dest =
        std::env::var("AWS_VPC_K8S_CNI_LOG_FILE").unwrap_or_else(|_| default_file.to_string());
    let builder = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false);
    match dest.as_str() {
        "stdout" => builder.with_writer(std::io::stdout).init(),
        "stderr" => builder.with_writer(std::io::stderr).init(),
        path => {
            let p = PathBuf::from(path);
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!(
                        "AWS_VPC_K8S_CNI_LOG_FILE={path}: cannot create {}",
                        dir.display()
                    )
                })?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .with_context(|| format!("AWS_VPC_K8S_CNI_LOG_FILE={path}: cannot open"))?;
            builder.with_writer(std::sync::Mutex::new(f)).init();
        }
    }
    Ok(())
}

/// `name` in the directory of `file`.
fn beside(file: &std::path::Path, name: &str) -> PathBuf {
    file.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from(name), |d| d.join(name))
}

/// How long after start the executable's start-up pages are let go (start-up, with its EC2,
/// IMDS and Kubernetes calls, is over well before; a node's first pods have been placed).
const STARTUP_PAGES_KEPT: std::time::Duration = std::time::Duration::from_secs(30);

/// Run the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    // First, before most of the binary has run: read-ahead off for the executable's pages, and
    // the start-up code's pages let go once start-up is over (`VPC_CNI_EXE_READAHEAD=on` keeps
    // the kernel's defaults, for comparison).
    if std::env::var("VPC_CNI_EXE_READAHEAD").as_deref() != Ok("on") {
        crate::resident::random_access_executable();
        std::thread::spawn(|| {
            std::thread::sleep(STARTUP_PAGES_KEPT);
            crate::resident::page_out_executable();
        });
    }
    let mut cfg = DaemonConfig::from_lookup(|k| std::env::var(k).ok())?;
    if let Some(p) = args.socket {
        cfg.socket = p;
    }
    if let Some(p) = args.checkpoint {
        cfg.checkpoint = p;
    }
    if let Some(a) = &args.metrics_addr {
        cfg.metrics = Some(vpc_cni_ipamd::config::parse_bind("--metrics-addr", a)?);
    }
    if let Some(a) = &args.introspection_addr {
        cfg.introspection = Some(vpc_cni_ipamd::config::parse_bind(
            "--introspection-addr",
            a,
        )?);
    }
    cfg.max_pods = args.max_pods;
    cfg.host_network = args.host_network;
    cfg.sim_links = args.cloud == CloudKind::Sim;
    cfg.cycle = std::time::Duration::from_millis(args.cycle_ms.max(1));
    cfg.reconcile = std::time::Duration::from_millis(args.reconcile_ms.max(1));
    cfg.sg_refresh = std::time::Duration::from_millis(args.sg_refresh_ms.max(1));
    cfg.stale_grace = std::time::Duration::from_millis(args.stale_grace_ms);
    // With the simulated VPC the node is the user's own (a namespace on a laptop): the log goes
    // beside the socket rather than under /host/var/log.
    let default_log = if args.cloud == CloudKind::Sim {
        beside(&cfg.socket, "ipamd.log").display().to_string()
    } else {
        "/host/var/log/aws-routed-eni/ipamd.log".to_string()
    };
    init_logging(&default_log)?;
    let table = args.data.table()?;
    let ks = crate::daemon_kube::settings(cfg.max_pods.is_some())?;
    let kube = KubeArgs {
        kubeconfig: args.kubeconfig.clone(),
        wait: std::time::Duration::from_millis(args.k8s_wait_ms),
        settings: ks,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.cloud == CloudKind::Aws {
        #[cfg(not(feature = "aws"))]
        anyhow::bail!(
            "--cloud aws: this vpc-cni was built without the `aws` feature (cargo build --release -p vpc-cni)"
        );
        #[cfg(feature = "aws")]
        return run_aws(rt, cfg, table, kube);
    }
    let instance = table.get(&args.instance_type)?.clone();
    let state = match (args.sim_ephemeral, args.sim_state) {
        (true, _) => None,
        (false, Some(p)) => Some(p),
        (false, None) => Some(beside(&cfg.checkpoint, "sim-vpc.json")),
    };
    if let Some(p) = &state {
        tracing::info!(path = %p.display(), "simulated VPC state (--sim-state; --sim-ephemeral keeps none)");
    }
    let r = rt.block_on(async move {
        let cloud = SimCloud::launch_dual_stack(
            &instance,
            args.subnet,
            args.subnet_ipv6,
            args.seed,
            args.sim_latency_scale,
            state.as_deref(),
        )?
        .with_subnet_discovery(cfg.settings.subnet_discovery);
        let plan = kube.connect(&cfg.version).await?;
        let shared = vpc_cni_ipamd::init(cfg, cloud, &table).await?;
        crate::daemon_kube::install(&shared, plan, kube.settings);
        vpc_cni_ipamd::serve(shared, shutdown_signal()).await?;
        Ok(())
    });
    // A gRPC connection kept open past the shutdown grace must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    r
}

/// The Kubernetes part of the arguments.
struct KubeArgs {
    kubeconfig: Option<PathBuf>,
    wait: std::time::Duration,
    settings: vpc_cni_ipamd::kube::KubeSettings,
}

impl KubeArgs {
    async fn connect(&self, version: &str) -> anyhow::Result<crate::daemon_kube::Plan> {
        crate::daemon_kube::connect(self.kubeconfig.clone(), &self.settings, version, self.wait)
            .await
    }
}

/// `--cloud aws`: the daemon over EC2 and IMDS, with the hourly leak sweep.
#[cfg(feature = "aws")]
fn run_aws(
    rt: tokio::runtime::Runtime,
    cfg: DaemonConfig,
    table: vpc_cni_limits::LimitsTable,
    kube: KubeArgs,
) -> anyhow::Result<()> {
    let opts = aws_options(&cfg)?;
    let r = rt.block_on(async move {
            let cloud = vpc_cni_aws::AwsCloud::connect(opts)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))
                .context("connecting to EC2 and IMDS (AWS_ENDPOINT_URL_EC2 / AWS_EC2_METADATA_SERVICE_ENDPOINT move them)")?;
            if !cfg.disable_leaked_eni_cleanup {
                tokio::spawn(leak_sweep_loop(cloud.clone()));
            }
            let plan = kube.connect(&cfg.version).await?;
            let shared = vpc_cni_ipamd::init(cfg, cloud, &table).await?;
            crate::daemon_kube::install(&shared, plan, kube.settings);
            vpc_cni_ipamd::serve(shared, shutdown_signal()).await?;
            Ok(())
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    r
}

#[cfg(feature = "aws")]
/// Upstream's `cleanUpLeakedENIs`: a random 0–299 s pause, a sweep, then one every hour.
async fn leak_sweep_loop(cloud: vpc_cni_aws::AwsCloud) {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 300);
    tokio::time::sleep(std::time::Duration::from_secs(u64::from(jitter))).await;
    let imds = vpc_cni_aws::Imds::new();
    loop {
        let vpc = match imds.required("mac").await {
            Ok(mac) => {
                imds.required(&format!("network/interfaces/macs/{mac}/vpc-id"))
                    .await
            }
            Err(e) => Err(e),
        };
        match vpc {
            Ok(vpc) => match cloud.sweep_leaked(&vpc, true).await {
                Ok(r) => {
                    tracing::info!(deleted = ?r.deleted, tagged = ?r.tagged, young = r.young.len(), "leaked-ENI sweep")
                }
                Err(e) => {
                    tracing::warn!(code = %e.code, error = %e.message, "leaked-ENI sweep failed")
                }
            },
            Err(e) => tracing::warn!(error = %e.message, "leaked-ENI sweep: no VPC ID from IMDS"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}

#[cfg(feature = "aws")]
/// `CLUSTER_NAME`, `ADDITIONAL_ENI_TAGS` (a JSON object of strings; keys containing
/// `k8s.amazonaws.com` are dropped as upstream does), `ENABLE_SUBNET_DISCOVERY`,
/// `MANAGE_UNTAGGED_ENI`.
fn aws_options(cfg: &DaemonConfig) -> anyhow::Result<vpc_cni_aws::AwsOptions> {
    let mut additional_tags: std::collections::BTreeMap<String, String> =
        match std::env::var("ADDITIONAL_ENI_TAGS") {
            Ok(v) if !v.trim().is_empty() => serde_json::from_str(&v).with_context(|| {
                format!("invalid ADDITIONAL_ENI_TAGS={v:?}: expected a JSON object of strings, e.g. {{\"team\":\"net\"}}")
            })?,
            _ => Default::default(),
        };
    additional_tags.retain(|k, _| {
        let keep = !k.contains("k8s.amazonaws.com");
        if !keep {
            tracing::warn!(key = %k, "ADDITIONAL_ENI_TAGS: keys containing k8s.amazonaws.com are reserved; dropped");
        }
        keep
    });
    // One parser for every variable (Go's ParseBool spellings, strict): the same values the
    // pool and the sweep see.
    Ok(vpc_cni_aws::AwsOptions {
        cluster_name: cfg.cluster_name.clone(),
        additional_tags,
        max_attempts: 10,
        subnet_discovery: cfg.settings.subnet_discovery,
        manage_untagged: cfg.manage_untagged_eni,
    })
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
