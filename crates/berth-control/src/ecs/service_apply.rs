//! Applying the service reconciler's plans: the side-effecting half of
//! [`crate::service_reconciler`].
//!
//! [`Ecs::reconcile_service`] reads the service record (and its mod
//! revision) *first*, then the service's tasks, asks the pure reconciler for
//! a plan, and writes everything the plan does in **one** transaction: the
//! new service record, the stopped tasks (and their placements), the started
//! tasks (task, index entry, placement, host alloc guards, exactly as
//! RunTask writes them). The transaction is guarded by the service record's
//! mod revision and the mod revisions of the tasks it stops, so a reconcile
//! that raced with another one (or with UpdateService, or a crash and
//! restart) fails its guard, reads again and decides again: a gap is never
//! filled twice.

use berth_core::service::ServiceStatus;
use berth_core::tags::Tag;
use berth_core::task::{StopCode, TaskStatus};
use berth_core::Timestamp;
use berth_store::{Compare, Op, Txn};

use std::collections::BTreeMap;

use super::lb::{parse_service_lbs, TgCache};
use super::services::ServiceRecord;
use super::tasks::{Launch, NewTaskIds, PlacementRecord, RunTaskSpec, TaskRecord};
use super::{backoff, decode, encode, Ecs, MAX_RETRIES};
use crate::ids::{self, IdSource};
use crate::service_reconciler::{self, started_event, TaskView};
use crate::{keys, EcsError};

/// What one reconcile did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileOutcome {
    /// Tasks started.
    pub started: usize,
    /// Tasks asked to stop.
    pub stopped: usize,
    /// Whether anything was written.
    pub wrote: bool,
}

