//! The agent protocol: what a host agent and the control plane say to each
//! other, over HTTP+JSON on the API listener (`/agent/v1/...`), signed with
//! SigV4 (service `berth-agent`). The same protocol serves an agent inside
//! `berth up` and one on another machine.
//!
//! ```text
//! POST /agent/v1/register                       HostRegistration → HostRegistered
//! POST /agent/v1/hosts/{hostId}/heartbeat       Heartbeat → {}
//! GET  /agent/v1/hosts/{hostId}/assignments?after=REV&waitSeconds=N
//!                                               → Assignments (long poll: answers when the
//!                                                 desired state changed after REV, or at N s)
//! POST /agent/v1/tasks/{taskId}/state           TaskStateReport → {}
//! POST /agent/v1/tasks/{taskId}/logs            LogBatch → {}
//! ```
//!
//! Assignments are level-triggered: each answer carries the *full* desired
//! state of the host (every task placed on it that has not been reported
//! STOPPED), so an agent that lost its connection or restarted simply
//! reconciles against the latest answer. State reports are idempotent and
//! only move a task forward through [`crate::task::TaskStatus`].

use serde::{Deserialize, Serialize};

use crate::task::{HealthStatus, StopCode, TaskStatus};
use crate::taskdef::TaskDefinition;
use crate::Timestamp;

/// Path prefix of the protocol.
pub const PREFIX: &str = "/agent/v1";

/// SigV4 service name agents sign with.
pub const SIGNING_NAME: &str = "berth-agent";

/// An agent introduces its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRegistration {
    /// The id from an earlier registration (kept across agent restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_id: Option<String>,
    /// The machine's hostname.
    pub hostname: String,
    /// CPU units offered to tasks (1024 per core).
    pub cpu: u32,
    /// Memory offered to tasks, MiB.
    pub memory: u32,
    /// The agent's version.
    pub agent_version: String,
}

/// The control plane's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRegistered {
    /// The host's id; send it again on re-registration.
    pub host_id: String,
    /// The task subnet of this host, e.g. `10.213.1.0/24`.
    pub subnet: String,
    /// The gateway (the host's bridge address), e.g. `10.213.1.1`.
    pub gateway: String,
    /// How often to heartbeat.
    pub heartbeat_seconds: u64,
}

/// Periodic liveness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// Ids of the tasks the agent is running.
    pub running_tasks: Vec<String>,
}

/// Per-container changes RunTask asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOverride {
    /// The container.
    pub name: String,
    /// Replaces the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Added to / replaces environment variables by name.
    #[serde(default)]
    pub environment: Vec<crate::taskdef::KeyValuePair>,
    /// Replaces cpu.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i64>,
    /// Replaces memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Replaces memoryReservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
}

/// One task the host must run (or stop).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAssignment {
    /// The task.
    pub task_arn: String,
    /// Its id (names the sandbox: netns, cgroup, directories).
    pub task_id: String,
    /// RUNNING or STOPPED.
    pub desired_status: TaskStatus,
    /// The full task definition revision.
    pub task_definition: TaskDefinition,
    /// Container overrides from RunTask.
    #[serde(default)]
    pub container_overrides: Vec<ContainerOverride>,
    /// Task CPU units (after overrides).
    pub cpu: u32,
    /// Task memory MiB (after overrides).
    pub memory: u32,
    /// The task's IP.
    pub ip: String,
    /// Prefix length of the host's task subnet.
    pub prefix_len: u8,
    /// The gateway.
    pub gateway: String,
    /// When StopTask was called: the reason, for the stop report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

/// The desired state of one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignments {
    /// The store revision this answer reflects; poll again with `after=`.
    pub revision: u64,
    /// Every task placed on the host that is not yet reported STOPPED.
    pub tasks: Vec<TaskAssignment>,
}

/// The state of one container, as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateReport {
    /// The container's name.
    pub name: String,
    /// PENDING, RUNNING, STOPPED.
    pub last_status: String,
    /// Exit code, once stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// e.g. "OutOfMemoryError: Container killed due to memory usage".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Manifest digest pulled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Runtime id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    /// Health check result.
    #[serde(default)]
    pub health_status: HealthStatus,
}

/// A task's state change, reported by its host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStateReport {
    /// The task's new lifecycle state.
    pub last_status: TaskStatus,
    /// Every container.
    #[serde(default)]
    pub containers: Vec<ContainerStateReport>,
    /// Pulls began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<Timestamp>,
    /// Pulls ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<Timestamp>,
    /// RUNNING reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    /// Essential container(s) exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<Timestamp>,
    /// Why it stopped (for stops the agent decided: exits, failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<StopCode>,
    /// e.g. "Essential container in task exited", "CannotPullContainerError: ...".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    /// Task health.
    #[serde(default)]
    pub health_status: HealthStatus,
}

/// Container output lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    /// The container.
    pub container: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When the line was read.
    pub timestamp: Timestamp,
    /// The line, without its newline.
    pub message: String,
}

/// A batch of log lines from one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogBatch {
    /// The lines, in order.
    pub entries: Vec<LogEntry>,
}
