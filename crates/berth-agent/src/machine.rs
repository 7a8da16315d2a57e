//! The task state machine (pure, no I/O): what the supervisor observed
//! goes in (containers started, exited, health changes, stop requests),
//! actions come out (start this container, signal that one, tear down).
//! It is persisted as `state.json` in the task directory after every
//! change, so a restarted agent continues where it stopped.
//!
//! Rules (ECS's):
//! * a container starts once its `dependsOn` conditions hold (START: the
//!   dependency started; COMPLETE: it exited; SUCCESS: it exited 0;
//!   HEALTHY: its health check passed); a condition that can no longer
//!   hold, or `startTimeout` passing, fails the container's start;
//! * the task is RUNNING once every essential container has started;
//! * an essential container stopping stops the task
//!   (`EssentialContainerExited`, or `TaskFailedToStart` when it never
//!   started);
//! * stopping signals containers in reverse dependency order: SIGTERM,
//!   then SIGKILL after the container's `stopTimeout`;
//! * the status only moves forward, one step per [`TaskMachine::step`].

use berth_core::agent::{ContainerStateReport, TaskStateReport};
use berth_core::task::{HealthStatus, StopCode, TaskStatus};
use berth_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::spec::TaskSpec;

/// Default seconds between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT_SECS: i64 = 30;
/// The longest `stopTimeout` honoured (Fargate's).
pub const MAX_STOP_TIMEOUT_SECS: i64 = 120;
/// Default seconds a container waits for its dependencies.
pub const DEFAULT_START_TIMEOUT_SECS: i64 = 180;
/// The reason of an essential container's exit.
pub const ESSENTIAL_EXITED: &str = "Essential container in task exited";
/// The reason of a container killed by the OOM killer.
pub const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";

/// A `dependsOn` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Condition {
    /// The dependency has started.
    Start,
    /// The dependency has exited.
    Complete,
    /// The dependency has exited 0.
    Success,
    /// The dependency's health check passed.
    Healthy,
}

impl Condition {
    /// Parses `START`, `COMPLETE`, `SUCCESS`, `HEALTHY` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "START" => Some(Self::Start),
            "COMPLETE" => Some(Self::Complete),
            "SUCCESS" => Some(Self::Success),
            "HEALTHY" => Some(Self::Healthy),
            _ => None,
        }
    }
}

/// Where a container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Not started yet (waiting for dependencies).
    Pending,
    /// Its shim was launched; the process does not exist yet.
    Starting,
    /// Its process runs.
    Running,
    /// Exited, failed to start, or never started.
    Stopped,
}

/// One container's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// Its name.
    pub name: String,
    /// The runtime (runc) id.
    pub runtime_id: String,
    /// The manifest digest.
    pub image_digest: Option<String>,
    /// Whether the task stops when it stops.
    pub essential: bool,
    /// Its dependencies (container, condition); `None` for an unknown
    /// condition.
    pub depends_on: Vec<(String, Option<Condition>)>,
    /// SIGTERM → SIGKILL delay, ms.
    pub stop_timeout_ms: i64,
    /// How long it waits for dependencies, ms.
    pub start_timeout_ms: i64,
    /// Whether it has a health check.
    pub has_health_check: bool,
    /// The phase.
    pub phase: Phase,
    /// Its process existed at some point.
    pub ever_started: bool,
    /// It could not start (runtime error or dependencies).
    pub start_failed: bool,
    /// The process started, ms.
    pub started_at: Option<i64>,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Why it stopped.
    pub reason: Option<String>,
    /// When it stopped, ms.
    #[serde(default)]
    pub finished_at: Option<i64>,
    /// Health.
    pub health: HealthStatus,
    /// SIGTERM sent, ms.
    pub term_sent_at: Option<i64>,
    /// SIGKILL sent.
    pub kill_sent: bool,
}

/// A stop decision: who asked and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    /// The stop code.
    pub code: StopCode,
    /// The reason.
    pub reason: String,
}

