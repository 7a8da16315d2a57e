//! Load balancers (ELBv2 "application" load balancers) as Berth stores them.
//!
//! This module is the contract between three parts that never call each
//! other directly:
//!
//! - the **ELBv2 API** (`berth-control::elb` + `berth-api::elbv2`) writes the
//!   records below into the store under the keys of `berth-control::keys`
//!   (`/elb/...`);
//! - the **data path** (`berth-lb`) reads them, turned into a
//!   [`dataplane::DataPlaneConfig`], serves the listeners, runs the health
//!   checks and writes a [`TargetHealthRecord`] on every health transition;
//! - the **service controller** (`berth-control::ecs`) registers a service's
//!   task IPs as [`TargetRecord`]s, reads [`effective_health`] to decide
//!   when a task counts as healthy, and drains targets before stopping tasks.
//!
//! Records keep the *normalized* meaning of what the user sent (e.g. a
//! legacy `Field`/`Values` condition and a `PathPatternConfig` condition are
//! the same [`Condition::PathPattern`]); the API renders the ELBv2 shapes
//! back from them.

pub mod dataplane;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The ELBv2 XML namespace (Query protocol responses).
pub const XML_NAMESPACE: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// LB attribute: idle timeout of client connections, seconds (default 60).
pub const ATTR_IDLE_TIMEOUT: &str = "idle_timeout.timeout_seconds";
/// LB attribute: whether HTTP/2 is offered to clients (default "true").
pub const ATTR_HTTP2_ENABLED: &str = "routing.http2.enabled";
/// TG attribute: deregistration delay, seconds (default 300, 0–3600).
pub const ATTR_DEREGISTRATION_DELAY: &str = "deregistration_delay.timeout_seconds";
/// TG attribute: `round_robin` (default) or `least_outstanding_requests`.
pub const ATTR_ALGORITHM: &str = "load_balancing.algorithm.type";
/// TG attribute: slow start seconds (accepted, 0 = off).
pub const ATTR_SLOW_START: &str = "slow_start.duration_seconds";
/// TG attribute: whether lb_cookie stickiness is on (accepted, "false").
pub const ATTR_STICKINESS: &str = "stickiness.enabled";

/// Berth's own TG attribute: how long the data path waits for a target's
/// response before answering 504, seconds (default: the LB idle timeout).
pub const ATTR_BERTH_RESPONSE_TIMEOUT: &str = "berth.response_timeout_seconds";

/// A load balancer: `/elb/lbs/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerRecord {
    /// `arn:aws:elasticloadbalancing:R:A:loadbalancer/app/{name}/{id}`.
    pub arn: String,
    /// 1–32 alphanumerics and hyphens; not starting with `internal-`.
    pub name: String,
    /// 16 lowercase hex digits.
    pub id: String,
    /// `{name}-{id}.{region}.elb.localhost`: resolves to loopback in
    /// browsers and curl, where the listeners are.
    pub dns_name: String,
    /// `internet-facing` (default) or `internal`.
    pub scheme: String,
    /// Always `application`.
    pub lb_type: String,
    /// `ipv4`.
    pub ip_address_type: String,
    /// Subnets and security groups as given (recorded, not enforced).
    pub subnets: Vec<String>,
    /// Security groups as given.
    pub security_groups: Vec<String>,
    /// Attributes that were set (unset ones take their defaults).
    pub attributes: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// When it was created.
    pub created: Timestamp,
}

/// A health check's settings (ELBv2 defaults for HTTP target groups in
/// [`HealthCheck::default`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Whether targets are checked (always true for `ip` target groups).
    pub enabled: bool,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// `traffic-port` or a port number.
    pub port: String,
    /// The path requested, starting with `/`.
    pub path: String,
    /// Seconds between checks of one target, 5–300 (default 30).
    pub interval_seconds: u32,
    /// Seconds before a check fails, 2–120 (default 5), below the interval.
    pub timeout_seconds: u32,
    /// Consecutive successes to become healthy, 2–10 (default 5).
    pub healthy_threshold: u32,
    /// Consecutive failures to become unhealthy, 2–10 (default 2).
    pub unhealthy_threshold: u32,
    /// Success codes: `200`, `200,202`, `200-299` (default `200`).
    pub matcher: String,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            enabled: true,
            protocol: "HTTP".into(),
            port: "traffic-port".into(),
            path: "/".into(),
            interval_seconds: 30,
            timeout_seconds: 5,
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            matcher: "200".into(),
        }
    }
}

