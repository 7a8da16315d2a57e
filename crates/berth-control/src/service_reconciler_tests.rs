//! Unit and property tests of the service reconciler's decisions.

use berth_core::service::{
    Deployment, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentController,
    DeploymentStatus, RolloutState, Service, ServiceStatus,
};
use berth_core::task::{HealthStatus, StopCode, TaskStatus};
use berth_core::Timestamp;
use proptest::prelude::*;

use super::*;
use crate::ecs::services::{CompletedDeployment, DeploymentRecord, ServiceRecord};
use crate::ids::SequentialIds;

const SEC: i64 = 1000;

fn deployment(
    id: &str,
    status: DeploymentStatus,
    rollout: RolloutState,
    hc: bool,
) -> DeploymentRecord {
    DeploymentRecord {
        deployment: Deployment {
            id: id.to_string(),
            status,
            task_definition: format!("arn:aws:ecs:r:1:task-definition/web:{}", id.len()),
            desired_count: 0,
            pending_count: 0,
            running_count: 0,
            failed_tasks: 0,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            launch_type: Some("FARGATE".into()),
            capacity_provider_strategy: Vec::new(),
            platform_version: "1.4.0".into(),
            platform_family: "Linux".into(),
            network_configuration: None,
            rollout_state: rollout,
            rollout_state_reason: String::new(),
        },
        health_checked: hc,
    }
}

fn service(
    desired: i64,
    min: i64,
    max: i64,
    breaker: Option<bool>,
    deployments: Vec<DeploymentRecord>,
) -> ServiceRecord {
    ServiceRecord {
        service: Service {
            service_arn: "arn:aws:ecs:r:1:service/default/web".into(),
            service_name: "web".into(),
            cluster_arn: "arn:aws:ecs:r:1:cluster/default".into(),
            load_balancers: Vec::new(),
            service_registries: Vec::new(),
            status: ServiceStatus::Active,
            desired_count: desired,
            running_count: 0,
            pending_count: 0,
            launch_type: Some("FARGATE".into()),
            capacity_provider_strategy: Vec::new(),
            platform_version: "1.4.0".into(),
            platform_family: "Linux".into(),
            task_definition: String::new(),
            deployment_configuration: DeploymentConfiguration {
                deployment_circuit_breaker: breaker.map(|rollback| DeploymentCircuitBreaker {
                    enable: true,
                    rollback,
                }),
                maximum_percent: Some(max),
                minimum_healthy_percent: Some(min),
                extra: serde_json::Map::new(),
            },
            deployments: Vec::new(),
            events: Vec::new(),
            created_at: Timestamp(0),
            placement_constraints: Vec::new(),
            placement_strategy: Vec::new(),
            network_configuration: None,
            health_check_grace_period_seconds: None,
            scheduling_strategy: "REPLICA".into(),
            deployment_controller: DeploymentController::default(),
            tags: Vec::new(),
            created_by: "arn:aws:iam::1:root".into(),
            enable_ecs_managed_tags: false,
            propagate_tags: "NONE".into(),
            enable_execute_command: false,
            availability_zone_rebalancing: None,
        },
        deployments,
        steady: false,
        last_completed: None,
        client_token: None,
    }
}

fn running(id: &str, dep: &str, created: i64, health: HealthStatus) -> TaskView {
    TaskView {
        id: id.into(),
        deployment: Some(dep.into()),
        last_status: TaskStatus::Running,
        desired_status: TaskStatus::Running,
        health,
        created_at: Timestamp(created),
        started_at: Some(Timestamp(created + SEC)),
        ended_at: None,
        stop_code: None,
        stopped_reason: None,
        lb: LbHealth::NotBehind,
    }
}

fn stopped(id: &str, dep: &str, created: i64, code: StopCode, ran: Option<i64>) -> TaskView {
    TaskView {
        id: id.into(),
        deployment: Some(dep.into()),
        last_status: TaskStatus::Stopped,
        desired_status: TaskStatus::Stopped,
        health: HealthStatus::Unknown,
        created_at: Timestamp(created),
        started_at: ran.map(|_| Timestamp(created + SEC)),
        ended_at: Some(Timestamp(created + SEC + ran.unwrap_or(0))),
        stop_code: Some(code),
        stopped_reason: None,
        lb: LbHealth::NotBehind,
    }
}

