//! CreateService, UpdateService, DeleteService, DescribeServices,
//! ListServices: the desired state of services, as the store keeps it.
//!
//! These operations only change the *service record*
//! (`/ecs/services/{cluster}/{name}`): its desired count, its deployments,
//! its status. Tasks are started and stopped by the service reconciler
//! ([`crate::service_reconciler`], applied by `Ecs::reconcile_service`), which
//! the server runs on every change ([`crate::controller`]). The counts a
//! service shows (running, pending, per deployment) are computed from its
//! tasks when it is described.

use std::collections::HashMap;

use berth_core::launch::{CapacityProviderStrategyItem, NetworkConfiguration};
use berth_core::service::{
    valid_service_name, Deployment, DeploymentConfiguration, DeploymentController,
    DeploymentStatus, RolloutState, Service, ServiceEvent, ServiceStatus,
};
use berth_core::tags::{validate_tags, Tag};
use berth_core::taskdef::{TaskDefinition, TaskDefinitionStatus};
use berth_core::Timestamp;
use berth_store::{Compare, Op, Txn};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::run_spec::capacity_provider;
use super::tasks::{check_fargate_compatible, effective_task, Failure, RunTaskSpec, TaskRecord};
use super::{backoff, decode, encode, Ecs, TaskDefinitionRef, MAX_RETRIES};
use crate::ids::{self, IdSource};
use crate::page::{page_size, paginate, resume_after};
use crate::service_reconciler::{self, Action, Plan, TaskView};
use crate::{keys, Caller, EcsError};

/// A service keeps at most this many events (newest first).
pub const MAX_EVENTS: usize = 100;

/// The most tasks one service may ask for.
pub const MAX_DESIRED_COUNT: i64 = 5000;

/// One deployment as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    /// The wire view (its counts are filled in when described).
    pub deployment: Deployment,
    /// Whether an essential container of its task definition has a health
    /// check (then its tasks are healthy only when HEALTHY).
    pub health_checked: bool,
}

/// The deployment a circuit breaker rolls back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedDeployment {
    /// Its id.
    pub id: String,
    /// Its task definition ARN.
    pub task_definition: String,
    /// Whether that task definition has health checks.
    pub health_checked: bool,
}

/// A service as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRecord {
    /// The wire view; its `deployments` and counts are filled in when
    /// described.
    pub service: Service,
    /// The deployments, PRIMARY first, then ACTIVE ones, newest first.
    pub deployments: Vec<DeploymentRecord>,
    /// Whether the service was in its steady state at the last reconcile.
    #[serde(default)]
    pub steady: bool,
    /// The last deployment whose rollout COMPLETED.
    #[serde(default)]
    pub last_completed: Option<CompletedDeployment>,
    /// The CreateService `clientToken`.
    #[serde(default)]
    pub client_token: Option<String>,
}

impl ServiceRecord {
    /// The PRIMARY deployment.
    pub fn primary(&self) -> Option<&DeploymentRecord> {
        self.deployments
            .iter()
            .find(|d| d.deployment.status == DeploymentStatus::Primary)
    }

    /// Logs an event (newest first, at most [`MAX_EVENTS`]). Placement
    /// complaints (`was unable to`) repeated within a minute are dropped, so
    /// a service that cannot be placed does not rewrite itself on every
    /// resync.
    pub fn push_event(&mut self, id: String, message: String, now: Timestamp) {
        if message.contains("was unable to")
            && self
                .service
                .events
                .iter()
                .take_while(|e| now.0 - e.created_at.0 < 60_000)
                .any(|e| e.message == message)
        {
            return;
        }
        self.service.events.insert(
            0,
            ServiceEvent {
                id,
                created_at: now,
                message,
            },
        );
        self.service.events.truncate(MAX_EVENTS);
    }

    /// Applies the plan's actions on the service itself (rollouts,
    /// retirements, rollbacks, steady state, events, status); task starts
    /// and stops are the caller's. Ids for events and new deployments come
    /// from `ids`.
    pub fn apply(&mut self, plan: &Plan, ids: &dyn IdSource, now: Timestamp) {
        for a in &plan.actions {
            match a {
                Action::Start { .. } | Action::Stop { .. } => {}
                Action::Rollout {
                    deployment,
                    state,
                    reason,
                } => {
                    let mut completed = None;
                    if let Some(d) = self
                        .deployments
                        .iter_mut()
                        .find(|d| d.deployment.id == *deployment)
                    {
                        d.deployment.rollout_state = *state;
                        d.deployment.rollout_state_reason.clone_from(reason);
                        d.deployment.updated_at = now;
                        if *state == RolloutState::Completed {
                            completed = Some(CompletedDeployment {
                                id: d.deployment.id.clone(),
                                task_definition: d.deployment.task_definition.clone(),
                                health_checked: d.health_checked,
                            });
                        }
                    }
                    if completed.is_some() {
                        self.last_completed = completed;
                    }
                }
                Action::Retire { deployment } => {
                    self.deployments.retain(|d| d.deployment.id != *deployment);
                }
                Action::Rollback { failed, to } => {
                    for d in &mut self.deployments {
                        if d.deployment.id == *failed {
                            d.deployment.status = DeploymentStatus::Active;
                            d.deployment.updated_at = now;
                        }
                    }
                    let id = ids::deployment(ids.next_u128());
                    let reason = format!(
                        "ECS deployment circuit breaker: rolling back to deploymentId {}.",
                        to.id
                    );
                    let mut d = self.new_deployment(&id, &to.task_definition, now);
                    d.deployment.rollout_state_reason = reason;
                    d.health_checked = to.health_checked;
                    self.service.task_definition.clone_from(&to.task_definition);
                    self.deployments.insert(0, d);
                }
                Action::Steady(s) => self.steady = *s,
                Action::Deactivate => {
                    self.service.status = ServiceStatus::Inactive;
                    self.steady = false;
                }
                Action::Event(message) => {
                    self.push_event(ids::uuid(ids.next_u128()), message.clone(), now);
                }
            }
        }
    }

