//! RunTask's request: its shape (botocore's `RunTaskRequest`) and the checks
//! made before anything is placed: count, launch type and capacity
//! providers, lengths, tags, and the overrides against the task definition
//! and the Fargate size table ([`effective_task`]).

use std::collections::BTreeMap;

use berth_core::agent::ContainerOverride;
use berth_core::cluster::Cluster;
use berth_core::resources::{check_fargate_size, parse_cpu, parse_memory};
use berth_core::tags::{validate_tags, Tag};
use berth_core::taskdef::{KeyValuePair, TaskDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use berth_core::launch::{
    AwsVpcConfiguration, CapacityProviderStrategyItem, NetworkConfiguration,
};

use super::tasks::PLATFORM_VERSION;
use crate::EcsError;

/// RunTask starts at most this many tasks per call.
pub const MAX_RUN_COUNT: i64 = 10;

/// The ephemeral storage every task has unless its definition asks for more.
pub const DEFAULT_EPHEMERAL_GIB: i64 = 20;

/// ECS's limit on the JSON of RunTask's `overrides`.
pub const MAX_OVERRIDES_CHARS: usize = 8192;

/// One entry of `overrides.containerOverrides`, as the request gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOverrideInput {
    /// The container (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Replaces the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Added to / replaces environment variables by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Vec<KeyValuePair>>,
    /// Not supported yet (must be empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_files: Option<Vec<Value>>,
    /// Replaces cpu.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i64>,
    /// Replaces memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    /// Replaces memoryReservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    /// Not supported yet (must be empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<Vec<Value>>,
}

/// RunTask's `overrides`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskOverride {
    /// Per-container changes.
    #[serde(default)]
    pub container_overrides: Vec<ContainerOverrideInput>,
    /// Task cpu (units or `"1 vCPU"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Task memory (MiB or `"2 GB"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    /// Kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    /// `{"sizeInGiB": 21..200}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<Value>,
    /// Not supported (must be empty).
    #[serde(default)]
    pub inference_accelerator_overrides: Vec<Value>,
}

/// RunTask's request, as botocore's `RunTaskRequest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunTaskSpec {
    /// Cluster name or ARN (`default` when absent).
    #[serde(default)]
    pub cluster: Option<String>,
    /// `family`, `family:revision` or an ARN.
    #[serde(default)]
    pub task_definition: Option<String>,
    /// 1 to 10 (default 1).
    #[serde(default)]
    pub count: Option<i64>,
    /// FARGATE (default); EC2 and EXTERNAL are refused.
    #[serde(default)]
    pub launch_type: Option<String>,
    /// FARGATE / FARGATE_SPOT.
    #[serde(default)]
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    /// Container and task overrides.
    #[serde(default)]
    pub overrides: Option<TaskOverride>,
    /// Up to 128 characters.
    #[serde(default)]
    pub started_by: Option<String>,
    /// Default `family:FAMILY`.
    #[serde(default)]
    pub group: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// TASK_DEFINITION or NONE (SERVICE is refused).
    #[serde(default)]
    pub propagate_tags: Option<String>,
    /// Up to 64 characters: the same token returns the same tasks.
    #[serde(default)]
    pub client_token: Option<String>,
    /// Accepted; the first subnet is echoed in the attachment.
    #[serde(default)]
    pub network_configuration: Option<NetworkConfiguration>,
    /// Must be false.
    #[serde(default)]
    pub enable_execute_command: bool,
    /// Accepted and ignored.
    #[serde(default)]
    pub enable_ecs_managed_tags: bool,
    /// LATEST or 1.4.0.
    #[serde(default)]
    pub platform_version: Option<String>,
    /// Not supported on Fargate (must be empty).
    #[serde(default)]
    pub placement_constraints: Vec<Value>,
    /// Not supported on Fargate (must be empty).
    #[serde(default)]
    pub placement_strategy: Vec<Value>,
    /// Ignored.
    #[serde(default)]
    pub reference_id: Option<String>,
    /// Not supported (must be empty).
    #[serde(default)]
    pub volume_configurations: Vec<Value>,
}

pub(super) fn field_len(field: &str, v: Option<&str>, max: usize) -> Result<(), EcsError> {
    if let Some(s) = v {
        if s.chars().count() > max {
            return Err(EcsError::invalid(format!(
                "{field} is {} characters long; the limit is {max}",
                s.chars().count()
            )));
        }
    }
    Ok(())
}

