//! RegisterTargets, DeregisterTargets, DescribeTargetHealth, and the
//! expiry of drained targets.
//!
//! The ECS service controller does not call these: it writes its tasks'
//! targets in its own guarded transactions (`ecs/lb.rs`), with the same
//! record and key layout.
//!
//! A target is `/elb/targets/{tgName}/{ip}:{port}`. Deregistering sets its
//! `drain_until` (now + the group's deregistration delay): it keeps serving
//! the requests in flight but gets no new ones, and [`Elb::expire_drained`]
//! deletes it (with its health record) once that instant passes. A delay
//! of 0 deletes it at once. Registering a draining target again makes it a
//! fresh registration.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use berth_core::elb::{
    effective_health, forwards_to, TargetGroupRecord, TargetHealth, TargetHealthRecord,
    TargetHealthState, TargetRecord,
};
use berth_core::Timestamp;
use berth_store::{Compare, Op, Txn};

use super::{backoff, decode, encode, target_key, Elb, ElbError, MAX_RETRIES};
use crate::keys;

/// The most targets one target group holds (ELBv2's quota for ALBs).
pub const MAX_TARGETS_PER_GROUP: usize = 1000;

/// A target as a request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// The IPv4 address (target type `ip`).
    pub id: String,
    /// The port; the target group's port when absent.
    pub port: Option<u16>,
    /// Recorded as given.
    pub availability_zone: Option<String>,
}

/// A target as DescribeTargetHealth shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetDescription {
    /// The IPv4 address.
    pub id: String,
    /// The port.
    pub port: u16,
    /// As registered.
    pub availability_zone: Option<String>,
}

/// One entry of DescribeTargetHealth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetHealthDescription {
    /// The target.
    pub target: TargetDescription,
    /// The port health checks go to (the target's port for `traffic-port`).
    pub health_check_port: String,
    /// Its health ([`berth_core::elb::effective_health`]).
    pub health: TargetHealth,
}

impl Elb {
    /// Checks a target address: an IPv4 address inside the allowed networks.
    fn check_target_ip(&self, id: &str, tg: &TargetGroupRecord) -> Result<Ipv4Addr, ElbError> {
        let allowed = self.target_networks().join(", ");
        let ip: Ipv4Addr = id.parse().map_err(|_| {
            ElbError::InvalidTarget(format!(
                "target '{id}' of target group {} is not an IPv4 address; target type ip takes the task's private IPv4 address (inside {allowed})",
                tg.name
            ))
        })?;
        if !self.target_networks.iter().any(|n| n.contains(ip)) {
            return Err(ElbError::InvalidTarget(format!(
                "target '{id}' is outside the networks targets may be in ({allowed}); register a task address from those networks, or start the server with --lb-target-networks to allow more"
            )));
        }
        Ok(ip)
    }

