//! Tasks: a running instance of a task definition, in ECS's shape.
//!
//! `lastStatus` moves PROVISIONING → PENDING → ACTIVATING → RUNNING →
//! DEACTIVATING → STOPPING → DEPROVISIONING → STOPPED and never backwards
//! ([`TaskStatus`] orders them); `desiredStatus` is RUNNING or STOPPED.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tags::Tag;
use crate::Timestamp;

/// A task's lifecycle states, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Placed; the host is preparing the sandbox (network, cgroup).
    Provisioning,
    /// Pulling images.
    Pending,
    /// Starting containers.
    Activating,
    /// Essential containers are running.
    Running,
    /// Stop requested; about to signal containers.
    Deactivating,
    /// Containers are being stopped.
    Stopping,
    /// Tearing down the sandbox.
    Deprovisioning,
    /// Gone.
    Stopped,
}

impl TaskStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Pending => "PENDING",
            Self::Activating => "ACTIVATING",
            Self::Running => "RUNNING",
            Self::Deactivating => "DEACTIVATING",
            Self::Stopping => "STOPPING",
            Self::Deprovisioning => "DEPROVISIONING",
            Self::Stopped => "STOPPED",
        }
    }
}

/// Why a task stopped (ECS `stopCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopCode {
    /// It never got going (pull failure, start failure, no capacity).
    TaskFailedToStart,
    /// An essential container exited.
    EssentialContainerExited,
    /// StopTask.
    UserInitiated,
    /// A service's scheduler stopped it.
    ServiceSchedulerInitiated,
    /// Its host was lost.
    InfrastructureHealth,
}

/// Container health (ECS `healthStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HealthStatus {
    /// Passing.
    Healthy,
    /// Failing past its retries.
    Unhealthy,
    /// No health check, or not decided yet.
    #[default]
    Unknown,
}

/// A name/value pair (attachment details).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// The task's network attachment (an ENI on ECS): its own IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Attachment id.
    pub id: String,
    /// `ElasticNetworkInterface`.
    #[serde(rename = "type")]
    pub kind: String,
    /// PRECREATED, ATTACHED, DETACHED, DELETED.
    pub status: String,
    /// subnetId, networkInterfaceId, macAddress, privateDnsName, privateIPv4Address.
    pub details: Vec<Detail>,
}

impl Attachment {
    /// The value of one detail.
    pub fn detail(&self, name: &str) -> Option<&str> {
        self.details
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }
}

/// A container's network interface (ECS `networkInterfaces`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    /// The attachment it belongs to.
    pub attachment_id: String,
    /// The task's IP.
    pub private_ipv4_address: String,
}

/// One container of a task, as DescribeTasks shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// `arn:aws:ecs:REGION:ACCOUNT:container/CLUSTER/TASKID/UUID`.
    pub container_arn: String,
    /// The task.
    pub task_arn: String,
    /// From the container definition.
    pub name: String,
    /// The image reference.
    pub image: String,
    /// The manifest digest pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The runtime's id for the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    /// PENDING, RUNNING, STOPPED.
    pub last_status: String,
    /// Exit code, once stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it stopped, when not a plain exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Port bindings (empty in awsvpc mode).
    #[serde(default)]
    pub network_bindings: Vec<Value>,
    /// The task's interface.
    #[serde(default)]
    pub network_interfaces: Vec<NetworkInterface>,
    /// From the health check.
    #[serde(default)]
    pub health_status: HealthStatus,
    /// CPU units.
    pub cpu: String,
    /// Hard memory limit, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Soft memory limit, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<String>,
}

/// A task as the store keeps it and DescribeTasks returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/TASKID`.
    pub task_arn: String,
    /// The cluster.
    pub cluster_arn: String,
    /// The revision it runs.
    pub task_definition_arn: String,
    /// Where it runs (hidden from users on FARGATE; kept for EC2 later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_arn: Option<String>,
    /// The lifecycle state.
    pub last_status: TaskStatus,
    /// RUNNING or STOPPED.
    pub desired_status: TaskStatus,
    /// FARGATE.
    pub launch_type: String,
    /// FARGATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    /// `1.4.0`.
    pub platform_version: String,
    /// `Linux`.
    pub platform_family: String,
    /// Task CPU units.
    pub cpu: String,
    /// Task memory, MiB.
    pub memory: String,
    /// Containers.
    pub containers: Vec<Container>,
    /// The ENI-style attachment.
    pub attachments: Vec<Attachment>,
    /// RunTask overrides, kept as given.
    pub overrides: Value,
    /// Who started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// `family:NAME` or `service:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Created.
    pub created_at: Timestamp,
    /// Image pulls began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<Timestamp>,
    /// Image pulls ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<Timestamp>,
    /// RUNNING reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// Stop began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<Timestamp>,
    /// The last essential container exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<Timestamp>,
    /// STOPPED reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
    /// Why it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<StopCode>,
    /// Human-readable reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    /// Task health (from essential containers' checks).
    #[serde(default)]
    pub health_status: HealthStatus,
    /// CONNECTED.
    pub connectivity: String,
    /// When connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_at: Option<Timestamp>,
    /// The availability zone (the host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    /// Bumped on every change.
    pub version: i64,
    /// `{"sizeInGiB": 20}`.
    pub ephemeral_storage: Value,
    /// Always false.
    pub enable_execute_command: bool,
}

impl Task {
    /// The task id (the last ARN component).
    pub fn id(&self) -> &str {
        self.task_arn.rsplit('/').next().unwrap_or("")
    }

    /// The task's IP, once placed.
    pub fn private_ip(&self) -> Option<&str> {
        self.attachments
            .first()
            .and_then(|a| a.detail("privateIPv4Address"))
    }
}
