//! The routing snapshot every request reads: listener tables (compiled
//! rules) and target group views. A new snapshot is built on every apply and
//! swapped in atomically; what lives longer than one snapshot (a target's
//! health and in-flight count, a target group's connection pool and
//! round-robin counter) is shared through `Arc`s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_core::elb::{Algorithm, TargetHealthState};
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;

use crate::rules::CompiledRule;

/// Everything a request needs, immutable.
#[derive(Default)]
pub(crate) struct Snapshot {
    /// Listener tables by port.
    pub listeners: HashMap<u16, Arc<ListenerTable>>,
}

/// One listener as requests see it.
pub(crate) struct ListenerTable {
    /// The port.
    pub port: u16,
    /// Whether connections are TLS.
    pub https: bool,
    /// `HTTP` or `HTTPS`, for redirects.
    pub protocol: &'static str,
    /// `X-Forwarded-Proto`.
    pub proto_value: HeaderValue,
    /// `X-Forwarded-Port`.
    pub port_value: HeaderValue,
    /// Client idle timeout.
    pub idle: Duration,
    /// The connection builder (HTTP/1.1, plus HTTP/2 when offered).
    pub builder: Arc<auto::Builder<TokioExecutor>>,
    /// Rules in evaluation order, the default last.
    pub rules: Vec<CompiledRule>,
}

/// A target group's client to its targets.
#[derive(Clone)]
pub(crate) enum TgClient {
    /// Plain HTTP.
    Http(Client<HttpConnector, Incoming>),
    /// HTTPS (the target's certificate is not verified, as ALB).
    Https(Client<HttpsConnector<HttpConnector>, Incoming>),
}

/// What outlives a snapshot for a target group: its pool and its
/// round-robin position.
pub(crate) struct TgShared {
    /// The client (keep-alive pool).
    pub client: TgClient,
    /// Round-robin position.
    pub rr: AtomicUsize,
}

/// A target group as requests see it.
pub(crate) struct TgView {
    /// Pool and counter.
    pub shared: Arc<TgShared>,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Whether health decides routing (health checks enabled).
    pub health_checked: bool,
    /// Response timeout (to the response head).
    pub response_timeout: Duration,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// HTTP/1.1 or HTTP/2 to the targets.
    pub version: Version,
    /// Targets, draining ones included.
    pub targets: Vec<TargetView>,
}

/// A target in one snapshot.
pub(crate) struct TargetView {
    /// The long-lived state.
    pub state: Arc<TargetState>,
    /// Deregistered: gets no new requests.
    pub draining: bool,
}

/// A target's long-lived state: the same `Arc` across applies while the
/// target stays registered.
pub(crate) struct TargetState {
    /// `ip:port` (`[ip]:port` for IPv6).
    pub authority: Authority,
    health: AtomicU8,
    outstanding: AtomicUsize,
}

const INITIAL: u8 = 0;
const HEALTHY: u8 = 1;
const UNHEALTHY: u8 = 2;

impl TargetState {
    /// A target starting from `health` (`initial` when unknown).
    pub fn new(authority: Authority, health: Option<TargetHealthState>) -> Self {
        let s = Self {
            authority,
            health: AtomicU8::new(INITIAL),
            outstanding: AtomicUsize::new(0),
        };
        if let Some(h) = health {
            s.set_health(h);
        }
        s
    }

    /// The current health (initial, healthy or unhealthy).
    pub fn health(&self) -> TargetHealthState {
        match self.health.load(Ordering::Relaxed) {
            HEALTHY => TargetHealthState::Healthy,
            UNHEALTHY => TargetHealthState::Unhealthy,
            _ => TargetHealthState::Initial,
        }
    }

    /// Records a health conclusion.
    pub fn set_health(&self, h: TargetHealthState) {
        let v = match h {
            TargetHealthState::Healthy => HEALTHY,
            TargetHealthState::Unhealthy => UNHEALTHY,
            _ => INITIAL,
        };
        self.health.store(v, Ordering::Relaxed);
    }

    /// Requests in flight to this target.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }
}

/// Counts one request in flight to a target until dropped.
pub(crate) struct Outstanding(Arc<TargetState>);

