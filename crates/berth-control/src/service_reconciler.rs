//! The service scheduler's decision: what to do so that a service's tasks
//! become what the service says.
//!
//! [`reconcile`] is pure and level-triggered: it reads a service (with its
//! deployments) and the tasks it started, and *proposes* a [`Plan`] of
//! [`Action`]s; the caller applies it (`Ecs::reconcile_service`) in one
//! store transaction guarded by the service record's mod revision, so two
//! reconciles of the same state can never both act on it. Reconciling the
//! state that results from a plan proposes nothing the plan already did, so
//! running it twice, or again after a crash, is safe.
//!
//! The rules (ECS's rolling update, REPLICA scheduling):
//!
//! * **Healthy** task: RUNNING, desired RUNNING, HEALTHY when its
//!   deployment's task definition has a container health check (else
//!   RUNNING is enough), and healthy in its load balancers' target groups
//!   when the service has any ([`LbHealth`]). **Live** task: not yet STOPPED (it holds
//!   resources, even while stopping). **Active** task: live and desired
//!   RUNNING.
//! * With `D = desiredCount`: at most `floor(D * maximumPercent / 100)` live
//!   tasks after any start, and a healthy task is stopped only while at
//!   least `ceil(D * minimumHealthyPercent / 100)` healthy tasks remain.
//! * **Health**: an active task whose health is UNHEALTHY after the
//!   `healthCheckGracePeriodSeconds` that follow its start is stopped
//!   (`Task failed container health checks`) and so replaced; so is one
//!   failing its load balancer's health checks ([`elb_health_reason`]).
//! * **Starts**: the PRIMARY deployment gets tasks until it has `D` active
//!   ones, as many per plan as the maximum allows (at most
//!   [`MAX_STARTS_PER_PLAN`]), unless its rollout FAILED.
//! * **Stops** (`Scaling activity initiated by (deployment ID)`): the
//!   PRIMARY's active tasks beyond `D`, then every task of older deployments;
//!   unhealthy and pending ones first, then healthy ones (newest first) as
//!   far as the minimum allows. A FAILED PRIMARY without rollback keeps the
//!   older deployments' tasks.
//! * **Deployments**: an older (ACTIVE) deployment with no live task leaves
//!   the list (INACTIVE). The PRIMARY's rollout is COMPLETED once it has `D`
//!   healthy tasks and no older deployment has a live task.
//! * **Circuit breaker** (when enabled, while the PRIMARY is IN_PROGRESS):
//!   [`consecutive_failures`] counts the PRIMARY's tasks that failed since
//!   its last task that succeeded; at [`failure_threshold`] the rollout is
//!   FAILED, and with `rollback` a new PRIMARY deployment of the last
//!   COMPLETED deployment's task definition is made (by the caller).
//! * **Steady state**: one deployment, COMPLETED, `D` healthy tasks and no
//!   other live task. Entering it logs `(service NAME) has reached a steady
//!   state.`
//! * A DRAINING service stops all its tasks and becomes INACTIVE once none
//!   is live.

use berth_core::service::{DeploymentStatus, RolloutState, ServiceStatus};
use berth_core::task::{HealthStatus, StopCode, Task, TaskStatus};
use berth_core::Timestamp;

use crate::ecs::services::{CompletedDeployment, DeploymentRecord, ServiceRecord};

/// The most tasks one plan starts (RunTask's limit); the next plan starts
/// the rest.
pub const MAX_STARTS_PER_PLAN: u32 = 10;

/// A task that stops within this many seconds of starting failed (an
/// essential container that exits at once), unless the scheduler stopped it.
pub const EARLY_EXIT_SECONDS: i64 = 10;

/// The `stoppedReason` of a task stopped for failing its health checks.
pub const HEALTH_CHECK_REASON: &str = "Task failed container health checks";

/// The `stoppedReason` of a task stopped for failing its load balancer's
/// health checks in a target group.
pub fn elb_health_reason(target_group_arn: &str) -> String {
    format!("Task failed ELB health checks in (target-group {target_group_arn})")
}