fn starts(p: &Plan) -> u32 {
    p.start().map_or(0, |(_, n)| n)
}

fn stop_ids(p: &Plan) -> Vec<&str> {
    p.stops().map(|(t, _)| t).collect()
}

fn events(p: &Plan) -> Vec<&str> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_service_starts_its_tasks() {
    let s = service(
        3,
        100,
        200,
        None,
        vec![deployment(
            "d1",
            DeploymentStatus::Primary,
            RolloutState::InProgress,
            false,
        )],
    );
    let p = reconcile(&s, &[], Timestamp(0));
    assert_eq!(p.start(), Some(("d1", 3)));
    assert!(stop_ids(&p).is_empty());
}

#[test]
fn a_converged_service_completes_and_reports_a_steady_state_once() {
    let mut s = service(
        2,
        100,
        200,
        None,
        vec![deployment(
            "d1",
            DeploymentStatus::Primary,
            RolloutState::InProgress,
            false,
        )],
    );
    let tasks = [
        running("a", "d1", 0, HealthStatus::Unknown),
        running("b", "d1", 1, HealthStatus::Unknown),
    ];
    let p = reconcile(&s, &tasks, Timestamp(10 * SEC));
    assert_eq!(
        events(&p),
        [
            "(service web) (deployment d1) deployment completed.",
            "(service web) has reached a steady state."
        ]
    );
    s.apply(&p, &SequentialIds::default(), Timestamp(10 * SEC));
    assert_eq!(
        s.deployments[0].deployment.rollout_state,
        RolloutState::Completed
    );
    assert_eq!(
        s.deployments[0].deployment.rollout_state_reason,
        "ECS deployment d1 completed."
    );
    assert!(s.steady);
    assert_eq!(s.last_completed.as_ref().map(|c| c.id.as_str()), Some("d1"));
    assert!(reconcile(&s, &tasks, Timestamp(11 * SEC)).is_empty());
}

#[test]
fn a_stopped_task_is_replaced() {
    let mut s = service(
        2,
        100,
        200,
        None,
        vec![deployment(
            "d1",
            DeploymentStatus::Primary,
            RolloutState::Completed,
            false,
        )],
    );
    s.steady = true;
    let tasks = [
        running("a", "d1", 0, HealthStatus::Unknown),
        stopped(
            "b",
            "d1",
            1,
            StopCode::EssentialContainerExited,
            Some(60 * SEC),
        ),
    ];
    let p = reconcile(&s, &tasks, Timestamp(100 * SEC));
    assert_eq!(p.start(), Some(("d1", 1)));
    assert!(p.actions.contains(&Action::Steady(false)));
}

#[test]
fn rolling_update_respects_minimum_and_maximum() {
    // D=3, min 100%, max 200%: start 3 new at once, stop old ones only as
    // new ones become healthy.
    let s = service(
        3,
        100,
        200,
        None,
        vec![
            deployment(
                "new",
                DeploymentStatus::Primary,
                RolloutState::InProgress,
                true,
            ),
            deployment(
                "old",
                DeploymentStatus::Active,
                RolloutState::Completed,
                true,
            ),
        ],
    );
    let mut tasks = vec![
        running("o1", "old", 0, HealthStatus::Healthy),
        running("o2", "old", 1, HealthStatus::Healthy),
        running("o3", "old", 2, HealthStatus::Healthy),
    ];
    let p = reconcile(&s, &tasks, Timestamp(0));
    assert_eq!(p.start(), Some(("new", 3)));
    assert!(stop_ids(&p).is_empty());
    tasks.push(running("n1", "new", 10, HealthStatus::Healthy));
    tasks.push(running("n2", "new", 11, HealthStatus::Unknown));
    tasks.push(running("n3", "new", 12, HealthStatus::Unknown));
    let p = reconcile(&s, &tasks, Timestamp(20 * SEC));
    assert_eq!(starts(&p), 0);
    // One new task is healthy: exactly one old may go (newest first).
    assert_eq!(stop_ids(&p), ["o3"]);
    assert!(p
        .stops()
        .all(|(_, r)| r == "Scaling activity initiated by (deployment old)"));
}