/// A target group: `/elb/tgs/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupRecord {
    /// `arn:aws:elasticloadbalancing:R:A:targetgroup/{name}/{id}`.
    pub arn: String,
    /// 1–32 alphanumerics and hyphens.
    pub name: String,
    /// 16 lowercase hex digits.
    pub id: String,
    /// `HTTP` or `HTTPS` (to the targets).
    pub protocol: String,
    /// `HTTP1` (default) or `HTTP2`.
    pub protocol_version: String,
    /// The default port of targets registered without one.
    pub port: u16,
    /// As given (recorded).
    pub vpc_id: Option<String>,
    /// `ip` (Fargate's only kind; others are refused).
    pub target_type: String,
    /// The health check.
    pub health_check: HealthCheck,
    /// Attributes that were set (unset ones take their defaults).
    pub attributes: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// When it was created.
    pub created: Timestamp,
}

impl TargetGroupRecord {
    /// The deregistration delay in seconds (default 300).
    pub fn deregistration_delay_secs(&self) -> u32 {
        self.attributes
            .get(ATTR_DEREGISTRATION_DELAY)
            .and_then(|v| v.parse().ok())
            .unwrap_or(300)
    }

    /// The load balancing algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self.attributes.get(ATTR_ALGORITHM).map(String::as_str) {
            Some("least_outstanding_requests") => Algorithm::LeastOutstandingRequests,
            _ => Algorithm::RoundRobin,
        }
    }
}

/// How a target group picks a target for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// In turn.
    RoundRobin,
    /// The target with the fewest requests in flight.
    LeastOutstandingRequests,
}

/// A listener: `/elb/listeners/{lbName}/{listenerId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerRecord {
    /// `arn:...:listener/app/{lbName}/{lbId}/{listenerId}`.
    pub arn: String,
    /// 16 lowercase hex digits.
    pub id: String,
    /// The load balancer's ARN.
    pub load_balancer_arn: String,
    /// The load balancer's name (its key).
    pub lb_name: String,
    /// The port, 1–65535, unique on this machine across all load balancers
    /// (claimed under `/elb/ports/{port}`).
    pub port: u16,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// For HTTPS: the certificates, the default one first. Berth resolves
    /// `arn:aws:acm:R:A:certificate/{name}` to `{certs_dir}/{name}.crt` and
    /// `{certs_dir}/{name}.key` (PEM).
    pub certificates: Vec<String>,
    /// As given (recorded; rustls' safe defaults are what is offered).
    pub ssl_policy: Option<String>,
    /// What a request no rule matches gets.
    pub default_actions: Vec<Action>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// A listener rule other than the default: `/elb/rules/{listenerId}/{ruleId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRecord {
    /// `arn:...:listener-rule/app/{lbName}/{lbId}/{listenerId}/{ruleId}`.
    pub arn: String,
    /// 16 lowercase hex digits.
    pub id: String,
    /// The listener's ARN.
    pub listener_arn: String,
    /// 1–50000, unique within the listener; lower is evaluated first.
    pub priority: u32,
    /// All must match (1–5 condition values in all, as ELBv2 counts them).
    pub conditions: Vec<Condition>,
    /// What a matching request gets.
    pub actions: Vec<Action>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// A rule condition (normalized from `Field`/`Values` or the `*Config`s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "field")]
pub enum Condition {
    /// `path-pattern`: any of the patterns (`*` any run, `?` one char;
    /// case-sensitive) matches the path (without the query).
    PathPattern {
        /// Patterns.
        values: Vec<String>,
    },
    /// `host-header`: any of the patterns matches the Host (case-insensitive,
    /// port stripped).
    HostHeader {
        /// Patterns.
        values: Vec<String>,
    },
    /// `http-header`: the named header (case-insensitive name) has a value
    /// any pattern matches (case-insensitive).
    HttpHeader {
        /// The header name.
        name: String,
        /// Patterns.
        values: Vec<String>,
    },
    /// `http-request-method`: the method is one of these (exact, uppercase).
    HttpRequestMethod {
        /// Methods.
        values: Vec<String>,
    },
    /// `query-string`: any of the pairs matches a query parameter (patterns,
    /// case-insensitive; a pair without key matches any parameter's value).
    QueryString {
        /// Key/value patterns.
        values: Vec<QueryPair>,
    },
    /// `source-ip`: the client address is in any of the CIDRs.
    SourceIp {
        /// CIDR blocks.
        values: Vec<String>,
    },
}