/// Where a task stands with the load balancers of its service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LbHealth {
    /// The service has no load balancer.
    #[default]
    NotBehind,
    /// Not registered yet, or not yet passing the health checks.
    Initial,
    /// Healthy in every target group.
    Healthy,
    /// Failing the health checks of this target group.
    Unhealthy(String),
}

/// The `stoppedReason` of a task the scheduler scales in or drains.
pub fn scaling_reason(deployment: &str) -> String {
    format!("Scaling activity initiated by (deployment {deployment})")
}

/// The circuit breaker's threshold: half the desired count, at least 3 and
/// at most 200 (ECS's rule).
pub fn failure_threshold(desired: i64) -> u32 {
    let half = u32::try_from((desired.max(0) + 1) / 2).unwrap_or(u32::MAX);
    half.clamp(3, 200)
}

/// What the reconciler knows of one task of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    /// The task id.
    pub id: String,
    /// The deployment that started it (its `startedBy`).
    pub deployment: Option<String>,
    /// The lifecycle state.
    pub last_status: TaskStatus,
    /// RUNNING or STOPPED.
    pub desired_status: TaskStatus,
    /// Task health.
    pub health: HealthStatus,
    /// Created (orders the tasks).
    pub created_at: Timestamp,
    /// Reached RUNNING.
    pub started_at: Option<Timestamp>,
    /// The essential containers exited (or the task stopped).
    pub ended_at: Option<Timestamp>,
    /// Why it stopped.
    pub stop_code: Option<StopCode>,
    /// Why it stopped, in words.
    pub stopped_reason: Option<String>,
    /// Its standing with the service's load balancers.
    pub lb: LbHealth,
}

impl TaskView {
    /// The view of a stored task.
    pub fn of(t: &Task) -> Self {
        Self {
            id: t.id().to_string(),
            deployment: t.started_by.clone(),
            last_status: t.last_status,
            desired_status: t.desired_status,
            health: t.health_status,
            created_at: t.created_at,
            started_at: t.started_at,
            ended_at: t.execution_stopped_at.or(t.stopped_at),
            stop_code: t.stop_code,
            stopped_reason: t.stopped_reason.clone(),
            lb: LbHealth::NotBehind,
        }
    }

    /// The same view with its load balancer standing.
    #[must_use]
    pub fn with_lb(mut self, lb: LbHealth) -> Self {
        self.lb = lb;
        self
    }

    /// Not yet STOPPED: it holds resources.
    pub fn live(&self) -> bool {
        self.last_status != TaskStatus::Stopped
    }

    /// Live and meant to keep running.
    pub fn active(&self) -> bool {
        self.live() && self.desired_status == TaskStatus::Running
    }

    /// Active, RUNNING, HEALTHY when `health_checked`, and healthy in its
    /// load balancers' target groups when it is behind any.
    pub fn healthy(&self, health_checked: bool) -> bool {
        self.active()
            && self.last_status == TaskStatus::Running
            && (!health_checked || self.health == HealthStatus::Healthy)
            && matches!(self.lb, LbHealth::NotBehind | LbHealth::Healthy)
    }
}

/// One step the caller takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start `count` tasks of a deployment (`startedBy` its id, group
    /// `service:NAME`).
    Start {
        /// The deployment id.
        deployment: String,
        /// How many.
        count: u32,
    },
    /// Stop a task with stop code ServiceSchedulerInitiated.
    Stop {
        /// The task id.
        task: String,
        /// Its `stoppedReason`.
        reason: String,
    },
    /// Set a deployment's rollout state.
    Rollout {
        /// The deployment id.
        deployment: String,
        /// The new state.
        state: RolloutState,
        /// `rolloutStateReason`.
        reason: String,
    },
    /// An older deployment has no task left: it becomes INACTIVE and leaves
    /// the service's list.
    Retire {
        /// The deployment id.
        deployment: String,
    },
    /// Make a new PRIMARY deployment of a COMPLETED deployment's task
    /// definition; the failed PRIMARY becomes ACTIVE.
    Rollback {
        /// The FAILED deployment.
        failed: String,
        /// What to roll back to.
        to: CompletedDeployment,
    },
    /// The service entered (true) or left (false) its steady state.
    Steady(bool),
    /// A DRAINING service has no task left: it becomes INACTIVE.
    Deactivate,
    /// Log a service event.
    Event(String),
}