#[test]
fn minimum_fifty_percent_stops_before_starting() {
    // D=4, min 50%, max 100%: two old tasks may stop at once, nothing can
    // start until they are gone.
    let s = service(
        4,
        50,
        100,
        None,
        vec![
            deployment(
                "new",
                DeploymentStatus::Primary,
                RolloutState::InProgress,
                false,
            ),
            deployment(
                "old",
                DeploymentStatus::Active,
                RolloutState::Completed,
                false,
            ),
        ],
    );
    let tasks: Vec<TaskView> = (0..4)
        .map(|i| running(&format!("o{i}"), "old", i, HealthStatus::Unknown))
        .collect();
    let p = reconcile(&s, &tasks, Timestamp(0));
    assert_eq!(starts(&p), 0);
    assert_eq!(stop_ids(&p), ["o3", "o2"]);
}

#[test]
fn scale_in_stops_the_newest_tasks() {
    let s = service(
        1,
        100,
        200,
        None,
        vec![deployment(
            "d",
            DeploymentStatus::Primary,
            RolloutState::Completed,
            false,
        )],
    );
    let tasks: Vec<TaskView> = (0..5)
        .map(|i| running(&format!("t{i}"), "d", i, HealthStatus::Unknown))
        .collect();
    let p = reconcile(&s, &tasks, Timestamp(0));
    assert_eq!(stop_ids(&p), ["t4", "t3", "t2", "t1"]);
    assert!(events(&p).contains(
        &"(service web) has stopped 4 running tasks: (task t4) (task t3) (task t2) (task t1)."
    ));
}

#[test]
fn unhealthy_tasks_are_stopped_after_the_grace_period() {
    let mut s = service(
        1,
        100,
        200,
        None,
        vec![deployment(
            "d",
            DeploymentStatus::Primary,
            RolloutState::Completed,
            true,
        )],
    );
    s.service.health_check_grace_period_seconds = Some(30);
    let tasks = [running("t", "d", 0, HealthStatus::Unhealthy)];
    // started_at is 1 s: within the grace period until 31 s.
    assert!(stop_ids(&reconcile(&s, &tasks, Timestamp(20 * SEC))).is_empty());
    let p = reconcile(&s, &tasks, Timestamp(31 * SEC));
    assert_eq!(p.stops().collect::<Vec<_>>(), [("t", HEALTH_CHECK_REASON)]);
    assert!(events(&p).contains(&"(service web) (task t) failed container health checks."));
    // The replacement starts in the same plan (the maximum allows it).
    assert_eq!(p.start(), Some(("d", 1)));
}

#[test]
fn circuit_breaker_trips_and_rolls_back() {
    let mut s = service(
        3,
        100,
        200,
        Some(true),
        vec![
            deployment(
                "bad",
                DeploymentStatus::Primary,
                RolloutState::InProgress,
                false,
            ),
            deployment(
                "good",
                DeploymentStatus::Active,
                RolloutState::Completed,
                false,
            ),
        ],
    );
    s.last_completed = Some(CompletedDeployment {
        id: "good".into(),
        task_definition: "arn:aws:ecs:r:1:task-definition/web:1".into(),
        health_checked: false,
    });
    let mut tasks: Vec<TaskView> = (0..3)
        .map(|i| running(&format!("g{i}"), "good", i, HealthStatus::Unknown))
        .collect();
    tasks.push(stopped("b1", "bad", 10, StopCode::TaskFailedToStart, None));
    tasks.push(stopped(
        "b2",
        "bad",
        11,
        StopCode::EssentialContainerExited,
        Some(200),
    ));
    let p = reconcile(&s, &tasks, Timestamp(100 * SEC));
    assert_eq!(
        p.start(),
        Some(("bad", 3)),
        "two failures are below the threshold of 3"
    );
    tasks.push(stopped("b3", "bad", 12, StopCode::TaskFailedToStart, None));
    let p = reconcile(&s, &tasks, Timestamp(100 * SEC));
    assert_eq!(starts(&p), 0);
    assert!(p.actions.contains(&Action::Rollout {
        deployment: "bad".into(),
        state: RolloutState::Failed,
        reason: "ECS deployment circuit breaker: tasks failed to start.".into(),
    }));
    assert!(events(&p)
        .contains(&"(service web) (deployment bad) deployment failed: tasks failed to start."));
    assert!(
        matches!(p.actions.last(), Some(Action::Rollback { failed, to }) if failed == "bad" && to.id == "good")
    );
    s.apply(&p, &SequentialIds::default(), Timestamp(100 * SEC));
    assert_eq!(s.deployments.len(), 3);
    let primary = s.primary().unwrap();
    assert_eq!(
        primary.deployment.task_definition,
        "arn:aws:ecs:r:1:task-definition/web:1"
    );
    assert_eq!(
        primary.deployment.rollout_state_reason,
        "ECS deployment circuit breaker: rolling back to deploymentId good."
    );
    assert_eq!(
        s.service.task_definition,
        primary.deployment.task_definition
    );
    let bad = s
        .deployments
        .iter()
        .find(|d| d.deployment.id == "bad")
        .unwrap();
    assert_eq!(bad.deployment.status, DeploymentStatus::Active);
    assert_eq!(bad.deployment.rollout_state, RolloutState::Failed);
}

