//! The control plane's half of the agent protocol (`berth_core::agent`):
//! a host's assignments (its desired state) and the state reports that move
//! tasks through their lifecycle.
//!
//! Report rules ([`apply_report`], pure):
//! * `lastStatus` only moves forward; a report older than the stored state is
//!   acknowledged and ignored, so agents may resend reports freely.
//! * Container states are copied by name (`lastStatus` forward only, exit
//!   code, reason, image digest, runtime id, health).
//! * Timestamps: the agent's `pullStartedAt`, `pullStoppedAt`, `startedAt`,
//!   `executionStoppedAt` are kept once set; `startedAt` defaults to the
//!   report's time at RUNNING; `stoppingAt` is set at DEACTIVATING or later
//!   if StopTask did not set it; `stoppedAt` at STOPPED.
//! * A stop the control plane asked for keeps its code and reason
//!   (`UserInitiated` from StopTask, `ServiceSchedulerInitiated` from a
//!   service's scheduler, `InfrastructureHealth`); other stops take the
//!   agent's `stopCode`/`stoppedReason`. A task that reaches
//!   STOPPED without any gets `TaskFailedToStart` (it never ran) or
//!   `EssentialContainerExited`.
//! * From DEACTIVATING on the task's `desiredStatus` is STOPPED (the host is
//!   stopping it); at STOPPED every container is STOPPED, the attachment is
//!   DELETED and the placement is removed, freeing the host's cpu, memory
//!   and address. The attachment is ATTACHED from RUNNING on.
//! * `version` grows by one with every change.

use std::collections::HashMap;
use std::time::Duration;

use berth_core::agent::{Assignments, TaskAssignment, TaskStateReport};
use berth_core::task::{StopCode, Task, TaskStatus};
use berth_core::taskdef::TaskDefinition;
use berth_core::Timestamp;
use berth_store::{Compare, Op, StoreError, Txn};

use super::hosts::HOST_PREFIX_LEN;
use super::tasks::{family_revision_of, PlacementRecord, TaskRecord};
use super::{backoff, decode, encode, Ecs, TaskDefinitionRef, MAX_RETRIES};
use crate::{keys, EcsError};

/// The longest an assignments long poll waits.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// How long an assignments long poll waits unless asked otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(25);

fn container_rank(s: &str) -> Option<u8> {
    match s {
        "PENDING" => Some(0),
        "RUNNING" => Some(1),
        "STOPPED" => Some(2),
        _ => None,
    }
}