/// What the supervisor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Launch the container's shim.
    Start(String),
    /// Send SIGTERM (or SIGKILL when `kill`).
    Signal {
        /// The container.
        name: String,
        /// SIGKILL rather than SIGTERM.
        kill: bool,
    },
    /// Remove the sandbox, then call [`TaskMachine::torn_down`].
    Teardown,
}

/// How a container ended, as observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitInfo {
    /// The exit code.
    pub exit_code: Option<i32>,
    /// Killed by the OOM killer.
    pub oom_killed: bool,
    /// It never started: why (becomes `CannotStartContainerError: ...`).
    pub start_error: Option<String>,
    /// Any other reason to report.
    pub reason: Option<String>,
}

/// The whole task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMachine {
    /// The task id.
    pub task_id: String,
    /// The lifecycle state.
    pub status: TaskStatus,
    /// The containers, in definition order.
    pub containers: Vec<ContainerState>,
    /// Set once the task must stop.
    pub stop: Option<StopRequest>,
    /// When the supervisor first started it, ms.
    pub activated_at: i64,
    /// RUNNING reached, ms.
    pub started_at: Option<i64>,
    /// All containers stopped (or the essential one exited), ms.
    pub execution_stopped_at: Option<i64>,
}

fn clamp_secs(v: Option<i64>, default: i64, max: i64) -> i64 {
    v.filter(|v| *v >= 0).unwrap_or(default).min(max) * 1000
}

impl TaskMachine {
    /// A fresh machine for `spec`, activated at `now`.
    pub fn new(spec: &TaskSpec, now: i64) -> Self {
        let containers = spec
            .containers
            .iter()
            .map(|c| {
                let d = &c.definition;
                ContainerState {
                    name: c.name.clone(),
                    runtime_id: format!("{}-{}", spec.task_id, c.name),
                    image_digest: c.image_digest.clone(),
                    essential: c.essential(),
                    depends_on: d
                        .depends_on
                        .iter()
                        .flatten()
                        .map(|dep| {
                            (
                                dep.container_name.clone().unwrap_or_default(),
                                dep.condition.as_deref().and_then(Condition::parse),
                            )
                        })
                        .collect(),
                    stop_timeout_ms: clamp_secs(
                        d.stop_timeout,
                        DEFAULT_STOP_TIMEOUT_SECS,
                        MAX_STOP_TIMEOUT_SECS,
                    ),
                    start_timeout_ms: clamp_secs(
                        d.start_timeout,
                        DEFAULT_START_TIMEOUT_SECS,
                        i64::from(u16::MAX),
                    ),
                    has_health_check: d
                        .health_check
                        .as_ref()
                        .and_then(crate::oci::health_command)
                        .is_some(),
                    phase: Phase::Pending,
                    ever_started: false,
                    start_failed: false,
                    started_at: None,
                    exit_code: None,
                    reason: None,
                    finished_at: None,
                    health: HealthStatus::Unknown,
                    term_sent_at: None,
                    kill_sent: false,
                }
            })
            .collect();
        Self {
            task_id: spec.task_id.clone(),
            status: TaskStatus::Activating,
            containers,
            stop: None,
            activated_at: now,
            started_at: None,
            execution_stopped_at: None,
        }
    }

    /// A container by name.
    pub fn container(&self, name: &str) -> Option<&ContainerState> {
        self.containers.iter().find(|c| c.name == name)
    }

    fn container_mut(&mut self, name: &str) -> Option<&mut ContainerState> {
        self.containers.iter_mut().find(|c| c.name == name)
    }

    /// The container's process exists.
    pub fn on_started(&mut self, name: &str, now: i64) {
        if let Some(c) = self.container_mut(name) {
            if matches!(c.phase, Phase::Pending | Phase::Starting) {
                c.phase = Phase::Running;
                c.ever_started = true;
                c.started_at = Some(now);
            }
        }
    }

