//! The ELBv2 API (`Elastic Load Balancing v2`, AWS Query protocol,
//! `Version=2015-12-01`): requests become a typed [`ElbAction`], which
//! [`dispatch`] runs against `berth_control::Elb`; results are rendered in
//! the model's output shapes ([`render`]) and written as XML ([`xml`]);
//! failures are mapped in one place ([`error`]).
//!
//! A request is `POST /` with an `application/x-www-form-urlencoded` body
//! (or `GET /?Action=...`), signed for the service `elasticloadbalancing`.

pub mod error;
pub mod form;
pub mod render;
pub mod xml;

use berth_control::elb::{
    ActionSpec, CertificateSpec, ConditionSpec, CreateListenerSpec, CreateLoadBalancerSpec,
    CreateRuleSpec, CreateTargetGroupSpec, FixedResponseSpec, ForwardSpec, HealthCheckSpec,
    HttpHeaderSpec, ModifyListenerSpec, ModifyRuleSpec, QueryPairSpec, RedirectSpec, TagSpec,
    TargetSpec, ValuesSpec, WeightSpec,
};
use berth_control::{Elb, ElbError, IdSource};
use berth_core::Timestamp;
use serde_json::{json, Value};

use self::form::Params;

/// The SigV4 service name ELBv2 requests are signed for.
pub const SIGNING_NAME: &str = "elasticloadbalancing";

/// The API version ELBv2 requests name.
pub const VERSION: &str = "2015-12-01";

/// Why a request could not become an [`ElbAction`].
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// the action is not one Berth serves (`InvalidAction`)
    #[error("{0}")]
    InvalidAction(String),
    /// a parameter is missing or malformed (`ValidationError`)
    #[error(transparent)]
    Invalid(#[from] ElbError),
}

/// One ELBv2 request, parsed and typed.
#[derive(Debug)]
pub enum ElbAction {
    /// CreateLoadBalancer.
    CreateLoadBalancer(CreateLoadBalancerSpec),
    /// DescribeLoadBalancers.
    DescribeLoadBalancers {
        /// LoadBalancerArns.
        arns: Vec<String>,
        /// Names.
        names: Vec<String>,
        /// Marker.
        marker: Option<String>,
        /// PageSize.
        page_size: Option<i64>,
    },
    /// DeleteLoadBalancer.
    DeleteLoadBalancer(String),
    /// DescribeLoadBalancerAttributes.
    DescribeLoadBalancerAttributes(String),
    /// ModifyLoadBalancerAttributes.
    ModifyLoadBalancerAttributes(String, Vec<(String, String)>),
    /// CreateTargetGroup.
    CreateTargetGroup(CreateTargetGroupSpec),
    /// DescribeTargetGroups.
    DescribeTargetGroups {
        /// LoadBalancerArn.
        lb_arn: Option<String>,
        /// TargetGroupArns.
        arns: Vec<String>,
        /// Names.
        names: Vec<String>,
        /// Marker.
        marker: Option<String>,
        /// PageSize.
        page_size: Option<i64>,
    },
    /// ModifyTargetGroup.
    ModifyTargetGroup(String, HealthCheckSpec),
    /// DeleteTargetGroup.
    DeleteTargetGroup(String),
    /// DescribeTargetGroupAttributes.
    DescribeTargetGroupAttributes(String),
    /// ModifyTargetGroupAttributes.
    ModifyTargetGroupAttributes(String, Vec<(String, String)>),
    /// CreateListener.
    CreateListener(CreateListenerSpec),
    /// DescribeListeners.
    DescribeListeners {
        /// LoadBalancerArn.
        lb_arn: Option<String>,
        /// ListenerArns.
        arns: Vec<String>,
        /// Marker.
        marker: Option<String>,
        /// PageSize.
        page_size: Option<i64>,
    },
    /// ModifyListener.
    ModifyListener(ModifyListenerSpec),
    /// DeleteListener.
    DeleteListener(String),
    /// CreateRule.
    CreateRule(CreateRuleSpec),
    /// DescribeRules.
    DescribeRules {
        /// ListenerArn.
        listener_arn: Option<String>,
        /// RuleArns.
        arns: Vec<String>,
        /// Marker.
        marker: Option<String>,
        /// PageSize.
        page_size: Option<i64>,
    },
    /// ModifyRule.
    ModifyRule(ModifyRuleSpec),
    /// DeleteRule.
    DeleteRule(String),
    /// SetRulePriorities.
    SetRulePriorities(Vec<(Option<String>, Option<i64>)>),
    /// RegisterTargets.
    RegisterTargets(String, Vec<TargetSpec>),
    /// DeregisterTargets.
    DeregisterTargets(String, Vec<TargetSpec>),
    /// DescribeTargetHealth.
    DescribeTargetHealth(String, Option<Vec<TargetSpec>>),
    /// AddTags.
    AddTags(Vec<String>, Vec<TagSpec>),
    /// RemoveTags.
    RemoveTags(Vec<String>, Vec<String>),
    /// DescribeTags.
    DescribeTags(Vec<String>),
}