    /// Resolves the (ip, port) pairs a request names, in request order,
    /// without duplicates.
    fn resolve_targets(
        &self,
        tg: &TargetGroupRecord,
        targets: &[TargetSpec],
    ) -> Result<Vec<(String, u16, Option<String>)>, ElbError> {
        if targets.is_empty() {
            return Err(ElbError::validation(
                "Targets: give at least one target (Id=IP,Port=PORT)",
            ));
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for t in targets {
            let ip = self.check_target_ip(&t.id, tg)?.to_string();
            let port = match t.port {
                Some(0) => {
                    return Err(ElbError::validation(format!(
                        "Targets: port 0 of target {ip} is not valid (use 1 to 65535, or leave it out for the target group's port {})",
                        tg.port
                    )))
                }
                Some(p) => p,
                None => tg.port,
            };
            if let Some(az) = &t.availability_zone {
                if az.is_empty() || az.len() > 64 {
                    return Err(ElbError::validation(format!(
                        "Targets: availability zone {az:?} of target {ip} is not valid"
                    )));
                }
            }
            if seen.insert((ip.clone(), port)) {
                out.push((ip, port, t.availability_zone.clone()));
            }
        }
        Ok(out)
    }

    /// RegisterTargets: adds targets to a target group. Registering a
    /// target that is registered is a no-op; registering a draining one
    /// registers it again (no longer draining, registered `now`).
    pub async fn register_targets(
        &self,
        target_group_arn: &str,
        targets: &[TargetSpec],
        now: Timestamp,
    ) -> Result<(), ElbError> {
        let (tg, _) = self.tg_by_arn("TargetGroupArn", target_group_arn).await?;
        let wanted = self.resolve_targets(&tg, targets)?;
        let _guard = self.target_guard(&tg.name).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (tg, tg_rev) = self.tg_by_arn("TargetGroupArn", target_group_arn).await?;
            let existing = self.targets_of(&tg.name).await?;
            let mut txn = Txn::new().when(Compare::ModRevision(keys::elb_tg(&tg.name), tg_rev));
            let mut added = 0usize;
            let mut writes = 0usize;
            for (ip, port, az) in &wanted {
                let key = keys::elb_target(&tg.name, ip, *port);
                match existing.get(&key) {
                    Some((t, _)) if t.drain_until.is_none() => {}
                    Some((t, rev)) => {
                        let mut t = t.clone();
                        t.drain_until = None;
                        t.registered = now;
                        if az.is_some() {
                            t.availability_zone.clone_from(az);
                        }
                        txn = txn
                            .when(Compare::ModRevision(key.clone(), *rev))
                            .then(Op::Put(key, encode(&t)));
                        writes += 1;
                    }
                    None => {
                        let t = TargetRecord {
                            target_group_arn: tg.arn.clone(),
                            id: ip.clone(),
                            port: *port,
                            availability_zone: az.clone(),
                            registered: now,
                            drain_until: None,
                        };
                        txn = txn
                            .when(Compare::ModRevision(key.clone(), 0))
                            .then(Op::Put(key, encode(&t)));
                        added += 1;
                        writes += 1;
                    }
                }
            }
            if writes == 0 {
                return Ok(());
            }
            if existing.len() + added > MAX_TARGETS_PER_GROUP {
                return Err(ElbError::TooManyTargets(format!(
                    "target group {} would hold {} targets; a target group holds at most {MAX_TARGETS_PER_GROUP}",
                    tg.name,
                    existing.len() + added
                )));
            }
            if self.store.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
        Err(ElbError::Contention(keys::elb_tg_targets(&tg.name)))
    }

    /// DeregisterTargets: the targets stop getting new requests and are
    /// removed after the group's deregistration delay (at once when it is
    /// 0). Every target must be registered (InvalidTarget otherwise);
    /// deregistering a draining target again changes nothing.
    pub async fn deregister_targets(
        &self,
        target_group_arn: &str,
        targets: &[TargetSpec],
        now: Timestamp,
    ) -> Result<(), ElbError> {
        let (tg, _) = self.tg_by_arn("TargetGroupArn", target_group_arn).await?;
        let wanted = self.resolve_targets(&tg, targets)?;
        let _guard = self.target_guard(&tg.name).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (tg, tg_rev) = self.tg_by_arn("TargetGroupArn", target_group_arn).await?;
            let existing = self.targets_of(&tg.name).await?;
            let missing: Vec<String> = wanted
                .iter()
                .filter(|(ip, port, _)| {
                    !existing.contains_key(&keys::elb_target(&tg.name, ip, *port))
                })
                .map(|(ip, port, _)| format!("'{ip}:{port}'"))
                .collect();
            if !missing.is_empty() {
                return Err(ElbError::InvalidTarget(format!(
                    "the following targets are not registered in target group '{}': {} (DescribeTargetHealth lists the registered ones)",
                    tg.arn,
                    missing.join(", ")
                )));
            }
            let delay_ms = i64::from(tg.deregistration_delay_secs()) * 1000;
            let mut txn = Txn::new().when(Compare::ModRevision(keys::elb_tg(&tg.name), tg_rev));
            let mut writes = 0usize;
            for (ip, port, _) in &wanted {
                let key = keys::elb_target(&tg.name, ip, *port);
                let Some((t, rev)) = existing.get(&key) else {
                    continue;
                };
                if delay_ms == 0 {
                    txn = txn
                        .when(Compare::ModRevision(key.clone(), *rev))
                        .then(Op::Delete(key))
                        .then(Op::Delete(keys::elb_health(&tg.name, ip, *port)));
                    writes += 1;
                } else if t.drain_until.is_none() {
                    let mut t = t.clone();
                    t.drain_until = Some(Timestamp(now.0.saturating_add(delay_ms)));
                    txn = txn
                        .when(Compare::ModRevision(key.clone(), *rev))
                        .then(Op::Put(key, encode(&t)));
                    writes += 1;
                }
            }
            if writes == 0 {
                return Ok(());
            }
            if self.store.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
        Err(ElbError::Contention(keys::elb_tg_targets(&tg.name)))
    }

    /// Deletes every target whose drain ended by `now`, with its health
    /// record. Returns how many were deleted. Safe to run anywhere, any
    /// number of times (each delete is guarded by the target's revision).
    pub async fn expire_drained(&self, now: Timestamp) -> Result<usize, ElbError> {
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let list = self.store.list(keys::ELB_TARGETS).await?;
            let mut txn = Txn::new();
            let mut n = 0usize;
            for kv in &list.items {
                let t: TargetRecord = decode(kv)?;
                if t.drain_until.is_none_or(|d| d > now) {
                    continue;
                }
                let Some(rest) = kv.key.strip_prefix(keys::ELB_TARGETS) else {
                    continue;
                };
                let Some((tg_name, _)) = rest.split_once('/') else {
                    continue;
                };
                txn = txn
                    .when(Compare::ModRevision(kv.key.clone(), kv.mod_revision))
                    .then(Op::Delete(kv.key.clone()))
                    .then(Op::Delete(keys::elb_health(tg_name, &t.id, t.port)));
                n += 1;
            }
            if n == 0 {
                return Ok(0);
            }
            if self.store.txn(txn).await?.succeeded {
                return Ok(n);
            }
        }
        Err(ElbError::Contention(keys::ELB_TARGETS.to_string()))
    }