    /// The container ended (or could not start).
    pub fn on_exit(&mut self, name: &str, info: ExitInfo, now: i64) {
        let Some(c) = self.container_mut(name) else {
            return;
        };
        if c.phase == Phase::Stopped {
            return;
        }
        if let Some(err) = info.start_error {
            c.start_failed = !c.ever_started;
            c.reason = Some(if err.starts_with("CannotStartContainerError:") {
                err
            } else {
                format!("CannotStartContainerError: {err}")
            });
            c.exit_code = None;
        } else {
            if !c.ever_started {
                c.ever_started = true;
                c.started_at = Some(now);
            }
            c.exit_code = info.exit_code;
            c.reason = if info.oom_killed {
                Some(OOM_REASON.to_string())
            } else {
                info.reason
            };
        }
        c.phase = Phase::Stopped;
        c.finished_at = Some(now);
    }

    /// The container's health changed.
    pub fn on_health(&mut self, name: &str, health: HealthStatus) {
        if let Some(c) = self.container_mut(name) {
            c.health = health;
        }
    }

    /// Asks the task to stop; the first request wins.
    pub fn request_stop(&mut self, code: StopCode, reason: &str) {
        if self.stop.is_none() && self.status < TaskStatus::Deprovisioning {
            self.stop = Some(StopRequest {
                code,
                reason: reason.to_string(),
            });
        }
    }

    /// The sandbox is gone: the task is STOPPED.
    pub fn torn_down(&mut self, now: i64) {
        if self.status == TaskStatus::Deprovisioning {
            self.status = TaskStatus::Stopped;
            self.execution_stopped_at.get_or_insert(now);
        }
    }

    /// Whether `name`'s dependencies allow it to start: `Ok(true)` ready,
    /// `Ok(false)` wait, `Err(why)` never.
    pub fn dependencies_ready(&self, name: &str) -> Result<bool, String> {
        let Some(c) = self.container(name) else {
            return Err(format!("no container {name}"));
        };
        let mut ready = true;
        for (dep, cond) in &c.depends_on {
            let Some(d) = self.container(dep) else {
                return Err(format!("dependency {dep} is not a container of the task"));
            };
            let Some(cond) = cond else {
                return Err(format!("dependency {dep} has an unknown condition"));
            };
            let stopped = d.phase == Phase::Stopped;
            match cond {
                Condition::Start => {
                    if d.ever_started {
                        continue;
                    }
                    if stopped {
                        return Err(format!("dependency {dep} never started"));
                    }
                }
                Condition::Complete => {
                    if stopped && !d.start_failed {
                        continue;
                    }
                    if stopped {
                        return Err(format!("dependency {dep} never started"));
                    }
                }
                Condition::Success => {
                    if stopped {
                        if d.exit_code == Some(0) {
                            continue;
                        }
                        return Err(match d.exit_code {
                            Some(code) => {
                                format!("dependency {dep} exited with code {code}, not 0 (condition SUCCESS)")
                            }
                            None => format!(
                                "dependency {dep} did not exit successfully (condition SUCCESS)"
                            ),
                        });
                    }
                }
                Condition::Healthy => {
                    if d.health == HealthStatus::Healthy {
                        continue;
                    }
                    if d.health == HealthStatus::Unhealthy {
                        return Err(format!("dependency {dep} is unhealthy (condition HEALTHY)"));
                    }
                    if stopped {
                        return Err(format!(
                            "dependency {dep} stopped before it was healthy (condition HEALTHY)"
                        ));
                    }
                    if !d.has_health_check {
                        return Err(format!(
                            "dependency {dep} has no health check (condition HEALTHY)"
                        ));
                    }
                }
            }
            ready = false;
        }
        Ok(ready)
    }

    fn fail_start(&mut self, name: &str, why: String) {
        if let Some(c) = self.container_mut(name) {
            c.phase = Phase::Stopped;
            c.start_failed = true;
            c.reason = Some(format!("CannotStartContainerError: {why}"));
        }
    }

