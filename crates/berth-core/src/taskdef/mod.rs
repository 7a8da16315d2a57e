//! Task definitions: the blueprint of a task, in ECS's shape.
//!
//! [`TaskDefinitionInput`] is what a user registers (the body of
//! RegisterTaskDefinition, less tags); [`validate`] checks it the way
//! ECS/Fargate does and normalises it; [`TaskDefinition`] is a registered
//! revision as the store keeps it and ECS returns it.
//!
//! Members that Berth interprets are typed. Members that it stores and
//! returns without interpreting yet (secrets, firelens, ...) live in the
//! flattened `extra` maps, so a registered definition round-trips intact.

mod validate;

pub use validate::{validate, MAX_CONTAINERS, MAX_TASK_DEFINITION_BYTES};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Timestamp;

/// A name/value pair (environment variables, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValuePair {
    /// The variable name.
    pub name: Option<String>,
    /// The value.
    pub value: Option<String>,
}

/// A port a container listens on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// 1–65535.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i64>,
    /// On awsvpc, equal to the container port (or omitted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    /// `tcp` (default) or `udp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Other members (name, appProtocol, containerPortRange), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A container health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    #[serde(default)]
    pub command: Vec<String>,
    /// Seconds between checks, 5–300 (default 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Seconds before a check fails, 2–120 (default 5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Consecutive failures before UNHEALTHY, 1–10 (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    /// Grace seconds after start, 0–300 (default 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
}

/// An ordering dependency on another container of the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDependency {
    /// The container depended on.
    pub container_name: Option<String>,
    /// START, COMPLETE, SUCCESS or HEALTHY.
    pub condition: Option<String>,
}

/// Capability changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct KernelCapabilities {
    /// Capabilities added to the default set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<Vec<String>>,
    /// Capabilities removed from the default set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<Vec<String>>,
}

/// Linux-specific container settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LinuxParameters {
    /// Capability changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<KernelCapabilities>,
    /// Host devices (not on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<Value>>,
    /// Run an init process as PID 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_process_enabled: Option<bool>,
    /// /dev/shm size in MiB (not on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_memory_size: Option<i64>,
    /// tmpfs mounts (not on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<Vec<Value>>,
    /// Swap limit in MiB (not on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_swap: Option<i64>,
    /// Swappiness 0–100 (not on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swappiness: Option<i64>,
}

/// A mount of a task volume into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    /// The task volume's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_volume: Option<String>,
    /// Where it appears in the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    /// Mounted read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// Mount all volumes of another container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFrom {
    /// The container whose volumes are mounted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_container: Option<String>,
    /// Mounted read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// A resource limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ulimit {
    /// The limit's name (`nofile`, `nproc`, ...).
    pub name: Option<String>,
    /// Soft limit.
    pub soft_limit: Option<i64>,
    /// Hard limit.
    pub hard_limit: Option<i64>,
}

