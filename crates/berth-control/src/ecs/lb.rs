//! Services behind load balancers: the ECS half of the ELBv2 contract
//! (`berth_core::elb`).
//!
//! A service's `loadBalancers` name target groups (`targetGroupArn`) and the
//! container port that serves them. The service reconciler
//! (`Ecs::reconcile_service`) then, in the same guarded transactions as its
//! other writes:
//!
//! - **registers** a task's IP and container port in every target group once
//!   the task is RUNNING (a [`TargetRecord`] under `/elb/targets/`, and the
//!   task remembers it in `TaskRecord::lb_targets`);
//! - counts the task **healthy** only when the data path's health checks
//!   found it healthy in all of them ([`LbHealth`]), so a deployment waits
//!   for the load balancer, and replaces a task that fails them;
//! - **deregisters** a task before stopping it (scale-in, deployments,
//!   health, StopTask): its targets drain (no new requests, in-flight ones
//!   finish) and the task shows `DEACTIVATING`; its host is told to stop it
//!   only once the longest deregistration delay has passed;
//! - **removes** the targets of a task that stopped by itself.
//!
//! A target is removed only while it is still the task's own registration
//! (same `registered` instant): task IPs are reused, and a new task may hold
//! the same `ip:port` by then.

use std::collections::HashMap;

use berth_core::elb::{
    effective_health, TargetGroupRecord, TargetHealthRecord, TargetHealthState, TargetRecord,
};
use berth_core::task::TaskStatus;
use berth_core::taskdef::TaskDefinition;
use berth_core::Timestamp;
use berth_store::{Compare, Op};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::tasks::TaskRecord;
use super::{decode, encode, Ecs};
use crate::elb::{Elb, ElbError};
use crate::service_reconciler::LbHealth;
use crate::{keys, EcsError};

/// At most this many load balancers per service (ECS's limit).
pub const MAX_SERVICE_LOAD_BALANCERS: usize = 5;

/// One entry of a service's `loadBalancers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLb {
    /// The target group.
    pub target_group_arn: String,
    /// The container that serves it.
    pub container_name: String,
    /// Its port.
    pub container_port: u16,
}

/// A load balancer target a task is registered as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbTarget {
    /// The target group.
    pub target_group_arn: String,
    /// The task's IP.
    pub ip: String,
    /// The container port.
    pub port: u16,
    /// When this registration was made (tells it apart from a later task
    /// holding the same `ip:port`).
    pub registered: Timestamp,
}

/// The name in a target group ARN (`...:targetgroup/NAME/ID`).
pub fn target_group_name(arn: &str) -> Option<&str> {
    let (_, rest) = arn.split_once(":targetgroup/")?;
    let (name, id) = rest.split_once('/')?;
    (!name.is_empty() && !id.is_empty() && !id.contains('/')).then_some(name)
}

/// Parses a service's `loadBalancers` (shape only).
pub fn parse_service_lbs(values: &[Value]) -> Result<Vec<ServiceLb>, EcsError> {
    if values.len() > MAX_SERVICE_LOAD_BALANCERS {
        return Err(EcsError::invalid(format!(
            "loadBalancers has {} entries; a service takes at most {MAX_SERVICE_LOAD_BALANCERS}",
            values.len()
        )));
    }
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let field = |name: &str| v.get(name).filter(|x| !x.is_null());
        if field("loadBalancerName").is_some() {
            return Err(EcsError::invalid(format!(
                "loadBalancers[{i}].loadBalancerName names a Classic Load Balancer, which Fargate tasks cannot use; give targetGroupArn (an application load balancer's target group of type ip) instead"
            )));
        }
        let arn = field("targetGroupArn")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                EcsError::invalid(format!(
                    "loadBalancers[{i}].targetGroupArn is required: the ARN of a target group (aws elbv2 describe-target-groups)"
                ))
            })?;
        if target_group_name(arn).is_none() {
            return Err(EcsError::invalid(format!(
                "loadBalancers[{i}].targetGroupArn {arn:?} is not a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)"
            )));
        }
        let name = field("containerName")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                EcsError::invalid(format!(
                    "loadBalancers[{i}].containerName is required: the container that serves the target group"
                ))
            })?;
        let port = field("containerPort")
            .and_then(Value::as_i64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                EcsError::invalid(format!(
                    "loadBalancers[{i}].containerPort is required: a port (1-65535) of a portMapping of container {name}"
                ))
            })?;
        if out.iter().any(|l: &ServiceLb| {
            l.target_group_arn == arn && l.container_name == name && l.container_port == port
        }) {
            return Err(EcsError::invalid(format!(
                "loadBalancers[{i}] repeats target group {arn} with container {name}:{port}"
            )));
        }
        out.push(ServiceLb {
            target_group_arn: arn.to_string(),
            container_name: name.to_string(),
            container_port: port,
        });
    }
    Ok(out)
}

