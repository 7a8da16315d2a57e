//! Load balancer and target group attributes: the keys ELBv2 knows, their
//! defaults, and which values are accepted.
//!
//! Records keep only the attributes that were set; Describe*Attributes
//! shows every key with its default filled in. The ones the data path acts
//! on are named in `berth_core::elb` (`ATTR_*`); the others are accepted and
//! recorded so that tools that set them (Terraform, CDK) work.

use std::collections::BTreeMap;

use berth_core::elb::{
    ATTR_ALGORITHM, ATTR_BERTH_RESPONSE_TIMEOUT, ATTR_DEREGISTRATION_DELAY, ATTR_HTTP2_ENABLED,
    ATTR_IDLE_TIMEOUT, ATTR_SLOW_START, ATTR_STICKINESS,
};

use super::ElbError;

/// What values an attribute takes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Bool,
    Int(i64, i64),
    OneOf(&'static [&'static str]),
    Text,
    /// `0` or 30–900 (slow start).
    SlowStart,
    /// `off` or an integer in the range.
    OffOrInt(i64, i64),
    /// `off` or a percentage 1–100.
    OffOrPercent,
}

/// One known attribute.
struct Attr {
    key: &'static str,
    default: &'static str,
    kind: Kind,
    /// Values Berth refuses, with why.
    refused: Option<(&'static str, &'static str)>,
}

const fn attr(key: &'static str, default: &'static str, kind: Kind) -> Attr {
    Attr {
        key,
        default,
        kind,
        refused: None,
    }
}

const LB_ATTRS: &[Attr] = &[
    Attr {
        key: "access_logs.s3.enabled",
        default: "false",
        kind: Kind::Bool,
        refused: Some((
            "true",
            "Berth does not deliver access logs to S3; leave access_logs.s3.enabled false",
        )),
    },
    attr("access_logs.s3.bucket", "", Kind::Text),
    attr("access_logs.s3.prefix", "", Kind::Text),
    attr("client_keep_alive.seconds", "3600", Kind::Int(60, 604_800)),
    Attr {
        key: "connection_logs.s3.enabled",
        default: "false",
        kind: Kind::Bool,
        refused: Some((
            "true",
            "Berth does not deliver connection logs to S3; leave connection_logs.s3.enabled false",
        )),
    },
    attr("connection_logs.s3.bucket", "", Kind::Text),
    attr("connection_logs.s3.prefix", "", Kind::Text),
    attr("deletion_protection.enabled", "false", Kind::Bool),
    attr(ATTR_IDLE_TIMEOUT, "60", Kind::Int(1, 4000)),
    attr("load_balancing.cross_zone.enabled", "true", Kind::Bool),
    attr(
        "routing.http.desync_mitigation_mode",
        "defensive",
        Kind::OneOf(&["monitor", "defensive", "strictest"]),
    ),
    attr(
        "routing.http.drop_invalid_header_fields.enabled",
        "false",
        Kind::Bool,
    ),
    attr(
        "routing.http.preserve_host_header.enabled",
        "false",
        Kind::Bool,
    ),
    attr(
        "routing.http.x_amzn_tls_version_and_cipher_suite.enabled",
        "false",
        Kind::Bool,
    ),
    attr("routing.http.xff_client_port.enabled", "false", Kind::Bool),
    attr(
        "routing.http.xff_header_processing.mode",
        "append",
        Kind::OneOf(&["append", "preserve", "remove"]),
    ),
    attr(ATTR_HTTP2_ENABLED, "true", Kind::Bool),
    attr("waf.fail_open.enabled", "false", Kind::Bool),
    attr("zonal_shift.config.enabled", "false", Kind::Bool),
];

