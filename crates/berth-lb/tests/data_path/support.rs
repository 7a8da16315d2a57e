//! Test support: loopback backends (hyper, HTTP/1.1 and h2c), an in-memory
//! health sink, config builders, a client, and waiting on conditions.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_core::elb::dataplane::{
    DataPlaneConfig, HealthCheckConfig, ListenerConfig, RuleConfig, TargetConfig, TargetGroupConfig,
};
use berth_core::elb::{
    Action, ActionKind, Algorithm, Condition, TargetHealthRecord, TargetHealthState,
    WeightedTargetGroup,
};
use berth_core::Timestamp;
use berth_lb::{DataPlane, DataPlaneOptions, HealthSink};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// What a backend saw of a request (health checks left out).
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
}

/// A loopback HTTP backend. Paths:
/// - `/health`: the status in `health` (after `health_delay_ms`);
/// - `/hold...`: waits until the test calls `release`;
/// - `/sleep/{ms}`: answers after that long;
/// - anything else: 200, body = the backend's name.
pub struct Backend {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub conns: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub health: Arc<AtomicU16>,
    pub health_delay_ms: Arc<AtomicU64>,
    pub holding: Arc<AtomicUsize>,
    /// Health checks answered.
    pub checks: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Backend {
    pub async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = Self {
            name,
            addr: listener.local_addr().unwrap(),
            conns: Arc::default(),
            seen: Arc::default(),
            health: Arc::new(AtomicU16::new(200)),
            health_delay_ms: Arc::default(),
            holding: Arc::default(),
            checks: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        };
        let checks = b.checks.clone();
        let (conns, seen, health, delay, holding, gate) = (
            b.conns.clone(),
            b.seen.clone(),
            b.health.clone(),
            b.health_delay_ms.clone(),
            b.holding.clone(),
            b.gate.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let checks = checks.clone();
                let (seen, health, delay, holding, gate) = (
                    seen.clone(),
                    health.clone(),
                    delay.clone(),
                    holding.clone(),
                    gate.clone(),
                );
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let checks = checks.clone();
                        let (seen, health, delay, holding, gate) = (
                            seen.clone(),
                            health.clone(),
                            delay.clone(),
                            holding.clone(),
                            gate.clone(),
                        );
                        async move {
                            let path = req.uri().path().to_string();
                            let checker = req
                                .headers()
                                .get("user-agent")
                                .is_some_and(|v| v.as_bytes().starts_with(b"ELB-HealthChecker"));
                            if path == "/health" || checker {
                                checks.fetch_add(1, Ordering::SeqCst);
                                let d = delay.load(Ordering::SeqCst);
                                if d > 0 {
                                    tokio::time::sleep(Duration::from_millis(d)).await;
                                }
                                let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
                                *r.status_mut() =
                                    StatusCode::from_u16(health.load(Ordering::SeqCst)).unwrap();
                                return Ok::<_, Infallible>(r);
                            }
                            if let Some(proto) = req.headers().get("upgrade").cloned() {
                                // Echo whatever comes after the switch.
                                let mut req = req;
                                let up = hyper::upgrade::on(&mut req);
                                tokio::spawn(async move {
                                    let mut io = TokioIo::new(up.await.unwrap());
                                    let mut buf = [0u8; 1024];
                                    while let Ok(n) = io.read(&mut buf).await {
                                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                            break;
                                        }
                                    }
                                });
                                let mut r = Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                                r.headers_mut()
                                    .insert("connection", "upgrade".parse().unwrap());
                                r.headers_mut().insert("upgrade", proto);
                                return Ok(r);
                            }
                            seen.lock().unwrap().push(Seen {
                                path: path.clone(),
                                version: req.version(),
                                headers: req.headers().clone(),
                            });
                            if path.starts_with("/hold") {
                                holding.fetch_add(1, Ordering::SeqCst);
                                gate.acquire().await.unwrap().forget();
                                holding.fetch_sub(1, Ordering::SeqCst);
                            } else if let Some(ms) = path.strip_prefix("/sleep/") {
                                let ms: u64 = ms.parse().unwrap();
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            let mut r = Response::new(Full::new(Bytes::from(name)));
                            r.headers_mut().insert("x-backend", name.parse().unwrap());
                            Ok(r)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        b
    }

    /// Lets `n` held requests answer.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last_seen(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }

    pub fn target(&self, health: Option<TargetHealthState>) -> TargetConfig {
        TargetConfig {
            ip: self.addr.ip().to_string(),
            port: self.addr.port(),
            draining: false,
            registered: Timestamp(1_000),
            last_health: health,
        }
    }
}

/// A backend that answers every request with bytes that are not HTTP.
pub async fn garbage_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"this is not http\r\n\r\n").await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A backend that accepts and reads but never answers.
pub async fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A loopback port nothing listens on (connections are refused).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    closed_port().port()
}

pub fn addr_target(addr: SocketAddr, health: Option<TargetHealthState>) -> TargetConfig {
    TargetConfig {
        ip: addr.ip().to_string(),
        port: addr.port(),
        draining: false,
        registered: Timestamp(1_000),
        last_health: health,
    }
}

/// One health transition the sink heard of.
#[derive(Debug, Clone)]
pub struct Event {
    pub tg: String,
    pub ip: String,
    pub port: u16,
    pub record: TargetHealthRecord,
}