#[test]
fn a_failed_deployment_without_rollback_stops_launching() {
    let mut s = service(
        1,
        100,
        200,
        Some(false),
        vec![deployment(
            "bad",
            DeploymentStatus::Primary,
            RolloutState::InProgress,
            false,
        )],
    );
    let tasks: Vec<TaskView> = (0..3)
        .map(|i| {
            stopped(
                &format!("b{i}"),
                "bad",
                i,
                StopCode::TaskFailedToStart,
                None,
            )
        })
        .collect();
    let p = reconcile(&s, &tasks, Timestamp(0));
    assert!(!p
        .actions
        .iter()
        .any(|a| matches!(a, Action::Rollback { .. })));
    s.apply(&p, &SequentialIds::default(), Timestamp(0));
    assert_eq!(
        s.deployments[0].deployment.rollout_state,
        RolloutState::Failed
    );
    assert!(reconcile(&s, &tasks, Timestamp(SEC)).is_empty());
}

#[test]
fn failures_are_consecutive_and_reset_by_a_success() {
    let d = deployment(
        "d",
        DeploymentStatus::Primary,
        RolloutState::InProgress,
        false,
    );
    let now = Timestamp(1000 * SEC);
    let tasks = [
        stopped("a", "d", 1, StopCode::TaskFailedToStart, None),
        stopped(
            "b",
            "d",
            2,
            StopCode::EssentialContainerExited,
            Some(2 * SEC),
        ),
        // Ran long enough: a success, which resets the count.
        stopped(
            "c",
            "d",
            3,
            StopCode::EssentialContainerExited,
            Some(60 * SEC),
        ),
        stopped("e", "d", 4, StopCode::EssentialContainerExited, Some(SEC)),
        // Stopped by the scheduler or a user: not counted.
        stopped("f", "d", 5, StopCode::ServiceSchedulerInitiated, Some(SEC)),
        stopped("g", "d", 6, StopCode::UserInitiated, None),
    ];
    assert_eq!(consecutive_failures(&d, &tasks, now), 1);
    assert_eq!(consecutive_failures(&d, &tasks[..2], now), 2);
    let mut health = stopped("h", "d", 7, StopCode::ServiceSchedulerInitiated, Some(SEC));
    health.stopped_reason = Some(HEALTH_CHECK_REASON.into());
    let with_health = [tasks[3].clone(), health];
    assert_eq!(consecutive_failures(&d, &with_health, now), 2);
}

#[test]
fn thresholds() {
    assert_eq!(failure_threshold(0), 3);
    assert_eq!(failure_threshold(1), 3);
    assert_eq!(failure_threshold(7), 4);
    assert_eq!(failure_threshold(10), 5);
    assert_eq!(failure_threshold(1000), 200);
}