const TG_ATTRS: &[Attr] = &[
    attr(ATTR_DEREGISTRATION_DELAY, "300", Kind::Int(0, 3600)),
    attr(
        "load_balancing.algorithm.anomaly_mitigation",
        "off",
        Kind::OneOf(&["on", "off"]),
    ),
    Attr {
        key: ATTR_ALGORITHM,
        default: "round_robin",
        kind: Kind::OneOf(&[
            "round_robin",
            "least_outstanding_requests",
            "weighted_random",
        ]),
        refused: Some((
            "weighted_random",
            "Berth balances with round_robin or least_outstanding_requests",
        )),
    },
    attr(
        "load_balancing.cross_zone.enabled",
        "use_load_balancer_configuration",
        Kind::OneOf(&["true", "false", "use_load_balancer_configuration"]),
    ),
    attr(ATTR_SLOW_START, "0", Kind::SlowStart),
    attr("stickiness.app_cookie.cookie_name", "", Kind::Text),
    attr(
        "stickiness.app_cookie.duration_seconds",
        "86400",
        Kind::Int(1, 604_800),
    ),
    attr(ATTR_STICKINESS, "false", Kind::Bool),
    attr(
        "stickiness.lb_cookie.duration_seconds",
        "86400",
        Kind::Int(1, 604_800),
    ),
    attr(
        "stickiness.type",
        "lb_cookie",
        Kind::OneOf(&["lb_cookie", "app_cookie"]),
    ),
    attr(
        "target_group_health.dns_failover.minimum_healthy_targets.count",
        "1",
        Kind::OffOrInt(1, 1000),
    ),
    attr(
        "target_group_health.dns_failover.minimum_healthy_targets.percentage",
        "off",
        Kind::OffOrPercent,
    ),
    attr(
        "target_group_health.unhealthy_state_routing.minimum_healthy_targets.count",
        "1",
        Kind::OffOrInt(1, 1000),
    ),
    attr(
        "target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage",
        "off",
        Kind::OffOrPercent,
    ),
];

/// Berth's own target group attribute, shown only once set.
const BERTH_TG_ATTRS: &[Attr] = &[attr(ATTR_BERTH_RESPONSE_TIMEOUT, "", Kind::Int(1, 4000))];

fn check(table: &[&[Attr]], what: &str, key: &str, value: &str) -> Result<(), ElbError> {
    let Some(a) = table.iter().flat_map(|t| t.iter()).find(|a| a.key == key) else {
        let known: Vec<&str> = table.iter().flat_map(|t| t.iter()).map(|a| a.key).collect();
        return Err(ElbError::validation(format!(
            "{what} attribute key '{key}' is not recognized (known keys: {})",
            known.join(", ")
        )));
    };
    let ok = match a.kind {
        Kind::Bool => matches!(value, "true" | "false"),
        Kind::Int(lo, hi) => value.parse::<i64>().is_ok_and(|n| (lo..=hi).contains(&n)),
        Kind::OneOf(vals) => vals.contains(&value),
        Kind::Text => value.len() <= 1024,
        Kind::SlowStart => value
            .parse::<i64>()
            .is_ok_and(|n| n == 0 || (30..=900).contains(&n)),
        Kind::OffOrInt(lo, hi) => {
            value == "off" || value.parse::<i64>().is_ok_and(|n| (lo..=hi).contains(&n))
        }
        Kind::OffOrPercent => {
            value == "off" || value.parse::<i64>().is_ok_and(|n| (1..=100).contains(&n))
        }
    };
    if !ok {
        let expected = match a.kind {
            Kind::Bool => "true or false".to_string(),
            Kind::Int(lo, hi) => format!("an integer from {lo} to {hi}"),
            Kind::OneOf(vals) => vals.join(", "),
            Kind::Text => "at most 1024 characters".to_string(),
            Kind::SlowStart => "0 (off) or 30 to 900".to_string(),
            Kind::OffOrInt(lo, hi) => format!("off or an integer from {lo} to {hi}"),
            Kind::OffOrPercent => "off or a percentage from 1 to 100".to_string(),
        };
        return Err(ElbError::validation(format!(
            "{what} attribute '{key}' value '{value}' is not valid (expected {expected})"
        )));
    }
    if let Some((bad, why)) = a.refused {
        if bad == value {
            return Err(ElbError::InvalidConfigurationRequest(format!(
                "{what} attribute '{key}' = '{value}': {why}"
            )));
        }
    }
    Ok(())
}

fn apply(
    table: &[&[Attr]],
    what: &str,
    current: &mut BTreeMap<String, String>,
    changes: &[(String, String)],
) -> Result<(), ElbError> {
    if changes.is_empty() {
        return Err(ElbError::validation(
            "Attributes: give at least one Key/Value pair",
        ));
    }
    if changes.len() > 20 {
        return Err(ElbError::validation(format!(
            "Attributes: {} were given; change at most 20 attributes per call",
            changes.len()
        )));
    }
    for (k, v) in changes {
        check(table, what, k, v)?;
    }
    for (k, v) in changes {
        current.insert(k.clone(), v.clone());
    }
    Ok(())
}

