//! Start-up and serving: load the instance and its ENIs from the cloud, restore the checkpoint,
//! top the pool up once, then run the pool loop, the HTTP endpoints and the gRPC server on the
//! unix socket until shutdown; on shutdown stop taking requests and flush the checkpoint.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vpc_cni_cloud::{Cloud, CloudError};
use vpc_cni_ipam::{Datastore, Policy, PoolLimits};
use vpc_cni_limits::{CniVersion, LimitsError, LimitsTable, MaxPodsOptions, max_pods};
use vpc_cni_proto::rpc::cni_backend_server::CniBackendServer;
use vpc_cni_proto::rpc::config_server_backend_server::ConfigServerBackendServer;
use vpc_cni_proto::vpccni::pod_addresses_server::PodAddressesServer;
use vpc_cni_proto::vpccni::pod_gc_server::PodGcServer;

use crate::checkpoint::{CheckpointError, CheckpointFile, restore};
use crate::config::DaemonConfig;
use crate::host::{HostOwners, NetlinkHost, NoHost};
use crate::metrics::Metrics;
use crate::rpc::Service;
use crate::state::{Node, Shared};
use crate::{http, pool};

/// Why the daemon could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// IMDS or EC2 failed.
    #[error("cloud: {0}")]
    Cloud(#[from] CloudError),
    /// The instance type is unknown.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// The checkpoint cannot be used.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A socket or listener failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The node's links, rules or iptables could not be set up.
    #[error("host network: {0}")]
    HostNetwork(#[from] vpc_cni_dataplane::DataplaneError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The node cannot run the configured mode.
    #[error("{0}")]
    Config(String),
}

/// How long in-flight gRPC calls may run after SIGTERM.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Bind the gRPC unix socket: a missing parent directory is created 0755 (an existing one is
/// never touched: it may be a shared directory such as /tmp), a stale socket removed, the
/// socket mode 0660.
pub fn bind_socket(path: &Path) -> Result<tokio::net::UnixListener, DaemonError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o755)
            .create(dir)
            .map_err(io(format!("creating {}", dir.display())))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("removing stale socket {}", path.display()))(e)),
    }
    let listener =
        tokio::net::UnixListener::bind(path).map_err(io(format!("binding {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io(format!("chmod {}", path.display())))?;
    Ok(listener)
}

/// Build the shared state: instance facts, limits, ENIs, restored checkpoint.
pub async fn init<C: Cloud>(
    cfg: DaemonConfig,
    cloud: C,
    table: &LimitsTable,
) -> Result<Arc<Shared<C>>, DaemonError> {
    let host: Box<dyn HostOwners> = if cfg.host_network {
        Box::new(NetlinkHost::connect()?)
    } else {
        Box::new(NoHost)
    };
    init_with_host(cfg, cloud, table, host).await
}

/// [`init`] with the host's routing table behind `host` (tests pass a fake).
pub async fn init_with_host<C: Cloud>(
    cfg: DaemonConfig,
    cloud: C,
    table: &LimitsTable,
    host: Box<dyn HostOwners>,
) -> Result<Arc<Shared<C>>, DaemonError> {
    let meta = cloud.instance().await?;
    let owned;
    let t = match table.get(&meta.instance_type) {
        Ok(t) => t,
        // Upstream asks EC2 for types missing from its built-in table.
        Err(e) => match cloud.instance_type(&meta.instance_type).await? {
            Some(found) => {
                tracing::info!(instance_type = %found.name, "limits from DescribeInstanceTypes");
                owned = found;
                &owned
            }
            None => return Err(e.into()),
        },
    };
    let max = cfg.max_pods.unwrap_or_else(|| {
        let opts = MaxPodsOptions {
            cni_version: CniVersion {
                major: 1,
                minor: 19,
            },
            custom_networking: cfg.settings.custom_networking,
            prefix_delegation: cfg.settings.prefix_delegation,
            max_eni: cfg.settings.max_eni,
        };
        let mp = max_pods(t, &opts);
        if cfg.settings.prefix_delegation {
            mp.recommended
        } else {
            mp.max_allowed
        }
    });
    let limits = PoolLimits::new(&t.limits, &cfg.settings, max);
    if cfg.settings.prefix_delegation && !limits.prefix_delegation {
        tracing::warn!(instance_type = %t.name, "prefix delegation needs a Nitro instance; using secondary IPs");
    }
    let ds = Datastore::new(limits.prefix_delegation, cfg.settings.ip_cooldown);
    let policy = Policy::new(cfg.settings.clone(), limits);
    let shared = Arc::new(Shared {
        node: Mutex::new(Node { ds, policy }),
        checkpoint: CheckpointFile::new(cfg.checkpoint.clone()),
        metrics: Metrics::default(),
        cfg,
        meta,
        cloud,
        terminating: AtomicBool::new(false),
        released: Mutex::new(Vec::new()),
        unmanaged: Mutex::new(Default::default()),
        host,
        unrouted: Mutex::new(Default::default()),
        kube: Default::default(),
        trunks: Default::default(),
        custom: Default::default(),
        refill: tokio::sync::Notify::new(),
    });
    shared
        .kube
        .eni_limit
        .store(t.limits.eni_limit, std::sync::atomic::Ordering::Relaxed);
    *shared.kube.max_pods_source.lock().unwrap() = if shared.cfg.max_pods.is_some() {
        "--max-pods"
    } else {
        "instance table"
    };
    let attached = shared.cloud.interfaces().await?;
    let interfaces = crate::reconcile::classify(&shared, &attached).await?;
    if shared.cfg.ipv6 {
        crate::v6::require_node_address(&shared)?;
    }
    if shared.cfg.host_network {
        crate::hostnet::setup_node(&shared, &interfaces).await?;
    }
    pool::load_interfaces(&shared, &interfaces);
    if shared.cfg.ipv6 {
        crate::v6::setup(&shared, &interfaces).await?;
    } else {
        crate::reconcile::mark_excluded(&shared).await;
    }
    let stale = shared.checkpoint.clean_temp_files();
    if stale > 0 {
        tracing::warn!(
            files = stale,
            "removed temporary checkpoint files of interrupted writes"
        );
    }
    let data = shared.checkpoint.read()?;
    if !data.allocations.is_empty()
        && let Some(bak) = shared.checkpoint.backup()?
    {
        tracing::info!(backup = %bak.display(), entries = data.allocations.len(), "checkpoint backed up before it is rewritten");
    }
    let r = {
        let mut node = shared.lock();
        restore(&mut node.ds, &data, shared.checkpoint.path())?
    };
    let on_no_eni = r.dropped.len();
    let gone = crate::owners::reclaim_at_start(&shared, r.dropped).await;
    tracing::info!(
        restored = r.restored,
        kept_for_live_pods = on_no_eni - gone,
        dropped = gone,
        "checkpoint restored"
    );
    {
        let node = shared.lock();
        shared.checkpoint.write(&node.ds)?;
        shared.update_gauges(&node);
    }
    shared.metrics.set(
        "awscni_build_info",
        &[("version", &shared.cfg.version), ("goversion", "rust")],
        1.0,
    );
    Ok(shared)
}

/// Serve until `shutdown` resolves, then flush and return.
pub async fn serve<C: Cloud>(
    shared: Arc<Shared<C>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    crate::kube::start_worker(&shared);
    // One synchronous top-up before serving, as upstream's nodeInit does.
    pool::cycle(&shared).await;
    let pool_task = tokio::spawn(pool::run(shared.clone()));
    let mut http_tasks = Vec::new();
    let listeners = [
        (
            "metrics",
            shared.cfg.metrics.clone(),
            http::metrics_router(shared.clone()),
        ),
        (
            "introspection",
            shared.cfg.introspection.clone(),
            http::introspection_router(shared.clone()),
        ),
    ];
    for (what, addr, router) in listeners {
        let Some(addr) = addr else { continue };
        http_tasks.push(serve_http(what, &addr, router).await?);
    }
    let listener = bind_socket(&shared.cfg.socket)?
        .into_std()
        .map_err(io("socket"))?;
    tracing::info!(socket = %shared.cfg.socket.display(), "serving gRPC");
    let taint_task = tokio::spawn(crate::kube::startup_taint_task(shared.clone()));
    // The plugin's socket is served by its own thread on a single-threaded runtime: a request
    // never waits for a worker busy with the pool loop or an HTTP client, and never hops
    // between threads (each hop is a wake-up: measured ~0.1 ms of a plugin's ADD).
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let grpc_shared = shared.clone();
    let grpc = std::thread::Builder::new()
        .name("grpc".into())
        .spawn(move || serve_grpc(grpc_shared, listener, stop_rx))
        .map_err(io("starting the gRPC thread"))?;
    shutdown.await;
    shared.terminating.store(true, Ordering::SeqCst);
    tracing::info!("shutting down: no new requests");
    let _ = stop_tx.send(());
    // In-flight calls get a bounded grace (upstream's pod has 10 s); a client that holds the
    // socket open without speaking does not keep the daemon alive.
    let joined = tokio::time::timeout(
        SHUTDOWN_GRACE,
        tokio::task::spawn_blocking(move || grpc.join()),
    )
    .await;
    let result = match joined {
        Ok(Ok(Ok(r))) => r,
        Ok(_) => Err(DaemonError::Io {
            what: "gRPC thread".into(),
            source: std::io::Error::other("panicked"),
        }),
        Err(_) => {
            tracing::warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "connections still open after the grace period; exiting without them"
            );
            Ok(())
        }
    };
    pool_task.abort();
    taint_task.abort();
    for t in http_tasks {
        t.abort();
    }
    {
        let node = shared.lock();
        shared.checkpoint.write(&node.ds)?;
    }
    let _ = std::fs::remove_file(&shared.cfg.socket);
    tracing::info!("checkpoint flushed; exiting");
    result
}

/// One HTTP listener (TCP, or a unix socket replacing a stale one) serving `router` within
/// the bounds of [`crate::listen`].
async fn serve_http(
    what: &'static str,
    addr: &crate::config::BindAddr,
    router: axum::Router,
) -> Result<tokio::task::JoinHandle<()>, DaemonError> {
    use crate::listen::HttpListener;
    let bind_err = io(format!("binding {what} on {addr}"));
    let listener = match addr {
        crate::config::BindAddr::Tcp(a) => {
            HttpListener::Tcp(tokio::net::TcpListener::bind(a).await.map_err(bind_err)?)
        }
        crate::config::BindAddr::Unix(p) => {
            let _ = std::fs::remove_file(p);
            HttpListener::Unix(tokio::net::UnixListener::bind(p).map_err(bind_err)?)
        }
    };
    Ok(tokio::spawn(crate::listen::serve_http(
        what, listener, router,
    )))
}

/// The socket's connections, accepted with back-off (never an error: tonic would retry at once).
fn incoming(
    listener: tokio::net::UnixListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::UnixStream>> {
    futures::stream::unfold(listener, |l| async move {
        let (s, _) = crate::listen::accept_with_backoff("grpc", || l.accept()).await;
        Some((Ok(s), l))
    })
}

/// The gRPC services on `listener` until `stop` fires, on this thread's own runtime.
fn serve_grpc<C: Cloud>(
    shared: Arc<Shared<C>>,
    listener: std::os::unix::net::UnixListener,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), DaemonError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io("gRPC runtime"))?;
    rt.block_on(async move {
        let listener = tokio::net::UnixListener::from_std(listener).map_err(io("socket"))?;
        let (reporter, health) = tonic_health::server::health_reporter();
        for name in ["", "grpc.health.v1.aws-node"] {
            reporter
                .set_service_status(name, tonic_health::ServingStatus::Serving)
                .await;
        }
        tonic::transport::Server::builder()
            .add_service(CniBackendServer::new(Service::new(shared.clone())))
            .add_service(ConfigServerBackendServer::new(Service::new(shared.clone())))
            .add_service(PodAddressesServer::new(Service::new(shared.clone())))
            .add_service(PodGcServer::new(Service::new(shared.clone())))
            .add_service(health)
            .serve_with_incoming_shutdown(incoming(listener), async move {
                let _ = stop.await;
            })
            .await?;
        Ok(())
    })
}
