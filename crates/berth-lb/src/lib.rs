//! Berth's load balancer data path: it serves a
//! [`DataPlaneConfig`](berth_core::elb::dataplane::DataPlaneConfig), the
//! listeners, rules and target groups that the ELBv2 API stored.
//!
//! Start at [`DataPlane`]: [`DataPlane::apply`] converges the running
//! listeners, routing tables and health checkers on a configuration;
//! requests are handled in `proxy` (rule match, action, forward), targets
//! are picked in `snapshot`, checked in `health`, and TLS lives in `tls`.
//! The data path reads no store: whoever runs it turns the records into a
//! configuration (`DataPlaneConfig::build`) and hands every health
//! transition back through a [`HealthSink`].
//!
//! The request path shares one routing snapshot (an `ArcSwap`, replaced on
//! every apply) and touches only per-target atomics and a per-target-group
//! round-robin counter: no locks.

mod glob;
mod health;
mod listener;
mod proxy;
mod rules;
mod snapshot;
mod tls;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use async_trait::async_trait;
use berth_core::elb::dataplane::{DataPlaneConfig, HealthCheckConfig, TargetGroupConfig};
use berth_core::elb::{TargetHealthRecord, TargetHealthState};
use berth_core::Timestamp;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::health::{CheckClients, CheckSpec};
use crate::rules::CompiledRule;
use crate::snapshot::{
    ListenerTable, Snapshot, TargetState, TargetView, TgClient, TgShared, TgView,
};

/// How the data path binds.
#[derive(Debug, Clone)]
pub struct DataPlaneOptions {
    /// The address listeners bind to (default `127.0.0.1`).
    pub bind: IpAddr,
    /// Where HTTPS listeners find `{name}.crt` and `{name}.key` (PEM) for
    /// the certificate `arn:aws:acm:REGION:ACCOUNT:certificate/{name}`.
    pub certs_dir: PathBuf,
}

impl DataPlaneOptions {
    /// Loopback listeners, certificates in `certs_dir`.
    pub fn new(certs_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            certs_dir: certs_dir.into(),
        }
    }
}

impl Default for DataPlaneOptions {
    fn default() -> Self {
        Self::new("certs")
    }
}

/// Where health conclusions go (the store, in Berth).
#[async_trait]
pub trait HealthSink: Send + Sync + 'static {
    /// Called on every health transition of a target (not on every check):
    /// to `healthy` (no reason), or to `unhealthy` with ELBv2's reason code
    /// (`Target.ResponseCodeMismatch`, `Target.Timeout`,
    /// `Target.FailedHealthChecks`) and a description.
    async fn record(&self, target_group_arn: &str, ip: &str, port: u16, health: TargetHealthRecord);
}

/// How a listener's port is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerStatus {
    /// The port.
    pub port: u16,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// Whether the port is bound and accepting.
    pub bound: bool,
    /// What is wrong (bind failure, unusable certificate), if anything;
    /// retried on the next apply.
    pub error: Option<String>,
}

/// The load balancer data path. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

/// What the listeners' tasks share with the data plane.
pub(crate) struct Routing {
    /// The current routing snapshot.
    pub snapshot: ArcSwap<Snapshot>,
}

struct Inner {
    opts: DataPlaneOptions,
    sink: Arc<dyn HealthSink>,
    routing: Arc<Routing>,
    checks: CheckClients,
    state: tokio::sync::Mutex<State>,
    status: Mutex<BTreeMap<u16, ListenerStatus>>,
}

#[derive(Default)]
struct State {
    stopped: bool,
    listeners: BTreeMap<u16, RunningListener>,
    pools: HashMap<String, (PoolKey, Arc<TgShared>)>,
    targets: HashMap<TargetKey, RunningTarget>,
}

struct RunningListener {
    stop: watch::Sender<bool>,
    closed: oneshot::Receiver<()>,
    task: JoinHandle<()>,
    tls: Arc<ArcSwapOption<TlsAcceptor>>,
    tls_key: Option<tls::TlsKey>,
}