/// One container of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    /// Unique within the task: 1–255 letters, digits, hyphens, underscores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The image reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU units reserved (ECS returns 0 when unset).
    #[serde(default)]
    pub cpu: i64,
    /// Hard memory limit, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Soft memory limit, MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    /// Legacy links (bridge mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<String>>,
    /// Ports the container listens on.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// Whether the task stops when this container stops (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    /// Overrides the image's ENTRYPOINT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<Vec<String>>,
    /// Overrides the image's CMD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment variables.
    #[serde(default)]
    pub environment: Vec<KeyValuePair>,
    /// Volume mounts.
    #[serde(default)]
    pub mount_points: Vec<MountPoint>,
    /// Volumes of other containers.
    #[serde(default)]
    pub volumes_from: Vec<VolumeFrom>,
    /// Linux-specific settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub linux_parameters: Option<LinuxParameters>,
    /// Start ordering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<ContainerDependency>>,
    /// Seconds to wait for dependencies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<i64>,
    /// Seconds between SIGTERM and SIGKILL (max 120 on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    /// Container hostname (not with awsvpc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `user`, `user:group`, `uid`, `uid:gid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// No networking at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disable_networking: Option<bool>,
    /// Privileged mode (never on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Mount the root filesystem read-only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly_root_filesystem: Option<bool>,
    /// DNS servers (not with awsvpc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<Vec<String>>,
    /// DNS search domains (not with awsvpc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_search_domains: Option<Vec<String>>,
    /// /etc/hosts entries (not with awsvpc).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_hosts: Option<Vec<Value>>,
    /// SELinux/AppArmor labels (not on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_security_options: Option<Vec<String>>,
    /// Keep stdin open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interactive: Option<bool>,
    /// Allocate a TTY.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pseudo_terminal: Option<bool>,
    /// Labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_labels: Option<Map<String, Value>>,
    /// Resource limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ulimits: Option<Vec<Ulimit>>,
    /// Log driver configuration, kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<Value>,
    /// Health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Namespaced sysctls, kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_controls: Option<Vec<Value>>,
    /// GPU / accelerator requirements, kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<Vec<Value>>,
    /// Members Berth stores but does not interpret yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A task volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Referenced by mount points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A bind mount from the host (`sourcePath` not on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<Value>,
    /// Docker volume driver configuration (not on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_volume_configuration: Option<Value>,
    /// Other members (efsVolumeConfiguration, ...), kept as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The body of RegisterTaskDefinition, less `tags`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinitionInput {
    /// 1–255 letters, digits, hyphens and underscores.
    #[serde(default)]
    pub family: String,
    /// The containers, 1–10.
    #[serde(default)]
    pub container_definitions: Vec<ContainerDefinition>,
    /// IAM role for the task's code, kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    /// IAM role for pulling and logging, kept as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// `awsvpc` (Fargate), `bridge`, `host` or `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// Task volumes.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Placement constraints (not on Fargate).
    #[serde(default)]
    pub placement_constraints: Vec<Value>,
    /// Launch types the definition is validated against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requires_compatibilities: Option<Vec<String>>,
    /// Task CPU: units (`"256"`) or `"0.25 vCPU"`; stored as units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Task memory: MiB (`"512"`) or `"0.5 GB"`; stored as MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// `host` or `task` (only `task` on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    /// `host`, `task` or `none` (not on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<String>,
    /// OS and CPU architecture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_platform: Option<Value>,
    /// Ephemeral storage (21–200 GiB on Fargate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<Value>,
    /// Members Berth stores but does not interpret yet.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Status of a task definition revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskDefinitionStatus {
    /// Usable for new tasks.
    Active,
    /// Deregistered: existing tasks keep it, new ones cannot use it.
    Inactive,
    /// Deletion requested.
    DeleteInProgress,
}

impl TaskDefinitionStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Inactive => "INACTIVE",
            Self::DeleteInProgress => "DELETE_IN_PROGRESS",
        }
    }
}

/// A registered task definition revision, as stored and as returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    /// `arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION`.
    pub task_definition_arn: String,
    /// The revision, from 1, never reused within a family.
    pub revision: u32,
    /// ACTIVE, INACTIVE or DELETE_IN_PROGRESS.
    pub status: TaskDefinitionStatus,
    /// Launch types this definition is valid for.
    pub compatibilities: Vec<String>,
    /// Attributes a host must have (none on Berth yet).
    #[serde(default)]
    pub requires_attributes: Vec<Value>,
    /// When it was registered.
    pub registered_at: Timestamp,
    /// Who registered it (the caller's ARN).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered_by: Option<String>,
    /// When it was deregistered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deregistered_at: Option<Timestamp>,
    /// When its deletion was requested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_requested_at: Option<Timestamp>,
    /// The validated, normalised definition.
    #[serde(flatten)]
    pub input: TaskDefinitionInput,
}

impl TaskDefinition {
    /// `FAMILY:REVISION`.
    pub fn family_revision(&self) -> String {
        format!("{}:{}", self.input.family, self.revision)
    }
}