fn elb_failure(e: ElbError) -> EcsError {
    match e {
        ElbError::Store(e) => EcsError::Store(e),
        ElbError::Corrupt { key, reason } => EcsError::Corrupt { key, reason },
        other => EcsError::invalid(other.to_string()),
    }
}

/// Target groups (and whether a listener uses them) read once per reconcile.
#[derive(Default)]
pub(crate) struct TgCache {
    groups: HashMap<String, Option<TargetGroupRecord>>,
    in_use: HashMap<String, bool>,
}

impl Ecs {
    /// CreateService / UpdateService: checks `loadBalancers` against the
    /// target groups and the task definition, and returns them as ECS shows
    /// them.
    pub(crate) async fn check_load_balancers(
        &self,
        values: &[Value],
        td: &TaskDefinition,
    ) -> Result<Vec<Value>, EcsError> {
        let lbs = parse_service_lbs(values)?;
        let mut out = Vec::new();
        for (i, lb) in lbs.iter().enumerate() {
            let exposed = td.input.container_definitions.iter().any(|c| {
                c.name.as_deref() == Some(lb.container_name.as_str())
                    && c.port_mappings
                        .iter()
                        .any(|p| p.container_port == Some(i64::from(lb.container_port)))
            });
            if !exposed {
                return Err(EcsError::invalid(format!(
                    "loadBalancers[{i}]: the task definition {} has no container {} with a portMapping for containerPort {}; add the port mapping or fix containerName/containerPort",
                    td.family_revision(),
                    lb.container_name,
                    lb.container_port
                )));
            }
            let tg = self
                .target_group_by_arn(&lb.target_group_arn)
                .await?
                .ok_or_else(|| {
                    EcsError::invalid(format!(
                        "loadBalancers[{i}]: target group {} does not exist; create it with aws elbv2 create-target-group --target-type ip",
                        lb.target_group_arn
                    ))
                })?;
            if tg.target_type != "ip" {
                return Err(EcsError::invalid(format!(
                    "loadBalancers[{i}]: target group {} has target type {}; Fargate tasks (awsvpc) need a target group of target type ip",
                    lb.target_group_arn, tg.target_type
                )));
            }
            if !self.target_group_in_use(&tg.arn).await? {
                return Err(EcsError::invalid(format!(
                    "The target group with targetGroupArn {} does not have an associated load balancer; forward to it from a listener (aws elbv2 create-listener / create-rule) first",
                    lb.target_group_arn
                )));
            }
            out.push(json!({
                "targetGroupArn": lb.target_group_arn,
                "containerName": lb.container_name,
                "containerPort": lb.container_port,
            }));
        }
        Ok(out)
    }

    /// The target group with this ARN, if it exists (read through the
    /// ELBv2 control plane, over the same store).
    pub(crate) async fn target_group_by_arn(
        &self,
        arn: &str,
    ) -> Result<Option<TargetGroupRecord>, EcsError> {
        match self.elb().target_group(arn).await {
            Ok(tg) => Ok(Some(tg)),
            Err(ElbError::TargetGroupNotFound(_) | ElbError::Validation(_)) => Ok(None),
            Err(e) => Err(elb_failure(e)),
        }
    }

    /// Whether some listener forwards to the target group.
    async fn target_group_in_use(&self, arn: &str) -> Result<bool, EcsError> {
        self.elb()
            .target_group_in_use(arn)
            .await
            .map_err(elb_failure)
    }

    fn elb(&self) -> Elb {
        Elb::new(self.store.clone(), self.scope.clone())
    }

    async fn cached_tg(
        &self,
        cache: &mut TgCache,
        arn: &str,
    ) -> Result<Option<TargetGroupRecord>, EcsError> {
        if let Some(tg) = cache.groups.get(arn) {
            return Ok(tg.clone());
        }
        let tg = self.target_group_by_arn(arn).await?;
        cache.groups.insert(arn.to_string(), tg.clone());
        Ok(tg)
    }

    async fn cached_in_use(&self, cache: &mut TgCache, arn: &str) -> Result<bool, EcsError> {
        if let Some(u) = cache.in_use.get(arn) {
            return Ok(*u);
        }
        let u = self.target_group_in_use(arn).await?;
        cache.in_use.insert(arn.to_string(), u);
        Ok(u)
    }

