//! Health checks: one task per checked target, the ELBv2 state machine, and
//! the [`crate::HealthSink`] told of every transition.

use std::sync::Arc;
use std::time::Duration;

use berth_core::elb::dataplane::HealthCheckConfig;
use berth_core::elb::{TargetHealthRecord, TargetHealthState};
use bytes::Bytes;
use http::uri::{Authority, Scheme, Uri};
use http::{header, HeaderValue, Request, Version};
use http_body_util::Empty;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::snapshot::TargetState;
use crate::{now, tls, HealthSink};

/// Success codes of a matcher: `200`, `200,202`, `200-299`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matcher(Vec<(u16, u16)>);

impl Matcher {
    /// Parses a matcher; an unreadable one is `200` (the API validates).
    pub fn parse(s: &str) -> Self {
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let r = match part.split_once('-') {
                Some((a, b)) => a.trim().parse().ok().zip(b.trim().parse().ok()),
                None => part.parse().ok().map(|c| (c, c)),
            };
            match r {
                Some(r) => ranges.push(r),
                None => {
                    tracing::warn!(matcher = %s, "health check matcher: {part:?} is not a code or a range; using 200");
                    return Self(vec![(200, 200)]);
                }
            }
        }
        if ranges.is_empty() {
            ranges.push((200, 200));
        }
        Self(ranges)
    }

    /// Whether `code` is a success.
    pub fn ok(&self, code: u16) -> bool {
        self.0.iter().any(|&(a, b)| a <= code && code <= b)
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Passed.
    Success,
    /// Failed, with ELBv2's reason code and a description.
    Failure {
        /// `Target.ResponseCodeMismatch`, `Target.Timeout` or
        /// `Target.FailedHealthChecks`.
        reason: &'static str,
        /// For people.
        description: String,
    },
}

