//! CreateTargetGroup, DescribeTargetGroups, ModifyTargetGroup,
//! DeleteTargetGroup and the target group attributes.
//!
//! A target group is `/elb/tgs/{name}`. Berth's target groups have target
//! type `ip` (Fargate tasks register by their private address) and speak
//! HTTP or HTTPS to their targets, HTTP/1.1 or HTTP/2.

use berth_core::elb::{HealthCheck, TargetGroupRecord, TargetHealthRecord, TargetRecord};
use berth_core::Timestamp;
use berth_store::{Compare, Op, Txn};

use super::spec::{self, TagSpec};
use super::{
    arn, attributes, backoff, encode, lbs_using, page, page_size, Elb, ElbArn, ElbError,
    MAX_RETRIES,
};
use crate::ids::IdSource;
use crate::keys;

/// The health check members of CreateTargetGroup and ModifyTargetGroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthCheckSpec {
    /// `HTTP` or `HTTPS` (default: the group's protocol).
    pub protocol: Option<String>,
    /// `traffic-port` (default) or 1–65535.
    pub port: Option<String>,
    /// Must not be false (health checks of `ip` groups are always on).
    pub enabled: Option<bool>,
    /// Starts with `/`, at most 1024 characters (default `/`).
    pub path: Option<String>,
    /// 5–300 (default 30).
    pub interval_seconds: Option<i64>,
    /// 2–120 (default 5), below the interval.
    pub timeout_seconds: Option<i64>,
    /// 2–10 (default 5).
    pub healthy_threshold: Option<i64>,
    /// 2–10 (default 2).
    pub unhealthy_threshold: Option<i64>,
    /// `Matcher.HttpCode`: `200`, `200,202`, `200-299` (codes 200–499).
    pub matcher_http_code: Option<String>,
    /// `Matcher.GrpcCode` (refused: Berth has no gRPC target groups).
    pub matcher_grpc_code: Option<String>,
}

/// What CreateTargetGroup asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateTargetGroupSpec {
    /// 1–32 alphanumerics and hyphens.
    pub name: String,
    /// `HTTP` or `HTTPS`.
    pub protocol: Option<String>,
    /// `HTTP1` (default) or `HTTP2`.
    pub protocol_version: Option<String>,
    /// 1–65535: the port of targets registered without one.
    pub port: Option<i64>,
    /// Recorded.
    pub vpc_id: Option<String>,
    /// The health check.
    pub health_check: HealthCheckSpec,
    /// `ip` (the default in Berth; the other types are refused).
    pub target_type: Option<String>,
    /// `ipv4` (default).
    pub ip_address_type: Option<String>,
    /// Refused when given (not for application load balancers).
    pub target_control_port: Option<i64>,
    /// Tags.
    pub tags: Vec<TagSpec>,
}

/// A target group as DescribeTargetGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupView {
    /// The record.
    pub record: TargetGroupRecord,
    /// The load balancers whose listeners or rules forward to it.
    pub load_balancer_arns: Vec<String>,
}

fn ranged(field: &str, v: Option<i64>, lo: i64, hi: i64, current: u32) -> Result<u32, ElbError> {
    match v {
        None => Ok(current),
        Some(n) if (lo..=hi).contains(&n) => Ok(u32::try_from(n).unwrap_or(current)),
        Some(n) => Err(ElbError::validation(format!(
            "{field}: {n} is out of range (use {lo} to {hi})"
        ))),
    }
}

/// Checks an HTTP success-code matcher: codes 200–499, as `200`,
/// `200,202`, `200-299` or combinations of these.
pub fn check_http_matcher(m: &str) -> Result<(), ElbError> {
    let bad = || {
        ElbError::validation(format!(
            "Matcher.HttpCode: '{m}' is not valid (use codes 200 to 499 as 200, 200,202 or 200-299)"
        ))
    };
    let code = |s: &str| -> Result<u16, ElbError> {
        s.parse::<u16>()
            .ok()
            .filter(|c| s.len() == 3 && (200..=499).contains(c))
            .ok_or_else(bad)
    };
    if m.is_empty() {
        return Err(bad());
    }
    for part in m.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if code(a)? >= code(b)? {
                    return Err(bad());
                }
            }
            None => {
                code(part)?;
            }
        }
    }
    Ok(())
}