/// One `query-string` condition pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryPair {
    /// The key pattern, if any.
    pub key: Option<String>,
    /// The value pattern.
    pub value: String,
}

/// An action of a rule or a listener's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// The order among the rule's actions (1–50000), when given.
    pub order: Option<u32>,
    /// What it does.
    pub kind: ActionKind,
}

/// What an action does. `authenticate-*` actions are refused by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum ActionKind {
    /// `forward`: to one target group, or weighted over several.
    Forward {
        /// Target groups and weights (0–999); one group given as
        /// `TargetGroupArn` is weight 1.
        target_groups: Vec<WeightedTargetGroup>,
        /// Whether the user gave `ForwardConfig` (rendered back as given).
        forward_config: bool,
        /// Group stickiness, seconds, when enabled (recorded).
        stickiness_seconds: Option<u32>,
    },
    /// `redirect`: `#{protocol}`, `#{host}`, `#{port}`, `#{path}`,
    /// `#{query}` are replaced by the request's parts.
    Redirect {
        /// `HTTP`, `HTTPS` or `#{protocol}` (default).
        protocol: String,
        /// Port or `#{port}` (default).
        port: String,
        /// Host or `#{host}` (default).
        host: String,
        /// Path or `/#{path}` (default).
        path: String,
        /// Query or `#{query}` (default).
        query: String,
        /// 301 or 302.
        status_code: u16,
    },
    /// `fixed-response`.
    FixedResponse {
        /// 2XX, 4XX or 5XX.
        status_code: u16,
        /// `text/plain`, `text/css`, `text/html`, `application/javascript`,
        /// `application/json`.
        content_type: Option<String>,
        /// Up to 1024 bytes.
        message_body: Option<String>,
    },
}

/// One target group of a forward action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightedTargetGroup {
    /// The target group's ARN.
    pub target_group_arn: String,
    /// 0–999.
    pub weight: u32,
}

/// A registered target: `/elb/targets/{tgName}/{ip}:{port}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRecord {
    /// The target group's ARN.
    pub target_group_arn: String,
    /// The target's IPv4 address (target type `ip`).
    pub id: String,
    /// The port.
    pub port: u16,
    /// As given (recorded).
    pub availability_zone: Option<String>,
    /// When it was registered.
    pub registered: Timestamp,
    /// Set by DeregisterTargets: the target gets no new requests and is
    /// removed (with its health record) once this instant passes.
    pub drain_until: Option<Timestamp>,
}

impl TargetRecord {
    /// `{ip}:{port}`, the last segment of the target's key.
    pub fn key_suffix(&self) -> String {
        format!("{}:{}", self.id, self.port)
    }
}

/// What the data path last concluded about a target:
/// `/elb/health/{tgName}/{ip}:{port}`. Written only on a transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetHealthRecord {
    /// [`TargetHealthState::Healthy`] or [`TargetHealthState::Unhealthy`].
    pub state: TargetHealthState,
    /// ELBv2 reason code when unhealthy: `Target.ResponseCodeMismatch`,
    /// `Target.Timeout`, `Target.FailedHealthChecks`.
    pub reason: Option<String>,
    /// A sentence for people, e.g. "Health checks failed with these codes: [500]".
    pub description: Option<String>,
    /// When the data path concluded it.
    pub since: Timestamp,
    /// The registration it is about (the target's `registered`): a late
    /// conclusion about an earlier registration of the same `ip:port` is
    /// ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<Timestamp>,
}

/// ELBv2's target states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetHealthState {
    /// Registered, health checks not yet passed.
    Initial,
    /// Passing health checks: gets requests.
    Healthy,
    /// Failing health checks: gets no requests.
    Unhealthy,
    /// The target group is not used by any listener rule.
    Unused,
    /// Deregistered: finishing in-flight requests.
    Draining,
    /// Health checks are disabled.
    Unavailable,
}