/// The per-target state machine: initial → healthy after
/// `healthy_threshold` consecutive successes; initial or healthy →
/// unhealthy after `unhealthy_threshold` consecutive failures; unhealthy →
/// healthy after `healthy_threshold` successes.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    state: TargetHealthState,
    successes: u32,
    failures: u32,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl Tracker {
    /// Starts at `state` (initial, healthy or unhealthy).
    pub fn new(state: TargetHealthState, healthy_threshold: u32, unhealthy_threshold: u32) -> Self {
        Self {
            state,
            successes: 0,
            failures: 0,
            healthy_threshold: healthy_threshold.max(1),
            unhealthy_threshold: unhealthy_threshold.max(1),
        }
    }

    /// Takes one check's result; the new state on a transition.
    pub fn observe(&mut self, success: bool) -> Option<TargetHealthState> {
        if success {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.state != TargetHealthState::Healthy && self.successes >= self.healthy_threshold
            {
                self.state = TargetHealthState::Healthy;
                return Some(self.state);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.state != TargetHealthState::Unhealthy
                && self.failures >= self.unhealthy_threshold
            {
                self.state = TargetHealthState::Unhealthy;
                return Some(self.state);
            }
        }
        None
    }
}

/// The health checkers' HTTP clients: a new connection per check (no
/// pool), HTTP/1.1 or HTTP/2, plain or TLS without verification.
#[derive(Clone)]
pub(crate) struct CheckClients {
    http1: Client<HttpConnector, Empty<Bytes>>,
    http2: Client<HttpConnector, Empty<Bytes>>,
    https1: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    https2: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl CheckClients {
    /// Builds the four clients (no connection is made yet).
    pub fn new() -> Self {
        let builder = |h2: bool| {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_max_idle_per_host(0)
                .timer(TokioTimer::new())
                .http2_only(h2);
            b
        };
        Self {
            http1: builder(false).build(tls::http_connector(None)),
            http2: builder(true).build(tls::http_connector(None)),
            https1: builder(false).build(tls::https_connector(false, None)),
            https2: builder(true).build(tls::https_connector(true, None)),
        }
    }
}

/// What a checker needs to know besides the target.
#[derive(Clone)]
pub(crate) struct CheckSpec {
    /// The target group's ARN (for the sink).
    pub tg_arn: Arc<str>,
    /// The target's IP and traffic port (for the sink).
    pub ip: Arc<str>,
    /// The traffic port.
    pub port: u16,
    /// The registration checked (its `registered` instant).
    pub registered: berth_core::Timestamp,
    /// The settings.
    pub config: HealthCheckConfig,
    /// HTTP/2 to the target.
    pub http2: bool,
}

/// Runs one check.
async fn check(
    clients: &CheckClients,
    spec: &CheckSpec,
    authority: &Authority,
    m: &Matcher,
) -> Outcome {
    let https = spec.config.protocol.eq_ignore_ascii_case("HTTPS");
    let uri = Uri::builder()
        .scheme(if https { Scheme::HTTPS } else { Scheme::HTTP })
        .authority(authority.clone())
        .path_and_query(spec.config.path.as_str())
        .build();
    let uri = match uri {
        Ok(u) => u,
        Err(_) => {
            return Outcome::Failure {
                reason: "Target.FailedHealthChecks",
                description: format!(
                    "health check path {:?} is not a valid path",
                    spec.config.path
                ),
            }
        }
    };
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = uri;
    *req.version_mut() = if spec.http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    req.headers_mut().insert(
        header::USER_AGENT,
        HeaderValue::from_static("ELB-HealthChecker/2.0"),
    );
    let fut = async {
        match (https, spec.http2) {
            (false, false) => clients.http1.request(req).await,
            (false, true) => clients.http2.request(req).await,
            (true, false) => clients.https1.request(req).await,
            (true, true) => clients.https2.request(req).await,
        }
    };
    match tokio::time::timeout(Duration::from_millis(spec.config.timeout_ms.max(1)), fut).await {
        Err(_) => Outcome::Failure {
            reason: "Target.Timeout",
            description: "Request timed out".into(),
        },
        Ok(Err(e)) => {
            tracing::debug!(target = %authority, error = %e, "health check failed");
            Outcome::Failure {
                reason: "Target.FailedHealthChecks",
                description: "Health checks failed".into(),
            }
        }
        Ok(Ok(resp)) => {
            let code = resp.status().as_u16();
            if m.ok(code) {
                Outcome::Success
            } else {
                Outcome::Failure {
                    reason: "Target.ResponseCodeMismatch",
                    description: format!("Health checks failed with these codes: [{code}]"),
                }
            }
        }
    }
}

/// Checks one target forever (until aborted): the first check after
/// `first_delay`, then one every interval; each transition goes to the
/// target's state (routing) and to the sink.
pub(crate) async fn run(
    clients: CheckClients,
    spec: CheckSpec,
    target: Arc<TargetState>,
    sink: Arc<dyn HealthSink>,
    first_delay: Duration,
) {
    let matcher = Matcher::parse(&spec.config.matcher);
    let authority = match spec.config.port {
        Some(p) if p != spec.port => {
            let host = target.authority.host();
            match Authority::try_from(format!("{host}:{p}")) {
                Ok(a) => a,
                Err(_) => target.authority.clone(),
            }
        }
        _ => target.authority.clone(),
    };
    let mut tracker = Tracker::new(
        target.health(),
        spec.config.healthy_threshold,
        spec.config.unhealthy_threshold,
    );
    let interval = Duration::from_millis(spec.config.interval_ms.max(1));
    tokio::time::sleep(first_delay).await;
    loop {
        let started = Instant::now();
        let outcome = check(&clients, &spec, &authority, &matcher).await;
        let success = outcome == Outcome::Success;
        if let Some(state) = tracker.observe(success) {
            target.set_health(state);
            let (reason, description) = match outcome {
                Outcome::Success => (None, None),
                Outcome::Failure {
                    reason,
                    description,
                } => (Some(reason.to_string()), Some(description)),
            };
            tracing::info!(
                target_group = %spec.tg_arn, target = %target.authority,
                state = state.as_str(), reason = reason.as_deref().unwrap_or(""),
                "target health changed"
            );
            sink.record(
                &spec.tg_arn,
                &spec.ip,
                spec.port,
                TargetHealthRecord {
                    state,
                    reason,
                    description,
                    since: now(),
                    registered: Some(spec.registered),
                },
            )
            .await;
        }
        tokio::time::sleep_until(started + interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TargetHealthState::*;

    #[test]
    fn matchers() {
        let m = Matcher::parse("200");
        assert!(m.ok(200) && !m.ok(204));
        let m = Matcher::parse("200,202");
        assert!(m.ok(202) && !m.ok(201));
        let m = Matcher::parse("200-299");
        assert!(m.ok(200) && m.ok(299) && !m.ok(300) && !m.ok(199));
        assert_eq!(Matcher::parse("junk"), Matcher(vec![(200, 200)]));
        assert_eq!(Matcher::parse(""), Matcher(vec![(200, 200)]));
    }

    #[test]
    fn initial_becomes_healthy_after_the_threshold() {
        let mut t = Tracker::new(Initial, 3, 2);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(Healthy));
        assert_eq!(t.observe(true), None);
    }

    #[test]
    fn a_failure_resets_the_success_count() {
        let mut t = Tracker::new(Initial, 2, 3);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(Healthy));
    }

    #[test]
    fn failures_make_initial_and_healthy_targets_unhealthy() {
        let mut t = Tracker::new(Initial, 2, 2);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(Unhealthy));
        assert_eq!(t.observe(false), None);
        let mut t = Tracker::new(Healthy, 2, 3);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(Unhealthy));
    }

    #[test]
    fn unhealthy_recovers_after_the_healthy_threshold() {
        let mut t = Tracker::new(Unhealthy, 2, 2);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(Healthy));
    }
}