/// Applies a health check spec onto `base`; `tg_protocol` is the group's.
pub fn health_check(base: &HealthCheck, spec: &HealthCheckSpec) -> Result<HealthCheck, ElbError> {
    let mut hc = base.clone();
    if let Some(p) = &spec.protocol {
        if !matches!(p.as_str(), "HTTP" | "HTTPS") {
            return Err(ElbError::validation(format!(
                "HealthCheckProtocol: '{p}' is not valid for an application load balancer's target group (use HTTP or HTTPS)"
            )));
        }
        hc.protocol.clone_from(p);
    }
    if let Some(p) = &spec.port {
        if p != "traffic-port" && !p.parse::<u16>().is_ok_and(|n| n >= 1) {
            return Err(ElbError::validation(format!(
                "HealthCheckPort: '{p}' is not valid (use traffic-port or 1 to 65535)"
            )));
        }
        hc.port.clone_from(p);
    }
    if spec.enabled == Some(false) {
        return Err(ElbError::validation(
            "HealthCheckEnabled: health checks of target groups with target type ip are always on and cannot be disabled",
        ));
    }
    if let Some(p) = &spec.path {
        if !p.starts_with('/') || p.len() > 1024 {
            return Err(ElbError::validation(format!(
                "HealthCheckPath: '{p}' must start with / and be at most 1024 characters"
            )));
        }
        hc.path.clone_from(p);
    }
    hc.interval_seconds = ranged(
        "HealthCheckIntervalSeconds",
        spec.interval_seconds,
        5,
        300,
        hc.interval_seconds,
    )?;
    hc.timeout_seconds = ranged(
        "HealthCheckTimeoutSeconds",
        spec.timeout_seconds,
        2,
        120,
        hc.timeout_seconds,
    )?;
    hc.healthy_threshold = ranged(
        "HealthyThresholdCount",
        spec.healthy_threshold,
        2,
        10,
        hc.healthy_threshold,
    )?;
    hc.unhealthy_threshold = ranged(
        "UnhealthyThresholdCount",
        spec.unhealthy_threshold,
        2,
        10,
        hc.unhealthy_threshold,
    )?;
    if hc.timeout_seconds >= hc.interval_seconds {
        return Err(ElbError::validation(format!(
            "HealthCheckTimeoutSeconds: the timeout ({} s) must be smaller than the interval ({} s)",
            hc.timeout_seconds, hc.interval_seconds
        )));
    }
    if spec.matcher_grpc_code.is_some() {
        return Err(ElbError::validation(
            "Matcher.GrpcCode: Berth has no gRPC target groups; use Matcher.HttpCode",
        ));
    }
    if let Some(m) = &spec.matcher_http_code {
        check_http_matcher(m)?;
        hc.matcher.clone_from(m);
    }
    Ok(hc)
}

/// Checks a target group name.
pub fn check_tg_name(name: &str) -> Result<(), ElbError> {
    if arn::valid_name(name) {
        Ok(())
    } else {
        Err(ElbError::validation(format!(
            "Name: target group name '{name}' must be 1 to 32 letters, digits and hyphens, not beginning or ending with a hyphen"
        )))
    }
}