/// What [`reconcile`] proposes, in the order to apply it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The actions.
    pub actions: Vec<Action>,
}

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The start, if any: (deployment, count).
    pub fn start(&self) -> Option<(&str, u32)> {
        self.actions.iter().find_map(|a| match a {
            Action::Start { deployment, count } => Some((deployment.as_str(), *count)),
            _ => None,
        })
    }

    /// The stops: (task, reason).
    pub fn stops(&self) -> impl Iterator<Item = (&str, &str)> {
        self.actions.iter().filter_map(|a| match a {
            Action::Stop { task, reason } => Some((task.as_str(), reason.as_str())),
            _ => None,
        })
    }

    fn push(&mut self, a: Action) {
        self.actions.push(a);
    }
}

/// How a finished (or running) task counts for the circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    /// Stopped by the scheduler or a user, or not decided yet.
    Neutral,
}

fn outcome(t: &TaskView, health_checked: bool, now: Timestamp) -> Outcome {
    let window = EARLY_EXIT_SECONDS * 1000;
    // Stopped for failing health checks counts at once, not only once the
    // task is STOPPED (behind a load balancer it drains first).
    if t.desired_status == TaskStatus::Stopped
        && t.stopped_reason.as_deref().is_some_and(|r| {
            r == HEALTH_CHECK_REASON || r.starts_with("Task failed ELB health checks")
        })
    {
        return Outcome::Failure;
    }
    if t.last_status != TaskStatus::Stopped {
        // Proven: healthy by its health check, or running for a while.
        let proven = t.healthy(health_checked)
            && (health_checked || t.started_at.is_some_and(|s| now.0 - s.0 >= window));
        return if proven {
            Outcome::Success
        } else {
            Outcome::Neutral
        };
    }
    if t.stopped_reason
        .as_deref()
        .is_some_and(|r| r == HEALTH_CHECK_REASON || r.starts_with("Task failed ELB health checks"))
    {
        return Outcome::Failure;
    }
    match t.stop_code {
        Some(
            StopCode::ServiceSchedulerInitiated
            | StopCode::UserInitiated
            | StopCode::InfrastructureHealth,
        ) => Outcome::Neutral,
        Some(StopCode::TaskFailedToStart) => Outcome::Failure,
        Some(StopCode::EssentialContainerExited) | None => match (t.started_at, t.ended_at) {
            (Some(s), Some(e)) if e.0 - s.0 >= window => Outcome::Success,
            (Some(_), None) => Outcome::Success,
            _ => Outcome::Failure,
        },
    }
}

/// How many of a deployment's tasks failed since the last one that
/// succeeded, in creation order: a task fails when it stops before it ran
/// (TaskFailedToStart), when it exits within [`EARLY_EXIT_SECONDS`] of
/// starting, or when it is stopped for failing its health checks; it
/// succeeds when it is HEALTHY (health-checked) or has run that long.
/// Tasks the scheduler or a user stopped do not count.
pub fn consecutive_failures(d: &DeploymentRecord, tasks: &[TaskView], now: Timestamp) -> u32 {
    let mut mine: Vec<&TaskView> = tasks
        .iter()
        .filter(|t| t.deployment.as_deref() == Some(d.deployment.id.as_str()))
        .collect();
    mine.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut n = 0u32;
    for t in mine {
        match outcome(t, d.health_checked, now) {
            Outcome::Success => n = 0,
            Outcome::Failure => n = n.saturating_add(1),
            Outcome::Neutral => {}
        }
    }
    n
}

/// `floor(D * maximumPercent / 100)`.
pub fn max_live(s: &ServiceRecord) -> i64 {
    let d = s.service.desired_count.max(0);
    d * s.service.deployment_configuration.max_percent().max(0) / 100
}

/// `ceil(D * minimumHealthyPercent / 100)`.
pub fn min_healthy(s: &ServiceRecord) -> i64 {
    let d = s.service.desired_count.max(0);
    let p = s
        .service
        .deployment_configuration
        .min_healthy_percent()
        .max(0);
    (d * p + 99) / 100
}