/// The operations Berth serves, for the InvalidAction message.
pub const ACTIONS: &[&str] = &[
    "AddTags",
    "CreateListener",
    "CreateLoadBalancer",
    "CreateRule",
    "CreateTargetGroup",
    "DeleteListener",
    "DeleteLoadBalancer",
    "DeleteRule",
    "DeleteTargetGroup",
    "DeregisterTargets",
    "DescribeListeners",
    "DescribeLoadBalancerAttributes",
    "DescribeLoadBalancers",
    "DescribeRules",
    "DescribeTags",
    "DescribeTargetGroupAttributes",
    "DescribeTargetGroups",
    "DescribeTargetHealth",
    "ModifyListener",
    "ModifyLoadBalancerAttributes",
    "ModifyRule",
    "ModifyTargetGroup",
    "ModifyTargetGroupAttributes",
    "RegisterTargets",
    "RemoveTags",
    "SetRulePriorities",
];

fn tags(p: &Params<'_>, name: &str) -> Result<Vec<TagSpec>, ElbError> {
    p.list(name)?
        .iter()
        .map(|t| {
            Ok(TagSpec {
                key: t.req_str("Key")?,
                value: t.str("Value")?,
            })
        })
        .collect()
}

fn attributes(p: &Params<'_>) -> Result<Vec<(String, String)>, ElbError> {
    p.req_list("Attributes")?
        .iter()
        .map(|a| Ok((a.req_str("Key")?, a.str("Value")?.unwrap_or_default())))
        .collect()
}

