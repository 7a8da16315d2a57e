//! What the data path (`berth-lb`) serves: every listener with its rules in
//! evaluation order and every target group it forwards to, built from the
//! stored records by [`DataPlaneConfig::build`] (pure).
//!
//! Durations are milliseconds here (the API speaks seconds): the data path's
//! tests run health checks every few milliseconds, and nothing else has to
//! know about it.
//!
//! OWNER: the data-path work (`berth-lb`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    Action, ActionKind, Algorithm, Condition, HealthCheck, ListenerRecord, LoadBalancerRecord,
    RuleRecord, TargetGroupRecord, TargetHealthRecord, TargetHealthState, TargetRecord,
    ATTR_BERTH_RESPONSE_TIMEOUT, ATTR_HTTP2_ENABLED, ATTR_IDLE_TIMEOUT,
};
use crate::Timestamp;

/// The client idle timeout when the LB attribute is unset, seconds.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataPlaneConfig {
    /// Listeners by port.
    pub listeners: BTreeMap<u16, ListenerConfig>,
    /// Target groups some listener forwards to, by ARN.
    pub target_groups: BTreeMap<String, TargetGroupConfig>,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
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
    /// Client idle timeout (LB attribute `idle_timeout.timeout_seconds`).
    pub idle_timeout_ms: u64,
    /// Whether HTTP/2 is offered to clients (LB attribute
    /// `routing.http2.enabled`).
    pub http2: bool,
    /// Rules by ascending priority, then the default rule (priority `None`,
    /// no conditions, the listener's default actions).
    pub rules: Vec<RuleConfig>,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleConfig {
    /// `None` for the default rule.
    pub priority: Option<u32>,
    /// All must match (none: matches every request).
    pub conditions: Vec<Condition>,
    /// The actions, by their order; the data path performs the first.
    pub actions: Vec<Action>,
}

/// One target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetGroupConfig {
    /// ARN.
    pub arn: String,
    /// Name.
    pub name: String,
    /// `HTTP` or `HTTPS` (to the targets).
    pub protocol: String,
    /// `HTTP1` or `HTTP2` (to the targets).
    pub protocol_version: String,
    /// How a target is picked.
    pub algorithm: Algorithm,
    /// Health check.
    pub health_check: HealthCheckConfig,
    /// How long a target may take to send its response head before the
    /// client gets 504 (TG attribute `berth.response_timeout_seconds`, else
    /// the idle timeout of the load balancer forwarding to it; the largest
    /// if several do).
    pub response_timeout_ms: u64,
    /// Targets (draining ones included, flagged), by ip then port.
    pub targets: Vec<TargetConfig>,
}

/// A health check as the data path runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckConfig {
    /// Whether targets are checked; when not, every non-draining target
    /// gets requests.
    pub enabled: bool,
    /// `HTTP` or `HTTPS` (the target's certificate is not verified).
    pub protocol: String,
    /// The port checked; `None` is the traffic port (the target's own).
    pub port: Option<u16>,
    /// The path requested.
    pub path: String,
    /// Time between the starts of two checks of one target.
    pub interval_ms: u64,
    /// Time before a check counts as failed (`Target.Timeout`).
    pub timeout_ms: u64,
    /// Consecutive successes to become healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures to become unhealthy.
    pub unhealthy_threshold: u32,
    /// Success codes: `200`, `200,202`, `200-299`.
    pub matcher: String,
}

impl From<&HealthCheck> for HealthCheckConfig {
    fn from(h: &HealthCheck) -> Self {
        Self {
            enabled: h.enabled,
            protocol: h.protocol.clone(),
            port: if h.port == "traffic-port" {
                None
            } else {
                h.port.parse().ok()
            },
            path: h.path.clone(),
            interval_ms: u64::from(h.interval_seconds) * 1000,
            timeout_ms: u64::from(h.timeout_seconds) * 1000,
            healthy_threshold: h.healthy_threshold,
            unhealthy_threshold: h.unhealthy_threshold,
            matcher: h.matcher.clone(),
        }
    }
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self::from(&HealthCheck::default())
    }
}

