//! What the data path (`berth-lb`) serves: every listener with its rules in
//! evaluation order and every target group it forwards to, built from the
//! stored records by [`DataPlaneConfig::build`] (pure).
//!
//! OWNER: the data-path work. The shapes below are a starting point; the
//! data path may extend them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    Action, Algorithm, Condition, HealthCheck, ListenerRecord, LoadBalancerRecord, RuleRecord,
    TargetGroupRecord, TargetHealthRecord, TargetHealthState, TargetRecord,
};

/// Every record under `/elb/`, as read from the store at one revision.
#[derive(Debug, Clone, Default)]
pub struct ElbRecords {
    /// Load balancers.
    pub load_balancers: Vec<LoadBalancerRecord>,
    /// Listeners.
    pub listeners: Vec<ListenerRecord>,
    /// Rules.
    pub rules: Vec<RuleRecord>,
    /// Target groups.
    pub target_groups: Vec<TargetGroupRecord>,
    /// Registered targets (including draining ones).
    pub targets: Vec<TargetRecord>,
    /// Health records, keyed by (target group ARN, `ip:port`).
    pub health: BTreeMap<(String, String), TargetHealthRecord>,
}

/// The whole data path's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataPlaneConfig {
    /// Listeners by port.
    pub listeners: BTreeMap<u16, ListenerConfig>,
    /// Target groups used by some listener, by ARN.
    pub target_groups: BTreeMap<String, TargetGroupConfig>,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerConfig {
    /// The listener's ARN.
    pub arn: String,
    /// The load balancer's name.
    pub lb_name: String,
    /// The port.
    pub port: u16,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// HTTPS: certificate ARNs, the default first.
    pub certificates: Vec<String>,
    /// Client idle timeout, seconds.
    pub idle_timeout_secs: u32,
    /// Whether HTTP/2 is offered.
    pub http2: bool,
    /// Rules by ascending priority, then the default rule (priority None).
    pub rules: Vec<RuleConfig>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleConfig {
    /// None for the default rule.
    pub priority: Option<u32>,
    /// All must match.
    pub conditions: Vec<Condition>,
    /// The actions, by order.
    pub actions: Vec<Action>,
}

/// One target group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetGroupConfig {
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
    /// `HTTP` or `HTTPS`.
    pub protocol: String,
    /// `HTTP1` or `HTTP2`.
    pub protocol_version: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Health check.
    pub health_check: HealthCheck,
    /// Response timeout, seconds.
    pub response_timeout_secs: u32,
    /// Targets (draining ones included, flagged).
    pub targets: Vec<TargetConfig>,
}

/// One target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetConfig {
    /// IPv4 address.
    pub ip: String,
    /// Port.
    pub port: u16,
    /// Deregistered: no new requests.
    pub draining: bool,
    /// Registered at (health records older than this are stale).
    pub registered: crate::Timestamp,
    /// The last stored conclusion, to start from after a restart.
    pub last_health: Option<TargetHealthState>,
}

impl DataPlaneConfig {
    /// Builds the configuration from the records.
    pub fn build(_records: &ElbRecords) -> Self {
        // OWNER: data path. Filled in by the berth-lb work.
        Self::default()
    }
}