impl Elb {
    /// CreateTargetGroup. Creating one that exists with the same settings
    /// returns it; with other settings it is DuplicateTargetGroupName.
    pub async fn create_target_group(
        &self,
        spec: CreateTargetGroupSpec,
        ids: &dyn IdSource,
        now: Timestamp,
    ) -> Result<TargetGroupRecord, ElbError> {
        check_tg_name(&spec.name)?;
        match spec.target_type.as_deref() {
            None | Some("ip") => {}
            Some(t @ ("instance" | "lambda" | "alb")) => {
                return Err(ElbError::validation(format!(
                    "TargetType: '{t}' target groups are not available in Berth; Fargate tasks register by IP address, so use TargetType ip"
                )))
            }
            Some(t) => {
                return Err(ElbError::validation(format!(
                    "TargetType: '{t}' is not a target type (use ip)"
                )))
            }
        }
        let protocol = match spec.protocol.as_deref() {
            Some(p @ ("HTTP" | "HTTPS")) => p.to_string(),
            Some(p) => {
                return Err(ElbError::validation(format!(
                    "Protocol: '{p}' is not available: Berth's application load balancers forward HTTP or HTTPS"
                )))
            }
            None => {
                return Err(ElbError::validation(
                    "Protocol: a target group of type ip needs a protocol (HTTP or HTTPS)",
                ))
            }
        };
        let port = match spec.port {
            Some(p) => u16::try_from(p).ok().filter(|p| *p >= 1).ok_or_else(|| {
                ElbError::validation(format!("Port: {p} is out of range (use 1 to 65535)"))
            })?,
            None => {
                return Err(ElbError::validation(
                    "Port: a target group of type ip needs a port (1 to 65535)",
                ))
            }
        };
        let protocol_version = match spec.protocol_version.as_deref() {
            None | Some("HTTP1") => "HTTP1".to_string(),
            Some("HTTP2") => "HTTP2".to_string(),
            Some("GRPC") => {
                return Err(ElbError::validation(
                    "ProtocolVersion: GRPC target groups are not available in Berth (use HTTP1 or HTTP2)",
                ))
            }
            Some(v) => {
                return Err(ElbError::validation(format!(
                    "ProtocolVersion: '{v}' is not valid (use HTTP1 or HTTP2)"
                )))
            }
        };
        match spec.ip_address_type.as_deref() {
            None | Some("ipv4") => {}
            Some(t) => {
                return Err(ElbError::validation(format!(
                    "IpAddressType: Berth targets are IPv4 only; '{t}' is not available"
                )))
            }
        }
        if spec.target_control_port.is_some() {
            return Err(ElbError::validation(
                "TargetControlPort: not available for application load balancer target groups",
            ));
        }
        let base = HealthCheck {
            protocol: protocol.clone(),
            ..HealthCheck::default()
        };
        let hc = health_check(&base, &spec.health_check)?;
        let tags = spec::tags("Tags", &spec.tags)?;

        let key = keys::elb_tg(&spec.name);
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            if let Some((existing, _)) = self.tg_by_name(&spec.name).await? {
                let same = existing.protocol == protocol
                    && existing.protocol_version == protocol_version
                    && existing.port == port
                    && existing.vpc_id == spec.vpc_id
                    && existing.health_check == hc;
                if same {
                    return Ok(existing);
                }
                return Err(ElbError::DuplicateTargetGroupName(format!(
                    "a target group named '{}' already exists with other settings; choose another name, or change it with ModifyTargetGroup",
                    spec.name
                )));
            }
            let id = arn::new_id(ids.next_u128());
            let tg = TargetGroupRecord {
                arn: arn::target_group(&self.scope, &spec.name, &id),
                name: spec.name.clone(),
                id,
                protocol: protocol.clone(),
                protocol_version: protocol_version.clone(),
                port,
                vpc_id: spec.vpc_id.clone(),
                target_type: "ip".into(),
                health_check: hc.clone(),
                attributes: Default::default(),
                tags: tags.clone(),
                created: now,
            };
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), 0))
                .then(Op::Put(key.clone(), encode(&tg)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(tg);
            }
        }
        Err(ElbError::Contention(key))
    }

    /// DescribeTargetGroups: all of them (by name), those a load balancer
    /// forwards to, or those named by ARN or name (TargetGroupNotFound when
    /// one does not exist), a page at a time.
    pub async fn describe_target_groups(
        &self,
        lb_arn: Option<&str>,
        arns: &[String],
        names: &[String],
        marker: Option<&str>,
        page_size_given: Option<i64>,
    ) -> Result<(Vec<TargetGroupView>, Option<String>), ElbError> {
        let size = page_size(page_size_given)?;
        let filters = usize::from(lb_arn.is_some())
            + usize::from(!arns.is_empty())
            + usize::from(!names.is_empty());
        if filters > 1 {
            return Err(ElbError::validation(
                "give at most one of LoadBalancerArn, TargetGroupArns and Names",
            ));
        }
        let listeners = self.all_listeners().await?;
        let rules = self.all_rules().await?;
        let mut found: Vec<TargetGroupRecord> = Vec::new();
        if !arns.is_empty() {
            for a in arns {
                found.push(self.tg_by_arn("TargetGroupArns", a).await?.0);
            }
        } else if !names.is_empty() {
            for n in names {
                match self.tg_by_name(n).await? {
                    Some((tg, _)) if arn::valid_name(n) => found.push(tg),
                    _ => {
                        return Err(ElbError::TargetGroupNotFound(format!(
                            "target group '{n}' not found"
                        )))
                    }
                }
            }
        } else {
            found = self
                .list_decoded::<TargetGroupRecord>(keys::ELB_TGS)
                .await?
                .into_iter()
                .map(|(tg, _)| tg)
                .collect();
        }
        let mut views: Vec<TargetGroupView> = found
            .into_iter()
            .map(|record| TargetGroupView {
                load_balancer_arns: lbs_using(
                    &record.arn,
                    listeners.iter().map(|(l, _)| l),
                    rules.iter().map(|(r, _)| r),
                ),
                record,
            })
            .collect();
        if let Some(lb_arn) = lb_arn {
            let (lb, _) = self.lb_by_arn("LoadBalancerArn", lb_arn).await?;
            views.retain(|v| v.load_balancer_arns.contains(&lb.arn));
        }
        views.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        views.dedup_by(|a, b| a.record.arn == b.record.arn);
        page(views, |v| v.record.name.clone(), marker, size)
    }

    /// ModifyTargetGroup: changes the health check.
    pub async fn modify_target_group(
        &self,
        tg_arn: &str,
        spec: &HealthCheckSpec,
    ) -> Result<TargetGroupView, ElbError> {
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (mut tg, rev) = self.tg_by_arn("TargetGroupArn", tg_arn).await?;
            tg.health_check = health_check(&tg.health_check, spec)?;
            let key = keys::elb_tg(&tg.name);
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Put(key, encode(&tg)));
            if self.store.txn(txn).await?.succeeded {
                let load_balancer_arns = self.load_balancers_using(&tg.arn).await?;
                return Ok(TargetGroupView {
                    record: tg,
                    load_balancer_arns,
                });
            }
        }
        Err(ElbError::Contention(tg_arn.to_string()))
    }

    /// DeleteTargetGroup: deletes it with its targets and their health
    /// records. ResourceInUse while a listener or rule forwards to it; a
    /// target group that does not exist is already deleted (success).
    pub async fn delete_target_group(&self, tg_arn: &str) -> Result<(), ElbError> {
        let name = match self.resolve("TargetGroupArn", tg_arn, "target group") {
            Ok(ElbArn::TargetGroup { name, .. }) => name,
            Err(e @ ElbError::Validation(_)) => return Err(e),
            _ => return Ok(()),
        };
        let _guard = self.config_guard().await;
        let _targets = self.target_guard(&name).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (tg, rev) = match self.tg_by_arn("TargetGroupArn", tg_arn).await {
                Ok(v) => v,
                Err(ElbError::TargetGroupNotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            let listeners = self.all_listeners().await?;
            if let Some((l, _)) = listeners
                .iter()
                .find(|(l, _)| berth_core::elb::forwards_to(&l.default_actions, &tg.arn))
            {
                return Err(ElbError::ResourceInUse(format!(
                    "target group '{}' is currently in use by listener '{}'; change the listener's default actions or delete it first",
                    tg.arn, l.arn
                )));
            }
            if let Some((r, _)) = self
                .all_rules()
                .await?
                .into_iter()
                .find(|(r, _)| berth_core::elb::forwards_to(&r.actions, &tg.arn))
            {
                return Err(ElbError::ResourceInUse(format!(
                    "target group '{}' is currently in use by rule '{}'; change or delete the rule first",
                    tg.arn, r.arn
                )));
            }
            let key = keys::elb_tg(&tg.name);
            let mut txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Delete(key));
            for (l, lrev) in &listeners {
                txn = txn.when(Compare::ModRevision(
                    keys::elb_listener(&l.lb_name, &l.id),
                    *lrev,
                ));
            }
            for kv in self
                .store
                .list(&keys::elb_tg_targets(&tg.name))
                .await?
                .items
            {
                let _: TargetRecord = super::decode(&kv)?;
                txn = txn.then(Op::Delete(kv.key));
            }
            for kv in self.store.list(&keys::elb_tg_health(&tg.name)).await?.items {
                let _: TargetHealthRecord = super::decode(&kv)?;
                txn = txn.then(Op::Delete(kv.key));
            }
            if self.store.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
        Err(ElbError::Contention(tg_arn.to_string()))
    }

    /// DescribeTargetGroupAttributes: every attribute, defaults filled in.
    pub async fn target_group_attributes(
        &self,
        tg_arn: &str,
    ) -> Result<Vec<(String, String)>, ElbError> {
        let (tg, _) = self.tg_by_arn("TargetGroupArn", tg_arn).await?;
        Ok(attributes::tg_view(&tg.attributes))
    }

    /// ModifyTargetGroupAttributes: sets the given attributes (all or none)
    /// and returns every attribute.
    pub async fn modify_target_group_attributes(
        &self,
        tg_arn: &str,
        changes: &[(String, String)],
    ) -> Result<Vec<(String, String)>, ElbError> {
        let _guard = self.config_guard().await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (mut tg, rev) = self.tg_by_arn("TargetGroupArn", tg_arn).await?;
            attributes::apply_tg(&mut tg.attributes, changes)?;
            let key = keys::elb_tg(&tg.name);
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Put(key, encode(&tg)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(attributes::tg_view(&tg.attributes));
            }
        }
        Err(ElbError::Contention(tg_arn.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers() {
        for ok in ["200", "200,202", "200-299", "200,300-399", "499"] {
            assert!(check_http_matcher(ok).is_ok(), "{ok}");
        }
        for bad in ["", "199", "500", "2xx", "299-200", "200-", "0200", "200,,"] {
            assert!(check_http_matcher(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn health_check_ranges() {
        let base = HealthCheck::default();
        let hc = health_check(
            &base,
            &HealthCheckSpec {
                path: Some("/healthz".into()),
                interval_seconds: Some(10),
                timeout_seconds: Some(2),
                healthy_threshold: Some(2),
                matcher_http_code: Some("200-299".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (hc.path.as_str(), hc.interval_seconds, hc.timeout_seconds),
            ("/healthz", 10, 2)
        );
        assert_eq!(hc.unhealthy_threshold, 2);
        let bad = |s: HealthCheckSpec| health_check(&base, &s).unwrap_err().to_string();
        assert!(bad(HealthCheckSpec {
            interval_seconds: Some(4),
            ..Default::default()
        })
        .contains("HealthCheckIntervalSeconds"));
        assert!(bad(HealthCheckSpec {
            interval_seconds: Some(5),
            timeout_seconds: Some(5),
            ..Default::default()
        })
        .contains("smaller than the interval"));
        assert!(bad(HealthCheckSpec {
            healthy_threshold: Some(11),
            ..Default::default()
        })
        .contains("HealthyThresholdCount"));
        assert!(bad(HealthCheckSpec {
            enabled: Some(false),
            ..Default::default()
        })
        .contains("cannot be disabled"));
        assert!(bad(HealthCheckSpec {
            matcher_grpc_code: Some("12".into()),
            ..Default::default()
        })
        .contains("GrpcCode"));
        assert!(bad(HealthCheckSpec {
            protocol: Some("TCP".into()),
            ..Default::default()
        })
        .contains("HealthCheckProtocol"));
        assert!(bad(HealthCheckSpec {
            port: Some("0".into()),
            ..Default::default()
        })
        .contains("HealthCheckPort"));
        assert!(bad(HealthCheckSpec {
            path: Some("healthz".into()),
            ..Default::default()
        })
        .contains("HealthCheckPath"));
    }
}