pub(super) fn fingerprint(spec: &RunTaskSpec) -> String {
    let mut s = spec.clone();
    s.client_token = None;
    let bytes = serde_json::to_vec(&s).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// The size and container settings of one task after overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveTask {
    /// Task cpu units.
    pub cpu: u32,
    /// Task memory MiB.
    pub memory: u32,
    /// The container overrides, one per overridden container.
    pub container_overrides: Vec<ContainerOverride>,
    /// Per container of the definition: (cpu, memory, memoryReservation).
    pub containers: Vec<(i64, Option<i64>, Option<i64>)>,
    /// Ephemeral storage GiB.
    pub ephemeral_gib: i64,
    /// `overrides` as DescribeTasks shows it.
    pub overrides_view: Value,
}

/// Checks RunTask's overrides against the task definition and the Fargate
/// size table, and computes the task as it will run.
pub fn effective_task(
    td: &TaskDefinition,
    overrides: Option<&TaskOverride>,
) -> Result<EffectiveTask, EcsError> {
    let name = td.family_revision();
    let empty = TaskOverride::default();
    let o = overrides.unwrap_or(&empty);
    let raw = serde_json::to_string(o).unwrap_or_default();
    if raw.chars().count() > MAX_OVERRIDES_CHARS {
        return Err(EcsError::invalid(format!(
            "overrides is {} characters of JSON; the limit is {MAX_OVERRIDES_CHARS}",
            raw.chars().count()
        )));
    }
    if !o.inference_accelerator_overrides.is_empty() {
        return Err(EcsError::invalid(
            "overrides.inferenceAcceleratorOverrides is not supported on Fargate; remove it",
        ));
    }
    let td_cpu = td
        .input
        .cpu
        .as_deref()
        .map(parse_cpu)
        .transpose()
        .map_err(EcsError::client)?;
    let td_mem = td
        .input
        .memory
        .as_deref()
        .map(parse_memory)
        .transpose()
        .map_err(EcsError::client)?;
    let cpu = match o.cpu.as_deref() {
        Some(s) => parse_cpu(s).map_err(|e| EcsError::client(format!("overrides: {e}")))?,
        None => td_cpu.ok_or_else(|| {
            EcsError::client(format!(
                "task definition {name} has no task-level cpu; Fargate needs one (set overrides.cpu or register a revision with cpu)"
            ))
        })?,
    };
    let memory = match o.memory.as_deref() {
        Some(s) => parse_memory(s).map_err(|e| EcsError::client(format!("overrides: {e}")))?,
        None => td_mem.ok_or_else(|| {
            EcsError::client(format!(
                "task definition {name} has no task-level memory; Fargate needs one (set overrides.memory or register a revision with memory)"
            ))
        })?,
    };
    check_fargate_size(cpu, memory).map_err(|e| {
        if o.cpu.is_some() || o.memory.is_some() {
            EcsError::client(format!("overrides: {e}"))
        } else {
            EcsError::client(format!("task definition {name}: {e}"))
        }
    })?;

    let mut ephemeral_gib = td
        .input
        .ephemeral_storage
        .as_ref()
        .and_then(|e| e.get("sizeInGiB"))
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EPHEMERAL_GIB);
    if let Some(es) = &o.ephemeral_storage {
        let gib = es.get("sizeInGiB").and_then(Value::as_i64).unwrap_or(0);
        if !(21..=200).contains(&gib) {
            return Err(EcsError::client(format!(
                "overrides.ephemeralStorage.sizeInGiB {gib} is out of range (use 21 to 200)"
            )));
        }
        ephemeral_gib = gib;
    }

    let names: Vec<&str> = td
        .input
        .container_definitions
        .iter()
        .map(|c| c.name.as_deref().unwrap_or(""))
        .collect();
    let mut by_name: BTreeMap<&str, &ContainerOverrideInput> = BTreeMap::new();
    for (i, co) in o.container_overrides.iter().enumerate() {
        let Some(n) = co.name.as_deref() else {
            return Err(EcsError::invalid(format!(
                "overrides.containerOverrides[{i}].name is required"
            )));
        };
        if !names.contains(&n) {
            return Err(EcsError::invalid(format!(
                "overrides.containerOverrides: container {n:?} is not in task definition {name} (its containers: {})",
                names.join(", ")
            )));
        }
        if by_name.insert(n, co).is_some() {
            return Err(EcsError::invalid(format!(
                "overrides.containerOverrides names container {n} twice"
            )));
        }
        if co.environment_files.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(EcsError::invalid(format!(
                "overrides: container {n}: environmentFiles is not supported by Berth yet; pass variables in environment"
            )));
        }
        if co
            .resource_requirements
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        {
            return Err(EcsError::invalid(format!(
                "overrides: container {n}: resourceRequirements (GPUs) is not supported on Fargate"
            )));
        }
        if co.cpu.is_some_and(|c| c < 0) {
            return Err(EcsError::invalid(format!(
                "overrides: container {n}: cpu must be 0 or more"
            )));
        }
        if co.memory.is_some_and(|m| m < 6) {
            return Err(EcsError::invalid(format!(
                "overrides: container {n}: memory must be at least 6 MiB"
            )));
        }
        if co.memory_reservation.is_some_and(|m| m < 4) {
            return Err(EcsError::invalid(format!(
                "overrides: container {n}: memoryReservation must be at least 4 MiB"
            )));
        }
        if co.environment.iter().flatten().any(|kv| kv.name.is_none()) {
            return Err(EcsError::invalid(format!(
                "overrides: container {n}: every environment variable needs a name"
            )));
        }
    }

    let mut containers = Vec::new();
    let mut cpu_sum = 0i64;
    let mut reserved_sum = 0i64;
    let mut views = Vec::new();
    let mut container_overrides = Vec::new();
    for c in &td.input.container_definitions {
        let n = c.name.as_deref().unwrap_or("");
        let co = by_name.get(n);
        let c_cpu = co.and_then(|o| o.cpu).unwrap_or(c.cpu);
        let c_mem = co.and_then(|o| o.memory).or(c.memory);
        let c_res = co
            .and_then(|o| o.memory_reservation)
            .or(c.memory_reservation);
        if let (Some(m), Some(r)) = (c_mem, c_res) {
            if r > m {
                return Err(EcsError::client(format!(
                    "overrides: container {n}: memoryReservation {r} is greater than memory {m}"
                )));
            }
        }
        if let Some(m) = c_mem {
            if m > i64::from(memory) {
                return Err(EcsError::client(format!(
                    "overrides: container {n}: memory {m} MiB exceeds the task's memory {memory}"
                )));
            }
        }
        cpu_sum += c_cpu;
        reserved_sum += c_res.or(c_mem).unwrap_or(0);
        containers.push((c_cpu, c_mem, c_res));
        match co {
            Some(o) => {
                views.push(serde_json::to_value(o).unwrap_or_default());
                container_overrides.push(ContainerOverride {
                    name: n.to_string(),
                    command: o.command.clone(),
                    environment: o.environment.clone().unwrap_or_default(),
                    cpu: o.cpu,
                    memory: o.memory,
                    memory_reservation: o.memory_reservation,
                });
            }
            None => views.push(json!({"name": n})),
        }
    }
    if cpu_sum > i64::from(cpu) {
        return Err(EcsError::client(format!(
            "the containers reserve {cpu_sum} cpu units in total, more than the task's {cpu}; lower the containers' cpu or raise the task's"
        )));
    }
    if reserved_sum > i64::from(memory) {
        return Err(EcsError::client(format!(
            "the containers reserve {reserved_sum} MiB of memory in total, more than the task's {memory}; lower the containers' memory or raise the task's"
        )));
    }

    let mut overrides_view = json!({
        "containerOverrides": views,
        "inferenceAcceleratorOverrides": [],
    });
    for (k, v) in [
        ("cpu", o.cpu.as_ref().map(|_| cpu.to_string())),
        ("memory", o.memory.as_ref().map(|_| memory.to_string())),
        ("executionRoleArn", o.execution_role_arn.clone()),
        ("taskRoleArn", o.task_role_arn.clone()),
    ] {
        if let Some(v) = v {
            overrides_view[k] = json!(v);
        }
    }
    if let Some(es) = &o.ephemeral_storage {
        overrides_view["ephemeralStorage"] = es.clone();
    }
    Ok(EffectiveTask {
        cpu,
        memory,
        container_overrides,
        containers,
        ephemeral_gib,
        overrides_view,
    })
}

