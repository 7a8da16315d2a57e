//! Services: keep `desiredCount` copies of a task definition running, and
//! roll out a new one through *deployments*, in ECS's shape
//! (botocore's `Service`, `Deployment`, `ServiceEvent`).
//!
//! A service is ACTIVE, then DRAINING once deleted (its tasks are being
//! stopped), then INACTIVE. Each change of task definition (or a forced new
//! deployment) makes a new PRIMARY deployment; the one before becomes ACTIVE
//! while its tasks are replaced, and leaves the list when it has none
//! (INACTIVE). A deployment's `rolloutState` is IN_PROGRESS until the service
//! reaches its desired state, then COMPLETED, or FAILED when the deployment
//! circuit breaker trips.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::launch::{CapacityProviderStrategyItem, NetworkConfiguration};
use crate::tags::Tag;
use crate::Timestamp;

/// The default `deploymentConfiguration.maximumPercent`.
pub const DEFAULT_MAXIMUM_PERCENT: i64 = 200;

/// The default `deploymentConfiguration.minimumHealthyPercent`.
pub const DEFAULT_MINIMUM_HEALTHY_PERCENT: i64 = 100;

/// A service's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ServiceStatus {
    /// Running its tasks.
    Active,
    /// Deleted; its tasks are being stopped.
    Draining,
    /// Deleted and drained.
    Inactive,
}

impl ServiceStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Draining => "DRAINING",
            Self::Inactive => "INACTIVE",
        }
    }
}

/// A deployment's place in its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DeploymentStatus {
    /// The most recent deployment: the one the service converges to.
    Primary,
    /// An older deployment whose tasks are being replaced.
    Active,
    /// Completely replaced.
    Inactive,
}

/// How far a deployment's rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    /// The service reached the deployment's desired state.
    Completed,
    /// The deployment circuit breaker tripped.
    Failed,
    /// Still converging.
    InProgress,
}

/// `deploymentConfiguration.deploymentCircuitBreaker`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentCircuitBreaker {
    /// Whether a deployment whose tasks keep failing is marked FAILED.
    #[serde(default)]
    pub enable: bool,
    /// Whether a FAILED deployment rolls back to the last COMPLETED one.
    #[serde(default)]
    pub rollback: bool,
}

/// A service's `deploymentConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfiguration {
    /// The circuit breaker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_circuit_breaker: Option<DeploymentCircuitBreaker>,
    /// Upper limit of unstopped tasks during a deployment, percent of
    /// `desiredCount`, rounded down (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_percent: Option<i64>,
    /// Lower limit of healthy tasks during a deployment, percent of
    /// `desiredCount`, rounded up (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_healthy_percent: Option<i64>,
    /// Members kept as given (`alarms`, `strategy`, `bakeTimeInMinutes`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DeploymentConfiguration {
    /// `maximumPercent`, defaulted.
    pub fn max_percent(&self) -> i64 {
        self.maximum_percent.unwrap_or(DEFAULT_MAXIMUM_PERCENT)
    }

    /// `minimumHealthyPercent`, defaulted.
    pub fn min_healthy_percent(&self) -> i64 {
        self.minimum_healthy_percent
            .unwrap_or(DEFAULT_MINIMUM_HEALTHY_PERCENT)
    }

    /// The circuit breaker, if enabled: `Some(rollback)`.
    pub fn circuit_breaker(&self) -> Option<bool> {
        self.deployment_circuit_breaker
            .as_ref()
            .filter(|b| b.enable)
            .map(|b| b.rollback)
    }
}

/// `deploymentController`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentController {
    /// `ECS` (rolling updates; the only one Berth has).
    #[serde(rename = "type")]
    pub kind: String,
}

impl Default for DeploymentController {
    fn default() -> Self {
        Self { kind: "ECS".into() }
    }
}

/// One entry of a service's event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvent {
    /// A UUID.
    pub id: String,
    /// When it happened.
    pub created_at: Timestamp,
    /// `(service NAME) has reached a steady state.` and the like.
    pub message: String,
}