impl TargetHealthState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unused => "unused",
            Self::Draining => "draining",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A target's health as DescribeTargetHealth shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealth {
    /// The state.
    pub state: TargetHealthState,
    /// ELBv2 reason code, if any.
    pub reason: Option<&'static str>,
    /// Description, if any.
    pub description: Option<String>,
}

/// A target's health from what is stored: draining wins; then a target group
/// no listener uses is `unused`; then a disabled health check gives
/// `unavailable`; then the data path's last conclusion; else `initial`.
pub fn effective_health(
    target: &TargetRecord,
    target_group_in_use: bool,
    health_check_enabled: bool,
    checked: Option<&TargetHealthRecord>,
) -> TargetHealth {
    if target.drain_until.is_some() {
        return TargetHealth {
            state: TargetHealthState::Draining,
            reason: Some("Target.DeregistrationInProgress"),
            description: Some("Target deregistration is in progress".into()),
        };
    }
    if !target_group_in_use {
        return TargetHealth {
            state: TargetHealthState::Unused,
            reason: Some("Target.NotInUse"),
            description: Some(
                "Target group is not configured to receive traffic from the load balancer".into(),
            ),
        };
    }
    if !health_check_enabled {
        return TargetHealth {
            state: TargetHealthState::Unavailable,
            reason: Some("Target.HealthCheckDisabled"),
            description: Some("Health checks are disabled".into()),
        };
    }
    match checked {
        Some(h)
            if h.since >= target.registered
                && h.registered.is_none_or(|r| r == target.registered) =>
        {
            TargetHealth {
                state: h.state,
                reason: match h.reason.as_deref() {
                    Some("Target.ResponseCodeMismatch") => Some("Target.ResponseCodeMismatch"),
                    Some("Target.Timeout") => Some("Target.Timeout"),
                    Some(_) => Some("Target.FailedHealthChecks"),
                    None => None,
                },
                description: h.description.clone(),
            }
        }
        _ => TargetHealth {
            state: TargetHealthState::Initial,
            reason: Some("Elb.RegistrationInProgress"),
            description: Some("Target registration is in progress".into()),
        },
    }
}

/// Whether a target group is used by a listener: some listener's default
/// actions or some rule's actions forward to it.
pub fn forwards_to(actions: &[Action], target_group_arn: &str) -> bool {
    actions.iter().any(|a| match &a.kind {
        ActionKind::Forward { target_groups, .. } => target_groups
            .iter()
            .any(|t| t.target_group_arn == target_group_arn),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(registered: i64, drain: Option<i64>) -> TargetRecord {
        TargetRecord {
            target_group_arn: "tg".into(),
            id: "10.0.0.2".into(),
            port: 80,
            availability_zone: None,
            registered: Timestamp(registered),
            drain_until: drain.map(Timestamp),
        }
    }

    fn checked(since: i64, registered: Option<i64>) -> TargetHealthRecord {
        TargetHealthRecord {
            state: TargetHealthState::Unhealthy,
            reason: Some("Target.Timeout".into()),
            description: None,
            since: Timestamp(since),
            registered: registered.map(Timestamp),
        }
    }

    #[test]
    fn health_follows_the_registration_it_is_about() {
        let t = target(100, None);
        let state = |h: Option<&TargetHealthRecord>| effective_health(&t, true, true, h).state;
        assert_eq!(state(None), TargetHealthState::Initial);
        assert_eq!(
            state(Some(&checked(150, Some(100)))),
            TargetHealthState::Unhealthy
        );
        // Older than the registration, or about an earlier one of the same
        // ip:port (a late write), it does not count.
        assert_eq!(
            state(Some(&checked(50, Some(100)))),
            TargetHealthState::Initial
        );
        assert_eq!(
            state(Some(&checked(150, Some(40)))),
            TargetHealthState::Initial
        );
        assert_eq!(
            effective_health(&target(100, Some(500)), true, true, None).state,
            TargetHealthState::Draining
        );
        assert_eq!(
            effective_health(&t, false, true, None).state,
            TargetHealthState::Unused
        );
        assert_eq!(
            effective_health(&t, true, false, None).state,
            TargetHealthState::Unavailable
        );
    }
}
