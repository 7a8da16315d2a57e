//! `berth server` and `berth up`.
//!
//! `server` runs the control plane: the API, the registry, the service
//! reconciler loop (`berth_control::controller`) and the load balancers'
//! data path (`berth_lb`, fed by [`crate::cmd::lbplane`]). `up` runs everything one
//! machine needs in one process; today that is the control plane and the
//! agent, which talks to the server over the same network protocol a remote
//! one would use.

use std::sync::Arc;

use anyhow::Context;
use berth_api::{router, ApiState, KeyRing, RandomIds, TokenAuthority};
use berth_control::controller::ServiceController;
use berth_control::logs::FileLogSink;
use berth_control::Caller;
use berth_control::{Ecr, Ecs, Elb};
use berth_oci::blobstore::BlobStore;
use berth_registry::{Registry, RegistryAuth};
use berth_store::{EmbeddedStore, Store};

use crate::cmd::agent::AgentOpts;
use crate::datadir::{DataDir, DEFAULT_LISTEN};
use crate::Common;

/// Which processes to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The control plane only.
    Server,
    /// Everything for one machine.
    AllInOne,
}

/// Logs to stderr, filtered by `BERTH_LOG` (default info).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Runs until SIGINT or SIGTERM.
pub fn run(c: &Common, role: Role) -> anyhow::Result<()> {
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(c, role, None))
}

/// `berth up`: the server and, unless disabled, an agent beside it.
pub fn run_up(c: &Common, agent: Option<&AgentOpts>) -> anyhow::Result<()> {
    init_logging();
    if let Some(o) = agent {
        crate::cmd::agent::check_prerequisites(o)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(c, Role::AllInOne, agent.cloned()))
}

async fn serve(c: &Common, role: Role, agent: Option<AgentOpts>) -> anyhow::Result<()> {
    let dd = DataDir::open_or_create(&c.data_dir, c.region.as_deref())?;
    let state_path = dd.state_path();
    let store = EmbeddedStore::open(&state_path).with_context(|| {
        format!(
            "opening the state store {} (is another berth using data dir {}?)",
            state_path.display(),
            c.data_dir.display()
        )
    })?;
    let store: Arc<dyn Store> = Arc::new(store);
    let ecs = Ecs::new(store.clone(), dd.scope())
        .with_task_network(&c.task_network)
        .map_err(|e| anyhow::anyhow!("--task-network: {e}"))?;
    ecs.ensure_default_cluster()
        .await
        .context("creating the default cluster")?;
    let ecr = Ecr::new(store.clone(), dd.scope());
    let blobs = BlobStore::open(&dd.registry_dir()).with_context(|| {
        format!(
            "opening the registry's blob store in {}",
            dd.registry_dir().display()
        )
    })?;

    let logs = FileLogSink::new(dd.logs_dir())
        .with_context(|| format!("opening the task log directory {}", dd.logs_dir().display()))?;

    let addr = match c.listen {
        Some(a) => a,
        None => DEFAULT_LISTEN.parse().context("default listen address")?,
    };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("binding the API to {addr} (set --listen or BERTH_LISTEN to another address)")
    })?;
    let bound = listener.local_addr()?;
    let url = format!("http://{bound}");
    let elb = elb_for(c, &dd, store.clone(), bound.port())?;

    let keys = KeyRing::new([dd.admin_key()?]);
    let tokens = TokenAuthority::new(dd.token_key()?);
    let registry = Arc::new(Registry {
        ecr: ecr.clone(),
        blobs,
        auth: Arc::new(BasicAuth {
            keys: keys.clone(),
            tokens: tokens.clone(),
        }),
    });
    let ids: Arc<dyn berth_control::IdSource> = Arc::new(RandomIds);
    // The cluster manager: one service reconciler loop per server process
    // (with several replicas on etcd, only the elected leader will run it).
    let controller = ServiceController::new(ecs.clone(), ids.clone(), Arc::new(wall_clock));
    let state = Arc::new(ApiState {
        ecs,
        ecr,
        elb: elb.clone(),
        keys,
        tokens,
        registry_host: bound.to_string(),
        ids,
        logs: Arc::new(logs),
    });
    dd.write_endpoint(&url)?;
    tracing::info!(
        endpoint = %url,
        data_dir = %c.data_dir.display(),
        account = %dd.config.account,
        region = %dd.config.region,
        role = ?role,
        "berth is serving the ECS API; run `eval \"$(berth env --data-dir {})\"` to point the AWS CLI at it",
        c.data_dir.display()
    );
    // Abandoned upload sessions (a push that never finished) are expired.
    let janitor_registry = registry.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match berth_registry::handlers::expire_uploads(
                &janitor_registry,
                std::time::Duration::from_secs(24 * 3600),
            )
            .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "expired abandoned registry uploads"),
                Err(e) => tracing::warn!(error = %e, "expiring registry uploads failed"),
            }
        }
    });
    let app = router(state).merge(berth_registry::router(registry));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(controller.run(stopped(stop_rx.clone())));
    tokio::spawn(expire_drained_targets(
        elb.clone(),
        stopped(stop_rx.clone()),
    ));
    // The load balancers' data path: listeners on --lb-bind.
    let plane = berth_lb::DataPlane::new(
        berth_lb::DataPlaneOptions {
            bind: c.lb_bind,
            certs_dir: dd.certs_dir(),
        },
        Arc::new(crate::cmd::lbplane::StoreHealthSink::new(store.clone())),
    );
    dd.write_lb_host(&c.lb_bind.to_string())?;
    let lb = tokio::spawn(crate::cmd::lbplane::run(
        elb,
        plane,
        stopped(stop_rx.clone()),
    ));
    let api = axum::serve(listener, app).with_graceful_shutdown(stopped(stop_rx.clone()));
    match agent {
        None => api.await.context("serving the API")?,
        Some(opts) => {
            // The agent talks to this server over HTTP, like a remote one.
            let agent = crate::cmd::agent::serve(&dd, url.clone(), &opts, stopped(stop_rx.clone()));
            let (a, b) = tokio::join!(async { api.await.context("serving the API") }, agent);
            a?;
            b.context("the agent failed")?;
        }
    }
    // In-flight load balancer requests finish (bounded) before exiting.
    let _ = lb.await;
    tracing::info!("berth stopped");
    Ok(())
}