/// One target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetConfig {
    /// IPv4 address.
    pub ip: String,
    /// Port.
    pub port: u16,
    /// Deregistered: no new requests, no health checks.
    pub draining: bool,
    /// Registered at.
    pub registered: Timestamp,
    /// The last stored conclusion (only one made since `registered`), to
    /// start from after a restart: `healthy` serves at once.
    pub last_health: Option<TargetHealthState>,
}

impl DataPlaneConfig {
    /// Builds the configuration from the records: every listener (with the
    /// attributes of its load balancer), and every target group that some
    /// listener's rule or default action forwards to, with its targets.
    /// Records that refer to something missing are left out, never an error.
    pub fn build(records: &ElbRecords) -> Self {
        let lbs: BTreeMap<&str, &LoadBalancerRecord> = records
            .load_balancers
            .iter()
            .map(|lb| (lb.arn.as_str(), lb))
            .collect();

        let mut listeners_sorted: Vec<&ListenerRecord> = records.listeners.iter().collect();
        listeners_sorted.sort_by(|a, b| a.arn.cmp(&b.arn));

        let mut listeners = BTreeMap::new();
        // TG ARN → the largest idle timeout of the LBs forwarding to it.
        let mut used: BTreeMap<String, u64> = BTreeMap::new();
        for l in listeners_sorted {
            if listeners.contains_key(&l.port) {
                continue; // ports are unique by contract; the first ARN wins
            }
            let lb = lbs.get(l.load_balancer_arn.as_str()).copied();
            let idle_secs = lb
                .and_then(|lb| lb.attributes.get(ATTR_IDLE_TIMEOUT))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS);
            let http2 = lb
                .and_then(|lb| lb.attributes.get(ATTR_HTTP2_ENABLED))
                .map(|v| !v.eq_ignore_ascii_case("false"))
                .unwrap_or(true);
            let idle_timeout_ms = idle_secs * 1000;

            let mut rules: Vec<&RuleRecord> = records
                .rules
                .iter()
                .filter(|r| r.listener_arn == l.arn)
                .collect();
            rules.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.id.cmp(&b.id)));
            let mut compiled: Vec<RuleConfig> = rules
                .into_iter()
                .map(|r| RuleConfig {
                    priority: Some(r.priority),
                    conditions: r.conditions.clone(),
                    actions: sorted_actions(&r.actions),
                })
                .collect();
            compiled.push(RuleConfig {
                priority: None,
                conditions: Vec::new(),
                actions: sorted_actions(&l.default_actions),
            });
            for arn in compiled
                .iter()
                .flat_map(|r| r.actions.iter())
                .flat_map(forwarded_groups)
            {
                let e = used.entry(arn.to_string()).or_insert(0);
                *e = (*e).max(idle_timeout_ms);
            }
            listeners.insert(
                l.port,
                ListenerConfig {
                    arn: l.arn.clone(),
                    lb_name: l.lb_name.clone(),
                    port: l.port,
                    protocol: l.protocol.clone(),
                    certificates: l.certificates.clone(),
                    idle_timeout_ms,
                    http2,
                    rules: compiled,
                },
            );
        }

        let mut target_groups = BTreeMap::new();
        for tg in &records.target_groups {
            let Some(&lb_idle_ms) = used.get(&tg.arn) else {
                continue;
            };
            let response_timeout_ms = tg
                .attributes
                .get(ATTR_BERTH_RESPONSE_TIMEOUT)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|&s| s > 0)
                .map(|s| s * 1000)
                .unwrap_or(lb_idle_ms);
            let mut targets: Vec<TargetConfig> = records
                .targets
                .iter()
                .filter(|t| t.target_group_arn == tg.arn)
                .map(|t| TargetConfig {
                    ip: t.id.clone(),
                    port: t.port,
                    draining: t.drain_until.is_some(),
                    registered: t.registered,
                    last_health: records
                        .health
                        .get(&(tg.arn.clone(), t.key_suffix()))
                        .filter(|h| {
                            h.since >= t.registered
                                && h.registered.is_none_or(|r| r == t.registered)
                        })
                        .map(|h| h.state),
                })
                .collect();
            targets.sort_by(|a, b| a.ip.cmp(&b.ip).then(a.port.cmp(&b.port)));
            targets.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
            target_groups.insert(
                tg.arn.clone(),
                TargetGroupConfig {
                    arn: tg.arn.clone(),
                    name: tg.name.clone(),
                    protocol: tg.protocol.clone(),
                    protocol_version: tg.protocol_version.clone(),
                    algorithm: tg.algorithm(),
                    health_check: HealthCheckConfig::from(&tg.health_check),
                    response_timeout_ms,
                    targets,
                },
            );
        }

        Self {
            listeners,
            target_groups,
        }
    }

    /// The ARNs of the target groups the listeners forward to (with a
    /// nonzero weight or not).
    pub fn forwarded_target_groups(&self) -> BTreeSet<&str> {
        self.listeners
            .values()
            .flat_map(|l| l.rules.iter())
            .flat_map(|r| r.actions.iter())
            .flat_map(forwarded_groups)
            .collect()
    }
}

