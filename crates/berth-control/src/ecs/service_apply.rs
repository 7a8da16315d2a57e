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

use super::services::ServiceRecord;
use super::tasks::{Launch, NewTaskIds, PlacementRecord, RunTaskSpec};
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
            let views: Vec<TaskView> = tasks.iter().map(|(t, _)| TaskView::of(&t.task)).collect();
            let plan = service_reconciler::reconcile(&rec, &views, now);
            if plan.is_empty() {
                return Ok(ReconcileOutcome::default());
            }
            let mut next = rec.clone();
            next.apply(&plan, ids, now);
            let mut txn = Txn::new().when(Compare::ModRevision(key.clone(), rev));
            let mut out = ReconcileOutcome::default();

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
                let tkey = keys::task(cluster, task_id);
                txn = txn
                    .when(Compare::ModRevision(tkey.clone(), *trev))
                    .then(Op::Put(tkey, encode(&trec)));
                let pkey = keys::placement(&trec.host_id, task_id);
                if let Some(kv) = self.store.get(&pkey).await? {
                    let mut p: PlacementRecord = decode(&kv)?;
                    p.desired_status = TaskStatus::Stopped;
                    txn = txn
                        .when(Compare::ModRevision(pkey.clone(), kv.mod_revision))
                        .then(Op::Put(pkey, encode(&p)));
                }
                out.stopped += 1;
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
            if next == rec && out.started == 0 && out.stopped == 0 {
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