#[test]
fn draining_stops_everything_then_deactivates() {
    let mut s = service(
        0,
        100,
        200,
        None,
        vec![deployment(
            "d",
            DeploymentStatus::Primary,
            RolloutState::Completed,
            false,
        )],
    );
    s.service.status = ServiceStatus::Draining;
    let tasks = [
        running("a", "d", 0, HealthStatus::Unknown),
        running("b", "d", 1, HealthStatus::Unknown),
    ];
    let p = reconcile(&s, &tasks, Timestamp(0));
    assert_eq!(stop_ids(&p), ["a", "b"]);
    assert!(!p.actions.contains(&Action::Deactivate));
    let gone = [
        stopped("a", "d", 0, StopCode::ServiceSchedulerInitiated, Some(SEC)),
        stopped("b", "d", 1, StopCode::ServiceSchedulerInitiated, Some(SEC)),
    ];
    let p = reconcile(&s, &gone, Timestamp(0));
    assert_eq!(p.actions, [Action::Deactivate]);
    s.apply(&p, &SequentialIds::default(), Timestamp(0));
    assert_eq!(s.service.status, ServiceStatus::Inactive);
    assert!(reconcile(&s, &gone, Timestamp(0)).is_empty());
}

#[test]
fn drained_old_deployments_are_retired() {
    let s = service(
        1,
        100,
        200,
        None,
        vec![
            deployment(
                "new",
                DeploymentStatus::Primary,
                RolloutState::InProgress,
                false,
            ),
            deployment(
                "old",
                DeploymentStatus::Active,
                RolloutState::Completed,
                false,
            ),
        ],
    );
    let tasks = [
        running("n", "new", 5, HealthStatus::Unknown),
        stopped(
            "o",
            "old",
            0,
            StopCode::ServiceSchedulerInitiated,
            Some(SEC),
        ),
    ];
    let p = reconcile(&s, &tasks, Timestamp(0));
    assert!(p.actions.contains(&Action::Retire {
        deployment: "old".into()
    }));
    assert!(events(&p).contains(&"(service web) has reached a steady state."));
}

#[test]
fn placement_complaints_are_not_repeated_within_a_minute() {
    let mut s = service(1, 100, 200, None, Vec::new());
    let ids = SequentialIds::default();
    let msg = "(service web) was unable to place a task because no container instance met all of its requirements.";
    s.push_event("1".into(), msg.into(), Timestamp(0));
    s.push_event("2".into(), msg.into(), Timestamp(30 * SEC));
    assert_eq!(s.service.events.len(), 1);
    s.push_event("3".into(), msg.into(), Timestamp(61 * SEC));
    assert_eq!(s.service.events.len(), 2);
    for i in 0..150 {
        s.push_event(format!("{i}"), format!("event {i}"), Timestamp(i));
    }
    assert_eq!(s.service.events.len(), 100);
    assert_eq!(s.service.events[0].message, "event 149");
    let _ = ids;
}

// --------------------------------------------------------------------------
// Properties
// --------------------------------------------------------------------------

/// A service and its tasks, advanced by a simulated agent.
#[derive(Debug)]
struct World {
    svc: ServiceRecord,
    tasks: Vec<TaskView>,
    now: i64,
    next: u64,
    ids: SequentialIds,
}

impl World {
    fn health_checked(&self, t: &TaskView) -> bool {
        self.svc
            .deployments
            .iter()
            .find(|d| Some(&d.deployment.id) == t.deployment.as_ref())
            .is_some_and(|d| d.health_checked)
    }