    /// A new PRIMARY deployment of `task_definition` with the service's
    /// current launch settings (not yet inserted).
    fn new_deployment(&self, id: &str, task_definition: &str, now: Timestamp) -> DeploymentRecord {
        DeploymentRecord {
            deployment: Deployment {
                id: id.to_string(),
                status: DeploymentStatus::Primary,
                task_definition: task_definition.to_string(),
                desired_count: self.service.desired_count,
                pending_count: 0,
                running_count: 0,
                failed_tasks: 0,
                created_at: now,
                updated_at: now,
                launch_type: self.service.launch_type.clone(),
                capacity_provider_strategy: self.service.capacity_provider_strategy.clone(),
                platform_version: self.service.platform_version.clone(),
                platform_family: self.service.platform_family.clone(),
                network_configuration: self.service.network_configuration.clone(),
                rollout_state: RolloutState::InProgress,
                rollout_state_reason: format!("ECS deployment {id} in progress."),
            },
            health_checked: false,
        }
    }

    /// Makes a new PRIMARY deployment (the old PRIMARY becomes ACTIVE).
    fn deploy(&mut self, id: &str, td: &TaskDefinition, now: Timestamp) {
        for d in &mut self.deployments {
            if d.deployment.status == DeploymentStatus::Primary {
                d.deployment.status = DeploymentStatus::Active;
                d.deployment.updated_at = now;
            }
        }
        let mut d = self.new_deployment(id, &td.task_definition_arn, now);
        d.health_checked = health_checked(td);
        self.service
            .task_definition
            .clone_from(&td.task_definition_arn);
        self.deployments.insert(0, d);
        self.steady = false;
    }

    /// The service as DescribeServices shows it, with counts from `tasks`
    /// (the tasks it started) at `now`.
    pub fn view(&self, tasks: &[TaskView], now: Timestamp, include_tags: bool) -> Service {
        let mut s = self.service.clone();
        let counts = service_reconciler::counts(self, tasks, now);
        s.deployments = self
            .deployments
            .iter()
            .zip(counts)
            .map(|(d, c)| {
                let mut d = d.deployment.clone();
                d.desired_count = c.desired;
                d.running_count = c.running;
                d.pending_count = c.pending;
                d.failed_tasks = c.failed;
                d
            })
            .collect();
        s.running_count = s.deployments.iter().map(|d| d.running_count).sum();
        s.pending_count = s.deployments.iter().map(|d| d.pending_count).sum();
        if s.status != ServiceStatus::Active {
            for d in &mut s.deployments {
                d.desired_count = 0;
            }
        }
        if !include_tags {
            s.tags.clear();
        }
        s
    }
}

/// Whether a revision's tasks report health: an essential container has a
/// health check.
pub fn health_checked(td: &TaskDefinition) -> bool {
    td.input.container_definitions.iter().any(|c| {
        c.essential.unwrap_or(true)
            && c.health_check
                .as_ref()
                .is_some_and(|h| h.command.first().is_some_and(|c| c != "NONE"))
    })
}

/// CreateService's request (botocore's `CreateServiceRequest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateServiceSpec {
    /// Cluster name or ARN (`default` when absent).
    #[serde(default)]
    pub cluster: Option<String>,
    /// The name.
    #[serde(default)]
    pub service_name: Option<String>,
    /// `family`, `family:revision` or an ARN.
    #[serde(default)]
    pub task_definition: Option<String>,
    /// ENABLED or DISABLED (echoed).
    #[serde(default)]
    pub availability_zone_rebalancing: Option<String>,
    /// Not supported yet (must be empty).
    #[serde(default)]
    pub load_balancers: Vec<Value>,
    /// Not supported yet (must be empty).
    #[serde(default)]
    pub service_registries: Vec<Value>,
    /// Tasks to keep running (required).
    #[serde(default)]
    pub desired_count: Option<i64>,
    /// Makes CreateService idempotent.
    #[serde(default)]
    pub client_token: Option<String>,
    /// FARGATE (default).
    #[serde(default)]
    pub launch_type: Option<String>,
    /// FARGATE / FARGATE_SPOT.
    #[serde(default)]
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    /// LATEST or 1.4.0.
    #[serde(default)]
    pub platform_version: Option<String>,
    /// Accepted and ignored.
    #[serde(default)]
    pub role: Option<String>,
    /// Rolling update limits and the circuit breaker.
    #[serde(default)]
    pub deployment_configuration: Option<DeploymentConfiguration>,
    /// Not supported on Fargate (must be empty).
    #[serde(default)]
    pub placement_constraints: Vec<Value>,
    /// Not supported on Fargate (must be empty).
    #[serde(default)]
    pub placement_strategy: Vec<Value>,
    /// The tasks' network configuration.
    #[serde(default)]
    pub network_configuration: Option<NetworkConfiguration>,
    /// Seconds after a task starts during which UNHEALTHY is ignored.
    #[serde(default)]
    pub health_check_grace_period_seconds: Option<i64>,
    /// REPLICA (DAEMON is refused on Fargate).
    #[serde(default)]
    pub scheduling_strategy: Option<String>,
    /// ECS only.
    #[serde(default)]
    pub deployment_controller: Option<DeploymentController>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Adds `aws:ecs:serviceName` and `aws:ecs:clusterName` to the tasks.
    #[serde(default, rename = "enableECSManagedTags")]
    pub enable_ecs_managed_tags: bool,
    /// SERVICE, TASK_DEFINITION or NONE.
    #[serde(default)]
    pub propagate_tags: Option<String>,
    /// Must be false.
    #[serde(default)]
    pub enable_execute_command: bool,
    /// Not supported (must be absent or disabled).
    #[serde(default)]
    pub service_connect_configuration: Option<Value>,
    /// Not supported (must be empty).
    #[serde(default)]
    pub volume_configurations: Vec<Value>,
    /// Not supported (must be empty).
    #[serde(default)]
    pub vpc_lattice_configurations: Vec<Value>,
}