    /// Advances by at most one status change; returns what to do.
    pub fn step(&mut self, now: i64) -> Vec<Action> {
        match self.status {
            TaskStatus::Stopped => return Vec::new(),
            TaskStatus::Deprovisioning => return vec![Action::Teardown],
            _ => {}
        }
        if self.stop.is_none() {
            // RUNNING once every essential container has started.
            if self.status < TaskStatus::Running
                && self
                    .containers
                    .iter()
                    .filter(|c| c.essential)
                    .all(|c| c.ever_started)
            {
                self.status = TaskStatus::Running;
                self.started_at = Some(now);
                return Vec::new();
            }
            if let Some(c) = self
                .containers
                .iter()
                .find(|c| c.essential && c.phase == Phase::Stopped)
            {
                let stop = if c.start_failed || !c.ever_started {
                    StopRequest {
                        code: StopCode::TaskFailedToStart,
                        reason: c.reason.clone().unwrap_or_else(|| {
                            format!(
                                "CannotStartContainerError: container {} did not start",
                                c.name
                            )
                        }),
                    }
                } else {
                    StopRequest {
                        code: StopCode::EssentialContainerExited,
                        reason: ESSENTIAL_EXITED.to_string(),
                    }
                };
                self.execution_stopped_at = Some(c.finished_at.unwrap_or(now));
                self.stop = Some(stop);
            } else {
                return self.start_ready(now);
            }
        }
        // Stopping.
        match self.status {
            TaskStatus::Activating | TaskStatus::Running => {
                self.status = TaskStatus::Deactivating;
                Vec::new()
            }
            TaskStatus::Deactivating => {
                self.status = TaskStatus::Stopping;
                Vec::new()
            }
            _ => self.stop_containers(now),
        }
    }

    fn start_ready(&mut self, now: i64) -> Vec<Action> {
        let mut actions = Vec::new();
        loop {
            let mut changed = false;
            let pending: Vec<String> = self
                .containers
                .iter()
                .filter(|c| c.phase == Phase::Pending)
                .map(|c| c.name.clone())
                .collect();
            for name in pending {
                match self.dependencies_ready(&name) {
                    Ok(true) => {
                        if let Some(c) = self.container_mut(&name) {
                            c.phase = Phase::Starting;
                        }
                        actions.push(Action::Start(name));
                    }
                    Ok(false) => {
                        let timeout = self.container(&name).map_or(0, |c| c.start_timeout_ms);
                        if now - self.activated_at > timeout {
                            self.fail_start(
                                &name,
                                format!(
                                    "container {name} timed out after {} s waiting for its dependencies",
                                    timeout / 1000
                                ),
                            );
                            changed = true;
                        }
                    }
                    Err(why) => {
                        self.fail_start(&name, format!("container {name}: {why}"));
                        changed = true;
                    }
                }
            }
            if !changed {
                return actions;
            }
        }
    }

    fn stop_containers(&mut self, now: i64) -> Vec<Action> {
        for c in &mut self.containers {
            if c.phase == Phase::Pending {
                c.phase = Phase::Stopped;
            }
        }
        let mut actions = Vec::new();
        let snapshot = self.containers.clone();
        for c in &mut self.containers {
            if !matches!(c.phase, Phase::Starting | Phase::Running) {
                continue;
            }
            match c.term_sent_at {
                None => {
                    // Dependents stop first.
                    let dependents_done = snapshot
                        .iter()
                        .filter(|o| o.depends_on.iter().any(|(d, _)| *d == c.name))
                        .all(|o| o.phase == Phase::Stopped);
                    if dependents_done {
                        c.term_sent_at = Some(now);
                        actions.push(Action::Signal {
                            name: c.name.clone(),
                            kill: false,
                        });
                    }
                }
                Some(at) => {
                    if !c.kill_sent && now - at >= c.stop_timeout_ms {
                        c.kill_sent = true;
                        actions.push(Action::Signal {
                            name: c.name.clone(),
                            kill: true,
                        });
                    }
                }
            }
        }
        if self.containers.iter().all(|c| c.phase == Phase::Stopped) {
            self.status = TaskStatus::Deprovisioning;
            self.execution_stopped_at.get_or_insert(now);
            actions.push(Action::Teardown);
        }
        actions
    }

    /// The task's health: UNHEALTHY if an essential container is, HEALTHY
    /// if every essential container with a check is, else UNKNOWN.
    pub fn health(&self) -> HealthStatus {
        let checked: Vec<&ContainerState> = self
            .containers
            .iter()
            .filter(|c| c.essential && c.has_health_check)
            .collect();
        if checked.iter().any(|c| c.health == HealthStatus::Unhealthy) {
            HealthStatus::Unhealthy
        } else if !checked.is_empty() && checked.iter().all(|c| c.health == HealthStatus::Healthy) {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unknown
        }
    }