/// What a target group's connection pool depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PoolKey {
    https: bool,
    http2: bool,
    connect_timeout: Duration,
}

/// (target group ARN, ip, port).
type TargetKey = (String, String, u16);

struct RunningTarget {
    registered: Timestamp,
    state: Arc<TargetState>,
    checker: Option<(CheckSpecKey, JoinHandle<()>)>,
}

/// What a running health checker depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckSpecKey {
    config: HealthCheckConfig,
    http2: bool,
}

/// How long idle connections to targets are kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest connect to a target before the client gets 504.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Now, as the store records instants.
pub(crate) fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
}

impl DataPlane {
    /// A data plane serving nothing yet; [`DataPlane::apply`] gives it
    /// listeners.
    pub fn new(opts: DataPlaneOptions, sink: Arc<dyn HealthSink>) -> Self {
        Self {
            inner: Arc::new(Inner {
                opts,
                sink,
                routing: Arc::new(Routing {
                    snapshot: ArcSwap::from_pointee(Snapshot::default()),
                }),
                checks: CheckClients::new(),
                state: tokio::sync::Mutex::new(State::default()),
                status: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Converges listeners, rules, target groups and health checkers on
    /// `config`. Idempotent: unchanged listeners keep their sockets and
    /// connections, unchanged targets keep their health, in-flight count
    /// and checker. A port that fails to bind (or an HTTPS listener without
    /// a usable certificate) is reported in [`DataPlane::status`] and
    /// retried on the next apply. Removed listeners stop accepting and let
    /// their in-flight requests finish; removed targets finish theirs too.
    pub async fn apply(&self, config: DataPlaneConfig) {
        let inner = &self.inner;
        let mut st = inner.state.lock().await;
        if st.stopped {
            return;
        }

        // Target groups: pools, targets (with their long-lived state) and
        // health checkers.
        let mut tgs: HashMap<&str, Arc<TgView>> = HashMap::new();
        let mut pools = HashMap::new();
        let mut targets = HashMap::new();
        for tg in config.target_groups.values() {
            let view = self.target_group(&mut st, &mut pools, &mut targets, tg);
            tgs.insert(tg.arn.as_str(), Arc::new(view));
        }
        // Targets no longer configured: stop their checkers. Their state
        // lives on in in-flight requests until those finish.
        for (_, t) in st.targets.drain() {
            if let Some((_, h)) = t.checker {
                h.abort();
            }
        }
        st.targets = targets;
        st.pools = pools;

        // Listener tables.
        let mut snapshot = Snapshot::default();
        for (port, l) in &config.listeners {
            let https = l.protocol.eq_ignore_ascii_case("HTTPS");
            let idle = Duration::from_millis(l.idle_timeout_ms.max(1));
            let rules = l
                .rules
                .iter()
                .map(|r| {
                    CompiledRule::compile(&r.conditions, &r.actions, &|arn| tgs.get(arn).cloned())
                })
                .collect();
            snapshot.listeners.insert(
                *port,
                Arc::new(ListenerTable {
                    port: *port,
                    https,
                    protocol: if https { "HTTPS" } else { "HTTP" },
                    proto_value: HeaderValue::from_static(if https { "https" } else { "http" }),
                    port_value: HeaderValue::from(*port),
                    idle,
                    builder: Arc::new(conn_builder(idle, l.http2)),
                    rules,
                }),
            );
        }
        inner.routing.snapshot.store(Arc::new(snapshot));

        // Sockets.
        let mut status = BTreeMap::new();
        let gone: Vec<u16> = st
            .listeners
            .keys()
            .filter(|p| !config.listeners.contains_key(p))
            .copied()
            .collect();
        for port in gone {
            if let Some(l) = st.listeners.remove(&port) {
                // The socket closes now; connections finish in the
                // background.
                let _ = l.stop.send(true);
                let _ = l.closed.await;
            }
        }
        for (port, l) in &config.listeners {
            let https = l.protocol.eq_ignore_ascii_case("HTTPS");
            let mut error = None;
            // TLS first: an HTTPS listener without a usable certificate is
            // not bound (clients get a refused connection, not a reset).
            let mut acceptor = None;
            let mut tls_key = None;
            if https {
                let key = tls::TlsKey::of(&inner.opts.certs_dir, &l.certificates, l.http2);
                let running = st.listeners.get(port);
                if running.is_some_and(|r| r.tls_key.as_ref() == Some(&key)) {
                    tls_key = Some(key);
                } else {
                    match tls::server_config(&inner.opts.certs_dir, &l.certificates, l.http2) {
                        Ok(cfg) => {
                            acceptor = Some(Arc::new(TlsAcceptor::from(cfg)));
                            tls_key = Some(key);
                        }
                        Err(e) => {
                            tracing::warn!(port, error = %e, "listener certificate");
                            error = Some(e);
                        }
                    }
                }
            }
            if let Some(r) = st.listeners.get_mut(port) {
                if !https {
                    r.tls.store(None);
                    r.tls_key = None;
                } else if let Some(a) = acceptor {
                    r.tls.store(Some(a));
                    r.tls_key = tls_key;
                } else if r.tls_key.is_none() {
                    // A certificate error and nothing loaded before.
                    r.tls.store(None);
                }
                status.insert(*port, (l.protocol.clone(), true, error));
                continue;
            }
            if https && acceptor.is_none() {
                status.insert(*port, (l.protocol.clone(), false, error));
                continue;
            }
            let addr = SocketAddr::new(inner.opts.bind, *port);
            match TcpListener::bind(addr).await {
                Ok(sock) => {
                    let (stop, stop_rx) = watch::channel(false);
                    let (closed_tx, closed) = oneshot::channel();
                    let tls = Arc::new(ArcSwapOption::new(acceptor));
                    let task = tokio::spawn(listener::accept_loop(
                        sock,
                        *port,
                        inner.routing.clone(),
                        tls.clone(),
                        stop_rx,
                        closed_tx,
                    ));
                    st.listeners.insert(
                        *port,
                        RunningListener {
                            stop,
                            closed,
                            task,
                            tls,
                            tls_key,
                        },
                    );
                    status.insert(*port, (l.protocol.clone(), true, error));
                }
                Err(e) => {
                    let msg = format!(
                        "cannot listen on {addr}: {e}; free the port or give the listener another port"
                    );
                    tracing::warn!(port, error = %msg, "listener");
                    status.insert(*port, (l.protocol.clone(), false, Some(msg)));
                }
            }
        }
        *inner.status.lock().unwrap_or_else(PoisonError::into_inner) = status
            .into_iter()
            .map(|(port, (protocol, bound, error))| {
                (
                    port,
                    ListenerStatus {
                        port,
                        protocol,
                        bound,
                        error,
                    },
                )
            })
            .collect();
    }

    /// Builds one target group's view, reusing its pool and its targets'
    /// state and checkers where nothing they depend on changed.
    fn target_group(
        &self,
        st: &mut State,
        pools: &mut HashMap<String, (PoolKey, Arc<TgShared>)>,
        targets: &mut HashMap<TargetKey, RunningTarget>,
        tg: &TargetGroupConfig,
    ) -> TgView {
        let https = tg.protocol.eq_ignore_ascii_case("HTTPS");
        let http2 = tg.protocol_version.eq_ignore_ascii_case("HTTP2");
        let response_timeout = Duration::from_millis(tg.response_timeout_ms.max(1));
        let pool_key = PoolKey {
            https,
            http2,
            connect_timeout: response_timeout.min(CONNECT_TIMEOUT),
        };
        let shared = match st.pools.remove(&tg.arn) {
            Some((k, s)) if k == pool_key => s,
            _ => Arc::new(TgShared {
                client: new_client(&pool_key),
                rr: AtomicUsize::new(0),
            }),
        };
        pools.insert(tg.arn.clone(), (pool_key, shared.clone()));

        let hc = &tg.health_check;
        let mut views = Vec::with_capacity(tg.targets.len());
        for t in &tg.targets {
            let Ok(ip) = t.ip.parse::<IpAddr>() else {
                tracing::warn!(target_group = %tg.arn, ip = %t.ip, "target is not an IP address; skipped");
                continue;
            };
            let Ok(authority) = Authority::try_from(SocketAddr::new(ip, t.port).to_string()) else {
                continue;
            };
            let key: TargetKey = (tg.arn.clone(), t.ip.clone(), t.port);
            let mut running = match st.targets.remove(&key) {
                Some(r) if r.registered == t.registered => r,
                old => {
                    if let Some((_, h)) = old.and_then(|o| o.checker) {
                        h.abort();
                    }
                    RunningTarget {
                        registered: t.registered,
                        state: Arc::new(TargetState::new(authority, t.last_health)),
                        checker: None,
                    }
                }
            };
            let want = (hc.enabled && !t.draining).then(|| CheckSpecKey {
                config: hc.clone(),
                http2,
            });
            let keep = match (&running.checker, &want) {
                (Some((k, h)), Some(w)) => k == w && !h.is_finished(),
                _ => false,
            };
            if !keep {
                if let Some((_, h)) = running.checker.take() {
                    h.abort();
                }
                if let Some(w) = want {
                    // A new target is checked at once; one whose health is
                    // already known (after a restart, or new settings) at a
                    // random point of its interval, so checks spread.
                    let first_delay = if running.state.health() == TargetHealthState::Initial {
                        Duration::ZERO
                    } else {
                        Duration::from_millis(fastrand::u64(..hc.interval_ms.max(1)))
                    };
                    let spec = CheckSpec {
                        tg_arn: tg.arn.as_str().into(),
                        ip: t.ip.as_str().into(),
                        port: t.port,
                        registered: t.registered,
                        config: hc.clone(),
                        http2,
                    };
                    let h = tokio::spawn(health::run(
                        self.inner.checks.clone(),
                        spec,
                        running.state.clone(),
                        self.inner.sink.clone(),
                        first_delay,
                    ));
                    running.checker = Some((w, h));
                }
            }
            views.push(TargetView {
                state: running.state.clone(),
                draining: t.draining,
            });
            targets.insert(key, running);
        }
        TgView {
            shared,
            algorithm: tg.algorithm,
            health_checked: hc.enabled,
            response_timeout,
            scheme: if https { Scheme::HTTPS } else { Scheme::HTTP },
            version: if http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            targets: views,
        }
    }

    /// Every configured listener's port: bound, or what went wrong.
    pub fn status(&self) -> Vec<ListenerStatus> {
        self.inner
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Stops accepting on every listener, lets in-flight requests finish
    /// (at most 30 s), and stops the health checks. Later applies do
    /// nothing.
    pub async fn shutdown(&self) {
        let mut st = self.inner.state.lock().await;
        st.stopped = true;
        for (_, t) in st.targets.drain() {
            if let Some((_, h)) = t.checker {
                h.abort();
            }
        }
        let listeners = std::mem::take(&mut st.listeners);
        for l in listeners.values() {
            let _ = l.stop.send(true);
        }
        for (_, l) in listeners {
            let _ = l.task.await;
        }
        for s in self
            .inner
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values_mut()
        {
            s.bound = false;
        }
    }
}

/// The connection builder of a listener: HTTP/1.1 (the header read timeout
/// is the idle timeout) and, when offered, HTTP/2 (prior knowledge on
/// plain listeners, ALPN on TLS ones).
fn conn_builder(idle: Duration, http2: bool) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .keep_alive(true);
    b.http2().timer(TokioTimer::new());
    if http2 {
        b
    } else {
        b.http1_only()
    }
}

/// A target group's client: a keep-alive pool per target, HTTP/1.1 or
/// HTTP/2 (prior knowledge, or ALPN over TLS).
fn new_client(k: &PoolKey) -> TgClient {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .set_host(false)
        .http2_only(k.http2);
    if k.https {
        TgClient::Https(b.build(tls::https_connector(k.http2, Some(k.connect_timeout))))
    } else {
        TgClient::Http(b.build(tls::http_connector(Some(k.connect_timeout))))
    }
}