fn targets(list: &[Params<'_>]) -> Result<Vec<TargetSpec>, ElbError> {
    list.iter()
        .enumerate()
        .map(|(i, t)| {
            if t.has("QuicServerId") {
                return Err(ElbError::validation(format!(
                    "Targets[{}].QuicServerId: QUIC targets are not available in Berth",
                    i + 1
                )));
            }
            let port = match t.int("Port")? {
                None => None,
                Some(p) => Some(u16::try_from(p).ok().filter(|p| *p >= 1).ok_or_else(|| {
                    ElbError::validation(format!(
                        "Targets[{}].Port: {p} is out of range (use 1 to 65535)",
                        i + 1
                    ))
                })?),
            };
            Ok(TargetSpec {
                id: t.req_str("Id")?,
                port,
                availability_zone: t.str("AvailabilityZone")?,
            })
        })
        .collect()
}

fn health_check(p: &Params<'_>) -> Result<HealthCheckSpec, ElbError> {
    let matcher = p.obj("Matcher")?;
    Ok(HealthCheckSpec {
        protocol: p.str("HealthCheckProtocol")?,
        port: p.str("HealthCheckPort")?,
        enabled: p.bool("HealthCheckEnabled")?,
        path: p.str("HealthCheckPath")?,
        interval_seconds: p.int("HealthCheckIntervalSeconds")?,
        timeout_seconds: p.int("HealthCheckTimeoutSeconds")?,
        healthy_threshold: p.int("HealthyThresholdCount")?,
        unhealthy_threshold: p.int("UnhealthyThresholdCount")?,
        matcher_http_code: match &matcher {
            Some(m) => m.str("HttpCode")?,
            None => None,
        },
        matcher_grpc_code: match &matcher {
            Some(m) => m.str("GrpcCode")?,
            None => None,
        },
    })
}

fn values_spec(p: Option<Params<'_>>) -> Result<Option<ValuesSpec>, ElbError> {
    p.map(|c| {
        Ok(ValuesSpec {
            values: c.strs("Values")?,
            regex_values: c.strs("RegexValues")?,
        })
    })
    .transpose()
}

fn conditions(list: &[Params<'_>]) -> Result<Vec<ConditionSpec>, ElbError> {
    list.iter()
        .map(|c| {
            Ok(ConditionSpec {
                field: c.str("Field")?,
                values: if c.has("Values") {
                    Some(c.strs("Values")?)
                } else {
                    None
                },
                regex_values: c.strs("RegexValues")?,
                host_header: values_spec(c.obj("HostHeaderConfig")?)?,
                path_pattern: values_spec(c.obj("PathPatternConfig")?)?,
                http_header: c
                    .obj("HttpHeaderConfig")?
                    .map(|h| {
                        Ok::<_, ElbError>(HttpHeaderSpec {
                            name: h.str("HttpHeaderName")?,
                            values: h.strs("Values")?,
                            regex_values: h.strs("RegexValues")?,
                        })
                    })
                    .transpose()?,
                query_string: c
                    .obj("QueryStringConfig")?
                    .map(|q| {
                        q.list("Values")?
                            .iter()
                            .map(|kv| {
                                Ok(QueryPairSpec {
                                    key: kv.str("Key")?,
                                    value: kv.str("Value")?,
                                })
                            })
                            .collect::<Result<Vec<_>, ElbError>>()
                    })
                    .transpose()?,
                http_request_method: c
                    .obj("HttpRequestMethodConfig")?
                    .map(|m| m.strs("Values"))
                    .transpose()?,
                source_ip: c
                    .obj("SourceIpConfig")?
                    .map(|m| m.strs("Values"))
                    .transpose()?,
            })
        })
        .collect()
}

fn actions(list: &[Params<'_>]) -> Result<Vec<ActionSpec>, ElbError> {
    list.iter()
        .map(|a| {
            let forward = a
                .obj("ForwardConfig")?
                .map(|f| {
                    let sticky = f.obj("TargetGroupStickinessConfig")?;
                    Ok::<_, ElbError>(ForwardSpec {
                        target_groups: f
                            .list("TargetGroups")?
                            .iter()
                            .map(|t| {
                                Ok(WeightSpec {
                                    target_group_arn: t.str("TargetGroupArn")?,
                                    weight: t.int("Weight")?,
                                })
                            })
                            .collect::<Result<Vec<_>, ElbError>>()?,
                        stickiness_enabled: match &sticky {
                            Some(s) => s.bool("Enabled")?,
                            None => None,
                        },
                        stickiness_duration: match &sticky {
                            Some(s) => s.int("DurationSeconds")?,
                            None => None,
                        },
                    })
                })
                .transpose()?;
            let redirect = a
                .obj("RedirectConfig")?
                .map(|r| {
                    Ok::<_, ElbError>(RedirectSpec {
                        protocol: r.str("Protocol")?,
                        port: r.str("Port")?,
                        host: r.str("Host")?,
                        path: r.str("Path")?,
                        query: r.str("Query")?,
                        status_code: r.str("StatusCode")?,
                    })
                })
                .transpose()?;
            let fixed_response = a
                .obj("FixedResponseConfig")?
                .map(|f| {
                    Ok::<_, ElbError>(FixedResponseSpec {
                        status_code: f.str("StatusCode")?,
                        content_type: f.str("ContentType")?,
                        message_body: f.str("MessageBody")?,
                    })
                })
                .transpose()?;
            Ok(ActionSpec {
                action_type: a.str("Type")?,
                order: a.int("Order")?,
                target_group_arn: a.str("TargetGroupArn")?,
                forward,
                redirect,
                fixed_response,
                authenticate_config: a.has("AuthenticateOidcConfig")
                    || a.has("AuthenticateCognitoConfig")
                    || a.has("JwtValidationConfig"),
            })
        })
        .collect()
}

fn certificates(list: &[Params<'_>]) -> Result<Vec<CertificateSpec>, ElbError> {
    list.iter()
        .map(|c| {
            Ok(CertificateSpec {
                certificate_arn: c.str("CertificateArn")?,
                is_default: c.bool("IsDefault")?,
            })
        })
        .collect()
}

fn mutual_auth_mode(p: &Params<'_>) -> Result<Option<String>, ElbError> {
    match p.obj("MutualAuthentication")? {
        Some(m) => Ok(Some(m.str("Mode")?.unwrap_or_else(|| "off".into()))),
        None => Ok(None),
    }
}

impl ElbAction {
    /// Types the parameters of `action`.
    pub fn parse(action: &str, p: &Params<'_>) -> Result<Self, ParseError> {
        Ok(match action {
            "CreateLoadBalancer" => {
                let mappings = p.list("SubnetMappings")?;
                let mut subnet_mappings = Vec::new();
                let mut addresses = false;
                for m in &mappings {
                    subnet_mappings.push(m.req_str("SubnetId")?);
                    addresses |= m.has("AllocationId")
                        || m.has("PrivateIPv4Address")
                        || m.has("IPv6Address")
                        || m.has("SourceNatIpv6Prefix");
                }
                if p.has("IpamPools") || p.str("EnablePrefixForIpv6SourceNat")?.as_deref() == Some("on") {
                    return Err(ElbError::validation(
                        "IPAM pools and IPv6 source NAT are not available in Berth (load balancers are IPv4 only)",
                    )
                    .into());
                }
                Self::CreateLoadBalancer(CreateLoadBalancerSpec {
                    name: p.req_str("Name")?,
                    subnets: p.strs("Subnets")?,
                    subnet_mappings,
                    subnet_mapping_addresses: addresses,
                    security_groups: p.strs("SecurityGroups")?,
                    scheme: p.str("Scheme")?,
                    lb_type: p.str("Type")?,
                    ip_address_type: p.str("IpAddressType")?,
                    customer_owned_ipv4_pool: p.str("CustomerOwnedIpv4Pool")?,
                    tags: tags(p, "Tags")?,
                })
            }
            "DescribeLoadBalancers" => Self::DescribeLoadBalancers {
                arns: p.strs("LoadBalancerArns")?,
                names: p.strs("Names")?,
                marker: p.str("Marker")?,
                page_size: p.int("PageSize")?,
            },
            "DeleteLoadBalancer" => Self::DeleteLoadBalancer(p.req_str("LoadBalancerArn")?),
            "DescribeLoadBalancerAttributes" => {
                Self::DescribeLoadBalancerAttributes(p.req_str("LoadBalancerArn")?)
            }
            "ModifyLoadBalancerAttributes" => {
                Self::ModifyLoadBalancerAttributes(p.req_str("LoadBalancerArn")?, attributes(p)?)
            }
            "CreateTargetGroup" => Self::CreateTargetGroup(CreateTargetGroupSpec {
                name: p.req_str("Name")?,
                protocol: p.str("Protocol")?,
                protocol_version: p.str("ProtocolVersion")?,
                port: p.int("Port")?,
                vpc_id: p.str("VpcId")?,
                health_check: health_check(p)?,
                target_type: p.str("TargetType")?,
                ip_address_type: p.str("IpAddressType")?,
                target_control_port: p.int("TargetControlPort")?,
                tags: tags(p, "Tags")?,
            }),
            "DescribeTargetGroups" => Self::DescribeTargetGroups {
                lb_arn: p.str("LoadBalancerArn")?,
                arns: p.strs("TargetGroupArns")?,
                names: p.strs("Names")?,
                marker: p.str("Marker")?,
                page_size: p.int("PageSize")?,
            },
            "ModifyTargetGroup" => {
                Self::ModifyTargetGroup(p.req_str("TargetGroupArn")?, health_check(p)?)
            }
            "DeleteTargetGroup" => Self::DeleteTargetGroup(p.req_str("TargetGroupArn")?),
            "DescribeTargetGroupAttributes" => {
                Self::DescribeTargetGroupAttributes(p.req_str("TargetGroupArn")?)
            }
            "ModifyTargetGroupAttributes" => {
                Self::ModifyTargetGroupAttributes(p.req_str("TargetGroupArn")?, attributes(p)?)
            }
            "CreateListener" => Self::CreateListener(CreateListenerSpec {
                load_balancer_arn: p.req_str("LoadBalancerArn")?,
                protocol: p.str("Protocol")?,
                port: p.int("Port")?,
                ssl_policy: p.str("SslPolicy")?,
                certificates: certificates(&p.list("Certificates")?)?,
                default_actions: actions(&p.req_list("DefaultActions")?)?,
                alpn_policy: p.strs("AlpnPolicy")?,
                mutual_authentication_mode: mutual_auth_mode(p)?,
                tags: tags(p, "Tags")?,
            }),
            "DescribeListeners" => Self::DescribeListeners {
                lb_arn: p.str("LoadBalancerArn")?,
                arns: p.strs("ListenerArns")?,
                marker: p.str("Marker")?,
                page_size: p.int("PageSize")?,
            },
            "ModifyListener" => Self::ModifyListener(ModifyListenerSpec {
                listener_arn: p.req_str("ListenerArn")?,
                port: p.int("Port")?,
                protocol: p.str("Protocol")?,
                ssl_policy: p.str("SslPolicy")?,
                certificates: p
                    .opt_list("Certificates")?
                    .map(|c| certificates(&c))
                    .transpose()?,
                default_actions: p
                    .opt_list("DefaultActions")?
                    .map(|a| actions(&a))
                    .transpose()?,
                alpn_policy: p.strs("AlpnPolicy")?,
                mutual_authentication_mode: mutual_auth_mode(p)?,
            }),
            "DeleteListener" => Self::DeleteListener(p.req_str("ListenerArn")?),
            "CreateRule" => Self::CreateRule(CreateRuleSpec {
                listener_arn: p.req_str("ListenerArn")?,
                conditions: conditions(&p.req_list("Conditions")?)?,
                priority: Some(p.int("Priority")?.ok_or_else(|| {
                    ElbError::validation(
                        "1 validation error detected: Value null at 'Priority' failed to satisfy constraint: Member must not be null",
                    )
                })?),
                actions: actions(&p.req_list("Actions")?)?,
                transforms: !p.list("Transforms")?.is_empty(),
                tags: tags(p, "Tags")?,
            }),
            "DescribeRules" => Self::DescribeRules {
                listener_arn: p.str("ListenerArn")?,
                arns: p.strs("RuleArns")?,
                marker: p.str("Marker")?,
                page_size: p.int("PageSize")?,
            },
            "ModifyRule" => Self::ModifyRule(ModifyRuleSpec {
                rule_arn: p.req_str("RuleArn")?,
                conditions: p
                    .opt_list("Conditions")?
                    .map(|c| conditions(&c))
                    .transpose()?,
                actions: p.opt_list("Actions")?.map(|a| actions(&a)).transpose()?,
                transforms: !p.list("Transforms")?.is_empty(),
            }),
            "DeleteRule" => Self::DeleteRule(p.req_str("RuleArn")?),
            "SetRulePriorities" => Self::SetRulePriorities(
                p.req_list("RulePriorities")?
                    .iter()
                    .map(|r| Ok((r.str("RuleArn")?, r.int("Priority")?)))
                    .collect::<Result<Vec<_>, ElbError>>()?,
            ),
            "RegisterTargets" => Self::RegisterTargets(
                p.req_str("TargetGroupArn")?,
                targets(&p.req_list("Targets")?)?,
            ),
            "DeregisterTargets" => Self::DeregisterTargets(
                p.req_str("TargetGroupArn")?,
                targets(&p.req_list("Targets")?)?,
            ),
            "DescribeTargetHealth" => Self::DescribeTargetHealth(
                p.req_str("TargetGroupArn")?,
                p.opt_list("Targets")?.map(|t| targets(&t)).transpose()?,
            ),
            "AddTags" => Self::AddTags(p.req_strs("ResourceArns")?, {
                if !p.has("Tags") {
                    return Err(ElbError::validation(
                        "1 validation error detected: Value null at 'Tags' failed to satisfy constraint: Member must not be null",
                    )
                    .into());
                }
                tags(p, "Tags")?
            }),
            "RemoveTags" => Self::RemoveTags(p.req_strs("ResourceArns")?, p.req_strs("TagKeys")?),
            "DescribeTags" => Self::DescribeTags(p.req_strs("ResourceArns")?),
            other => {
                return Err(ParseError::InvalidAction(if other.is_empty() {
                    "the request names no Action (send Action=DescribeLoadBalancers&Version=2015-12-01, ...)".to_string()
                } else {
                    format!(
                        "the action {other} is not valid for this web service (Berth serves these ELBv2 actions: {})",
                        ACTIONS.join(", ")
                    )
                }))
            }
        })
    }
}

fn with_marker(key: &str, items: Vec<Value>, next: Option<String>) -> Value {
    json!({ key: items, "NextMarker": next })
}

fn attribute_list(attrs: &[(String, String)]) -> Value {
    Value::Array(
        attrs
            .iter()
            .map(|(k, v)| json!({"Key": k, "Value": v}))
            .collect(),
    )
}

/// Runs an action and returns its result in the model's output shape.
pub async fn dispatch(
    elb: &Elb,
    ids: &dyn IdSource,
    action: ElbAction,
    now: Timestamp,
) -> Result<Value, ElbError> {
    let region = elb.scope().region.clone();
    Ok(match action {
        ElbAction::CreateLoadBalancer(spec) => {
            let lb = elb.create_load_balancer(spec, ids, now).await?;
            json!({"LoadBalancers": [render::load_balancer(&lb, &region)]})
        }
        ElbAction::DescribeLoadBalancers {
            arns,
            names,
            marker,
            page_size,
        } => {
            let (lbs, next) = elb
                .describe_load_balancers(&arns, &names, marker.as_deref(), page_size)
                .await?;
            with_marker(
                "LoadBalancers",
                lbs.iter()
                    .map(|l| render::load_balancer(l, &region))
                    .collect(),
                next,
            )
        }
        ElbAction::DeleteLoadBalancer(arn) => {
            elb.delete_load_balancer(&arn).await?;
            json!({})
        }
        ElbAction::DescribeLoadBalancerAttributes(arn) => {
            json!({"Attributes": attribute_list(&elb.load_balancer_attributes(&arn).await?)})
        }
        ElbAction::ModifyLoadBalancerAttributes(arn, changes) => json!({
            "Attributes": attribute_list(&elb.modify_load_balancer_attributes(&arn, &changes).await?)
        }),
        ElbAction::CreateTargetGroup(spec) => {
            let tg = elb.create_target_group(spec, ids, now).await?;
            // A new group, or an existing one returned again (then it may
            // already be in use).
            let lbs = elb
                .describe_target_groups(None, std::slice::from_ref(&tg.arn), &[], None, None)
                .await?
                .0
                .into_iter()
                .next()
                .map(|v| v.load_balancer_arns)
                .unwrap_or_default();
            json!({"TargetGroups": [render::target_group(&tg, &lbs)]})
        }
        ElbAction::DescribeTargetGroups {
            lb_arn,
            arns,
            names,
            marker,
            page_size,
        } => {
            let (tgs, next) = elb
                .describe_target_groups(
                    lb_arn.as_deref(),
                    &arns,
                    &names,
                    marker.as_deref(),
                    page_size,
                )
                .await?;
            with_marker(
                "TargetGroups",
                tgs.iter()
                    .map(|v| render::target_group(&v.record, &v.load_balancer_arns))
                    .collect(),
                next,
            )
        }
        ElbAction::ModifyTargetGroup(arn, hc) => {
            let v = elb.modify_target_group(&arn, &hc).await?;
            json!({"TargetGroups": [render::target_group(&v.record, &v.load_balancer_arns)]})
        }
        ElbAction::DeleteTargetGroup(arn) => {
            elb.delete_target_group(&arn).await?;
            json!({})
        }
        ElbAction::DescribeTargetGroupAttributes(arn) => {
            json!({"Attributes": attribute_list(&elb.target_group_attributes(&arn).await?)})
        }
        ElbAction::ModifyTargetGroupAttributes(arn, changes) => json!({
            "Attributes": attribute_list(&elb.modify_target_group_attributes(&arn, &changes).await?)
        }),
        ElbAction::CreateListener(spec) => {
            let l = elb.create_listener(spec, ids).await?;
            json!({"Listeners": [render::listener(&l)]})
        }
        ElbAction::DescribeListeners {
            lb_arn,
            arns,
            marker,
            page_size,
        } => {
            let (ls, next) = elb
                .describe_listeners(lb_arn.as_deref(), &arns, marker.as_deref(), page_size)
                .await?;
            with_marker("Listeners", ls.iter().map(render::listener).collect(), next)
        }
        ElbAction::ModifyListener(spec) => {
            let l = elb.modify_listener(spec).await?;
            json!({"Listeners": [render::listener(&l)]})
        }
        ElbAction::DeleteListener(arn) => {
            elb.delete_listener(&arn).await?;
            json!({})
        }
        ElbAction::CreateRule(spec) => {
            let r = elb.create_rule(spec, ids).await?;
            json!({"Rules": [render::rule(&r)]})
        }
        ElbAction::DescribeRules {
            listener_arn,
            arns,
            marker,
            page_size,
        } => {
            let (rs, next) = elb
                .describe_rules(listener_arn.as_deref(), &arns, marker.as_deref(), page_size)
                .await?;
            with_marker("Rules", rs.iter().map(render::rule).collect(), next)
        }
        ElbAction::ModifyRule(spec) => {
            let r = elb.modify_rule(spec).await?;
            json!({"Rules": [render::rule(&r)]})
        }
        ElbAction::DeleteRule(arn) => {
            elb.delete_rule(&arn).await?;
            json!({})
        }
        ElbAction::SetRulePriorities(pairs) => {
            let rs = elb.set_rule_priorities(&pairs).await?;
            json!({"Rules": rs.iter().map(render::rule).collect::<Vec<_>>()})
        }
        ElbAction::RegisterTargets(arn, targets) => {
            elb.register_targets(&arn, &targets, now).await?;
            json!({})
        }
        ElbAction::DeregisterTargets(arn, targets) => {
            elb.deregister_targets(&arn, &targets, now).await?;
            json!({})
        }
        ElbAction::DescribeTargetHealth(arn, targets) => {
            let d = elb.describe_target_health(&arn, targets.as_deref()).await?;
            json!({"TargetHealthDescriptions": d.iter().map(render::target_health).collect::<Vec<_>>()})
        }
        ElbAction::AddTags(arns, tags) => {
            elb.add_tags(&arns, &tags).await?;
            json!({})
        }
        ElbAction::RemoveTags(arns, keys) => {
            elb.remove_tags(&arns, &keys).await?;
            json!({})
        }
        ElbAction::DescribeTags(arns) => {
            let d = elb.describe_tags(&arns).await?;
            json!({"TagDescriptions": d.iter().map(|(arn, tags)| json!({
                "ResourceArn": arn,
                "Tags": render::tags(tags),
            })).collect::<Vec<_>>()})
        }
    })
}

/// Serves one ELBv2 request (already authenticated): the parameters come
/// from the query string and, for POST, the form body.
pub async fn handle(
    elb: &Elb,
    ids: &dyn IdSource,
    method: &http::Method,
    query: Option<&str>,
    body: &[u8],
    now: Timestamp,
    request_id: &str,
) -> axum::response::Response {
    let fail = |e: &ElbError| {
        let (status, code) = error::wire(e);
        if status.is_server_error() {
            tracing::error!(error = %e, "elbv2 request failed");
        }
        xml::error(status, code, &e.to_string(), request_id)
    };
    // Presigned-URL authentication parameters are not operation parameters.
    let mut pairs: Vec<(String, String)> = form::pairs(query.unwrap_or(""))
        .into_iter()
        .filter(|(k, _)| !k.starts_with("X-Amz-"))
        .collect();
    if method == http::Method::POST && !body.is_empty() {
        let Ok(text) = std::str::from_utf8(body) else {
            return fail(&ElbError::validation(
                "the request body is not UTF-8 form data (application/x-www-form-urlencoded)",
            ));
        };
        pairs.extend(form::pairs(text));
    }
    let tree = match form::parse(&pairs) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let params = Params::root(&tree);
    let action = match params.str("Action") {
        Ok(a) => a.unwrap_or_default(),
        Err(e) => return fail(&e),
    };
    match params.str("Version") {
        Ok(None) => {}
        Ok(Some(v)) if v == VERSION => {}
        Ok(Some(v)) => {
            return fail(&ElbError::validation(format!(
                "Version {v} is not served here: Berth serves the ELBv2 API (Version={VERSION}); classic load balancers (2012-06-01) are not available"
            )))
        }
        Err(e) => return fail(&e),
    }
    let typed = match ElbAction::parse(&action, &params) {
        Ok(a) => a,
        Err(ParseError::InvalidAction(m)) => {
            return xml::error(
                http::StatusCode::BAD_REQUEST,
                error::INVALID_ACTION,
                &m,
                request_id,
            )
        }
        Err(ParseError::Invalid(e)) => return fail(&e),
    };
    tracing::debug!(action = %action, "elbv2 request");
    match dispatch(elb, ids, typed, now).await {
        Ok(v) => xml::ok(&action, &v, request_id),
        Err(e) => fail(&e),
    }
}

/// Whether a request without `X-Amz-Target` looks like a Query-protocol
/// request: a form body, or `Action=` in the query string.
pub fn looks_like_query(headers: &http::HeaderMap, query: Option<&str>) -> bool {
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    form || query.is_some_and(|q| q.split('&').any(|p| p.starts_with("Action=")))
}