/// One deployment of a service, as DescribeServices shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// `ecs-svc/` and 19 digits; also the `startedBy` of its tasks.
    pub id: String,
    /// PRIMARY, ACTIVE or INACTIVE.
    pub status: DeploymentStatus,
    /// The task definition ARN its tasks run.
    pub task_definition: String,
    /// How many tasks it should run.
    pub desired_count: i64,
    /// Its tasks on their way to RUNNING.
    pub pending_count: i64,
    /// Its RUNNING tasks.
    pub running_count: i64,
    /// Consecutive tasks that failed (what the circuit breaker counts).
    pub failed_tasks: i64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
    /// FARGATE, when the service has a launch type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    /// The capacity provider strategy, when the service has one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    /// `1.4.0`.
    pub platform_version: String,
    /// `Linux`.
    pub platform_family: String,
    /// The network configuration its tasks get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub rollout_state: RolloutState,
    /// Why (`ECS deployment ecs-svc/… completed.`).
    pub rollout_state_reason: String,
}

/// A service as DescribeServices shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME`.
    pub service_arn: String,
    /// The name, unique in its cluster.
    pub service_name: String,
    /// The cluster.
    pub cluster_arn: String,
    /// Load balancers (none yet).
    #[serde(default)]
    pub load_balancers: Vec<Value>,
    /// Service discovery registries (none yet).
    #[serde(default)]
    pub service_registries: Vec<Value>,
    /// ACTIVE, DRAINING or INACTIVE.
    pub status: ServiceStatus,
    /// How many tasks it keeps running.
    pub desired_count: i64,
    /// Its RUNNING tasks.
    pub running_count: i64,
    /// Its tasks on their way to RUNNING.
    pub pending_count: i64,
    /// FARGATE, unless a capacity provider strategy was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    /// The capacity provider strategy, when given instead of a launch type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    /// `1.4.0`.
    pub platform_version: String,
    /// `Linux`.
    pub platform_family: String,
    /// The task definition of the PRIMARY deployment.
    pub task_definition: String,
    /// Rolling update limits and the circuit breaker.
    pub deployment_configuration: DeploymentConfiguration,
    /// PRIMARY first, then ACTIVE ones, newest first.
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    /// Newest first, at most 100.
    #[serde(default)]
    pub events: Vec<ServiceEvent>,
    /// Created.
    pub created_at: Timestamp,
    /// Not supported on Fargate (always empty).
    #[serde(default)]
    pub placement_constraints: Vec<Value>,
    /// Not supported on Fargate (always empty).
    #[serde(default)]
    pub placement_strategy: Vec<Value>,
    /// The network configuration of new tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    /// How long after a task starts its failing health checks are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_seconds: Option<i64>,
    /// REPLICA.
    pub scheduling_strategy: String,
    /// `{"type": "ECS"}`.
    pub deployment_controller: DeploymentController,
    /// Tags (DescribeServices shows them with `include: ["TAGS"]`).
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The principal that created it.
    pub created_by: String,
    /// Whether ECS-managed tags are asked for.
    #[serde(rename = "enableECSManagedTags", default)]
    pub enable_ecs_managed_tags: bool,
    /// SERVICE, TASK_DEFINITION or NONE.
    pub propagate_tags: String,
    /// Always false.
    #[serde(default)]
    pub enable_execute_command: bool,
    /// ENABLED or DISABLED (accepted and echoed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone_rebalancing: Option<String>,
}

impl Service {
    /// The cluster name (the last component of the cluster ARN).
    pub fn cluster_name(&self) -> &str {
        self.cluster_arn.rsplit('/').next().unwrap_or("")
    }
}

/// Whether `name` can name a service: 1 to 255 letters, digits, hyphens and
/// underscores.
pub fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_spellings() {
        assert_eq!(
            serde_json::to_value(RolloutState::InProgress).unwrap(),
            "IN_PROGRESS"
        );
        assert_eq!(
            serde_json::to_value(DeploymentStatus::Primary).unwrap(),
            "PRIMARY"
        );
        assert_eq!(ServiceStatus::Draining.as_str(), "DRAINING");
        let c: DeploymentConfiguration = serde_json::from_value(serde_json::json!({
            "deploymentCircuitBreaker": {"enable": true, "rollback": false},
            "alarms": {"alarmNames": [], "enable": false, "rollback": false}
        }))
        .unwrap();
        assert_eq!(c.max_percent(), 200);
        assert_eq!(c.min_healthy_percent(), 100);
        assert_eq!(c.circuit_breaker(), Some(false));
        assert!(c.extra.contains_key("alarms"));
    }

    #[test]
    fn names() {
        assert!(valid_service_name("web_1-a"));
        assert!(!valid_service_name(""));
        assert!(!valid_service_name("a/b"));
        assert!(!valid_service_name(&"a".repeat(256)));
    }
}