/// The capacity provider a RunTask runs on: FARGATE unless a strategy (the
/// request's, else the cluster's default) says otherwise.
pub(super) fn capacity_provider(spec: &RunTaskSpec, cluster: &Cluster) -> Result<String, EcsError> {
    if spec.launch_type.is_some() && !spec.capacity_provider_strategy.is_empty() {
        return Err(EcsError::invalid(
            "Specifying both a launchType and capacityProviderStrategy is not supported; use one",
        ));
    }
    match spec.launch_type.as_deref() {
        None | Some("FARGATE") => {}
        Some(lt @ ("EC2" | "EXTERNAL" | "MANAGED_INSTANCES")) => {
            return Err(EcsError::invalid(format!(
                "launch type {lt} is not supported; use FARGATE"
            )))
        }
        Some(other) => {
            return Err(EcsError::invalid(format!(
                "launchType {other:?} is not valid; use FARGATE"
            )))
        }
    }
    let strategy: Vec<CapacityProviderStrategyItem> =
        if spec.capacity_provider_strategy.is_empty() && spec.launch_type.is_none() {
            cluster
                .default_capacity_provider_strategy
                .iter()
                .filter_map(|v| serde_json::from_value(v.clone()).ok())
                .collect()
        } else {
            spec.capacity_provider_strategy.clone()
        };
    if strategy.len() > 20 {
        return Err(EcsError::invalid(
            "capacityProviderStrategy may hold at most 20 items",
        ));
    }
    for item in &strategy {
        match item.capacity_provider.as_deref() {
            Some("FARGATE" | "FARGATE_SPOT") => {}
            other => {
                return Err(EcsError::invalid(format!(
                    "capacityProviderStrategy: capacity provider {:?} is not valid; use FARGATE or FARGATE_SPOT",
                    other.unwrap_or("")
                )))
            }
        }
        if item.weight.is_some_and(|w| !(0..=1000).contains(&w))
            || item.base.is_some_and(|b| !(0..=100_000).contains(&b))
        {
            return Err(EcsError::invalid(
                "capacityProviderStrategy: weight must be 0 to 1000 and base 0 to 100000",
            ));
        }
    }
    // The provider with a base takes the first tasks; otherwise the
    // heaviest weight (the first on a tie).
    let chosen = strategy
        .iter()
        .find(|i| i.base.unwrap_or(0) > 0)
        .or_else(|| {
            strategy
                .iter()
                .filter(|i| i.weight.unwrap_or(0) > 0)
                .max_by_key(|i| i.weight.unwrap_or(0))
        })
        .or(strategy.first())
        .and_then(|i| i.capacity_provider.clone());
    Ok(chosen.unwrap_or_else(|| "FARGATE".to_string()))
}

