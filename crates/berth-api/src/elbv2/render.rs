//! The model's output shapes, built from the records: LoadBalancer,
//! TargetGroup, Listener, Rule (with its conditions and actions rendered the
//! way ELBv2 renders them), TargetHealthDescription, Tag.

use std::collections::BTreeMap;

use berth_control::elb::load_balancers::availability_zones;
use berth_control::elb::spec::condition_field;
use berth_control::elb::{RuleView, TargetHealthDescription};
use berth_core::elb::{
    Action, ActionKind, Condition, ListenerRecord, LoadBalancerRecord, TargetGroupRecord,
};
use serde_json::{json, Value};

use super::xml::timestamp;

/// The hosted zone id shown for every load balancer (Berth's DNS names are
/// under `elb.localhost`, not in Route 53).
pub const CANONICAL_HOSTED_ZONE_ID: &str = "ZBERTHELBLOCAL";

/// A `LoadBalancer`.
pub fn load_balancer(lb: &LoadBalancerRecord, region: &str) -> Value {
    json!({
        "LoadBalancerArn": lb.arn,
        "DNSName": lb.dns_name,
        "CanonicalHostedZoneId": CANONICAL_HOSTED_ZONE_ID,
        "CreatedTime": timestamp(lb.created),
        "LoadBalancerName": lb.name,
        "Scheme": lb.scheme,
        "State": {"Code": "active"},
        "Type": lb.lb_type,
        "AvailabilityZones": availability_zones(lb, region)
            .into_iter()
            .map(|z| json!({"ZoneName": z.zone_name, "SubnetId": z.subnet_id, "LoadBalancerAddresses": []}))
            .collect::<Vec<_>>(),
        "SecurityGroups": lb.security_groups,
        "IpAddressType": lb.ip_address_type,
    })
}

/// A `TargetGroup`.
pub fn target_group(tg: &TargetGroupRecord, load_balancer_arns: &[String]) -> Value {
    let hc = &tg.health_check;
    json!({
        "TargetGroupArn": tg.arn,
        "TargetGroupName": tg.name,
        "Protocol": tg.protocol,
        "Port": tg.port,
        "VpcId": tg.vpc_id,
        "HealthCheckProtocol": hc.protocol,
        "HealthCheckPort": hc.port,
        "HealthCheckEnabled": hc.enabled,
        "HealthCheckIntervalSeconds": hc.interval_seconds,
        "HealthCheckTimeoutSeconds": hc.timeout_seconds,
        "HealthyThresholdCount": hc.healthy_threshold,
        "UnhealthyThresholdCount": hc.unhealthy_threshold,
        "HealthCheckPath": hc.path,
        "Matcher": {"HttpCode": hc.matcher},
        "LoadBalancerArns": load_balancer_arns,
        "TargetType": tg.target_type,
        "ProtocolVersion": tg.protocol_version,
        "IpAddressType": "ipv4",
    })
}

/// An `Action`: a forward names its group as `TargetGroupArn` when it has
/// one and always as `ForwardConfig`, as ELBv2 does.
pub fn action(a: &Action) -> Value {
    let mut v = match &a.kind {
        ActionKind::Forward {
            target_groups,
            stickiness_seconds,
            ..
        } => {
            let mut stickiness = json!({"Enabled": stickiness_seconds.is_some()});
            if let Some(s) = stickiness_seconds {
                stickiness["DurationSeconds"] = json!(s);
            }
            json!({
                "Type": "forward",
                "TargetGroupArn": (target_groups.len() == 1).then(|| target_groups[0].target_group_arn.clone()),
                "ForwardConfig": {
                    "TargetGroups": target_groups
                        .iter()
                        .map(|t| json!({"TargetGroupArn": t.target_group_arn, "Weight": t.weight}))
                        .collect::<Vec<_>>(),
                    "TargetGroupStickinessConfig": stickiness,
                },
            })
        }
        ActionKind::Redirect {
            protocol,
            port,
            host,
            path,
            query,
            status_code,
        } => json!({
            "Type": "redirect",
            "RedirectConfig": {
                "Protocol": protocol,
                "Port": port,
                "Host": host,
                "Path": path,
                "Query": query,
                "StatusCode": format!("HTTP_{status_code}"),
            },
        }),
        ActionKind::FixedResponse {
            status_code,
            content_type,
            message_body,
        } => json!({
            "Type": "fixed-response",
            "FixedResponseConfig": {
                "StatusCode": status_code.to_string(),
                "ContentType": content_type,
                "MessageBody": message_body,
            },
        }),
    };
    if let Some(o) = a.order {
        v["Order"] = json!(o);
    }
    v
}