/// Counts of one deployment, for DescribeServices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeploymentCounts {
    /// Tasks the scheduler keeps (the PRIMARY's: `D`).
    pub desired: i64,
    /// RUNNING tasks.
    pub running: i64,
    /// PROVISIONING, PENDING or ACTIVATING tasks.
    pub pending: i64,
    /// [`consecutive_failures`].
    pub failed: i64,
}

/// The counts of each deployment of `s` (in `s.deployments` order).
pub fn counts(s: &ServiceRecord, tasks: &[TaskView], now: Timestamp) -> Vec<DeploymentCounts> {
    s.deployments
        .iter()
        .map(|d| {
            let mine = tasks
                .iter()
                .filter(|t| t.deployment.as_deref() == Some(d.deployment.id.as_str()));
            let mut c = DeploymentCounts {
                failed: i64::from(consecutive_failures(d, tasks, now)),
                ..DeploymentCounts::default()
            };
            for t in mine {
                match t.last_status {
                    TaskStatus::Running => c.running += 1,
                    TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating => {
                        c.pending += 1;
                    }
                    _ => {}
                }
                if t.active() {
                    c.desired += 1;
                }
            }
            if d.deployment.status == DeploymentStatus::Primary {
                c.desired = s.service.desired_count;
            }
            c
        })
        .collect()
}