pub(super) fn validate_spec(spec: &RunTaskSpec) -> Result<usize, EcsError> {
    let count = spec.count.unwrap_or(1);
    if !(1..=MAX_RUN_COUNT).contains(&count) {
        return Err(EcsError::invalid(format!(
            "count {count} is out of range; RunTask starts 1 to {MAX_RUN_COUNT} tasks per call"
        )));
    }
    field_len("startedBy", spec.started_by.as_deref(), 128)?;
    field_len("group", spec.group.as_deref(), 255)?;
    if let Some(t) = spec.client_token.as_deref() {
        if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| (33..=126).contains(&b)) {
            return Err(EcsError::invalid(
                "clientToken must be 1 to 64 printable ASCII characters (33-126)",
            ));
        }
    }
    validate_tags(&spec.tags, 0)?;
    match spec.propagate_tags.as_deref() {
        None | Some("NONE" | "TASK_DEFINITION") => {}
        Some("SERVICE") => {
            return Err(EcsError::invalid(
                "propagateTags SERVICE applies to a service's tasks only; use TASK_DEFINITION or NONE with RunTask",
            ))
        }
        Some(o) => {
            return Err(EcsError::invalid(format!(
                "propagateTags {o:?} is not valid; use TASK_DEFINITION or NONE"
            )))
        }
    }
    if spec.enable_execute_command {
        return Err(EcsError::invalid(
            "enableExecuteCommand is not supported by Berth yet; omit it or pass false",
        ));
    }
    match spec.platform_version.as_deref() {
        None | Some("LATEST" | PLATFORM_VERSION) => {}
        Some(v) => {
            return Err(EcsError::invalid(format!(
                "platformVersion {v:?} is not available; use LATEST or {PLATFORM_VERSION}"
            )))
        }
    }
    if !spec.placement_constraints.is_empty() || !spec.placement_strategy.is_empty() {
        return Err(EcsError::invalid(
            "task placement constraints and strategies are not supported on Fargate; remove placementConstraints and placementStrategy",
        ));
    }
    if !spec.volume_configurations.is_empty() {
        return Err(EcsError::invalid(
            "volumeConfigurations (EBS volumes) are not supported by Berth; remove them",
        ));
    }
    if let Some(n) = &spec.network_configuration {
        n.validate()?;
    }
    usize::try_from(count).map_err(|_| EcsError::invalid("count is out of range"))
}