/// UpdateService's request (botocore's `UpdateServiceRequest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateServiceSpec {
    /// Cluster name or ARN (`default` when absent).
    #[serde(default)]
    pub cluster: Option<String>,
    /// The service's name or ARN.
    #[serde(default)]
    pub service: Option<String>,
    /// A new desired count.
    #[serde(default)]
    pub desired_count: Option<i64>,
    /// A new task definition (starts a deployment).
    #[serde(default)]
    pub task_definition: Option<String>,
    /// A new capacity provider strategy.
    #[serde(default)]
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    /// Changed members replace the service's.
    #[serde(default)]
    pub deployment_configuration: Option<DeploymentConfiguration>,
    /// ENABLED or DISABLED (echoed).
    #[serde(default)]
    pub availability_zone_rebalancing: Option<String>,
    /// A new network configuration (starts a deployment).
    #[serde(default)]
    pub network_configuration: Option<NetworkConfiguration>,
    /// Not supported on Fargate (must be empty).
    #[serde(default)]
    pub placement_constraints: Option<Vec<Value>>,
    /// Not supported on Fargate (must be empty).
    #[serde(default)]
    pub placement_strategy: Option<Vec<Value>>,
    /// LATEST or 1.4.0 (starts a deployment when it changes).
    #[serde(default)]
    pub platform_version: Option<String>,
    /// Starts a deployment even when nothing else changed.
    #[serde(default)]
    pub force_new_deployment: bool,
    /// A new grace period.
    #[serde(default)]
    pub health_check_grace_period_seconds: Option<i64>,
    /// ECS only.
    #[serde(default)]
    pub deployment_controller: Option<DeploymentController>,
    /// Must be false.
    #[serde(default)]
    pub enable_execute_command: Option<bool>,
    /// Adds ECS-managed tags to new tasks.
    #[serde(default, rename = "enableECSManagedTags")]
    pub enable_ecs_managed_tags: Option<bool>,
    /// Not supported yet (must be empty).
    #[serde(default)]
    pub load_balancers: Option<Vec<Value>>,
    /// SERVICE, TASK_DEFINITION or NONE.
    #[serde(default)]
    pub propagate_tags: Option<String>,
    /// Not supported yet (must be empty).
    #[serde(default)]
    pub service_registries: Option<Vec<Value>>,
    /// Not supported (must be absent or disabled).
    #[serde(default)]
    pub service_connect_configuration: Option<Value>,
    /// Not supported (must be empty).
    #[serde(default)]
    pub volume_configurations: Option<Vec<Value>>,
    /// Not supported (must be empty).
    #[serde(default)]
    pub vpc_lattice_configurations: Option<Vec<Value>>,
}

/// ListServices' filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceFilter {
    /// Cluster name or ARN (`default` when absent).
    pub cluster: Option<String>,
    /// FARGATE, EC2, EXTERNAL or MANAGED_INSTANCES.
    pub launch_type: Option<String>,
    /// REPLICA or DAEMON.
    pub scheduling_strategy: Option<String>,
    /// 1 to 100 (default 10).
    pub max_results: Option<i64>,
    /// From the last page.
    pub next_token: Option<String>,
}

fn unsupported(field: &str, what: &str) -> EcsError {
    EcsError::invalid(format!("{field}: {what}"))
}

fn check_empty(field: &str, v: &[Value], what: &str) -> Result<(), EcsError> {
    if v.is_empty() {
        Ok(())
    } else {
        Err(unsupported(field, what))
    }
}

fn check_scheduling(s: Option<&str>) -> Result<(), EcsError> {
    match s {
        None | Some("REPLICA") => Ok(()),
        Some("DAEMON") => Err(EcsError::invalid(
            "schedulingStrategy DAEMON is not supported on FARGATE: Fargate has no container instances to run one task on each; use REPLICA with a desiredCount",
        )),
        Some(o) => Err(EcsError::invalid(format!(
            "schedulingStrategy {o:?} is not valid; use REPLICA"
        ))),
    }
}

fn check_controller(c: Option<&DeploymentController>) -> Result<(), EcsError> {
    match c.map(|c| c.kind.as_str()) {
        None | Some("ECS") => Ok(()),
        Some(o @ ("CODE_DEPLOY" | "EXTERNAL")) => Err(EcsError::invalid(format!(
            "deploymentController type {o} is not supported by Berth; use ECS (rolling updates)"
        ))),
        Some(o) => Err(EcsError::invalid(format!(
            "deploymentController type {o:?} is not valid; use ECS"
        ))),
    }
}