/// The load balancers' control plane, as the server configures it: targets
/// may be in the task network and the `--lb-target-networks`; certificates
/// are read from `DATA_DIR/certs`; the API's own port is not for listeners.
fn elb_for(c: &Common, dd: &DataDir, store: Arc<dyn Store>, api_port: u16) -> anyhow::Result<Elb> {
    let mut networks = vec![c.task_network.clone()];
    networks.extend(c.lb_target_networks.iter().cloned());
    let elb = Elb::new(store, dd.scope())
        .with_target_networks(&networks)
        .map_err(|e| anyhow::anyhow!("--task-network / --lb-target-networks: {e}"))?
        .with_certs_dir(dd.certs_dir())
        .with_reserved_port(api_port, "the Berth API server");
    Ok(elb)
}

/// Deletes deregistered targets once their drain ends (every second).
async fn expire_drained_targets(elb: Elb, stop: impl std::future::Future<Output = ()>) {
    let run = async {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            match elb.expire_drained(wall_clock()).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(targets = n, "removed drained load balancer targets"),
                Err(e) => tracing::warn!(error = %e, "removing drained targets failed"),
            }
        }
    };
    tokio::select! {
        () = run => {}
        () = stop => {}
    }
}

/// The wall clock, in milliseconds since the epoch (the one place the
/// control plane's time comes from).
pub(crate) fn wall_clock() -> berth_core::Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    berth_core::Timestamp(ms)
}

/// The registry's credential check: HTTP Basic with user `AWS` and an ECR
/// token, or with an access key id and its secret.
struct BasicAuth {
    keys: KeyRing,
    tokens: TokenAuthority,
}

impl RegistryAuth for BasicAuth {
    fn authenticate(&self, authorization: Option<&str>, now_secs: i64) -> Result<Caller, String> {
        use base64::Engine;
        const HOW: &str = "log in with: aws ecr get-login-password | skopeo login --username AWS --password-stdin $BERTH_REGISTRY";
        let Some(h) = authorization else {
            return Err(format!("authentication required; {HOW}"));
        };
        let Some(b64) = h
            .strip_prefix("Basic ")
            .or_else(|| h.strip_prefix("basic "))
        else {
            return Err(format!("only HTTP Basic credentials are accepted; {HOW}"));
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| format!("the Basic credentials are not base64; {HOW}"))?;
        let raw = String::from_utf8(raw)
            .map_err(|_| format!("the Basic credentials are not UTF-8; {HOW}"))?;
        let (user, pass) = raw
            .split_once(':')
            .ok_or_else(|| format!("the Basic credentials lack a password; {HOW}"))?;
        if user == "AWS" {
            self.tokens
                .verify(pass, now_secs)
                .map_err(|e| e.to_string())
        } else {
            self.keys
                .check_secret(user, pass)
                .ok_or_else(|| format!("unknown access key or wrong secret; {HOW}"))
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