#[derive(Default)]
pub struct MemSink {
    pub events: Mutex<Vec<Event>>,
}

#[async_trait]
impl HealthSink for MemSink {
    async fn record(&self, tg: &str, ip: &str, port: u16, record: TargetHealthRecord) {
        self.events.lock().unwrap().push(Event {
            tg: tg.into(),
            ip: ip.into(),
            port,
            record,
        });
    }
}

impl MemSink {
    /// The transitions of the target on `port`.
    pub fn of(&self, port: u16) -> Vec<TargetHealthRecord> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.port == port)
            .map(|e| e.record.clone())
            .collect()
    }

    pub fn states(&self, port: u16) -> Vec<TargetHealthState> {
        self.of(port).into_iter().map(|r| r.state).collect()
    }
}

pub fn plane(sink: &Arc<MemSink>) -> DataPlane {
    plane_with_certs(sink, std::env::temp_dir())
}

pub fn plane_with_certs(sink: &Arc<MemSink>, certs: std::path::PathBuf) -> DataPlane {
    DataPlane::new(DataPlaneOptions::new(certs), sink.clone())
}

/// Waits until `cond` holds, polling; panics with `what` after 10 s.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Health checks that stay out of the way: targets start from their
/// stored health and are not checked again during a test.
pub fn quiet_hc() -> HealthCheckConfig {
    HealthCheckConfig {
        enabled: true,
        protocol: "HTTP".into(),
        port: None,
        path: "/health".into(),
        interval_ms: 3_600_000,
        timeout_ms: 5_000,
        healthy_threshold: 2,
        unhealthy_threshold: 2,
        matcher: "200".into(),
    }
}

/// Health checks every 20 ms (a generous timeout: a loaded CI machine
/// must not fail checks by accident).
pub fn fast_hc() -> HealthCheckConfig {
    HealthCheckConfig {
        interval_ms: 20,
        timeout_ms: 2_000,
        ..quiet_hc()
    }
}

/// No health checks: every non-draining target gets requests.
pub fn no_hc() -> HealthCheckConfig {
    HealthCheckConfig {
        enabled: false,
        ..quiet_hc()
    }
}

pub fn tg_arn(name: &str) -> String {
    format!(
        "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/{name}/0123456789abcdef"
    )
}

pub fn tg(name: &str, hc: HealthCheckConfig, targets: Vec<TargetConfig>) -> TargetGroupConfig {
    TargetGroupConfig {
        arn: tg_arn(name),
        name: name.into(),
        protocol: "HTTP".into(),
        protocol_version: "HTTP1".into(),
        algorithm: Algorithm::RoundRobin,
        health_check: hc,
        response_timeout_ms: 10_000,
        targets,
    }
}

pub fn forward(names: &[(&str, u32)]) -> Action {
    Action {
        order: None,
        kind: ActionKind::Forward {
            target_groups: names
                .iter()
                .map(|(n, w)| WeightedTargetGroup {
                    target_group_arn: tg_arn(n),
                    weight: *w,
                })
                .collect(),
            forward_config: names.len() > 1,
            stickiness_seconds: None,
        },
    }
}

pub fn fixed(code: u16, body: &str) -> Action {
    Action {
        order: None,
        kind: ActionKind::FixedResponse {
            status_code: code,
            content_type: Some("text/plain".into()),
            message_body: Some(body.into()),
        },
    }
}

pub fn rule(priority: u32, conditions: Vec<Condition>, action: Action) -> RuleConfig {
    RuleConfig {
        priority: Some(priority),
        conditions,
        actions: vec![action],
    }
}

pub fn listener(port: u16, mut rules: Vec<RuleConfig>, default: Action) -> ListenerConfig {
    rules.push(RuleConfig {
        priority: None,
        conditions: vec![],
        actions: vec![default],
    });
    ListenerConfig {
        arn: format!("arn:aws:elasticloadbalancing:us-east-1:000000000000:listener/app/web/0123456789abcdef/{port:016x}"),
        lb_name: "web".into(),
        port,
        protocol: "HTTP".into(),
        certificates: vec![],
        idle_timeout_ms: 60_000,
        http2: true,
        rules,
    }
}

pub fn config(listeners: Vec<ListenerConfig>, tgs: Vec<TargetGroupConfig>) -> DataPlaneConfig {
    DataPlaneConfig {
        listeners: listeners.into_iter().map(|l| (l.port, l)).collect(),
        target_groups: tgs
            .into_iter()
            .map(|t| (t.arn.clone(), t))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub async fn send(c: &TestClient, req: Request<Full<Bytes>>) -> Resp {
    let resp = c.request(req).await.expect("the load balancer answers");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(c: &TestClient, port: u16, path: &str) -> Resp {
    send(
        c,
        Request::get(format!("http://127.0.0.1:{port}{path}"))
            .body(Full::default())
            .unwrap(),
    )
    .await
}

/// Applies and waits until every listener is bound.
pub async fn apply(p: &DataPlane, cfg: DataPlaneConfig) {
    p.apply(cfg).await;
    for s in p.status() {
        assert!(s.bound, "listener {} not bound: {:?}", s.port, s.error);
    }
}