fn view(table: &[Attr], extra: &[Attr], set: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = table
        .iter()
        .map(|a| {
            let v = set.get(a.key).map_or(a.default, String::as_str);
            (a.key.to_string(), v.to_string())
        })
        .collect();
    for a in extra {
        if let Some(v) = set.get(a.key) {
            out.push((a.key.to_string(), v.clone()));
        }
    }
    out
}

/// Checks and applies load balancer attribute changes to `current`.
pub fn apply_lb(
    current: &mut BTreeMap<String, String>,
    changes: &[(String, String)],
) -> Result<(), ElbError> {
    apply(&[LB_ATTRS], "load balancer", current, changes)
}

/// Every load balancer attribute, defaults filled in, in key order.
pub fn lb_view(set: &BTreeMap<String, String>) -> Vec<(String, String)> {
    view(LB_ATTRS, &[], set)
}

/// Checks and applies target group attribute changes to `current`.
pub fn apply_tg(
    current: &mut BTreeMap<String, String>,
    changes: &[(String, String)],
) -> Result<(), ElbError> {
    apply(
        &[TG_ATTRS, BERTH_TG_ATTRS],
        "target group",
        current,
        changes,
    )
}

/// Every target group attribute, defaults filled in (Berth's own only when
/// set).
pub fn tg_view(set: &BTreeMap<String, String>) -> Vec<(String, String)> {
    view(TG_ATTRS, BERTH_TG_ATTRS, set)
}

/// Whether deletion protection is on.
pub fn deletion_protected(set: &BTreeMap<String, String>) -> bool {
    set.get("deletion_protection.enabled").map(String::as_str) == Some("true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn target_group_attributes() {
        let mut set = BTreeMap::new();
        apply_tg(
            &mut set,
            &[
                kv(ATTR_DEREGISTRATION_DELAY, "0"),
                kv(ATTR_ALGORITHM, "least_outstanding_requests"),
            ],
        )
        .unwrap();
        let v = tg_view(&set);
        assert!(v.contains(&kv(ATTR_DEREGISTRATION_DELAY, "0")));
        assert!(v.contains(&kv("stickiness.enabled", "false")));
        assert!(!v.iter().any(|(k, _)| k == ATTR_BERTH_RESPONSE_TIMEOUT));
        apply_tg(&mut set, &[kv(ATTR_BERTH_RESPONSE_TIMEOUT, "5")]).unwrap();
        assert!(tg_view(&set).contains(&kv(ATTR_BERTH_RESPONSE_TIMEOUT, "5")));

        for (k, v) in [
            (ATTR_DEREGISTRATION_DELAY, "3601"),
            (ATTR_DEREGISTRATION_DELAY, "x"),
            (ATTR_SLOW_START, "10"),
            ("nope", "1"),
        ] {
            let before = set.clone();
            assert!(
                matches!(
                    apply_tg(&mut set, &[kv(k, v)]),
                    Err(ElbError::Validation(_))
                ),
                "{k}={v}"
            );
            assert_eq!(set, before, "a refused change leaves the attributes alone");
        }
        assert!(matches!(
            apply_tg(&mut set, &[kv(ATTR_ALGORITHM, "weighted_random")]),
            Err(ElbError::InvalidConfigurationRequest(_))
        ));
        assert!(apply_tg(&mut set, &[]).is_err());
    }

    #[test]
    fn load_balancer_attributes() {
        let mut set = BTreeMap::new();
        apply_lb(&mut set, &[kv(ATTR_IDLE_TIMEOUT, "120")]).unwrap();
        assert!(lb_view(&set).contains(&kv(ATTR_IDLE_TIMEOUT, "120")));
        assert!(lb_view(&set).contains(&kv(ATTR_HTTP2_ENABLED, "true")));
        assert!(!deletion_protected(&set));
        apply_lb(&mut set, &[kv("deletion_protection.enabled", "true")]).unwrap();
        assert!(deletion_protected(&set));
        assert!(apply_lb(&mut set, &[kv(ATTR_IDLE_TIMEOUT, "0")]).is_err());
        assert!(matches!(
            apply_lb(&mut set, &[kv("access_logs.s3.enabled", "true")]),
            Err(ElbError::InvalidConfigurationRequest(_))
        ));
    }
}