    /// The snapshot to send.
    pub fn report(&self) -> TaskStateReport {
        let stopped = self.status == TaskStatus::Stopped;
        TaskStateReport {
            last_status: self.status,
            containers: self
                .containers
                .iter()
                .map(|c| ContainerStateReport {
                    name: c.name.clone(),
                    last_status: match c.phase {
                        Phase::Pending | Phase::Starting => "PENDING",
                        Phase::Running => "RUNNING",
                        Phase::Stopped => "STOPPED",
                    }
                    .to_string(),
                    exit_code: c.exit_code,
                    reason: c.reason.clone(),
                    image_digest: c.image_digest.clone(),
                    runtime_id: c.ever_started.then(|| c.runtime_id.clone()),
                    health_status: c.health,
                })
                .collect(),
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: self.started_at.map(Timestamp),
            execution_stopped_at: self.execution_stopped_at.map(Timestamp),
            stop_code: if stopped || self.status >= TaskStatus::Deactivating {
                self.stop.as_ref().map(|s| s.code)
            } else {
                None
            },
            stopped_reason: if stopped || self.status >= TaskStatus::Deactivating {
                self.stop.as_ref().map(|s| s.reason.clone())
            } else {
                None
            },
            health_status: self.health(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ContainerSpec;
    use berth_core::taskdef::{ContainerDefinition, ContainerDependency, HealthCheck};

    fn container(name: &str, essential: bool, deps: &[(&str, &str)]) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: "img".into(),
            image_digest: None,
            layers: vec![],
            image_config: Default::default(),
            definition: ContainerDefinition {
                essential: Some(essential),
                depends_on: (!deps.is_empty()).then(|| {
                    deps.iter()
                        .map(|(n, c)| ContainerDependency {
                            container_name: Some(n.to_string()),
                            condition: Some(c.to_string()),
                        })
                        .collect()
                }),
                stop_timeout: Some(2),
                health_check: (name == "web").then(|| HealthCheck {
                    command: vec!["CMD".into(), "true".into()],
                    interval: Some(1),
                    timeout: None,
                    retries: None,
                    start_period: None,
                }),
                ..Default::default()
            },
        }
    }

    fn task(containers: Vec<ContainerSpec>) -> TaskSpec {
        TaskSpec {
            task_id: "t1".into(),
            cpu: 256,
            memory: 512,
            ip: "10.0.0.2".parse().unwrap(),
            prefix_len: 24,
            gateway: "10.0.0.1".parse().unwrap(),
            hostname: "h".into(),
            containers,
        }
    }

    fn starts(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Start(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn healthy_dependency_gates_start() {
        let mut m = TaskMachine::new(
            &task(vec![
                container("web", true, &[]),
                container("client", true, &[("web", "HEALTHY")]),
            ]),
            0,
        );
        assert_eq!(starts(&m.step(0)), vec!["web"]);
        m.on_started("web", 100);
        assert!(m.step(200).is_empty());
        assert_eq!(m.container("client").unwrap().phase, Phase::Pending);
        m.on_health("web", HealthStatus::Healthy);
        assert_eq!(starts(&m.step(300)), vec!["client"]);
        m.on_started("client", 400);
        m.step(500);
        assert_eq!(m.status, TaskStatus::Running);
        assert_eq!(m.report().health_status, HealthStatus::Healthy);
    }

    #[test]
    fn failed_success_dependency_fails_the_task_start() {
        let mut m = TaskMachine::new(
            &task(vec![
                container("init", false, &[]),
                container("app", true, &[("init", "SUCCESS")]),
            ]),
            0,
        );
        assert_eq!(starts(&m.step(0)), vec!["init"]);
        m.on_started("init", 10);
        m.on_exit(
            "init",
            ExitInfo {
                exit_code: Some(2),
                ..Default::default()
            },
            20,
        );
        // app can never start: the task stops with TaskFailedToStart.
        while m.status != TaskStatus::Deprovisioning {
            m.step(30);
        }
        let r = m.report();
        assert_eq!(r.stop_code, Some(StopCode::TaskFailedToStart));
        let reason = r.stopped_reason.unwrap();
        assert!(reason.starts_with("CannotStartContainerError:"), "{reason}");
        assert!(reason.contains("exited with code 2"), "{reason}");
        assert!(r.started_at.is_none());
    }

    #[test]
    fn start_and_complete_conditions() {
        let mut m = TaskMachine::new(
            &task(vec![
                container("a", false, &[]),
                container("b", true, &[("a", "START")]),
                container("c", true, &[("a", "COMPLETE")]),
            ]),
            0,
        );
        assert_eq!(starts(&m.step(0)), vec!["a"]);
        assert!(m.step(1).is_empty());
        m.on_started("a", 2);
        assert_eq!(starts(&m.step(3)), vec!["b"]);
        m.on_exit(
            "a",
            ExitInfo {
                exit_code: Some(1),
                ..Default::default()
            },
            4,
        );
        assert_eq!(starts(&m.step(5)), vec!["c"]);
    }

    #[test]
    fn dependency_wait_times_out() {
        let mut spec = task(vec![
            container("web", false, &[]),
            container("app", true, &[("web", "HEALTHY")]),
        ]);
        spec.containers[1].definition.start_timeout = Some(5);
        let mut m = TaskMachine::new(&spec, 0);
        m.step(0);
        m.on_started("web", 1);
        assert!(m.step(4_000).is_empty());
        m.step(5_001);
        let app = m.container("app").unwrap();
        assert_eq!(app.phase, Phase::Stopped);
        assert!(app.reason.as_deref().unwrap().contains("timed out"));
    }

    #[test]
    fn essential_exit_stops_others_in_reverse_order_with_timeouts() {
        let mut m = TaskMachine::new(
            &task(vec![
                container("db", false, &[]),
                container("app", true, &[("db", "START")]),
                container("side", false, &[]),
            ]),
            0,
        );
        m.step(0);
        m.on_started("db", 1);
        m.on_started("side", 1);
        m.step(2);
        m.on_started("app", 3);
        m.step(4);
        assert_eq!(m.status, TaskStatus::Running);
        m.on_exit(
            "app",
            ExitInfo {
                exit_code: Some(3),
                ..Default::default()
            },
            10,
        );
        assert!(m.step(11).is_empty());
        assert_eq!(m.status, TaskStatus::Deactivating);
        m.step(12);
        assert_eq!(m.status, TaskStatus::Stopping);
        let a = m.step(13);
        // app (db's dependent) has stopped, so both get SIGTERM.
        assert_eq!(
            a,
            vec![
                Action::Signal {
                    name: "db".into(),
                    kill: false
                },
                Action::Signal {
                    name: "side".into(),
                    kill: false
                }
            ]
        );
        m.on_exit(
            "side",
            ExitInfo {
                exit_code: Some(0),
                ..Default::default()
            },
            100,
        );
        assert!(m.step(1_000).is_empty());
        assert_eq!(
            m.step(2_013),
            vec![Action::Signal {
                name: "db".into(),
                kill: true
            }]
        );
        m.on_exit(
            "db",
            ExitInfo {
                exit_code: Some(137),
                ..Default::default()
            },
            2_100,
        );
        assert_eq!(m.step(2_200), vec![Action::Teardown]);
        m.torn_down(2_300);
        let r = m.report();
        assert_eq!(r.last_status, TaskStatus::Stopped);
        assert_eq!(r.stop_code, Some(StopCode::EssentialContainerExited));
        assert_eq!(r.stopped_reason.as_deref(), Some(ESSENTIAL_EXITED));
        assert_eq!(r.containers[1].exit_code, Some(3));
        assert_eq!(r.execution_stopped_at, Some(Timestamp(10)));
    }

    #[test]
    fn dependents_are_signalled_before_their_dependencies() {
        let mut m = TaskMachine::new(
            &task(vec![
                container("db", true, &[]),
                container("app", true, &[("db", "START")]),
            ]),
            0,
        );
        m.step(0);
        m.on_started("db", 1);
        m.step(2);
        m.on_started("app", 3);
        m.step(4);
        m.request_stop(StopCode::UserInitiated, "bye");
        m.request_stop(StopCode::ServiceSchedulerInitiated, "ignored");
        m.step(5);
        m.step(6);
        assert_eq!(
            m.step(7),
            vec![Action::Signal {
                name: "app".into(),
                kill: false
            }]
        );
        m.on_exit(
            "app",
            ExitInfo {
                exit_code: Some(143),
                ..Default::default()
            },
            8,
        );
        assert_eq!(
            m.step(9),
            vec![Action::Signal {
                name: "db".into(),
                kill: false
            }]
        );
        m.on_exit(
            "db",
            ExitInfo {
                exit_code: Some(0),
                ..Default::default()
            },
            10,
        );
        assert_eq!(m.step(11), vec![Action::Teardown]);
        m.torn_down(12);
        let r = m.report();
        assert_eq!(r.stop_code, Some(StopCode::UserInitiated));
        assert_eq!(r.stopped_reason.as_deref(), Some("bye"));
    }

    #[test]
    fn start_error_and_oom_reasons() {
        let mut m = TaskMachine::new(&task(vec![container("a", true, &[])]), 0);
        m.step(0);
        m.on_exit(
            "a",
            ExitInfo {
                exit_code: Some(1),
                start_error: Some("exec: \"/nope\": no such file".into()),
                ..Default::default()
            },
            1,
        );
        m.step(2);
        let r = m.report();
        assert_eq!(r.last_status, TaskStatus::Deactivating);
        assert_eq!(r.stop_code, Some(StopCode::TaskFailedToStart));
        assert_eq!(
            r.containers[0].reason.as_deref(),
            Some("CannotStartContainerError: exec: \"/nope\": no such file")
        );
        assert_eq!(r.containers[0].exit_code, None);

        let mut m = TaskMachine::new(&task(vec![container("a", true, &[])]), 0);
        m.step(0);
        m.on_started("a", 1);
        m.on_exit(
            "a",
            ExitInfo {
                exit_code: Some(137),
                oom_killed: true,
                ..Default::default()
            },
            2,
        );
        m.step(3);
        assert_eq!(m.report().containers[0].reason.as_deref(), Some(OOM_REASON));
    }

    #[test]
    fn a_quick_exit_still_reports_running_first() {
        let mut m = TaskMachine::new(&task(vec![container("a", true, &[])]), 0);
        m.step(0);
        m.on_started("a", 1);
        m.on_exit(
            "a",
            ExitInfo {
                exit_code: Some(3),
                ..Default::default()
            },
            1,
        );
        m.step(2);
        assert_eq!(m.status, TaskStatus::Running);
        m.step(3);
        assert_eq!(m.status, TaskStatus::Deactivating);
    }

    #[test]
    fn stop_before_start_skips_containers() {
        let mut m = TaskMachine::new(&task(vec![container("a", true, &[])]), 0);
        m.request_stop(StopCode::UserInitiated, "early");
        m.step(0);
        m.step(1);
        assert_eq!(m.step(2), vec![Action::Teardown]);
        m.torn_down(3);
        let r = m.report();
        assert_eq!(r.last_status, TaskStatus::Stopped);
        assert_eq!(r.containers[0].last_status, "STOPPED");
        assert!(r.containers[0].runtime_id.is_none());
    }

    #[test]
    fn stop_timeout_is_clamped() {
        let mut spec = task(vec![container("a", true, &[])]);
        spec.containers[0].definition.stop_timeout = Some(1000);
        assert_eq!(
            TaskMachine::new(&spec, 0).containers[0].stop_timeout_ms,
            120_000
        );
        spec.containers[0].definition.stop_timeout = None;
        assert_eq!(
            TaskMachine::new(&spec, 0).containers[0].stop_timeout_ms,
            30_000
        );
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut m = TaskMachine::new(&task(vec![container("web", true, &[])]), 0);
        m.step(0);
        m.on_started("web", 1);
        let back: TaskMachine = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}