    fn healthy(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.healthy(self.health_checked(t)))
            .count()
    }

    fn live(&self) -> usize {
        self.tasks.iter().filter(|t| t.live()).count()
    }

    /// Checks the plan against the bounds, then applies it as the caller
    /// would (without the agent moving anything).
    fn apply(&mut self, plan: &Plan) -> Result<(), TestCaseError> {
        let max = max_live(&self.svc);
        let min = min_healthy(&self.svc);
        let draining = self.svc.service.status != ServiceStatus::Active;
        if let Some((dep, n)) = plan.start() {
            prop_assert!(!draining);
            let primary = self.svc.primary().map(|d| d.deployment.id.clone());
            prop_assert_eq!(
                Some(dep.to_string()),
                primary,
                "only the PRIMARY starts tasks"
            );
            prop_assert!(
                i64::try_from(self.live()).unwrap() + i64::from(n) <= max,
                "starting {} with {} live exceeds the maximum {}",
                n,
                self.live(),
                max
            );
        }
        let mut healthy_stops = 0;
        for (id, _) in plan.stops() {
            let t = self.tasks.iter().find(|t| t.id == id);
            prop_assert!(
                t.is_some_and(TaskView::active),
                "stop of a task that is not active: {}",
                id
            );
            let t = t.unwrap();
            if t.healthy(self.health_checked(t)) {
                healthy_stops += 1;
            }
        }
        if healthy_stops > 0 && !draining {
            let left = i64::try_from(self.healthy() - healthy_stops).unwrap();
            prop_assert!(
                left >= min,
                "stopping healthy tasks leaves {} < minimum {}",
                left,
                min
            );
        }
        self.svc.apply(plan, &self.ids, Timestamp(self.now));
        for (id, reason) in plan.stops() {
            if let Some(t) = self.tasks.iter_mut().find(|t| t.id == id) {
                t.desired_status = TaskStatus::Stopped;
                t.stop_code = Some(StopCode::ServiceSchedulerInitiated);
                t.stopped_reason = Some(reason.to_string());
            }
        }
        if let Some((dep, n)) = plan.start() {
            for _ in 0..n {
                self.next += 1;
                self.tasks.push(TaskView {
                    id: format!("n{:04}", self.next),
                    deployment: Some(dep.to_string()),
                    last_status: TaskStatus::Provisioning,
                    desired_status: TaskStatus::Running,
                    health: HealthStatus::Unknown,
                    created_at: Timestamp(self.now),
                    started_at: None,
                    ended_at: None,
                    stop_code: None,
                    stopped_reason: None,
                    lb: LbHealth::NotBehind,
                });
            }
        }
        Ok(())
    }

    /// One step of a fleet where every task succeeds: stops complete, new
    /// tasks reach RUNNING (HEALTHY when checked).
    fn advance(&mut self) {
        self.now += SEC;
        let now = Timestamp(self.now);
        let checked: Vec<bool> = self.tasks.iter().map(|t| self.health_checked(t)).collect();
        for (t, hc) in self.tasks.iter_mut().zip(checked) {
            if !t.live() {
                continue;
            }
            if t.desired_status == TaskStatus::Stopped {
                t.last_status = TaskStatus::Stopped;
                t.ended_at = Some(now);
            } else if t.last_status < TaskStatus::Running {
                t.last_status = TaskStatus::Running;
                t.started_at = Some(now);
            } else if hc && t.health == HealthStatus::Unknown {
                t.health = HealthStatus::Healthy;
            }
        }
    }

    fn converged(&self) -> bool {
        let d = self.svc.service.desired_count;
        let Some(p) = self.svc.primary() else {
            return false;
        };
        let primary_healthy = self
            .tasks
            .iter()
            .filter(|t| {
                t.deployment.as_ref() == Some(&p.deployment.id) && t.healthy(p.health_checked)
            })
            .count();
        self.svc.deployments.len() == 1
            && p.deployment.rollout_state == RolloutState::Completed
            && i64::try_from(primary_healthy).unwrap() == d
            && i64::try_from(self.live()).unwrap() == d
            && self.svc.steady
    }
}

fn status_strategy() -> impl Strategy<Value = TaskStatus> {
    prop_oneof![
        Just(TaskStatus::Provisioning),
        Just(TaskStatus::Pending),
        Just(TaskStatus::Activating),
        Just(TaskStatus::Running),
        Just(TaskStatus::Running),
        Just(TaskStatus::Deactivating),
        Just(TaskStatus::Stopping),
        Just(TaskStatus::Stopped),
    ]
}

fn health_strategy() -> impl Strategy<Value = HealthStatus> {
    prop_oneof![
        Just(HealthStatus::Healthy),
        Just(HealthStatus::Unknown),
        Just(HealthStatus::Unhealthy),
    ]
}

fn stop_code_strategy() -> impl Strategy<Value = StopCode> {
    prop_oneof![
        Just(StopCode::TaskFailedToStart),
        Just(StopCode::EssentialContainerExited),
        Just(StopCode::UserInitiated),
        Just(StopCode::ServiceSchedulerInitiated),
    ]
}