/// A `RuleCondition`: `Field`, the matching `*Config`, and for
/// path-pattern and host-header also the legacy `Values`, as ELBv2 does.
pub fn condition(c: &Condition) -> Value {
    let field = condition_field(c);
    match c {
        Condition::PathPattern { values } => json!({
            "Field": field, "Values": values, "PathPatternConfig": {"Values": values},
        }),
        Condition::HostHeader { values } => json!({
            "Field": field, "Values": values, "HostHeaderConfig": {"Values": values},
        }),
        Condition::HttpHeader { name, values } => json!({
            "Field": field, "HttpHeaderConfig": {"HttpHeaderName": name, "Values": values},
        }),
        Condition::HttpRequestMethod { values } => json!({
            "Field": field, "HttpRequestMethodConfig": {"Values": values},
        }),
        Condition::QueryString { values } => json!({
            "Field": field,
            "QueryStringConfig": {"Values": values
                .iter()
                .map(|p| json!({"Key": p.key, "Value": p.value}))
                .collect::<Vec<_>>()},
        }),
        Condition::SourceIp { values } => json!({
            "Field": field, "SourceIpConfig": {"Values": values},
        }),
    }
}

/// A `Listener`.
pub fn listener(l: &ListenerRecord) -> Value {
    let https = l.protocol == "HTTPS";
    json!({
        "ListenerArn": l.arn,
        "LoadBalancerArn": l.load_balancer_arn,
        "Port": l.port,
        "Protocol": l.protocol,
        "Certificates": https.then(|| l
            .certificates
            .iter()
            .map(|c| json!({"CertificateArn": c}))
            .collect::<Vec<_>>()),
        "SslPolicy": l.ssl_policy,
        "DefaultActions": l.default_actions.iter().map(action).collect::<Vec<_>>(),
    })
}

/// A `Rule`.
pub fn rule(r: &RuleView) -> Value {
    json!({
        "RuleArn": r.arn,
        "Priority": r.priority.map_or_else(|| "default".to_string(), |p| p.to_string()),
        "Conditions": r.conditions.iter().map(condition).collect::<Vec<_>>(),
        "Actions": r.actions.iter().map(action).collect::<Vec<_>>(),
        "IsDefault": r.is_default,
    })
}

/// A `TargetHealthDescription`.
pub fn target_health(d: &TargetHealthDescription) -> Value {
    json!({
        "Target": {
            "Id": d.target.id,
            "Port": d.target.port,
            "AvailabilityZone": d.target.availability_zone,
        },
        "HealthCheckPort": d.health_check_port,
        "TargetHealth": {
            "State": d.health.state.as_str(),
            "Reason": d.health.reason,
            "Description": d.health.description,
        },
    })
}

/// A `TagList`.
pub fn tags(tags: &BTreeMap<String, String>) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::elb::{QueryPair, WeightedTargetGroup};

    #[test]
    fn forward_renders_both_forms() {
        let one = Action {
            order: None,
            kind: ActionKind::Forward {
                target_groups: vec![WeightedTargetGroup {
                    target_group_arn: "tg-a".into(),
                    weight: 1,
                }],
                forward_config: false,
                stickiness_seconds: None,
            },
        };
        let v = action(&one);
        assert_eq!(v["TargetGroupArn"], "tg-a");
        assert_eq!(v["ForwardConfig"]["TargetGroups"][0]["Weight"], 1);
        assert_eq!(
            v["ForwardConfig"]["TargetGroupStickinessConfig"]["Enabled"],
            false
        );
        let two = Action {
            order: Some(1),
            kind: ActionKind::Forward {
                target_groups: vec![
                    WeightedTargetGroup {
                        target_group_arn: "a".into(),
                        weight: 3,
                    },
                    WeightedTargetGroup {
                        target_group_arn: "b".into(),
                        weight: 1,
                    },
                ],
                forward_config: true,
                stickiness_seconds: Some(60),
            },
        };
        let v = action(&two);
        assert!(v["TargetGroupArn"].is_null());
        assert_eq!(v["Order"], 1);
        assert_eq!(
            v["ForwardConfig"]["TargetGroupStickinessConfig"]["DurationSeconds"],
            60
        );
    }

    #[test]
    fn conditions_render_legacy_and_config() {
        let v = condition(&Condition::PathPattern {
            values: vec!["/a".into()],
        });
        assert_eq!(v["Values"], json!(["/a"]));
        assert_eq!(v["PathPatternConfig"]["Values"], json!(["/a"]));
        let v = condition(&Condition::QueryString {
            values: vec![QueryPair {
                key: None,
                value: "x".into(),
            }],
        });
        assert_eq!(v["Field"], "query-string");
        assert!(v["Values"].is_null());
        assert_eq!(v["QueryStringConfig"]["Values"][0]["Value"], "x");
    }
}