/// Applies a state report to a task: the new task, or `None` when the report
/// changes nothing (stale or repeated). See the module docs for the rules.
pub fn apply_report(
    task: &Task,
    r: &TaskStateReport,
    now: Timestamp,
) -> Result<Option<Task>, EcsError> {
    for c in &r.containers {
        if container_rank(&c.last_status).is_none() {
            return Err(EcsError::invalid(format!(
                "container {}: lastStatus {:?} is not valid (use PENDING, RUNNING or STOPPED)",
                c.name, c.last_status
            )));
        }
        if !task.containers.iter().any(|x| x.name == c.name) {
            return Err(EcsError::invalid(format!(
                "task {}: container {:?} is not in the task (its containers: {})",
                task.id(),
                c.name,
                task.containers
                    .iter()
                    .map(|x| x.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if r.last_status < task.last_status || task.last_status == TaskStatus::Stopped {
        return Ok(None);
    }
    let mut t = task.clone();
    for c in &r.containers {
        let Some(slot) = t.containers.iter_mut().find(|x| x.name == c.name) else {
            continue;
        };
        if container_rank(&c.last_status) >= container_rank(&slot.last_status) {
            slot.last_status.clone_from(&c.last_status);
        }
        if c.exit_code.is_some() {
            slot.exit_code = c.exit_code;
        }
        if c.reason.is_some() {
            slot.reason.clone_from(&c.reason);
        }
        if c.image_digest.is_some() {
            slot.image_digest.clone_from(&c.image_digest);
        }
        if c.runtime_id.is_some() {
            slot.runtime_id.clone_from(&c.runtime_id);
        }
        slot.health_status = c.health_status;
    }
    let status = r.last_status;
    t.last_status = status;
    t.health_status = r.health_status;
    if t.pull_started_at.is_none() {
        t.pull_started_at = r.pull_started_at;
    }
    if t.pull_stopped_at.is_none() {
        t.pull_stopped_at = r.pull_stopped_at;
    }
    if t.started_at.is_none() {
        t.started_at = r.started_at;
        if status == TaskStatus::Running {
            t.started_at.get_or_insert(now);
        }
    }
    if t.execution_stopped_at.is_none() {
        t.execution_stopped_at = r.execution_stopped_at;
    }
    if status >= TaskStatus::Deactivating {
        t.desired_status = TaskStatus::Stopped;
        t.stopping_at.get_or_insert(now);
    }
    let asked = matches!(
        t.stop_code,
        Some(
            StopCode::UserInitiated
                | StopCode::ServiceSchedulerInitiated
                | StopCode::InfrastructureHealth
        )
    ) && task.desired_status == TaskStatus::Stopped;
    if !asked {
        if r.stop_code.is_some() {
            t.stop_code = r.stop_code;
        }
        if r.stopped_reason.is_some() {
            t.stopped_reason.clone_from(&r.stopped_reason);
        }
    }
    if status >= TaskStatus::Running {
        for a in &mut t.attachments {
            a.status = "ATTACHED".to_string();
        }
    }
    if status == TaskStatus::Stopped {
        t.stopped_at.get_or_insert(now);
        t.execution_stopped_at.get_or_insert(now);
        for c in &mut t.containers {
            c.last_status = "STOPPED".to_string();
        }
        for a in &mut t.attachments {
            a.status = "DELETED".to_string();
        }
        if t.stop_code.is_none() {
            let (code, reason) = if t.started_at.is_none() {
                (StopCode::TaskFailedToStart, "Task failed to start")
            } else {
                (
                    StopCode::EssentialContainerExited,
                    "Essential container in task exited",
                )
            };
            t.stop_code = Some(code);
            t.stopped_reason.get_or_insert_with(|| reason.to_string());
        }
    }
    if t == *task {
        return Ok(None);
    }
    t.version += 1;
    Ok(Some(t))
}

impl Ecs {
    /// The desired state of a host: every task placed on it that has not
    /// been reported STOPPED, with the store revision it reflects.
    pub async fn assignments(&self, host_id: &str) -> Result<Assignments, EcsError> {
        let host = self.host(host_id).await?;
        let list = self.store.list(&keys::host_placements(host_id)).await?;
        let mut defs: HashMap<String, TaskDefinition> = HashMap::new();
        let mut tasks = Vec::new();
        for kv in &list.items {
            let p: PlacementRecord = decode(kv)?;
            let Some((rec, _)) = self.task_record(&p.cluster, &p.task_id).await? else {
                // The placement outlived its task record: nothing to run.
                continue;
            };
            let td = match defs.get(&rec.task.task_definition_arn) {
                Some(td) => td.clone(),
                None => {
                    let td = self.task_definition_of(&rec).await?;
                    defs.insert(rec.task.task_definition_arn.clone(), td.clone());
                    td
                }
            };
            // A task draining from its load balancers is desired STOPPED in
            // the ECS view, but its host keeps it running (placement
            // RUNNING) until the drain is over.
            let draining = rec.drain_until.is_some() && p.desired_status == TaskStatus::Running;
            let desired_status = if draining {
                TaskStatus::Running
            } else {
                rec.task.desired_status
            };
            tasks.push(TaskAssignment {
                task_arn: rec.task.task_arn.clone(),
                task_id: p.task_id.clone(),
                desired_status,
                task_definition: td,
                container_overrides: rec.container_overrides.clone(),
                cpu: rec.cpu,
                memory: rec.memory,
                ip: host.address(p.octet),
                prefix_len: HOST_PREFIX_LEN,
                gateway: host.gateway(),
                // Set only when the control plane asked for the stop (StopTask,
                // a service's scheduler, a lost host), not when the server is
                // merely mirroring a stop the task made itself (an essential
                // container exited): the agent must not be told to stop twice.
                stop_reason: match (desired_status, rec.task.stop_code) {
                    (
                        TaskStatus::Stopped,
                        Some(
                            StopCode::UserInitiated
                            | StopCode::ServiceSchedulerInitiated
                            | StopCode::InfrastructureHealth,
                        ),
                    ) => Some(
                        rec.task
                            .stopped_reason
                            .clone()
                            .unwrap_or_else(|| "Task stopped by user".to_string()),
                    ),
                    _ => None,
                },
            });
        }
        Ok(Assignments {
            revision: list.revision,
            tasks,
        })
    }

    async fn task_definition_of(&self, rec: &TaskRecord) -> Result<TaskDefinition, EcsError> {
        let arn = &rec.task.task_definition_arn;
        let (family, revision) = family_revision_of(arn).ok_or_else(|| EcsError::Corrupt {
            key: keys::task_index(rec.task.id()),
            reason: format!("task definition ARN {arn} does not parse"),
        })?;
        let (td, _) = self
            .get_task_definition(&TaskDefinitionRef::Revision(family, revision))
            .await?;
        Ok(td.task_definition)
    }

    /// The assignments long poll: answers at once when the host's desired
    /// state changed after revision `after` (or `after` is 0, or from another
    /// store history), else when it changes, else after `wait` (at most
    /// [`MAX_WAIT`]) with the current state.
    pub async fn wait_assignments(
        &self,
        host_id: &str,
        after: u64,
        wait: Duration,
    ) -> Result<Assignments, EcsError> {
        self.host(host_id).await?;
        let current = self.store.revision().await?;
        if after > 0 && after <= current {
            match self
                .store
                .watch(&keys::host_placements(host_id), after + 1)
                .await
            {
                Ok(mut w) => {
                    // Any event (or the watch ending) means "look again".
                    let _ = tokio::time::timeout(wait.min(MAX_WAIT), w.next()).await;
                }
                Err(StoreError::Compacted { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.assignments(host_id).await
    }

    /// Applies a host's report on one of its tasks. `host_id`, when given,
    /// must be the host the task was placed on. Returns the task as stored.
    pub async fn report_state(
        &self,
        host_id: Option<&str>,
        task_id: &str,
        report: &TaskStateReport,
        now: Timestamp,
    ) -> Result<Task, EcsError> {
        let (_, index) = self.task_by_id(task_id).await?;
        if let Some(h) = host_id {
            if h != index.host_id {
                return Err(EcsError::NotAssigned {
                    task: task_id.to_string(),
                    host: h.to_string(),
                });
            }
        }
        let key = keys::task(&index.cluster, task_id);
        let _guard = self.lock(&key).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some((mut rec, rev)) = self.task_record(&index.cluster, task_id).await? else {
                return Err(EcsError::TaskNotFound(task_id.to_string()));
            };
            let Some(task) = apply_report(&rec.task, report, now)? else {
                return Ok(rec.task);
            };
            let desired_changed = task.desired_status != rec.task.desired_status;
            rec.task = task;
            let mut txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Put(key.clone(), encode(&rec)));
            let pkey = keys::placement(&rec.host_id, task_id);
            if rec.task.last_status == TaskStatus::Stopped {
                txn = txn.then(Op::Delete(pkey));
            } else if desired_changed {
                if let Some(kv) = self.store.get(&pkey).await? {
                    let mut p: PlacementRecord = decode(&kv)?;
                    p.desired_status = rec.task.desired_status;
                    txn = txn
                        .when(Compare::ModRevision(pkey.clone(), kv.mod_revision))
                        .then(Op::Put(pkey, encode(&p)));
                }
            }
            if self.store.txn(txn).await?.succeeded {
                return Ok(rec.task);
            }
        }
        Err(EcsError::Contention(key))
    }
}