fn task_list(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| format!("(task {id})"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The stopped-tasks event.
pub fn stopped_event(service: &str, ids: &[&str]) -> String {
    format!(
        "(service {service}) has stopped {} running tasks: {}.",
        ids.len(),
        task_list(ids)
    )
}

/// The started-tasks event.
pub fn started_event(service: &str, ids: &[&str]) -> String {
    format!(
        "(service {service}) has started {} tasks: {}.",
        ids.len(),
        task_list(ids)
    )
}

/// Decides what to do for `service` (its record carries its deployments)
/// given the tasks it started, at `now`. See the module docs for the rules.
pub fn reconcile(service: &ServiceRecord, tasks: &[TaskView], now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let name = service.service.service_name.as_str();
    match service.service.status {
        ServiceStatus::Inactive => return plan,
        ServiceStatus::Draining => {
            drain(service, tasks, &mut plan);
            return plan;
        }
        ServiceStatus::Active => {}
    }
    let Some(primary) = service
        .deployments
        .iter()
        .find(|d| d.deployment.status == DeploymentStatus::Primary)
    else {
        return plan;
    };
    let pid = primary.deployment.id.as_str();
    let health_checked = |t: &TaskView| {
        t.deployment
            .as_deref()
            .and_then(|id| service.deployments.iter().find(|d| d.deployment.id == id))
            .is_some_and(|d| d.health_checked)
    };
    let is_primary = |t: &TaskView| t.deployment.as_deref() == Some(pid);
    let desired = service.service.desired_count.max(0);
    let mut stopping: Vec<&str> = Vec::new();

    // 1. Tasks that failed their health checks past the grace period.
    let grace_ms = service
        .service
        .health_check_grace_period_seconds
        .unwrap_or(0)
        .max(0)
        .saturating_mul(1000);
    let mut health_stops = Vec::new();
    for t in tasks {
        let past_grace = t
            .started_at
            .is_none_or(|s| now.0 >= s.0.saturating_add(grace_ms));
        if t.active() && t.health == HealthStatus::Unhealthy && health_checked(t) && past_grace {
            plan.push(Action::Event(format!(
                "(service {name}) (task {}) failed container health checks.",
                t.id
            )));
            health_stops.push(t.id.as_str());
        }
    }
    let mut health_reasons: Vec<String> = vec![HEALTH_CHECK_REASON.to_string(); health_stops.len()];
    for t in tasks {
        let past_grace = t
            .started_at
            .is_none_or(|s| now.0 >= s.0.saturating_add(grace_ms));
        if let LbHealth::Unhealthy(tg) = &t.lb {
            if t.active() && past_grace && !health_stops.contains(&t.id.as_str()) {
                plan.push(Action::Event(format!(
                    "(service {name}) (task {}) failed ELB health checks in (target-group {tg}).",
                    t.id
                )));
                health_stops.push(t.id.as_str());
                health_reasons.push(elb_health_reason(tg));
            }
        }
    }
    for (id, reason) in health_stops.iter().zip(health_reasons) {
        plan.push(Action::Stop {
            task: (*id).to_string(),
            reason,
        });
    }
    stopping.extend(&health_stops);
    let active = |t: &TaskView, stopping: &[&str]| t.active() && !stopping.contains(&t.id.as_str());
    let healthy = |t: &TaskView, stopping: &[&str]| {
        t.healthy(health_checked(t)) && !stopping.contains(&t.id.as_str())
    };

    // 2. The circuit breaker.
    if primary.deployment.rollout_state == RolloutState::InProgress {
        if let Some(rollback) = service.service.deployment_configuration.circuit_breaker() {
            let failed = consecutive_failures(primary, tasks, now);
            if failed >= failure_threshold(desired) {
                plan.push(Action::Rollout {
                    deployment: pid.to_string(),
                    state: RolloutState::Failed,
                    reason: "ECS deployment circuit breaker: tasks failed to start.".to_string(),
                });
                plan.push(Action::Event(format!(
                    "(service {name}) (deployment {pid}) deployment failed: tasks failed to start."
                )));
                let target = service.last_completed.as_ref().filter(|_| rollback);
                if let Some(to) = target {
                    plan.push(Action::Event(format!(
                        "(service {name}) rolling back to deployment {}.",
                        to.id
                    )));
                    plan.push(Action::Rollback {
                        failed: pid.to_string(),
                        to: to.clone(),
                    });
                }
                if !health_stops.is_empty() {
                    plan.push(Action::Event(stopped_event(name, &health_stops)));
                }
                if service.steady {
                    plan.push(Action::Steady(false));
                }
                return plan;
            }
        }
    }
    let failed_primary = primary.deployment.rollout_state == RolloutState::Failed;

    // 3. Starts for the PRIMARY, within the maximum.
    let live = i64::try_from(tasks.iter().filter(|t| t.live()).count()).unwrap_or(i64::MAX);
    let primary_active = i64::try_from(
        tasks
            .iter()
            .filter(|t| is_primary(t) && active(t, &stopping))
            .count(),
    )
    .unwrap_or(i64::MAX);
    let mut started = 0;
    if !failed_primary && primary_active < desired {
        let room = max_live(service) - live;
        let n = (desired - primary_active)
            .min(room)
            .min(i64::from(MAX_STARTS_PER_PLAN));
        if n > 0 {
            started = n;
            plan.push(Action::Start {
                deployment: pid.to_string(),
                count: u32::try_from(n).unwrap_or(0),
            });
        }
    }

    // 4. Stops: the PRIMARY's excess, then the older deployments' tasks.
    let mut healthy_now =
        i64::try_from(tasks.iter().filter(|t| healthy(t, &stopping)).count()).unwrap_or(i64::MAX);
    let floor = min_healthy(service);
    // Unhealthy/pending first, then newest first.
    let order = |v: &mut Vec<&TaskView>, stopping: &[&str]| {
        v.sort_by(|a, b| {
            (
                healthy(a, stopping),
                std::cmp::Reverse((a.created_at, &a.id)),
            )
                .cmp(&(
                    healthy(b, stopping),
                    std::cmp::Reverse((b.created_at, &b.id)),
                ))
        });
    };
    let mut candidates: Vec<(&TaskView, String)> = Vec::new();
    if primary_active > desired {
        let mut mine: Vec<&TaskView> = tasks
            .iter()
            .filter(|t| is_primary(t) && active(t, &stopping))
            .collect();
        order(&mut mine, &stopping);
        let excess = usize::try_from(primary_active - desired).unwrap_or(0);
        candidates.extend(
            mine.into_iter()
                .take(excess)
                .map(|t| (t, scaling_reason(pid))),
        );
    }
    if !failed_primary {
        let mut old: Vec<&TaskView> = tasks
            .iter()
            .filter(|t| !is_primary(t) && active(t, &stopping))
            .collect();
        order(&mut old, &stopping);
        candidates.extend(old.into_iter().map(|t| {
            let reason = scaling_reason(t.deployment.as_deref().unwrap_or(pid));
            (t, reason)
        }));
    }
    let mut scaled: Vec<&str> = Vec::new();
    for (t, reason) in candidates {
        if healthy(t, &stopping) {
            if healthy_now <= floor {
                continue;
            }
            healthy_now -= 1;
        }
        scaled.push(t.id.as_str());
        plan.push(Action::Stop {
            task: t.id.clone(),
            reason,
        });
    }
    stopping.extend(&scaled);
    let all_stops: Vec<&str> = stopping.clone();
    if !all_stops.is_empty() {
        plan.push(Action::Event(stopped_event(name, &all_stops)));
    }

    // 5. Deployments: retire drained older ones, complete the PRIMARY.
    let mut remaining = 1;
    for d in &service.deployments {
        if d.deployment.status == DeploymentStatus::Primary {
            continue;
        }
        let id = d.deployment.id.as_str();
        let has_live = tasks
            .iter()
            .any(|t| t.deployment.as_deref() == Some(id) && t.live());
        if has_live {
            remaining += 1;
        } else {
            plan.push(Action::Retire {
                deployment: id.to_string(),
            });
        }
    }
    let others_live = tasks.iter().any(|t| !is_primary(t) && t.live());
    let primary_healthy = i64::try_from(
        tasks
            .iter()
            .filter(|t| is_primary(t) && healthy(t, &stopping))
            .count(),
    )
    .unwrap_or(i64::MAX);
    let primary_active_after = i64::try_from(
        tasks
            .iter()
            .filter(|t| is_primary(t) && active(t, &stopping))
            .count(),
    )
    .unwrap_or(i64::MAX)
        + started;
    let mut rollout = primary.deployment.rollout_state;
    if rollout == RolloutState::InProgress
        && primary_healthy >= desired
        && primary_active_after == desired
        && !others_live
    {
        rollout = RolloutState::Completed;
        plan.push(Action::Rollout {
            deployment: pid.to_string(),
            state: RolloutState::Completed,
            reason: format!("ECS deployment {pid} completed."),
        });
        plan.push(Action::Event(format!(
            "(service {name}) (deployment {pid}) deployment completed."
        )));
    }

    // 6. Steady state.
    let live_after = tasks
        .iter()
        .filter(|t| t.live() && !stopping.contains(&t.id.as_str()))
        .count();
    let steady = rollout == RolloutState::Completed
        && remaining == 1
        && started == 0
        && stopping.is_empty()
        && primary_healthy == desired
        && i64::try_from(live_after).unwrap_or(i64::MAX) == desired;
    if steady && !service.steady {
        plan.push(Action::Steady(true));
        plan.push(Action::Event(format!(
            "(service {name}) has reached a steady state."
        )));
    } else if !steady && service.steady {
        plan.push(Action::Steady(false));
    }
    plan
}

fn drain(service: &ServiceRecord, tasks: &[TaskView], plan: &mut Plan) {
    let name = service.service.service_name.as_str();
    let primary = service
        .deployments
        .iter()
        .find(|d| d.deployment.status == DeploymentStatus::Primary)
        .map_or("", |d| d.deployment.id.as_str());
    let mut stopped = Vec::new();
    for t in tasks.iter().filter(|t| t.active()) {
        plan.push(Action::Stop {
            task: t.id.clone(),
            reason: scaling_reason(t.deployment.as_deref().unwrap_or(primary)),
        });
        stopped.push(t.id.as_str());
    }
    if !stopped.is_empty() {
        plan.push(Action::Event(stopped_event(name, &stopped)));
    }
    if service.steady {
        plan.push(Action::Steady(false));
    }
    if !tasks.iter().any(TaskView::live) {
        plan.push(Action::Deactivate);
    }
}

#[cfg(test)]
#[path = "service_reconciler_tests.rs"]
mod tests;
