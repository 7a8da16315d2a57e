//! ELBv2 ARNs: how they are made and read back into store keys.
//!
//! ```text
//! arn:aws:elasticloadbalancing:{region}:{account}:loadbalancer/app/{name}/{id}
//! arn:aws:elasticloadbalancing:{region}:{account}:targetgroup/{name}/{id}
//! arn:aws:elasticloadbalancing:{region}:{account}:listener/app/{lbName}/{lbId}/{listenerId}
//! arn:aws:elasticloadbalancing:{region}:{account}:listener-rule/app/{lbName}/{lbId}/{listenerId}/{ruleId}
//! ```
//!
//! Ids are 16 lowercase hex digits. A listener's *default rule* has the
//! listener's own id as its rule id, so its ARN is stable and needs no
//! record of its own.

use berth_core::Scope;

/// What an ELBv2 ARN names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElbArn {
    /// A load balancer.
    LoadBalancer {
        /// Its name (the store key).
        name: String,
        /// Its id.
        id: String,
    },
    /// A target group.
    TargetGroup {
        /// Its name (the store key).
        name: String,
        /// Its id.
        id: String,
    },
    /// A listener.
    Listener {
        /// The load balancer's name.
        lb_name: String,
        /// The load balancer's id.
        lb_id: String,
        /// The listener's id.
        id: String,
    },
    /// A listener rule (the default rule when `id == listener_id`).
    Rule {
        /// The load balancer's name.
        lb_name: String,
        /// The load balancer's id.
        lb_id: String,
        /// The listener's id.
        listener_id: String,
        /// The rule's id.
        id: String,
    },
}

/// Why a string is not an ARN of this installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArnProblem {
    /// Not an ELBv2 ARN at all (or a malformed one).
    Malformed,
    /// A well-formed ELBv2 ARN of another region or account: nothing here
    /// has it.
    Foreign,
}

const SERVICE_PREFIX: &str = "arn:aws:elasticloadbalancing:";

/// Whether `s` is a valid load balancer or target group name: 1–32
/// alphanumerics and hyphens, not starting or ending with a hyphen.
pub fn valid_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `s` is an id Berth makes: 16 lowercase hex digits.
pub fn valid_id(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// 16 lowercase hex digits from a random value.
pub fn new_id(v: u128) -> String {
    format!("{:016x}", v & u128::from(u64::MAX))
}

impl ElbArn {
    /// Reads an ARN. Ids and names are checked for shape.
    pub fn parse(s: &str, scope: &Scope) -> Result<Self, ArnProblem> {
        let rest = s
            .strip_prefix(SERVICE_PREFIX)
            .ok_or(ArnProblem::Malformed)?;
        let mut parts = rest.splitn(3, ':');
        let region = parts.next().ok_or(ArnProblem::Malformed)?;
        let account = parts.next().ok_or(ArnProblem::Malformed)?;
        let resource = parts.next().ok_or(ArnProblem::Malformed)?;
        if region.is_empty() || account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ArnProblem::Malformed);
        }
        let segs: Vec<&str> = resource.split('/').collect();
        let name_ok = |n: &str| valid_name(n);
        let parsed = match segs.as_slice() {
            ["loadbalancer", "app", name, id] if name_ok(name) && valid_id(id) => {
                Self::LoadBalancer {
                    name: (*name).to_string(),
                    id: (*id).to_string(),
                }
            }
            ["targetgroup", name, id] if name_ok(name) && valid_id(id) => Self::TargetGroup {
                name: (*name).to_string(),
                id: (*id).to_string(),
            },
            ["listener", "app", lb, lb_id, id]
                if name_ok(lb) && valid_id(lb_id) && valid_id(id) =>
            {
                Self::Listener {
                    lb_name: (*lb).to_string(),
                    lb_id: (*lb_id).to_string(),
                    id: (*id).to_string(),
                }
            }
            ["listener-rule", "app", lb, lb_id, l, id]
                if name_ok(lb) && valid_id(lb_id) && valid_id(l) && valid_id(id) =>
            {
                Self::Rule {
                    lb_name: (*lb).to_string(),
                    lb_id: (*lb_id).to_string(),
                    listener_id: (*l).to_string(),
                    id: (*id).to_string(),
                }
            }
            _ => return Err(ArnProblem::Malformed),
        };
        if region != scope.region || account != scope.account {
            return Err(ArnProblem::Foreign);
        }
        Ok(parsed)
    }

    /// What kind of resource this names, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::LoadBalancer { .. } => "load balancer",
            Self::TargetGroup { .. } => "target group",
            Self::Listener { .. } => "listener",
            Self::Rule { .. } => "rule",
        }
    }
}