impl Outstanding {
    /// Starts counting.
    pub fn new(t: Arc<TargetState>) -> Self {
        t.outstanding.fetch_add(1, Ordering::Relaxed);
        Self(t)
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TgView {
    fn routable(&self, t: &TargetView) -> bool {
        !t.draining && (!self.health_checked || t.state.health() == TargetHealthState::Healthy)
    }

    /// Picks a target for a request: only healthy (or, without health
    /// checks, any) non-draining ones; `None` when there is none.
    pub fn pick(&self) -> Option<&Arc<TargetState>> {
        let n = self.targets.len();
        match self.algorithm {
            Algorithm::RoundRobin => {
                let count = self.targets.iter().filter(|t| self.routable(t)).count();
                if count == 0 {
                    return None;
                }
                let k = self.shared.rr.fetch_add(1, Ordering::Relaxed) % count;
                self.targets
                    .iter()
                    .filter(|t| self.routable(t))
                    .nth(k)
                    // A health flip between the two passes: take any.
                    .or_else(|| self.targets.iter().find(|t| self.routable(t)))
                    .map(|t| &t.state)
            }
            Algorithm::LeastOutstandingRequests => {
                if n == 0 {
                    return None;
                }
                // Start at a rotating position so that ties spread.
                let start = self.shared.rr.fetch_add(1, Ordering::Relaxed) % n;
                let mut best: Option<(&Arc<TargetState>, usize)> = None;
                for i in 0..n {
                    let t = &self.targets[(start + i) % n];
                    if !self.routable(t) {
                        continue;
                    }
                    let o = t.state.outstanding();
                    if best.is_none_or(|(_, b)| o < b) {
                        best = Some((&t.state, o));
                    }
                }
                best.map(|(t, _)| t)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(algorithm: Algorithm, targets: &[(&str, Option<TargetHealthState>, bool)]) -> TgView {
        TgView {
            shared: Arc::new(TgShared {
                client: TgClient::Http(
                    Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
                ),
                rr: AtomicUsize::new(0),
            }),
            algorithm,
            health_checked: true,
            response_timeout: Duration::from_secs(1),
            scheme: Scheme::HTTP,
            version: Version::HTTP_11,
            targets: targets
                .iter()
                .map(|(a, h, d)| TargetView {
                    state: Arc::new(TargetState::new(a.parse().unwrap(), *h)),
                    draining: *d,
                })
                .collect(),
        }
    }

    const H: Option<TargetHealthState> = Some(TargetHealthState::Healthy);

    #[test]
    fn round_robin_visits_only_routable_targets_in_turn() {
        let v = view(
            Algorithm::RoundRobin,
            &[
                ("10.0.0.1:80", H, false),
                ("10.0.0.2:80", None, false),
                ("10.0.0.3:80", H, true),
                ("10.0.0.4:80", Some(TargetHealthState::Unhealthy), false),
                ("10.0.0.5:80", H, false),
            ],
        );
        let picks: Vec<String> = (0..4)
            .map(|_| v.pick().unwrap().authority.to_string())
            .collect();
        assert_eq!(
            picks,
            vec!["10.0.0.1:80", "10.0.0.5:80", "10.0.0.1:80", "10.0.0.5:80"]
        );
    }

    #[test]
    fn nothing_routable_is_none() {
        let v = view(
            Algorithm::RoundRobin,
            &[("10.0.0.1:80", None, false), ("10.0.0.2:80", H, true)],
        );
        assert!(v.pick().is_none());
        let v = view(Algorithm::LeastOutstandingRequests, &[]);
        assert!(v.pick().is_none());
    }

    #[test]
    fn without_health_checks_every_non_draining_target_serves() {
        let mut v = view(
            Algorithm::RoundRobin,
            &[("10.0.0.1:80", None, false), ("10.0.0.2:80", None, true)],
        );
        v.health_checked = false;
        assert_eq!(v.pick().unwrap().authority.as_str(), "10.0.0.1:80");
    }

    #[test]
    fn least_outstanding_prefers_the_idle_target() {
        let v = view(
            Algorithm::LeastOutstandingRequests,
            &[("10.0.0.1:80", H, false), ("10.0.0.2:80", H, false)],
        );
        let busy = Outstanding::new(v.targets[0].state.clone());
        for _ in 0..5 {
            assert_eq!(v.pick().unwrap().authority.as_str(), "10.0.0.2:80");
        }
        drop(busy);
        assert_eq!(v.targets[0].state.outstanding(), 0);
    }
}