impl Ecs {
    /// Reconciles one service once: reads it and its tasks, decides with
    /// [`service_reconciler::reconcile`], applies the plan atomically.
    /// Retries (reading again) when a guard fails.
    pub async fn reconcile_service(
        &self,
        cluster: &str,
        name: &str,
        ids: &dyn IdSource,
        now: Timestamp,
    ) -> Result<ReconcileOutcome, EcsError> {
        let key = keys::service(cluster, name);
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            // The service first: a start committed after this read bumps
            // its revision, so the guard below catches it.
            let Some((rec, rev)) = self.service_record(cluster, name).await? else {
                return Ok(ReconcileOutcome::default());
            };
            if rec.service.status == ServiceStatus::Inactive {
                return Ok(ReconcileOutcome::default());
            }
            let tasks = self.service_tasks(cluster, name).await?;
            // Stored loadBalancers were checked when they were set.
            let lbs = parse_service_lbs(&rec.service.load_balancers).unwrap_or_default();
            let mut cache = TgCache::default();
            let mut views = Vec::with_capacity(tasks.len());
            for (t, _) in &tasks {
                let mut view = TaskView::of(&t.task);
                if !lbs.is_empty() || !t.lb_targets.is_empty() {
                    view = view.with_lb(self.lb_health(t, !lbs.is_empty(), &mut cache).await?);
                }
                views.push(view);
            }
            let plan = service_reconciler::reconcile(&rec, &views, now);
            let mut next = rec.clone();
            next.apply(&plan, ids, now);
            let mut txn = Txn::new().when(Compare::ModRevision(key.clone(), rev));
            let mut out = ReconcileOutcome::default();
            // Tasks this pass changes, written once each at the end.
            let mut edits: BTreeMap<String, (TaskRecord, u64)> = BTreeMap::new();
            let mut stop_placements: Vec<(String, String)> = Vec::new();
            let mut registered: BTreeMap<String, usize> = BTreeMap::new();
            let mut deregistered: BTreeMap<String, usize> = BTreeMap::new();
            let add = |txn: Txn, guards: Vec<Compare>, ops: Vec<Op>| {
                let txn = guards.into_iter().fold(txn, Txn::when);
                ops.into_iter().fold(txn, Txn::then)
            };

            for (task_id, reason) in plan.stops() {
                let Some((trec, trev)) = tasks.iter().find(|(t, _)| t.task.id() == task_id) else {
                    continue;
                };
                let mut trec = trec.clone();
                let t = &mut trec.task;
                if t.desired_status == TaskStatus::Stopped {
                    continue;
                }
                t.desired_status = TaskStatus::Stopped;
                t.stopping_at.get_or_insert(now);
                t.stop_code = Some(StopCode::ServiceSchedulerInitiated);
                t.stopped_reason = Some(reason.to_string());
                t.version += 1;
                let before: Vec<String> = trec
                    .lb_targets
                    .iter()
                    .map(|l| l.target_group_arn.clone())
                    .collect();
                let (guards, ops, stop_now) = self.deregister_task(&mut trec, now).await?;
                for tg in before {
                    *deregistered.entry(tg).or_default() += 1;
                }
                txn = add(txn, guards, ops);
                if stop_now {
                    stop_placements.push((trec.host_id.clone(), task_id.to_string()));
                }
                edits.insert(task_id.to_string(), (trec, *trev));
                out.stopped += 1;
            }

            // Load balancer upkeep: register tasks that run, remove the
            // targets of tasks that stopped, end drains that are over.
            for (t, trev) in &tasks {
                let id = t.task.id();
                if edits.contains_key(id) {
                    continue;
                }
                let st = &t.task;
                if !lbs.is_empty()
                    && t.lb_targets.is_empty()
                    && t.drain_until.is_none()
                    && st.last_status == TaskStatus::Running
                    && st.desired_status == TaskStatus::Running
                {
                    let mut trec = t.clone();
                    let (guards, ops, missing) =
                        self.register_task(&mut trec, &lbs, &mut cache, now).await?;
                    for tg in missing {
                        // Repeated within a minute, this is dropped.
                        next.push_event(
                            ids::uuid(ids.next_u128()),
                            format!(
                                "(service {name}) was unable to register targets in (target-group {tg}): the target group does not exist; point the service's loadBalancers at an existing target group (UpdateService)"
                            ),
                            now,
                        );
                    }
                    if !trec.lb_targets.is_empty() {
                        for l in &trec.lb_targets {
                            *registered.entry(l.target_group_arn.clone()).or_default() += 1;
                        }
                        txn = add(txn, guards, ops);
                        edits.insert(id.to_string(), (trec, *trev));
                    }
                } else if !t.lb_targets.is_empty()
                    && (st.last_status == TaskStatus::Stopped
                        || (st.desired_status == TaskStatus::Stopped
                            && t.drain_until.is_none_or(|u| now >= u)))
                {
                    // Stopped, stopping by itself (an essential container
                    // exited: nothing left to drain), or drained.
                    let mut trec = t.clone();
                    let (guards, ops) = self.remove_task_targets(&mut trec).await?;
                    txn = add(txn, guards, ops);
                    if st.last_status != TaskStatus::Stopped && t.drain_until.is_some() {
                        stop_placements.push((trec.host_id.clone(), id.to_string()));
                    }
                    edits.insert(id.to_string(), (trec, *trev));
                }
            }
            for (tg, n) in &registered {
                next.push_event(
                    ids::uuid(ids.next_u128()),
                    format!("(service {name}) registered {n} targets in (target-group {tg})"),
                    now,
                );
            }
            for (tg, n) in &deregistered {
                next.push_event(
                    ids::uuid(ids.next_u128()),
                    format!("(service {name}) deregistered {n} targets in (target-group {tg})"),
                    now,
                );
            }
            for (id, (trec, trev)) in &edits {
                let tkey = keys::task(cluster, id);
                txn = txn
                    .when(Compare::ModRevision(tkey.clone(), *trev))
                    .then(Op::Put(tkey, encode(trec)));
            }
            for (host, task_id) in &stop_placements {
                let pkey = keys::placement(host, task_id);
                if let Some(kv) = self.store.get(&pkey).await? {
                    let mut p: PlacementRecord = decode(&kv)?;
                    if p.desired_status != TaskStatus::Stopped {
                        p.desired_status = TaskStatus::Stopped;
                        txn = txn
                            .when(Compare::ModRevision(pkey.clone(), kv.mod_revision))
                            .then(Op::Put(pkey, encode(&p)));
                    }
                }
            }
            if plan.is_empty() && edits.is_empty() && next == rec {
                return Ok(ReconcileOutcome::default());
            }

            let alloc_lock = keys::HOST_ALLOC.to_string();
            let _guard = match plan.start() {
                Some(_) => Some(self.lock(&alloc_lock).await),
                None => None,
            };
            if let Some((deployment, count)) = plan.start() {
                match self.service_launch(&rec, deployment, count).await {
                    Ok((spec, launch)) => {
                        let count = usize::try_from(count).unwrap_or(0);
                        let new_ids = NewTaskIds::make(ids, count, &launch.td);
                        let mut fleet = self.fleet(now).await?;
                        let placed = self.place_tasks(&spec, &launch, &mut fleet, &new_ids, now);
                        if !placed.tasks.is_empty() {
                            let started: Vec<&str> =
                                placed.tasks.iter().map(|t| t.record.task.id()).collect();
                            next.push_event(
                                ids::uuid(ids.next_u128()),
                                started_event(name, &started),
                                now,
                            );
                        }
                        if let Some(f) = placed.failures.first() {
                            next.push_event(
                                ids::uuid(ids.next_u128()),
                                format!(
                                    "(service {name}) was unable to place a task because no container instance met all of its requirements. Reason: {} ({}).",
                                    f.reason,
                                    f.detail.as_deref().unwrap_or("no host has room")
                                ),
                                now,
                            );
                        }
                        out.started = placed.tasks.len();
                        txn = placed.write(txn, &fleet);
                    }
                    Err(e) => next.push_event(
                        ids::uuid(ids.next_u128()),
                        format!(
                            "(service {name}) was unable to start tasks of deployment {deployment}: {e}"
                        ),
                        now,
                    ),
                }
            }
            if next == rec && out.started == 0 && out.stopped == 0 && edits.is_empty() {
                // Only a repeated complaint: nothing to write.
                return Ok(ReconcileOutcome::default());
            }
            txn = txn.then(Op::Put(key.clone(), encode(&next)));
            if self.store.txn(txn).await?.succeeded {
                out.wrote = true;
                return Ok(out);
            }
        }
        Err(EcsError::Contention(key))
    }

    /// The RunTask request and launch of `count` tasks of one deployment of
    /// a service: `startedBy` the deployment id, group `service:NAME`, the
    /// deployment's network configuration, tags as the service propagates
    /// them.
    async fn service_launch(
        &self,
        rec: &ServiceRecord,
        deployment: &str,
        count: u32,
    ) -> Result<(RunTaskSpec, Launch), EcsError> {
        let s = &rec.service;
        let d = rec
            .deployments
            .iter()
            .find(|d| d.deployment.id == deployment)
            .ok_or_else(|| {
                EcsError::invalid(format!(
                    "deployment {deployment} is not a deployment of service {}",
                    s.service_name
                ))
            })?;
        let spec = RunTaskSpec {
            cluster: Some(s.cluster_name().to_string()),
            task_definition: Some(d.deployment.task_definition.clone()),
            count: Some(i64::from(count)),
            launch_type: s.launch_type.clone(),
            capacity_provider_strategy: s.capacity_provider_strategy.clone(),
            started_by: Some(deployment.to_string()),
            group: Some(format!("service:{}", s.service_name)),
            tags: if s.propagate_tags == "SERVICE" {
                s.tags.clone()
            } else {
                Vec::new()
            },
            propagate_tags: (s.propagate_tags == "TASK_DEFINITION")
                .then(|| "TASK_DEFINITION".to_string()),
            network_configuration: d.deployment.network_configuration.clone(),
            platform_version: Some(d.deployment.platform_version.clone()),
            enable_ecs_managed_tags: s.enable_ecs_managed_tags,
            ..RunTaskSpec::default()
        };
        let cluster = self.active_cluster(s.cluster_name()).await?;
        let mut launch = self.launch(&spec, cluster, false).await?;
        if s.enable_ecs_managed_tags {
            for (k, v) in [
                ("aws:ecs:serviceName", s.service_name.as_str()),
                ("aws:ecs:clusterName", s.cluster_name()),
            ] {
                launch.tags.push(Tag {
                    key: Some(k.to_string()),
                    value: Some(v.to_string()),
                });
            }
        }
        Ok((spec, launch))
    }
}