    /// Where a task stands with its target groups: `behind` says whether its
    /// service has load balancers.
    pub(crate) async fn lb_health(
        &self,
        rec: &TaskRecord,
        behind: bool,
        cache: &mut TgCache,
    ) -> Result<LbHealth, EcsError> {
        if rec.lb_targets.is_empty() {
            return Ok(if behind {
                LbHealth::Initial
            } else {
                LbHealth::NotBehind
            });
        }
        let mut all_healthy = true;
        for t in &rec.lb_targets {
            let Some(tg) = self.cached_tg(cache, &t.target_group_arn).await? else {
                // The target group is gone: nothing checks the task there.
                continue;
            };
            let target: Option<TargetRecord> = match self
                .store
                .get(&keys::elb_target(&tg.name, &t.ip, t.port))
                .await?
            {
                Some(kv) => Some(decode(&kv)?),
                None => None,
            };
            // Deregistered behind the service's back (DeregisterTargets):
            // the load balancer sends it nothing, so it is replaced.
            let Some(target) = target.filter(|x| x.registered == t.registered) else {
                tracing::info!(
                    task = rec.task.id(),
                    target = %format!("{}:{}", t.ip, t.port),
                    target_group = %t.target_group_arn,
                    "the task's target was deregistered outside its service; it is replaced"
                );
                return Ok(LbHealth::Unhealthy(t.target_group_arn.clone()));
            };
            let checked: Option<TargetHealthRecord> = match self
                .store
                .get(&keys::elb_health(&tg.name, &t.ip, t.port))
                .await?
            {
                Some(kv) => Some(decode(&kv)?),
                None => None,
            };
            let in_use = self.cached_in_use(cache, &tg.arn).await?;
            let h = effective_health(&target, in_use, tg.health_check.enabled, checked.as_ref());
            match h.state {
                TargetHealthState::Healthy
                | TargetHealthState::Unavailable
                | TargetHealthState::Unused => {}
                TargetHealthState::Unhealthy => {
                    tracing::debug!(
                        task = rec.task.id(),
                        ?checked,
                        "the task's target is unhealthy"
                    );
                    return Ok(LbHealth::Unhealthy(t.target_group_arn.clone()));
                }
                TargetHealthState::Draining => {
                    return Ok(LbHealth::Unhealthy(t.target_group_arn.clone()))
                }
                TargetHealthState::Initial => all_healthy = false,
            }
        }
        Ok(if all_healthy {
            LbHealth::Healthy
        } else {
            LbHealth::Initial
        })
    }

    /// Registers a RUNNING task in the service's target groups: the target
    /// records to write (guarded on their current revision), with the task's
    /// `lb_targets` filled in. Target groups that no longer exist are skipped
    /// (and named in the returned list).
    pub(crate) async fn register_task(
        &self,
        rec: &mut TaskRecord,
        lbs: &[ServiceLb],
        cache: &mut TgCache,
        now: Timestamp,
    ) -> Result<(Vec<Compare>, Vec<Op>, Vec<String>), EcsError> {
        let mut guards = Vec::new();
        let mut ops = Vec::new();
        let mut missing = Vec::new();
        let Some(ip) = rec.task.private_ip().map(str::to_string) else {
            return Ok((guards, ops, missing));
        };
        for lb in lbs {
            let Some(tg) = self.cached_tg(cache, &lb.target_group_arn).await? else {
                missing.push(lb.target_group_arn.clone());
                continue;
            };
            let key = keys::elb_target(&tg.name, &ip, lb.container_port);
            let rev = self.store.get(&key).await?.map_or(0, |kv| kv.mod_revision);
            guards.push(Compare::ModRevision(key.clone(), rev));
            // Not into a group being deleted at this moment.
            guards.push(Compare::Exists(keys::elb_tg(&tg.name)));
            let target = TargetRecord {
                target_group_arn: tg.arn.clone(),
                id: ip.clone(),
                port: lb.container_port,
                availability_zone: rec.task.availability_zone.clone(),
                registered: now,
                drain_until: None,
            };
            ops.push(Op::Put(key, encode(&target)));
            ops.push(Op::Delete(keys::elb_health(
                &tg.name,
                &ip,
                lb.container_port,
            )));
            rec.lb_targets.push(LbTarget {
                target_group_arn: tg.arn.clone(),
                ip: ip.clone(),
                port: lb.container_port,
                registered: now,
            });
        }
        Ok((guards, ops, missing))
    }