fn prefix(scope: &Scope) -> String {
    format!("{SERVICE_PREFIX}{}:{}:", scope.region, scope.account)
}

/// A load balancer's ARN.
pub fn load_balancer(scope: &Scope, name: &str, id: &str) -> String {
    format!("{}loadbalancer/app/{name}/{id}", prefix(scope))
}

/// A target group's ARN.
pub fn target_group(scope: &Scope, name: &str, id: &str) -> String {
    format!("{}targetgroup/{name}/{id}", prefix(scope))
}

/// A listener's ARN.
pub fn listener(scope: &Scope, lb_name: &str, lb_id: &str, id: &str) -> String {
    format!("{}listener/app/{lb_name}/{lb_id}/{id}", prefix(scope))
}

/// A rule's ARN.
pub fn rule(scope: &Scope, lb_name: &str, lb_id: &str, listener_id: &str, id: &str) -> String {
    format!(
        "{}listener-rule/app/{lb_name}/{lb_id}/{listener_id}/{id}",
        prefix(scope)
    )
}

/// The ARN of a listener's default rule (rule id = listener id), from the
/// listener's ARN.
pub fn default_rule_of(listener_arn: &str) -> String {
    match listener_arn.rsplit_once('/') {
        Some((_, id)) => format!(
            "{}/{id}",
            listener_arn.replacen(":listener/app/", ":listener-rule/app/", 1)
        ),
        None => listener_arn.to_string(),
    }
}

/// The id (last segment) of an ARN made here.
pub fn last_segment(arn: &str) -> &str {
    arn.rsplit_once('/').map_or(arn, |(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            region: "us-east-1".into(),
            account: "123456789012".into(),
        }
    }

    #[test]
    fn arns_round_trip() {
        let s = scope();
        let id = new_id(0xab);
        assert_eq!(id, "00000000000000ab");
        let lb = load_balancer(&s, "web", &id);
        assert_eq!(
            lb,
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/00000000000000ab"
        );
        assert_eq!(
            ElbArn::parse(&lb, &s),
            Ok(ElbArn::LoadBalancer {
                name: "web".into(),
                id: id.clone()
            })
        );
        let tg = target_group(&s, "api-tg", &id);
        assert_eq!(
            ElbArn::parse(&tg, &s),
            Ok(ElbArn::TargetGroup {
                name: "api-tg".into(),
                id: id.clone()
            })
        );
        let l = listener(&s, "web", &id, "1111111111111111");
        assert_eq!(
            ElbArn::parse(&l, &s),
            Ok(ElbArn::Listener {
                lb_name: "web".into(),
                lb_id: id.clone(),
                id: "1111111111111111".into()
            })
        );
        let r = rule(&s, "web", &id, "1111111111111111", "2222222222222222");
        assert_eq!(
            ElbArn::parse(&r, &s),
            Ok(ElbArn::Rule {
                lb_name: "web".into(),
                lb_id: id.clone(),
                listener_id: "1111111111111111".into(),
                id: "2222222222222222".into()
            })
        );
        let d = default_rule_of(&l);
        assert_eq!(
            d,
            rule(&s, "web", &id, "1111111111111111", "1111111111111111")
        );
        assert_eq!(last_segment(&r), "2222222222222222");
    }

    #[test]
    fn malformed_and_foreign_arns() {
        let s = scope();
        for bad in [
            "",
            "web",
            "arn:aws:ecs:us-east-1:123456789012:cluster/default",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/web/00000000000000ab",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/xyz",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/-web/00000000000000ab",
            "arn:aws:elasticloadbalancing:us-east-1:1234:targetgroup/tg/00000000000000ab",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/00000000000000ab/x",
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/00000000000000ab",
        ] {
            assert_eq!(ElbArn::parse(bad, &s), Err(ArnProblem::Malformed), "{bad}");
        }
        let other =
            "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/tg/00000000000000ab";
        assert_eq!(ElbArn::parse(other, &s), Err(ArnProblem::Foreign));
        let other =
            "arn:aws:elasticloadbalancing:us-east-1:999999999999:targetgroup/tg/00000000000000ab";
        assert_eq!(ElbArn::parse(other, &s), Err(ArnProblem::Foreign));
    }

    #[test]
    fn names() {
        assert!(valid_name("a"));
        assert!(valid_name("web-1"));
        assert!(valid_name(&"a".repeat(32)));
        assert!(!valid_name(&"a".repeat(33)));
        assert!(!valid_name(""));
        assert!(!valid_name("-a"));
        assert!(!valid_name("a-"));
        assert!(!valid_name("a_b"));
        assert!(!valid_name("a.b"));
    }
}