    /// DescribeTargetHealth: every registered target of the group (draining
    /// ones included), or the targets named, in key order. A named target
    /// that is not registered is `unused` with reason `Target.NotRegistered`;
    /// one named without a port stands for every registration of its
    /// address (or the group's port when there is none).
    pub async fn describe_target_health(
        &self,
        target_group_arn: &str,
        targets: Option<&[TargetSpec]>,
    ) -> Result<Vec<TargetHealthDescription>, ElbError> {
        let (tg, _) = self.tg_by_arn("TargetGroupArn", target_group_arn).await?;
        let in_use = self.target_group_in_use_by_record(&tg).await?;
        let existing = self.targets_of(&tg.name).await?;
        let mut health: BTreeMap<String, TargetHealthRecord> = BTreeMap::new();
        for kv in self.store.list(&keys::elb_tg_health(&tg.name)).await?.items {
            health.insert(kv.key.clone(), decode(&kv)?);
        }
        let describe = |t: &TargetRecord| {
            let checked = health.get(&keys::elb_health(&tg.name, &t.id, t.port));
            TargetHealthDescription {
                target: TargetDescription {
                    id: t.id.clone(),
                    port: t.port,
                    availability_zone: t.availability_zone.clone(),
                },
                health_check_port: health_check_port(&tg, t.port),
                health: effective_health(t, in_use, tg.health_check.enabled, checked),
            }
        };
        let Some(named) = targets else {
            return Ok(existing.values().map(|(t, _)| describe(t)).collect());
        };
        let mut out = Vec::new();
        for spec in named {
            let ip = spec.id.parse::<Ipv4Addr>().map_err(|_| {
                ElbError::InvalidTarget(format!(
                    "target '{}' is not an IPv4 address; target group {} has target type ip",
                    spec.id, tg.name
                ))
            })?;
            let ip = ip.to_string();
            let matches: Vec<&TargetRecord> = existing
                .values()
                .map(|(t, _)| t)
                .filter(|t| t.id == ip && spec.port.is_none_or(|p| p == t.port))
                .collect();
            if matches.is_empty() {
                let port = spec.port.unwrap_or(tg.port);
                out.push(TargetHealthDescription {
                    target: TargetDescription {
                        id: ip,
                        port,
                        availability_zone: spec.availability_zone.clone(),
                    },
                    health_check_port: health_check_port(&tg, port),
                    health: TargetHealth {
                        state: TargetHealthState::Unused,
                        reason: Some("Target.NotRegistered"),
                        description: Some("Target is not registered to the target group".into()),
                    },
                });
            } else {
                out.extend(matches.into_iter().map(&describe));
            }
        }
        Ok(out)
    }

    /// The target group an ARN names (TargetGroupNotFound otherwise).
    pub async fn target_group(&self, arn: &str) -> Result<TargetGroupRecord, ElbError> {
        Ok(self.tg_by_arn("TargetGroupArn", arn).await?.0)
    }

    /// Whether some listener's default actions or some rule forward to the
    /// target group (its targets then get traffic and health checks).
    pub async fn target_group_in_use(&self, arn: &str) -> Result<bool, ElbError> {
        let (tg, _) = self.tg_by_arn("TargetGroupArn", arn).await?;
        self.target_group_in_use_by_record(&tg).await
    }

    async fn target_group_in_use_by_record(
        &self,
        tg: &TargetGroupRecord,
    ) -> Result<bool, ElbError> {
        let listeners = self.all_listeners().await?;
        if listeners
            .iter()
            .any(|(l, _)| forwards_to(&l.default_actions, &tg.arn))
        {
            return Ok(true);
        }
        let rules = self.all_rules().await?;
        Ok(rules.iter().any(|(r, _)| forwards_to(&r.actions, &tg.arn)))
    }

    /// The targets of a group by key, with their mod revisions.
    async fn targets_of(
        &self,
        tg_name: &str,
    ) -> Result<BTreeMap<String, (TargetRecord, u64)>, ElbError> {
        Ok(self
            .list_decoded::<TargetRecord>(&keys::elb_tg_targets(tg_name))
            .await?
            .into_iter()
            .map(|(t, rev)| (target_key(tg_name, &t), (t, rev)))
            .collect())
    }
}

/// The port health checks of a target go to.
fn health_check_port(tg: &TargetGroupRecord, target_port: u16) -> String {
    if tg.health_check.port == "traffic-port" {
        target_port.to_string()
    } else {
        tg.health_check.port.clone()
    }
}