prop_compose! {
    fn task_strategy(deployments: usize)(
        dep in 0..=deployments,
        last in status_strategy(),
        desired_running in any::<bool>(),
        health in health_strategy(),
        created in 0i64..100,
        ran in 0i64..60,
        code in stop_code_strategy(),
    ) -> (usize, TaskStatus, bool, HealthStatus, i64, i64, StopCode) {
        (dep, last, desired_running, health, created, ran, code)
    }
}

prop_compose! {
    /// A valid service (its percentages let a rolling update progress),
    /// 1 to 3 deployments, up to 12 tasks in any state.
    fn world_strategy(convergent: bool)(
        desired in 0i64..7,
        min in prop_oneof![Just(0i64), Just(25), Just(50), Just(75), Just(100)],
        max in prop_oneof![Just(100i64), Just(125), Just(150), Just(200)],
        breaker in prop_oneof![Just(None), Just(Some(false)), Just(Some(true))],
        olds in 0usize..3,
        primary_done in any::<bool>(),
        hc in proptest::collection::vec(any::<bool>(), 3),
        grace in prop_oneof![Just(None), Just(Some(5i64))],
        raw in proptest::collection::vec(task_strategy(2), 0..12),
    ) -> World {
        let (max, min) = if desired > 0 && desired * max / 100 <= (desired * min + 99) / 100 {
            (200, min)
        } else {
            (max, min)
        };
        // Convergence needs a circuit breaker that cannot get stuck on FAILED.
        let breaker = if convergent && breaker == Some(false) { None } else { breaker };
        let mut deployments = vec![deployment(
            "p",
            DeploymentStatus::Primary,
            if primary_done { RolloutState::Completed } else { RolloutState::InProgress },
            hc[0],
        )];
        for i in 0..olds {
            deployments.push(deployment(
                &format!("o{i}"),
                DeploymentStatus::Active,
                RolloutState::Completed,
                hc[i + 1],
            ));
        }
        let mut svc = service(desired, min, max, breaker, deployments.clone());
        svc.service.health_check_grace_period_seconds = grace;
        if breaker.is_some() {
            svc.last_completed = Some(CompletedDeployment {
                id: "o0".into(),
                task_definition: "arn:aws:ecs:r:1:task-definition/web:1".into(),
                health_checked: false,
            });
        }
        let mut tasks = Vec::new();
        for (i, (dep, last, desired_running, health, created, ran, code)) in raw.into_iter().enumerate() {
            let dep = if dep == 0 {
                "p".to_string()
            } else if dep <= olds {
                format!("o{}", dep - 1)
            } else {
                // A task of a deployment already retired.
                "gone".to_string()
            };
            let stopped_task = last == TaskStatus::Stopped;
            let desired_status = if stopped_task || last > TaskStatus::Running || !desired_running {
                TaskStatus::Stopped
            } else {
                TaskStatus::Running
            };
            tasks.push(TaskView {
                id: format!("t{i:02}"),
                deployment: Some(dep),
                last_status: last,
                desired_status,
                health: if last == TaskStatus::Running { health } else { HealthStatus::Unknown },
                created_at: Timestamp(created * SEC),
                started_at: (last >= TaskStatus::Running).then_some(Timestamp(created * SEC + SEC)),
                ended_at: stopped_task.then_some(Timestamp(created * SEC + SEC + ran * SEC)),
                stop_code: (desired_status == TaskStatus::Stopped).then_some(code),
                stopped_reason: None,
                lb: LbHealth::NotBehind,
            });
        }
        World { svc, tasks, now: 200 * SEC, next: 0, ids: SequentialIds::default() }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Every plan respects maximumPercent and minimumHealthyPercent.
    #[test]
    fn plans_respect_the_bounds(mut w in world_strategy(false)) {
        let plan = reconcile(&w.svc, &w.tasks, Timestamp(w.now));
        w.apply(&plan)?;
    }

    /// Reconciling the state a plan leads to (before any task moves)
    /// proposes no duplicate start and reaches a fixpoint: running the
    /// reconciler twice, or again after a crash, changes nothing more.
    #[test]
    fn reconcile_is_idempotent(mut w in world_strategy(false)) {
        let first = reconcile(&w.svc, &w.tasks, Timestamp(w.now));
        w.apply(&first)?;
        let d = w.svc.service.desired_count;
        let mut rounds = 0;
        loop {
            let plan = reconcile(&w.svc, &w.tasks, Timestamp(w.now));
            if plan.is_empty() {
                break;
            }
            if let Some((dep, _)) = plan.start() {
                let active = w.tasks.iter().filter(|t| t.deployment.as_deref() == Some(dep) && t.active()).count();
                prop_assert!(i64::try_from(active).unwrap() < d, "a start although the PRIMARY has {} of {} tasks", active, d);
            }
            w.apply(&plan)?;
            rounds += 1;
            prop_assert!(rounds <= 4, "no fixpoint after 4 rounds: {:?}", plan);
        }
    }

    /// When tasks always succeed, any state converges: D healthy tasks of
    /// the PRIMARY, nothing else live, one COMPLETED deployment, steady.
    #[test]
    fn simulated_convergence(mut w in world_strategy(true)) {
        for _ in 0..60 {
            if w.converged() {
                break;
            }
            let plan = reconcile(&w.svc, &w.tasks, Timestamp(w.now));
            w.apply(&plan)?;
            w.advance();
        }
        // One more pass records the steady state if the last step reached it.
        let plan = reconcile(&w.svc, &w.tasks, Timestamp(w.now));
        w.apply(&plan)?;
        prop_assert!(w.converged(), "not converged: {:?}\n{:?}", w.svc.deployments, w.tasks);
    }
}

#[test]
fn a_task_behind_a_load_balancer_counts_as_healthy_only_once_its_targets_are() {
    let s = service(
        1,
        100,
        200,
        None,
        vec![
            deployment(
                "new",
                DeploymentStatus::Primary,
                RolloutState::InProgress,
                false,
            ),
            deployment(
                "old",
                DeploymentStatus::Active,
                RolloutState::Completed,
                false,
            ),
        ],
    );
    let old = running("o", "old", 0, HealthStatus::Unknown).with_lb(LbHealth::Healthy);
    // The new task runs but its target is still in `initial`: the old one stays.
    let new = running("n", "new", 5 * SEC, HealthStatus::Unknown).with_lb(LbHealth::Initial);
    let p = reconcile(&s, &[old.clone(), new.clone()], Timestamp(60 * SEC));
    assert!(stop_ids(&p).is_empty(), "{p:?}");
    // Once healthy in the target group, the old task is stopped.
    let new = new.with_lb(LbHealth::Healthy);
    let p = reconcile(&s, &[old, new], Timestamp(60 * SEC));
    assert_eq!(stop_ids(&p), ["o"]);
}

#[test]
fn a_task_failing_the_load_balancers_health_checks_is_replaced_after_the_grace_period() {
    let mut s = service(
        1,
        100,
        200,
        None,
        vec![deployment(
            "d",
            DeploymentStatus::Primary,
            RolloutState::Completed,
            false,
        )],
    );
    s.service.health_check_grace_period_seconds = Some(30);
    let tg = "arn:aws:elasticloadbalancing:r:1:targetgroup/web/0123456789abcdef";
    let tasks =
        [running("t", "d", 0, HealthStatus::Unknown).with_lb(LbHealth::Unhealthy(tg.into()))];
    assert!(stop_ids(&reconcile(&s, &tasks, Timestamp(20 * SEC))).is_empty());
    let p = reconcile(&s, &tasks, Timestamp(31 * SEC));
    let reason = elb_health_reason(tg);
    assert_eq!(p.stops().collect::<Vec<_>>(), [("t", reason.as_str())]);
    assert!(events(&p)
        .iter()
        .any(|e| e.contains("failed ELB health checks in (target-group")));
    assert_eq!(p.start(), Some(("d", 1)));
    // It counts against the circuit breaker like a container health check failure.
    let mut failed = stopped("t", "d", 0, StopCode::ServiceSchedulerInitiated, Some(SEC));
    failed.stopped_reason = Some(reason);
    assert_eq!(
        consecutive_failures(&s.deployments[0], &[failed], Timestamp(60 * SEC)),
        1
    );
}