fn check_platform(v: Option<&str>) -> Result<(), EcsError> {
    match v {
        None | Some("LATEST" | super::tasks::PLATFORM_VERSION) => Ok(()),
        Some(v) => Err(EcsError::invalid(format!(
            "platformVersion {v:?} is not available; use LATEST or {}",
            super::tasks::PLATFORM_VERSION
        ))),
    }
}

fn check_propagate(v: Option<&str>) -> Result<(), EcsError> {
    match v {
        None | Some("SERVICE" | "TASK_DEFINITION" | "NONE") => Ok(()),
        Some(o) => Err(EcsError::invalid(format!(
            "propagateTags {o:?} is not valid; use SERVICE, TASK_DEFINITION or NONE"
        ))),
    }
}

fn check_service_connect(v: Option<&Value>) -> Result<(), EcsError> {
    if v.and_then(|v| v.get("enabled")).and_then(Value::as_bool) == Some(true) {
        return Err(unsupported(
            "serviceConnectConfiguration",
            "Service Connect is not supported by Berth yet; omit it or set enabled to false",
        ));
    }
    Ok(())
}

fn check_grace(v: Option<i64>) -> Result<(), EcsError> {
    match v {
        Some(g) if !(0..=i64::from(i32::MAX)).contains(&g) => Err(EcsError::invalid(format!(
            "healthCheckGracePeriodSeconds {g} is out of range (use 0 to 2147483647)"
        ))),
        _ => Ok(()),
    }
}

fn check_desired(d: i64) -> Result<(), EcsError> {
    if (0..=MAX_DESIRED_COUNT).contains(&d) {
        Ok(())
    } else {
        Err(EcsError::invalid(format!(
            "desiredCount {d} is out of range (use 0 to {MAX_DESIRED_COUNT})"
        )))
    }
}