    /// Deregisters a task from its target groups before it stops: its
    /// targets start draining and the task shows DEACTIVATING until
    /// `drain_until`. Returns the writes and whether the host may be told to
    /// stop the task now (no delay to wait for).
    pub(crate) async fn deregister_task(
        &self,
        rec: &mut TaskRecord,
        now: Timestamp,
    ) -> Result<(Vec<Compare>, Vec<Op>, bool), EcsError> {
        let mut guards = Vec::new();
        let mut ops = Vec::new();
        if rec.lb_targets.is_empty() || rec.drain_until.is_some() {
            return Ok((guards, ops, rec.drain_until.is_none_or(|u| now >= u)));
        }
        let mut until = now;
        let mut cache = TgCache::default();
        for t in &rec.lb_targets {
            let Some(tg) = self.cached_tg(&mut cache, &t.target_group_arn).await? else {
                continue;
            };
            let key = keys::elb_target(&tg.name, &t.ip, t.port);
            let Some(kv) = self.store.get(&key).await? else {
                continue;
            };
            let mut target: TargetRecord = decode(&kv)?;
            if target.registered != t.registered {
                continue;
            }
            let delay = i64::from(tg.deregistration_delay_secs()) * 1000;
            let ends = Timestamp(now.0.saturating_add(delay));
            until = until.max(ends);
            guards.push(Compare::ModRevision(key.clone(), kv.mod_revision));
            if delay == 0 {
                ops.push(Op::Delete(key));
                ops.push(Op::Delete(keys::elb_health(&tg.name, &t.ip, t.port)));
            } else if target.drain_until.is_none() {
                target.drain_until = Some(ends);
                ops.push(Op::Put(key, encode(&target)));
            }
        }
        rec.drain_until = Some(until);
        let stop_now = now >= until;
        if stop_now {
            rec.lb_targets.clear();
        } else if rec.task.last_status < TaskStatus::Deactivating {
            rec.task.last_status = TaskStatus::Deactivating;
        }
        Ok((guards, ops, stop_now))
    }

    /// Removes a task's targets (it stopped, or its drain is over) where
    /// they are still its own registrations, and forgets them.
    pub(crate) async fn remove_task_targets(
        &self,
        rec: &mut TaskRecord,
    ) -> Result<(Vec<Compare>, Vec<Op>), EcsError> {
        let mut guards = Vec::new();
        let mut ops = Vec::new();
        let mut cache = TgCache::default();
        for t in std::mem::take(&mut rec.lb_targets) {
            let Some(tg) = self.cached_tg(&mut cache, &t.target_group_arn).await? else {
                continue;
            };
            let key = keys::elb_target(&tg.name, &t.ip, t.port);
            let Some(kv) = self.store.get(&key).await? else {
                continue;
            };
            let target: TargetRecord = decode(&kv)?;
            if target.registered != t.registered {
                continue;
            }
            guards.push(Compare::ModRevision(key.clone(), kv.mod_revision));
            ops.push(Op::Delete(key));
            ops.push(Op::Delete(keys::elb_health(&tg.name, &t.ip, t.port)));
        }
        Ok((guards, ops))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_group_names_come_from_arns() {
        assert_eq!(
            target_group_name(
                "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/web/0123456789abcdef"
            ),
            Some("web")
        );
        assert_eq!(
            target_group_name("arn:aws:elasticloadbalancing:r:1:loadbalancer/app/x/1"),
            None
        );
        assert_eq!(
            target_group_name("arn:aws:elasticloadbalancing:r:1:targetgroup/web"),
            None
        );
    }

    #[test]
    fn service_load_balancers_name_their_mistakes() {
        let tg = "arn:aws:elasticloadbalancing:r:1:targetgroup/web/0123456789abcdef";
        let ok = parse_service_lbs(&[
            json!({"targetGroupArn": tg, "containerName": "app", "containerPort": 8080}),
        ])
        .unwrap();
        assert_eq!(ok[0].container_port, 8080);
        for (v, needle) in [
            (
                json!({"loadBalancerName": "classic", "containerName": "a", "containerPort": 1}),
                "Classic",
            ),
            (
                json!({"containerName": "a", "containerPort": 1}),
                "targetGroupArn is required",
            ),
            (
                json!({"targetGroupArn": "nope", "containerName": "a", "containerPort": 1}),
                "not a target group ARN",
            ),
            (
                json!({"targetGroupArn": tg, "containerPort": 1}),
                "containerName is required",
            ),
            (
                json!({"targetGroupArn": tg, "containerName": "a", "containerPort": 70000}),
                "containerPort",
            ),
        ] {
            let e = parse_service_lbs(&[v]).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let six = vec![json!({"targetGroupArn": tg, "containerName": "a", "containerPort": 1}); 6];
        assert!(parse_service_lbs(&six)
            .unwrap_err()
            .to_string()
            .contains("at most 5"));
    }
}