/// Actions by their `order` (unordered ones after, as given).
fn sorted_actions(actions: &[Action]) -> Vec<Action> {
    let mut v = actions.to_vec();
    v.sort_by_key(|a| a.order.unwrap_or(u32::MAX));
    v
}

/// The target group ARNs an action forwards to.
fn forwarded_groups(a: &Action) -> impl Iterator<Item = &str> {
    let groups = match &a.kind {
        ActionKind::Forward { target_groups, .. } => target_groups.as_slice(),
        _ => &[],
    };
    groups.iter().map(|g| g.target_group_arn.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elb::{WeightedTargetGroup, ATTR_ALGORITHM};

    const LB: &str = "arn:aws:elasticloadbalancing:r:1:loadbalancer/app/web/0123456789abcdef";

    fn lb(attrs: &[(&str, &str)]) -> LoadBalancerRecord {
        LoadBalancerRecord {
            arn: LB.into(),
            name: "web".into(),
            id: "0123456789abcdef".into(),
            dns_name: "web.elb.localhost".into(),
            scheme: "internet-facing".into(),
            lb_type: "application".into(),
            ip_address_type: "ipv4".into(),
            subnets: vec![],
            security_groups: vec![],
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tags: BTreeMap::new(),
            created: Timestamp(0),
        }
    }

    fn tg_arn(name: &str) -> String {
        format!("arn:aws:elasticloadbalancing:r:1:targetgroup/{name}/00")
    }

    fn tg(name: &str, attrs: &[(&str, &str)]) -> TargetGroupRecord {
        TargetGroupRecord {
            arn: tg_arn(name),
            name: name.into(),
            id: "00".into(),
            protocol: "HTTP".into(),
            protocol_version: "HTTP1".into(),
            port: 80,
            vpc_id: None,
            target_type: "ip".into(),
            health_check: HealthCheck::default(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tags: BTreeMap::new(),
            created: Timestamp(0),
        }
    }

    fn forward(tg: &str) -> Action {
        Action {
            order: None,
            kind: ActionKind::Forward {
                target_groups: vec![WeightedTargetGroup {
                    target_group_arn: tg_arn(tg),
                    weight: 1,
                }],
                forward_config: false,
                stickiness_seconds: None,
            },
        }
    }

    fn fixed(code: u16, order: Option<u32>) -> Action {
        Action {
            order,
            kind: ActionKind::FixedResponse {
                status_code: code,
                content_type: None,
                message_body: None,
            },
        }
    }

    fn listener(id: &str, port: u16, default: Action) -> ListenerRecord {
        ListenerRecord {
            arn: format!("{LB}/{id}"),
            id: id.into(),
            load_balancer_arn: LB.into(),
            lb_name: "web".into(),
            port,
            protocol: "HTTP".into(),
            certificates: vec![],
            ssl_policy: None,
            default_actions: vec![default],
            tags: BTreeMap::new(),
        }
    }

    fn rule(listener_id: &str, id: &str, priority: u32, action: Action) -> RuleRecord {
        RuleRecord {
            arn: format!("{LB}/{listener_id}/{id}"),
            id: id.into(),
            listener_arn: format!("{LB}/{listener_id}"),
            priority,
            conditions: vec![Condition::PathPattern {
                values: vec![format!("/{id}")],
            }],
            actions: vec![action],
            tags: BTreeMap::new(),
        }
    }

    fn target(tg: &str, ip: &str, registered: i64, draining: bool) -> TargetRecord {
        TargetRecord {
            target_group_arn: tg_arn(tg),
            id: ip.into(),
            port: 8080,
            availability_zone: None,
            registered: Timestamp(registered),
            drain_until: draining.then_some(Timestamp(registered + 300_000)),
        }
    }

    fn health(state: TargetHealthState, since: i64) -> TargetHealthRecord {
        TargetHealthRecord {
            state,
            reason: None,
            description: None,
            since: Timestamp(since),
            registered: None,
        }
    }

    #[test]
    fn empty_records_build_an_empty_config() {
        assert_eq!(
            DataPlaneConfig::build(&ElbRecords::default()),
            DataPlaneConfig::default()
        );
    }

    #[test]
    fn rules_are_sorted_by_priority_then_the_default() {
        let records = ElbRecords {
            load_balancers: vec![lb(&[])],
            listeners: vec![listener("l1", 8080, fixed(404, None))],
            rules: vec![
                rule("l1", "c", 30, forward("a")),
                rule("l1", "a", 10, fixed(200, None)),
                rule("l1", "b", 20, fixed(201, None)),
                rule("other", "x", 1, fixed(202, None)),
            ],
            ..Default::default()
        };
        let c = DataPlaneConfig::build(&records);
        let l = &c.listeners[&8080];
        let prios: Vec<_> = l.rules.iter().map(|r| r.priority).collect();
        assert_eq!(prios, vec![Some(10), Some(20), Some(30), None]);
        assert!(l.rules[3].conditions.is_empty());
        assert_eq!(l.rules[3].actions, vec![fixed(404, None)]);
        assert_eq!(l.idle_timeout_ms, 60_000);
        assert!(l.http2);
        // Target group "a" is forwarded to but has no record: left out.
        assert!(c.target_groups.is_empty());
    }

    #[test]
    fn actions_are_sorted_by_order() {
        let mut l = listener("l1", 80, fixed(500, Some(2)));
        l.default_actions.insert(0, fixed(503, None));
        l.default_actions.push(fixed(200, Some(1)));
        let records = ElbRecords {
            listeners: vec![l],
            ..Default::default()
        };
        let c = DataPlaneConfig::build(&records);
        let codes: Vec<_> = c.listeners[&80].rules[0]
            .actions
            .iter()
            .map(|a| match &a.kind {
                ActionKind::FixedResponse { status_code, .. } => *status_code,
                _ => 0,
            })
            .collect();
        assert_eq!(codes, vec![200, 500, 503]);
    }

    #[test]
    fn lb_attributes_set_idle_timeout_and_http2() {
        let records = ElbRecords {
            load_balancers: vec![lb(&[
                (ATTR_IDLE_TIMEOUT, "15"),
                (ATTR_HTTP2_ENABLED, "false"),
            ])],
            listeners: vec![listener("l1", 80, forward("a"))],
            target_groups: vec![tg("a", &[]), tg("unused", &[])],
            ..Default::default()
        };
        let c = DataPlaneConfig::build(&records);
        assert_eq!(c.listeners[&80].idle_timeout_ms, 15_000);
        assert!(!c.listeners[&80].http2);
        // Only the forwarded-to group; its response timeout is the idle timeout.
        assert_eq!(c.target_groups.len(), 1);
        assert_eq!(c.target_groups[&tg_arn("a")].response_timeout_ms, 15_000);
    }

    #[test]
    fn target_groups_carry_attributes_targets_and_fresh_health() {
        let mut records = ElbRecords {
            load_balancers: vec![lb(&[])],
            listeners: vec![listener("l1", 80, fixed(404, None))],
            rules: vec![rule("l1", "r", 1, forward("a"))],
            target_groups: vec![tg(
                "a",
                &[
                    (ATTR_BERTH_RESPONSE_TIMEOUT, "7"),
                    (ATTR_ALGORITHM, "least_outstanding_requests"),
                ],
            )],
            targets: vec![
                target("a", "10.0.0.3", 1000, false),
                target("a", "10.0.0.2", 1000, true),
                target("a", "10.0.0.4", 5000, false),
                target("b", "10.0.0.9", 1000, false),
            ],
            ..Default::default()
        };
        let arn = tg_arn("a");
        records.health.insert(
            (arn.clone(), "10.0.0.3:8080".into()),
            health(TargetHealthState::Healthy, 2000),
        );
        // Older than the target's registration: stale, ignored.
        records.health.insert(
            (arn.clone(), "10.0.0.4:8080".into()),
            health(TargetHealthState::Healthy, 4000),
        );
        let c = DataPlaneConfig::build(&records);
        let g = &c.target_groups[&arn];
        assert_eq!(g.response_timeout_ms, 7000);
        assert_eq!(g.algorithm, Algorithm::LeastOutstandingRequests);
        assert_eq!(g.health_check.interval_ms, 30_000);
        assert_eq!(g.health_check.port, None);
        let ips: Vec<_> = g.targets.iter().map(|t| t.ip.as_str()).collect();
        assert_eq!(ips, vec!["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
        assert!(g.targets[0].draining);
        assert!(!g.targets[1].draining);
        assert_eq!(g.targets[1].last_health, Some(TargetHealthState::Healthy));
        assert_eq!(g.targets[2].last_health, None);
        assert_eq!(g.targets[0].last_health, None);
    }

    #[test]
    fn weighted_forward_lists_every_group() {
        let action = Action {
            order: None,
            kind: ActionKind::Forward {
                target_groups: vec![
                    WeightedTargetGroup {
                        target_group_arn: tg_arn("a"),
                        weight: 0,
                    },
                    WeightedTargetGroup {
                        target_group_arn: tg_arn("b"),
                        weight: 3,
                    },
                ],
                forward_config: true,
                stickiness_seconds: None,
            },
        };
        let records = ElbRecords {
            listeners: vec![listener("l1", 80, action)],
            target_groups: vec![tg("a", &[]), tg("b", &[])],
            ..Default::default()
        };
        let c = DataPlaneConfig::build(&records);
        assert_eq!(c.target_groups.len(), 2);
        assert_eq!(c.forwarded_target_groups().len(), 2);
    }

    #[test]
    fn health_check_port_and_units() {
        let h = HealthCheck {
            port: "9000".into(),
            interval_seconds: 5,
            timeout_seconds: 2,
            ..HealthCheck::default()
        };
        let c = HealthCheckConfig::from(&h);
        assert_eq!(c.port, Some(9000));
        assert_eq!((c.interval_ms, c.timeout_ms), (5000, 2000));
    }

    #[test]
    fn config_round_trips_through_json() {
        let records = ElbRecords {
            load_balancers: vec![lb(&[])],
            listeners: vec![listener("l1", 80, forward("a"))],
            target_groups: vec![tg("a", &[])],
            targets: vec![target("a", "10.0.0.3", 1000, false)],
            ..Default::default()
        };
        let c = DataPlaneConfig::build(&records);
        let json = serde_json::to_string(&c).unwrap();
        let back: DataPlaneConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