/// Checks a deployment configuration against a desired count: the
/// percentages' ranges, the rolling strategy, and that a rolling update can
/// make progress (the maximum leaves room above the minimum).
pub fn check_deployment_configuration(
    c: &DeploymentConfiguration,
    desired: i64,
) -> Result<(), EcsError> {
    let (min, max) = (c.min_healthy_percent(), c.max_percent());
    if !(0..=100).contains(&min) {
        return Err(EcsError::invalid(format!(
            "deploymentConfiguration.minimumHealthyPercent {min} is out of range (use 0 to 100)"
        )));
    }
    if !(100..=1000).contains(&max) {
        return Err(EcsError::invalid(format!(
            "deploymentConfiguration.maximumPercent {max} is out of range (use 100 to 1000)"
        )));
    }
    match c.extra.get("strategy").and_then(Value::as_str) {
        None | Some("ROLLING") => {}
        Some(o) => {
            return Err(EcsError::invalid(format!(
                "deploymentConfiguration.strategy {o} is not supported by Berth; use ROLLING"
            )))
        }
    }
    if c.extra
        .get("alarms")
        .and_then(|a| a.get("enable"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(EcsError::invalid(
            "deploymentConfiguration.alarms: CloudWatch alarms are not available in Berth; set enable to false or use the deployment circuit breaker",
        ));
    }
    let d = desired.max(0);
    let (most, least) = (d * max / 100, (d * min + 99) / 100);
    if d > 0 && most <= least {
        return Err(EcsError::invalid(format!(
            "deploymentConfiguration: with desiredCount {d}, maximumPercent {max} allows at most {most} task(s) and minimumHealthyPercent {min} keeps {least} healthy, so a rolling deployment could never replace a task; raise maximumPercent or lower minimumHealthyPercent"
        )));
    }
    Ok(())
}

impl Ecs {
    /// Reads a service record by cluster and name.
    pub async fn service_record(
        &self,
        cluster: &str,
        name: &str,
    ) -> Result<Option<(ServiceRecord, u64)>, EcsError> {
        if !valid_service_name(name) {
            return Ok(None);
        }
        match self.store.get(&keys::service(cluster, name)).await? {
            Some(kv) => Ok(Some((decode(&kv)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    /// The service name a request names (a name or a service ARN of
    /// `cluster`), or `None` when it cannot name a service of that cluster.
    fn service_name_in(&self, cluster: &str, s: &str) -> Option<String> {
        self.resource_in_cluster("service", cluster, s, valid_service_name)
    }

    /// The tasks a service started (group `service:NAME`), with their mod
    /// revisions.
    pub async fn service_tasks(
        &self,
        cluster: &str,
        name: &str,
    ) -> Result<Vec<(TaskRecord, u64)>, EcsError> {
        let group = format!("service:{name}");
        let list = self.store.list(&keys::cluster_tasks(cluster)).await?;
        let mut out = Vec::new();
        for kv in &list.items {
            let rec: TaskRecord = decode(kv)?;
            if rec.task.group.as_deref() == Some(group.as_str()) {
                out.push((rec, kv.mod_revision));
            }
        }
        Ok(out)
    }

    /// The task views of every service of a cluster, by service name.
    async fn cluster_service_tasks(
        &self,
        cluster: &str,
    ) -> Result<HashMap<String, Vec<TaskView>>, EcsError> {
        let list = self.store.list(&keys::cluster_tasks(cluster)).await?;
        let mut out: HashMap<String, Vec<TaskView>> = HashMap::new();
        for kv in &list.items {
            let rec: TaskRecord = decode(kv)?;
            if let Some(name) = rec
                .task
                .group
                .as_deref()
                .and_then(|g| g.strip_prefix("service:"))
            {
                out.entry(name.to_string())
                    .or_default()
                    .push(TaskView::of(&rec.task));
            }
        }
        Ok(out)
    }

    /// The task definition a service request names, checked for services:
    /// ACTIVE, FARGATE-compatible, a valid Fargate size.
    async fn service_task_definition(&self, name: &str) -> Result<TaskDefinition, EcsError> {
        let (rec, _) = self
            .get_task_definition(&TaskDefinitionRef::parse(name)?)
            .await?;
        let td = rec.task_definition;
        if td.status != TaskDefinitionStatus::Active {
            return Err(EcsError::client(format!(
                "TaskDefinition is inactive: {} is {}; use an ACTIVE revision (register a new one or name the family for its latest)",
                td.family_revision(),
                td.status.as_str()
            )));
        }
        check_fargate_compatible(&td)?;
        effective_task(&td, None)?;
        Ok(td)
    }

    /// CreateService.
    pub async fn create_service(
        &self,
        spec: CreateServiceSpec,
        caller: &Caller,
        ids: &dyn IdSource,
        now: Timestamp,
    ) -> Result<Service, EcsError> {
        let name = match spec.service_name.as_deref() {
            Some(n) if valid_service_name(n) => n.to_string(),
            Some(n) => {
                return Err(EcsError::invalid(format!(
                    "serviceName {n:?} is not valid: use 1 to 255 letters, digits, hyphens and underscores"
                )))
            }
            None => return Err(EcsError::invalid("serviceName is required")),
        };
        check_scheduling(spec.scheduling_strategy.as_deref())?;
        check_controller(spec.deployment_controller.as_ref())?;
        check_empty(
            "serviceRegistries",
            &spec.service_registries,
            "service discovery is not supported by Berth yet; create the service without it",
        )?;
        check_empty(
            "placementConstraints",
            &spec.placement_constraints,
            "task placement constraints are not supported on Fargate; remove them",
        )?;
        check_empty(
            "placementStrategy",
            &spec.placement_strategy,
            "task placement strategies are not supported on Fargate; remove them",
        )?;
        check_empty(
            "volumeConfigurations",
            &spec.volume_configurations,
            "EBS volumes are not supported by Berth; remove them",
        )?;
        check_empty(
            "vpcLatticeConfigurations",
            &spec.vpc_lattice_configurations,
            "VPC Lattice is not supported by Berth; remove it",
        )?;
        check_service_connect(spec.service_connect_configuration.as_ref())?;
        if spec.enable_execute_command {
            return Err(EcsError::invalid(
                "enableExecuteCommand is not supported by Berth yet; omit it or pass false",
            ));
        }
        let desired = spec
            .desired_count
            .ok_or_else(|| EcsError::invalid("desiredCount is required for a REPLICA service"))?;
        check_desired(desired)?;
        check_platform(spec.platform_version.as_deref())?;
        check_propagate(spec.propagate_tags.as_deref())?;
        check_grace(spec.health_check_grace_period_seconds)?;
        validate_tags(&spec.tags, 0)?;
        if let Some(n) = &spec.network_configuration {
            n.validate()?;
        }
        let mut config = spec.deployment_configuration.clone().unwrap_or_default();
        check_deployment_configuration(&config, desired)?;
        // Shown with their defaults, as ECS does.
        config.maximum_percent = Some(config.max_percent());
        config.minimum_healthy_percent = Some(config.min_healthy_percent());
        config
            .deployment_circuit_breaker
            .get_or_insert_with(Default::default);
        if let Some(t) = spec.client_token.as_deref() {
            if t.is_empty() || t.len() > 36 {
                return Err(EcsError::invalid(
                    "clientToken must be 1 to 36 characters long",
                ));
            }
        }
        let cluster = self
            .active_cluster(spec.cluster.as_deref().unwrap_or("default"))
            .await?;
        // The launch type or capacity providers, checked as RunTask does.
        let probe = RunTaskSpec {
            launch_type: spec.launch_type.clone(),
            capacity_provider_strategy: spec.capacity_provider_strategy.clone(),
            ..RunTaskSpec::default()
        };
        capacity_provider(&probe, &cluster)?;
        let td_name = spec
            .task_definition
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                EcsError::invalid(
                    "taskDefinition is required for a service with the ECS deployment controller",
                )
            })?;
        let td = self.service_task_definition(td_name).await?;
        let load_balancers = self.check_load_balancers(&spec.load_balancers, &td).await?;

        let cname = cluster.cluster_name.clone();
        let key = keys::service(&cname, &name);
        let deployment_id = ids::deployment(ids.next_u128());
        let _guard = self.lock(&key).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let current = self.service_record(&cname, &name).await?;
            let rev = current.as_ref().map_or(0, |(_, r)| *r);
            if let Some((existing, _)) = &current {
                match existing.service.status {
                    ServiceStatus::Active => {
                        if spec.client_token.is_some() && existing.client_token == spec.client_token
                        {
                            return Ok(existing.view(&[], now, true));
                        }
                        return Err(EcsError::invalid(format!(
                            "Creation of service was not idempotent: service {name} already exists in cluster {cname}; update it with UpdateService or pick another name"
                        )));
                    }
                    ServiceStatus::Draining => {
                        return Err(EcsError::invalid(format!(
                            "Unable to Start a service that is still Draining: service {name} is being deleted; wait until it is INACTIVE"
                        )));
                    }
                    ServiceStatus::Inactive => {}
                }
            }
            let (launch_type, strategy) = if spec.capacity_provider_strategy.is_empty() {
                (Some("FARGATE".to_string()), Vec::new())
            } else {
                (None, spec.capacity_provider_strategy.clone())
            };
            let mut rec = ServiceRecord {
                service: Service {
                    service_arn: self.scope.service_arn(&cname, &name),
                    service_name: name.clone(),
                    cluster_arn: cluster.cluster_arn.clone(),
                    load_balancers: load_balancers.clone(),
                    service_registries: Vec::new(),
                    status: ServiceStatus::Active,
                    desired_count: desired,
                    running_count: 0,
                    pending_count: 0,
                    launch_type,
                    capacity_provider_strategy: strategy,
                    platform_version: super::tasks::PLATFORM_VERSION.to_string(),
                    platform_family: "Linux".to_string(),
                    task_definition: td.task_definition_arn.clone(),
                    deployment_configuration: config.clone(),
                    deployments: Vec::new(),
                    events: Vec::new(),
                    created_at: now,
                    placement_constraints: Vec::new(),
                    placement_strategy: Vec::new(),
                    network_configuration: spec.network_configuration.clone(),
                    health_check_grace_period_seconds: spec.health_check_grace_period_seconds,
                    scheduling_strategy: "REPLICA".to_string(),
                    deployment_controller: DeploymentController::default(),
                    tags: spec.tags.clone(),
                    created_by: caller.arn.clone(),
                    enable_ecs_managed_tags: spec.enable_ecs_managed_tags,
                    propagate_tags: spec
                        .propagate_tags
                        .clone()
                        .unwrap_or_else(|| "NONE".to_string()),
                    enable_execute_command: false,
                    availability_zone_rebalancing: spec.availability_zone_rebalancing.clone(),
                },
                deployments: Vec::new(),
                steady: false,
                last_completed: None,
                client_token: spec.client_token.clone(),
            };
            rec.deploy(&deployment_id, &td, now);
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Put(key.clone(), encode(&rec)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(rec.view(&[], now, true));
            }
        }
        Err(EcsError::Contention(key))
    }

    /// UpdateService.
    pub async fn update_service(
        &self,
        spec: UpdateServiceSpec,
        ids: &dyn IdSource,
        now: Timestamp,
    ) -> Result<Service, EcsError> {
        let service = spec
            .service
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| EcsError::invalid("service is required"))?;
        check_controller(spec.deployment_controller.as_ref())?;
        let empty = |v: &Option<Vec<Value>>| v.as_deref().unwrap_or(&[]).to_vec();
        check_empty(
            "serviceRegistries",
            &empty(&spec.service_registries),
            "service discovery is not supported by Berth yet",
        )?;
        check_empty(
            "placementConstraints",
            &empty(&spec.placement_constraints),
            "task placement constraints are not supported on Fargate; remove them",
        )?;
        check_empty(
            "placementStrategy",
            &empty(&spec.placement_strategy),
            "task placement strategies are not supported on Fargate; remove them",
        )?;
        check_empty(
            "volumeConfigurations",
            &empty(&spec.volume_configurations),
            "EBS volumes are not supported by Berth; remove them",
        )?;
        check_empty(
            "vpcLatticeConfigurations",
            &empty(&spec.vpc_lattice_configurations),
            "VPC Lattice is not supported by Berth; remove it",
        )?;
        check_service_connect(spec.service_connect_configuration.as_ref())?;
        if spec.enable_execute_command == Some(true) {
            return Err(EcsError::invalid(
                "enableExecuteCommand is not supported by Berth yet; omit it or pass false",
            ));
        }
        if let Some(d) = spec.desired_count {
            check_desired(d)?;
        }
        check_platform(spec.platform_version.as_deref())?;
        check_propagate(spec.propagate_tags.as_deref())?;
        check_grace(spec.health_check_grace_period_seconds)?;
        if let Some(n) = &spec.network_configuration {
            n.validate()?;
        }
        let cluster = self
            .active_cluster(spec.cluster.as_deref().unwrap_or("default"))
            .await?;
        let cname = cluster.cluster_name.clone();
        let not_found = || {
            EcsError::ServiceNotFound(format!(
                "Service not found: {service} is not a service of cluster {cname} (ListServices shows them)"
            ))
        };
        let name = self
            .service_name_in(&cname, service)
            .ok_or_else(not_found)?;
        if let Some(strategy) = &spec.capacity_provider_strategy {
            let probe = RunTaskSpec {
                capacity_provider_strategy: strategy.clone(),
                ..RunTaskSpec::default()
            };
            capacity_provider(&probe, &cluster)?;
        }
        let new_td = match spec.task_definition.as_deref().filter(|s| !s.is_empty()) {
            Some(t) => Some(self.service_task_definition(t).await?),
            None => None,
        };
        let key = keys::service(&cname, &name);
        let deployment_id = ids::deployment(ids.next_u128());
        let _guard = self.lock(&key).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (mut rec, rev) = self
                .service_record(&cname, &name)
                .await?
                .ok_or_else(not_found)?;
            if rec.service.status != ServiceStatus::Active {
                return Err(EcsError::ServiceNotActive(format!(
                    "Service was not ACTIVE: service {name} is {}; create it again with CreateService",
                    rec.service.status.as_str()
                )));
            }
            let new_lbs = match &spec.load_balancers {
                Some(lbs) => {
                    let td = match &new_td {
                        Some(td) => td.clone(),
                        None => {
                            self.task_definition_by_arn(&rec.service.task_definition)
                                .await?
                        }
                    };
                    Some(self.check_load_balancers(lbs, &td).await?)
                }
                None => {
                    if let Some(td) = new_td
                        .as_ref()
                        .filter(|_| !rec.service.load_balancers.is_empty())
                    {
                        // The new revision must still serve the target groups.
                        self.check_load_balancers(&rec.service.load_balancers, td)
                            .await?;
                    }
                    None
                }
            };
            let s = &mut rec.service;
            if let Some(d) = spec.desired_count {
                s.desired_count = d;
            }
            let mut lbs_changed = false;
            if let Some(lbs) = new_lbs {
                if lbs != s.load_balancers {
                    s.load_balancers = lbs;
                    lbs_changed = true;
                }
            }
            if let Some(c) = &spec.deployment_configuration {
                let cfg = &mut s.deployment_configuration;
                if c.deployment_circuit_breaker.is_some() {
                    cfg.deployment_circuit_breaker
                        .clone_from(&c.deployment_circuit_breaker);
                }
                if c.maximum_percent.is_some() {
                    cfg.maximum_percent = c.maximum_percent;
                }
                if c.minimum_healthy_percent.is_some() {
                    cfg.minimum_healthy_percent = c.minimum_healthy_percent;
                }
                for (k, v) in &c.extra {
                    cfg.extra.insert(k.clone(), v.clone());
                }
            }
            check_deployment_configuration(&s.deployment_configuration, s.desired_count)?;
            if let Some(g) = spec.health_check_grace_period_seconds {
                s.health_check_grace_period_seconds = Some(g);
            }
            if let Some(m) = spec.enable_ecs_managed_tags {
                s.enable_ecs_managed_tags = m;
            }
            if let Some(p) = &spec.propagate_tags {
                s.propagate_tags.clone_from(p);
            }
            if let Some(a) = &spec.availability_zone_rebalancing {
                s.availability_zone_rebalancing = Some(a.clone());
            }
            if let Some(strategy) = &spec.capacity_provider_strategy {
                if strategy.is_empty() {
                    s.capacity_provider_strategy.clear();
                    s.launch_type = Some("FARGATE".to_string());
                } else {
                    s.capacity_provider_strategy.clone_from(strategy);
                    s.launch_type = None;
                }
            }
            // New load balancers apply to new tasks: deploy them.
            let mut redeploy = spec.force_new_deployment || lbs_changed;
            if let Some(n) = &spec.network_configuration {
                if s.network_configuration.as_ref() != Some(n) {
                    s.network_configuration = Some(n.clone());
                    redeploy = true;
                }
            }
            if let Some(td) = &new_td {
                let current = rec.primary().map(|p| p.deployment.task_definition.as_str());
                if current != Some(td.task_definition_arn.as_str()) {
                    redeploy = true;
                }
            }
            if redeploy {
                let td = match &new_td {
                    Some(td) => td.clone(),
                    None => {
                        self.task_definition_by_arn(&rec.service.task_definition)
                            .await?
                    }
                };
                rec.deploy(&deployment_id, &td, now);
            }
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Put(key.clone(), encode(&rec)));
            if self.store.txn(txn).await?.succeeded {
                let tasks: Vec<TaskView> = self
                    .service_tasks(&cname, &name)
                    .await?
                    .iter()
                    .map(|(t, _)| TaskView::of(&t.task))
                    .collect();
                return Ok(rec.view(&tasks, now, true));
            }
        }
        Err(EcsError::Contention(key))
    }

    /// The revision a task definition ARN names (any status).
    async fn task_definition_by_arn(&self, arn: &str) -> Result<TaskDefinition, EcsError> {
        let (rec, _) = self
            .get_task_definition(&TaskDefinitionRef::parse(arn)?)
            .await?;
        Ok(rec.task_definition)
    }

    /// DeleteService: the service becomes DRAINING with a desired count of
    /// 0 (its tasks are stopped by the reconciler, then it is INACTIVE). A
    /// service scaled above 0 needs `force`.
    pub async fn delete_service(
        &self,
        cluster: Option<&str>,
        service: &str,
        force: bool,
        now: Timestamp,
    ) -> Result<Service, EcsError> {
        let cluster = self.active_cluster(cluster.unwrap_or("default")).await?;
        let cname = cluster.cluster_name;
        let not_found = || {
            EcsError::ServiceNotFound(format!(
                "Service not found: {service} is not an active service of cluster {cname}"
            ))
        };
        let name = self
            .service_name_in(&cname, service)
            .ok_or_else(not_found)?;
        let key = keys::service(&cname, &name);
        let _guard = self.lock(&key).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (mut rec, rev) = self
                .service_record(&cname, &name)
                .await?
                .ok_or_else(not_found)?;
            match rec.service.status {
                ServiceStatus::Inactive => return Err(not_found()),
                ServiceStatus::Draining => {}
                ServiceStatus::Active => {
                    if rec.service.desired_count > 0 && !force {
                        return Err(EcsError::invalid(format!(
                            "The service cannot be stopped while it is scaled above 0. (service {name} has desiredCount {}; scale it to 0 with UpdateService or delete it with force)",
                            rec.service.desired_count
                        )));
                    }
                    rec.service.status = ServiceStatus::Draining;
                    rec.service.desired_count = 0;
                    let txn = Txn::new()
                        .when(Compare::ModRevision(key.clone(), rev))
                        .then(Op::Put(key.clone(), encode(&rec)));
                    if !self.store.txn(txn).await?.succeeded {
                        continue;
                    }
                }
            }
            let tasks: Vec<TaskView> = self
                .service_tasks(&cname, &name)
                .await?
                .iter()
                .map(|(t, _)| TaskView::of(&t.task))
                .collect();
            return Ok(rec.view(&tasks, now, false));
        }
        Err(EcsError::Contention(key))
    }

    /// DescribeServices: the services found (tags only with `include_tags`)
    /// and a MISSING failure for each that is not.
    pub async fn describe_services(
        &self,
        cluster: Option<&str>,
        services: &[String],
        include_tags: bool,
        now: Timestamp,
    ) -> Result<(Vec<Service>, Vec<Failure>), EcsError> {
        if services.is_empty() || services.len() > 10 {
            return Err(EcsError::invalid(format!(
                "services has {} entries; describe 1 to 10 services per call",
                services.len()
            )));
        }
        let cluster = self.active_cluster(cluster.unwrap_or("default")).await?;
        let cname = &cluster.cluster_name;
        let tasks = self.cluster_service_tasks(cname).await?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for s in services {
            let rec = match self.service_name_in(cname, s) {
                Some(name) => self.service_record(cname, &name).await?,
                None => None,
            };
            match rec {
                Some((rec, _)) => {
                    let mine = tasks
                        .get(&rec.service.service_name)
                        .map_or(&[][..], Vec::as_slice);
                    found.push(rec.view(mine, now, include_tags));
                }
                None => failures.push(Failure {
                    arn: Some(if s.starts_with("arn:") {
                        s.clone()
                    } else {
                        self.scope.service_arn(cname, s)
                    }),
                    reason: "MISSING".to_string(),
                    detail: None,
                }),
            }
        }
        Ok((found, failures))
    }

    /// ListServices: ARNs of a cluster's ACTIVE services, in name order.
    pub async fn list_services(
        &self,
        f: &ServiceFilter,
    ) -> Result<(Vec<String>, Option<String>), EcsError> {
        let size = match f.max_results {
            None => 10,
            n => page_size(n, 100)?,
        };
        let after = resume_after(f.next_token.as_deref())?;
        let fargate = match f.launch_type.as_deref() {
            None | Some("FARGATE") => true,
            Some("EC2" | "EXTERNAL" | "MANAGED_INSTANCES") => false,
            Some(o) => {
                return Err(EcsError::invalid(format!(
                "launchType {o:?} is not valid (use FARGATE, EC2, EXTERNAL or MANAGED_INSTANCES)"
            )))
            }
        };
        let replica = match f.scheduling_strategy.as_deref() {
            None | Some("REPLICA") => true,
            Some("DAEMON") => false,
            Some(o) => {
                return Err(EcsError::invalid(format!(
                    "schedulingStrategy {o:?} is not valid (use REPLICA or DAEMON)"
                )))
            }
        };
        let cluster = self
            .active_cluster(f.cluster.as_deref().unwrap_or("default"))
            .await?;
        if !fargate || !replica {
            return Ok((Vec::new(), None));
        }
        let list = self
            .store
            .list(&keys::cluster_services(&cluster.cluster_name))
            .await?;
        let mut services = Vec::new();
        for kv in &list.items {
            let rec: ServiceRecord = decode(kv)?;
            if rec.service.status == ServiceStatus::Active {
                services.push(rec.service);
            }
        }
        let (page, next) = paginate(services, |s| s.service_name.clone(), after, size, false);
        Ok((page.into_iter().map(|s| s.service_arn).collect(), next))
    }

    /// How many of a cluster's services are ACTIVE (`activeServicesCount`)
    /// and how many are DRAINING.
    pub async fn service_counts(&self, cluster: &str) -> Result<(u64, u64), EcsError> {
        let list = self.store.list(&keys::cluster_services(cluster)).await?;
        let (mut active, mut draining) = (0, 0);
        for kv in &list.items {
            let rec: ServiceRecord = decode(kv)?;
            match rec.service.status {
                ServiceStatus::Active => active += 1,
                ServiceStatus::Draining => draining += 1,
                ServiceStatus::Inactive => {}
            }
        }
        Ok((active, draining))
    }

    /// Read-modify-write of a service that is not INACTIVE (TagResource).
    pub(crate) async fn modify_service(
        &self,
        cluster: &str,
        name: &str,
        f: impl Fn(&mut ServiceRecord) -> Result<(), EcsError>,
    ) -> Result<(), EcsError> {
        let key = keys::service(cluster, name);
        let _guard = self.lock(&key).await;
        let missing = || {
            EcsError::ServiceNotFound(format!(
                "service {name} does not exist in cluster {cluster}"
            ))
        };
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (mut rec, rev) = self
                .service_record(cluster, name)
                .await?
                .ok_or_else(missing)?;
            if rec.service.status == ServiceStatus::Inactive {
                return Err(missing());
            }
            f(&mut rec)?;
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Put(key.clone(), encode(&rec)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
        Err(EcsError::Contention(key))
    }

    /// Every service that the reconciler must look at (ACTIVE or DRAINING),
    /// as (cluster, name).
    pub async fn services_to_reconcile(&self) -> Result<Vec<(String, String)>, EcsError> {
        let list = self.store.list(keys::SERVICES).await?;
        let mut out = Vec::new();
        for kv in &list.items {
            let rec: ServiceRecord = decode(kv)?;
            if rec.service.status != ServiceStatus::Inactive {
                out.push((
                    rec.service.cluster_name().to_string(),
                    rec.service.service_name.clone(),
                ));
            }
        }
        Ok(out)
    }
}
