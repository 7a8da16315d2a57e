//! RunTask, StopTask, DescribeTasks, ListTasks.
//!
//! RunTask validates the request against the task definition and the Fargate
//! size table, places each task with the pure [`crate::scheduler`] over a
//! view of the fleet, and writes every task, its index entry, its placement
//! (the host's desired state) and the client token in **one** transaction,
//! guarded by the allocation keys of the hosts it read. The request's shape
//! and checks live in [`super::run_spec`]. Hosts then learn of
//! their tasks through the agent protocol ([`super::agent`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use berth_core::agent::ContainerOverride;
use berth_core::arn::{Arn, EcsResource};
use berth_core::cluster::Cluster;
use berth_core::tags::{merge_tags, validate_tags, Tag};
use berth_core::task::{
    Attachment, Container, Detail, HealthStatus, NetworkInterface, StopCode, Task, TaskStatus,
};
use berth_core::taskdef::{TaskDefinition, TaskDefinitionStatus};
use berth_core::Timestamp;
use berth_store::{Compare, Op, Txn};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use super::run_spec::{
    effective_task, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverrideInput,
    EffectiveTask, NetworkConfiguration, RunTaskSpec, TaskOverride, DEFAULT_EPHEMERAL_GIB,
    MAX_OVERRIDES_CHARS, MAX_RUN_COUNT,
};

use super::hosts::{AllocRecord, HostRecord};
use super::run_spec::{capacity_provider, field_len, fingerprint, validate_spec};
use super::{backoff, decode, encode, Ecs, TaskDefinitionRef, MAX_RETRIES};
use crate::ids::{self, IdSource};
use crate::page::{page_size, paginate, resume_after};
use crate::scheduler::{self, Demand, HostView};
use crate::{keys, EcsError};

/// The platform version every task reports.
pub const PLATFORM_VERSION: &str = "1.4.0";

/// The subnet a task's attachment names when the request gives none.
pub const DEFAULT_SUBNET: &str = "subnet-berth-default";

/// The stoppedReason of a StopTask without a reason.
pub const DEFAULT_STOP_REASON: &str = "Task stopped by user";

/// An ECS `Failure`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The resource concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// `RESOURCE:MEMORY`, `MISSING`, ...
    pub reason: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What RunTask answers.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTaskOutput {
    /// The tasks started.
    pub tasks: Vec<Task>,
    /// One entry per task that could not be placed.
    pub failures: Vec<Failure>,
}

/// A task as the store keeps it: the ECS view plus what the agent needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    /// What DescribeTasks shows.
    pub task: Task,
    /// The host it was placed on.
    pub host_id: String,
    /// Task cpu units after overrides.
    pub cpu: u32,
    /// Task memory MiB after overrides.
    pub memory: u32,
    /// The container overrides, validated.
    #[serde(default)]
    pub container_overrides: Vec<ContainerOverride>,
    /// The load balancer targets it is registered as (tasks of services
    /// with `loadBalancers`), until they are deregistered and drained.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lb_targets: Vec<super::lb::LbTarget>,
    /// Deregistered from its target groups: its host is told to stop it
    /// once this instant passes (the longest deregistration delay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_until: Option<Timestamp>,
}

/// Where a task id lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskIndex {
    /// The cluster name.
    pub cluster: String,
    /// The host.
    pub host_id: String,
}

/// A task a host must run (or stop): the host's desired state, one key each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacementRecord {
    /// The cluster name.
    pub cluster: String,
    /// The task id.
    pub task_id: String,
    /// CPU units held.
    pub cpu: u32,
    /// Memory MiB held.
    pub memory: u32,
    /// Last octet of the task's address.
    pub octet: u8,
    /// RUNNING or STOPPED.
    pub desired_status: TaskStatus,
}

/// What a RunTask client token started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTokenRecord {
    /// SHA-256 of the request without the token.
    pub fingerprint: String,
    /// The cluster name.
    pub cluster: String,
    /// The tasks started.
    pub task_ids: Vec<String>,
    /// The failures answered.
    pub failures: Vec<Failure>,
}

/// ListTasks' filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Cluster name or ARN (`default` when absent).
    pub cluster: Option<String>,
    /// Task definition family.
    pub family: Option<String>,
    /// startedBy.
    pub started_by: Option<String>,
    /// Service name (group `service:NAME`).
    pub service_name: Option<String>,
    /// RUNNING (default), PENDING or STOPPED.
    pub desired_status: Option<String>,
    /// FARGATE, EC2, EXTERNAL, MANAGED_INSTANCES.
    pub launch_type: Option<String>,
    /// 1 to 100.
    pub max_results: Option<i64>,
    /// From the last page.
    pub next_token: Option<String>,
}

/// The task ARN `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`.
pub fn task_arn(scope: &berth_core::Scope, cluster: &str, id: &str) -> String {
    format!(
        "arn:aws:ecs:{}:{}:task/{cluster}/{id}",
        scope.region, scope.account
    )
}

fn is_task_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether `s` can be a task id (ASCII letters and digits, at most 64):
/// Berth makes 32 lowercase hex digits.
pub fn valid_task_id(s: &str) -> bool {
    is_task_id(s)
}

/// Everything RunTask decided about one task, before it is written.
pub(super) struct NewTask {
    /// The task.
    pub(super) record: TaskRecord,
    /// Its placement.
    pub(super) placement: PlacementRecord,
}

/// What a launch runs, settled before placing ([`Ecs::launch`]).
pub(super) struct Launch {
    /// The ACTIVE cluster.
    pub(super) cluster: Cluster,
    /// FARGATE or FARGATE_SPOT.
    pub(super) provider: String,
    /// The revision.
    pub(super) td: TaskDefinition,
    /// Its size and containers after overrides.
    pub(super) eff: EffectiveTask,
    /// The tasks' tags.
    pub(super) tags: Vec<Tag>,
}

/// The ids of the tasks of one launch, made once so that a retried write
/// reuses them (nothing was written).
pub(super) struct NewTaskIds {
    task: Vec<u128>,
    extra: Vec<Vec<u128>>,
}

impl NewTaskIds {
    pub(super) fn make(ids: &dyn IdSource, count: usize, td: &TaskDefinition) -> Self {
        let task = (0..count).map(|_| ids.next_u128()).collect();
        let extra = (0..count)
            .map(|_| {
                let n = 2 + td.input.container_definitions.len();
                (0..n).map(|_| ids.next_u128()).collect()
            })
            .collect();
        Self { task, extra }
    }
}

/// Tasks placed on the fleet, not yet written.
#[derive(Default)]
pub(super) struct Placed {
    /// The tasks placed.
    pub(super) tasks: Vec<NewTask>,
    /// One per task that did not fit.
    pub(super) failures: Vec<Failure>,
    /// Tasks placed per host.
    touched: BTreeMap<String, u64>,
}

impl Placed {
    /// Adds the writes of the placed tasks (task, index entry, placement)
    /// and the alloc guards of the hosts used to `txn`.
    pub(super) fn write(&self, mut txn: Txn, fleet: &Fleet) -> Txn {
        for (host_id, n) in &self.touched {
            let (rev, rec) = fleet.alloc.get(host_id).cloned().unwrap_or_default();
            let key = keys::host_alloc(host_id);
            txn = txn
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Put(
                    key,
                    encode(&AllocRecord {
                        placements: rec.placements + n,
                    }),
                ));
        }
        for t in &self.tasks {
            let id = t.record.task.id();
            let cluster = &t.placement.cluster;
            txn = txn
                .then(Op::Put(keys::task(cluster, id), encode(&t.record)))
                .then(Op::Put(
                    keys::task_index(id),
                    encode(&TaskIndex {
                        cluster: cluster.clone(),
                        host_id: t.record.host_id.clone(),
                    }),
                ))
                .then(Op::Put(
                    keys::placement(&t.record.host_id, id),
                    encode(&t.placement),
                ));
        }
        txn
    }
}

/// The fleet as RunTask reads it.
pub(super) struct Fleet {
    views: Vec<HostView>,
    hosts: Vec<HostRecord>,
    alloc: HashMap<String, (u64, AllocRecord)>,
}

impl Ecs {
    /// Reads hosts and placements for a placement decision. The alloc keys
    /// are read first: a RunTask elsewhere that adds a placement bumps them,
    /// so guarding the write on them detects it.
    pub(super) async fn fleet(&self, now: Timestamp) -> Result<Fleet, EcsError> {
        let alloc_list = self.store.list(keys::HOST_ALLOC).await?;
        let mut alloc = HashMap::new();
        for kv in &alloc_list.items {
            let id = kv.key.trim_start_matches(keys::HOST_ALLOC).to_string();
            alloc.insert(id, (kv.mod_revision, decode::<AllocRecord>(kv)?));
        }
        let hosts = self.hosts().await?;
        let placements = self.store.list(keys::PLACEMENTS).await?;
        let mut views: Vec<HostView> = hosts
            .iter()
            .map(|h| HostView {
                host_id: h.host_id.clone(),
                cpu: h.cpu,
                memory: h.memory,
                used_cpu: 0,
                used_memory: 0,
                used_octets: BTreeSet::new(),
                live: scheduler::is_live(h.last_heartbeat, now, self.heartbeat_seconds),
            })
            .collect();
        for kv in &placements.items {
            let p: PlacementRecord = decode(kv)?;
            let host_id = kv
                .key
                .trim_start_matches(keys::PLACEMENTS)
                .split('/')
                .next()
                .unwrap_or("");
            if let Some(v) = views.iter_mut().find(|v| v.host_id == host_id) {
                v.commit(
                    Demand {
                        cpu: p.cpu,
                        memory: p.memory,
                    },
                    p.octet,
                );
            }
        }
        Ok(Fleet {
            views,
            hosts,
            alloc,
        })
    }

    /// Reads a task record by cluster and id.
    pub async fn task_record(
        &self,
        cluster: &str,
        id: &str,
    ) -> Result<Option<(TaskRecord, u64)>, EcsError> {
        if !is_task_id(id) {
            return Ok(None);
        }
        match self.store.get(&keys::task(cluster, id)).await? {
            Some(kv) => Ok(Some((decode(&kv)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    /// Finds a task by id alone (the agent protocol and the logs endpoint).
    pub async fn task_by_id(&self, id: &str) -> Result<(TaskRecord, TaskIndex), EcsError> {
        if !is_task_id(id) {
            return Err(EcsError::TaskNotFound(id.to_string()));
        }
        let Some(kv) = self.store.get(&keys::task_index(id)).await? else {
            return Err(EcsError::TaskNotFound(id.to_string()));
        };
        let index: TaskIndex = decode(&kv)?;
        match self.task_record(&index.cluster, id).await? {
            Some((rec, _)) => Ok((rec, index)),
            None => Err(EcsError::TaskNotFound(id.to_string())),
        }
    }

    /// The task id a request names (an id or a task ARN of `cluster`), or
    /// `None` when it cannot name a task of that cluster.
    fn task_id_in(&self, cluster: &str, s: &str) -> Option<String> {
        self.resource_in_cluster("task", cluster, s, is_task_id)
    }

    /// RunTask.
    pub async fn run_task(
        &self,
        spec: RunTaskSpec,
        ids: &dyn IdSource,
        now: Timestamp,
    ) -> Result<RunTaskOutput, EcsError> {
        let count = validate_spec(&spec)?;
        let cluster = self
            .active_cluster(spec.cluster.as_deref().unwrap_or("default"))
            .await?;
        let fp = fingerprint(&spec);
        if let Some(token) = spec.client_token.as_deref() {
            if let Some(out) = self.replay_token(token, &fp).await? {
                return Ok(out);
            }
        }
        let launch = self.launch(&spec, cluster, true).await?;
        let new_ids = NewTaskIds::make(ids, count, &launch.td);

        let lock_key = keys::HOST_ALLOC.to_string();
        let _guard = self.lock(&lock_key).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
                if let Some(token) = spec.client_token.as_deref() {
                    if let Some(out) = self.replay_token(token, &fp).await? {
                        return Ok(out);
                    }
                }
            }
            let mut fleet = self.fleet(now).await?;
            let placed = self.place_tasks(&spec, &launch, &mut fleet, &new_ids, now);
            if placed.tasks.is_empty() && spec.client_token.is_none() {
                return Ok(RunTaskOutput {
                    tasks: Vec::new(),
                    failures: placed.failures,
                });
            }
            let mut txn = Txn::new();
            if let Some(token) = spec.client_token.as_deref() {
                let key = keys::client_token(token);
                let rec = ClientTokenRecord {
                    fingerprint: fp.clone(),
                    cluster: launch.cluster.cluster_name.clone(),
                    task_ids: placed
                        .tasks
                        .iter()
                        .map(|t| t.record.task.id().to_string())
                        .collect(),
                    failures: placed.failures.clone(),
                };
                txn = txn
                    .when(Compare::ModRevision(key.clone(), 0))
                    .then(Op::Put(key, encode(&rec)));
            }
            txn = placed.write(txn, &fleet);
            if self.store.txn(txn).await?.succeeded {
                return Ok(RunTaskOutput {
                    tasks: placed.tasks.into_iter().map(|t| t.record.task).collect(),
                    failures: placed.failures,
                });
            }
        }
        Err(EcsError::Contention(lock_key))
    }

    /// Settles what a launch of `spec` runs: the task definition (ACTIVE
    /// when `require_active`; a service's existing deployments may keep an
    /// INACTIVE one), its size after overrides, the capacity provider and
    /// the tags.
    pub(super) async fn launch(
        &self,
        spec: &RunTaskSpec,
        cluster: Cluster,
        require_active: bool,
    ) -> Result<Launch, EcsError> {
        let provider = capacity_provider(spec, &cluster)?;
        let td_name = spec
            .task_definition
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| EcsError::invalid("taskDefinition is required"))?;
        let (td_rec, _) = self
            .get_task_definition(&TaskDefinitionRef::parse(td_name)?)
            .await?;
        let td = td_rec.task_definition;
        let usable = if require_active {
            td.status == TaskDefinitionStatus::Active
        } else {
            td.status != TaskDefinitionStatus::DeleteInProgress
        };
        if !usable {
            return Err(EcsError::client(format!(
                "TaskDefinition is inactive: {} is {}; run an ACTIVE revision (register a new one or name the family for its latest)",
                td.family_revision(),
                td.status.as_str()
            )));
        }
        check_fargate_compatible(&td)?;
        let eff = effective_task(&td, spec.overrides.as_ref())?;
        let mut tags = Vec::new();
        if spec.propagate_tags.as_deref() == Some("TASK_DEFINITION") {
            tags.clone_from(&td_rec.tags);
        }
        merge_tags(&mut tags, &spec.tags);
        validate_tags(&tags, 0)?;
        Ok(Launch {
            cluster,
            provider,
            td,
            eff,
            tags,
        })
    }

    /// Places `ids.count()` tasks of `launch` on the fleet (pure given the
    /// fleet view): the tasks that fit, a failure for each that does not.
    pub(super) fn place_tasks(
        &self,
        spec: &RunTaskSpec,
        launch: &Launch,
        fleet: &mut Fleet,
        ids: &NewTaskIds,
        now: Timestamp,
    ) -> Placed {
        let demand = Demand {
            cpu: launch.eff.cpu,
            memory: launch.eff.memory,
        };
        let mut placed = Placed::default();
        for (id, extra) in ids.task.iter().zip(&ids.extra) {
            match scheduler::place(&fleet.views, demand) {
                Ok(p) => {
                    fleet.views[p.index].commit(demand, p.octet);
                    *placed.touched.entry(p.host_id.clone()).or_default() += 1;
                    let host = &fleet.hosts[p.index];
                    placed.tasks.push(self.new_task(
                        NewTaskInput {
                            spec,
                            cluster: &launch.cluster,
                            td: &launch.td,
                            eff: &launch.eff,
                            tags: &launch.tags,
                            provider: &launch.provider,
                            host,
                            octet: p.octet,
                            id: *id,
                            extra,
                        },
                        now,
                    ));
                }
                Err(f) => placed.failures.push(Failure {
                    arn: Some(launch.td.task_definition_arn.clone()),
                    reason: f.reason().to_string(),
                    detail: Some(f.to_string()),
                }),
            }
        }
        placed
    }

    /// The answer of an earlier RunTask with this token, if there was one.
    async fn replay_token(&self, token: &str, fp: &str) -> Result<Option<RunTaskOutput>, EcsError> {
        let Some(kv) = self.store.get(&keys::client_token(token)).await? else {
            return Ok(None);
        };
        let rec: ClientTokenRecord = decode(&kv)?;
        let mut tasks = Vec::new();
        for id in &rec.task_ids {
            if let Some((t, _)) = self.task_record(&rec.cluster, id).await? {
                tasks.push(t.task);
            }
        }
        if rec.fingerprint != fp {
            return Err(EcsError::Conflict {
                message: format!(
                    "clientToken {token:?} was already used by a RunTask with different parameters; use a new token"
                ),
                resource_ids: tasks.into_iter().map(|t| t.task_arn).collect(),
            });
        }
        Ok(Some(RunTaskOutput {
            tasks,
            failures: rec.failures,
        }))
    }

    fn new_task(&self, i: NewTaskInput<'_>, now: Timestamp) -> NewTask {
        let cluster = &i.cluster.cluster_name;
        let id = ids::hex32(i.id);
        let arn = task_arn(&self.scope, cluster, &id);
        let ip = i.host.address(i.octet);
        let attachment_id = ids::uuid(i.extra[0]);
        let subnet = i
            .spec
            .network_configuration
            .as_ref()
            .and_then(|n| n.first_subnet())
            .unwrap_or(DEFAULT_SUBNET)
            .to_string();
        let mac = {
            let o: Vec<u8> = ip.split('.').filter_map(|p| p.parse().ok()).collect();
            // Locally administered, derived from the address: unique per host.
            format!(
                "0a:58:{:02x}:{:02x}:{:02x}:{:02x}",
                o.first().copied().unwrap_or(0),
                o.get(1).copied().unwrap_or(0),
                o.get(2).copied().unwrap_or(0),
                o.get(3).copied().unwrap_or(0)
            )
        };
        let detail = |name: &str, value: String| Detail {
            name: name.to_string(),
            value,
        };
        let attachment = Attachment {
            id: attachment_id.clone(),
            kind: "ElasticNetworkInterface".to_string(),
            status: "PRECREATED".to_string(),
            details: vec![
                detail("subnetId", subnet),
                detail("networkInterfaceId", ids::eni(i.extra[1])),
                detail("macAddress", mac),
                detail(
                    "privateDnsName",
                    format!("ip-{}.ec2.internal", ip.replace('.', "-")),
                ),
                detail("privateIPv4Address", ip.clone()),
            ],
        };
        let containers =
            i.td.input
                .container_definitions
                .iter()
                .zip(&i.eff.containers)
                .enumerate()
                .map(|(n, (c, (cpu, mem, res)))| Container {
                    container_arn: format!(
                        "arn:aws:ecs:{}:{}:container/{cluster}/{id}/{}",
                        self.scope.region,
                        self.scope.account,
                        ids::uuid(i.extra[2 + n])
                    ),
                    task_arn: arn.clone(),
                    name: c.name.clone().unwrap_or_default(),
                    image: c.image.clone().unwrap_or_default(),
                    image_digest: None,
                    runtime_id: None,
                    last_status: "PENDING".to_string(),
                    exit_code: None,
                    reason: None,
                    network_bindings: Vec::new(),
                    network_interfaces: vec![NetworkInterface {
                        attachment_id: attachment_id.clone(),
                        private_ipv4_address: ip.clone(),
                    }],
                    health_status: HealthStatus::Unknown,
                    cpu: cpu.to_string(),
                    memory: mem.map(|m| m.to_string()),
                    memory_reservation: res.map(|m| m.to_string()),
                })
                .collect();
        let task = Task {
            task_arn: arn,
            cluster_arn: i.cluster.cluster_arn.clone(),
            task_definition_arn: i.td.task_definition_arn.clone(),
            container_instance_arn: None,
            last_status: TaskStatus::Provisioning,
            desired_status: TaskStatus::Running,
            launch_type: "FARGATE".to_string(),
            capacity_provider_name: Some(i.provider.to_string()),
            platform_version: PLATFORM_VERSION.to_string(),
            platform_family: "Linux".to_string(),
            cpu: i.eff.cpu.to_string(),
            memory: i.eff.memory.to_string(),
            containers,
            attachments: vec![attachment],
            overrides: i.eff.overrides_view.clone(),
            started_by: i.spec.started_by.clone(),
            group: Some(
                i.spec
                    .group
                    .clone()
                    .unwrap_or_else(|| format!("family:{}", i.td.input.family)),
            ),
            tags: i.tags.to_vec(),
            created_at: now,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            stopping_at: None,
            execution_stopped_at: None,
            stopped_at: None,
            stop_code: None,
            stopped_reason: None,
            health_status: HealthStatus::Unknown,
            connectivity: "CONNECTED".to_string(),
            connectivity_at: Some(now),
            availability_zone: Some(format!("{}a", self.scope.region)),
            version: 1,
            ephemeral_storage: json!({"sizeInGiB": i.eff.ephemeral_gib}),
            enable_execute_command: false,
        };
        NewTask {
            placement: PlacementRecord {
                cluster: cluster.clone(),
                task_id: id,
                cpu: i.eff.cpu,
                memory: i.eff.memory,
                octet: i.octet,
                desired_status: TaskStatus::Running,
            },
            record: TaskRecord {
                task,
                host_id: i.host.host_id.clone(),
                cpu: i.eff.cpu,
                memory: i.eff.memory,
                container_overrides: i.eff.container_overrides.clone(),
                lb_targets: Vec::new(),
                drain_until: None,
            },
        }
    }

    /// StopTask: asks the task's host to stop it. Idempotent: a task whose
    /// desired status is already STOPPED is returned unchanged.
    pub async fn stop_task(
        &self,
        cluster: Option<&str>,
        task: &str,
        reason: Option<&str>,
        now: Timestamp,
    ) -> Result<Task, EcsError> {
        field_len("reason", reason, 255)?;
        let cluster = self.active_cluster(cluster.unwrap_or("default")).await?;
        let not_found = || EcsError::invalid("The referenced task was not found.");
        let id = self
            .task_id_in(&cluster.cluster_name, task)
            .ok_or_else(not_found)?;
        let key = keys::task(&cluster.cluster_name, &id);
        let _guard = self.lock(&key).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (mut rec, rev) = self
                .task_record(&cluster.cluster_name, &id)
                .await?
                .ok_or_else(not_found)?;
            if rec.task.desired_status == TaskStatus::Stopped {
                return Ok(rec.task);
            }
            let t = &mut rec.task;
            t.desired_status = TaskStatus::Stopped;
            t.stopping_at.get_or_insert(now);
            t.stop_code = Some(StopCode::UserInitiated);
            t.stopped_reason = Some(
                reason
                    .filter(|r| !r.is_empty())
                    .unwrap_or(DEFAULT_STOP_REASON)
                    .to_string(),
            );
            t.version += 1;
            // Behind a load balancer: drain first; the service reconciler
            // tells the host to stop the task once the drain is over.
            let (guards, ops, stop_now) = self.deregister_task(&mut rec, now).await?;
            let mut txn = guards.into_iter().fold(Txn::new(), Txn::when);
            txn = ops.into_iter().fold(txn, Txn::then);
            txn = txn
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Put(key.clone(), encode(&rec)));
            let pkey = keys::placement(&rec.host_id, &id);
            if !stop_now {
                // Not yet: the placement stays RUNNING while it drains.
            } else if let Some(kv) = self.store.get(&pkey).await? {
                let mut p: PlacementRecord = decode(&kv)?;
                p.desired_status = TaskStatus::Stopped;
                txn = txn
                    .when(Compare::ModRevision(pkey.clone(), kv.mod_revision))
                    .then(Op::Put(pkey, encode(&p)));
            }
            if self.store.txn(txn).await?.succeeded {
                return Ok(rec.task);
            }
        }
        Err(EcsError::Contention(key))
    }

    /// DescribeTasks: the tasks found (tags only with `include_tags`) and a
    /// MISSING failure for each that is not.
    pub async fn describe_tasks(
        &self,
        cluster: Option<&str>,
        tasks: &[String],
        include_tags: bool,
    ) -> Result<(Vec<Task>, Vec<Failure>), EcsError> {
        if tasks.is_empty() || tasks.len() > 100 {
            return Err(EcsError::invalid(format!(
                "tasks has {} entries; describe 1 to 100 tasks per call",
                tasks.len()
            )));
        }
        let cluster = self.active_cluster(cluster.unwrap_or("default")).await?;
        let name = &cluster.cluster_name;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for t in tasks {
            let rec = match self.task_id_in(name, t) {
                Some(id) => self.task_record(name, &id).await?,
                None => None,
            };
            match rec {
                Some((mut rec, _)) => {
                    if !include_tags {
                        rec.task.tags.clear();
                    }
                    found.push(rec.task);
                }
                None => failures.push(Failure {
                    arn: Some(if t.starts_with("arn:") {
                        t.clone()
                    } else {
                        task_arn(&self.scope, name, t)
                    }),
                    reason: "MISSING".to_string(),
                    detail: None,
                }),
            }
        }
        Ok((found, failures))
    }

    /// ListTasks: task ARNs in creation order.
    pub async fn list_tasks(
        &self,
        f: &TaskFilter,
    ) -> Result<(Vec<String>, Option<String>), EcsError> {
        let size = page_size(f.max_results, 100)?;
        let after = resume_after(f.next_token.as_deref())?;
        if f.started_by.is_some() && (f.family.is_some() || f.service_name.is_some()) {
            return Err(EcsError::invalid(
                "startedBy must be the only filter: it cannot be combined with family or serviceName",
            ));
        }
        let desired = match f.desired_status.as_deref() {
            None | Some("RUNNING") => Some(TaskStatus::Running),
            Some("STOPPED") => Some(TaskStatus::Stopped),
            // ECS never sets a desired status of PENDING.
            Some("PENDING") => None,
            Some(o) => {
                return Err(EcsError::invalid(format!(
                    "desiredStatus {o:?} is not valid (use RUNNING, PENDING or STOPPED)"
                )))
            }
        };
        let fargate = match f.launch_type.as_deref() {
            None | Some("FARGATE") => true,
            Some("EC2" | "EXTERNAL" | "MANAGED_INSTANCES") => false,
            Some(o) => {
                return Err(EcsError::invalid(format!(
                "launchType {o:?} is not valid (use FARGATE, EC2, EXTERNAL or MANAGED_INSTANCES)"
            )))
            }
        };
        let cluster = self
            .active_cluster(f.cluster.as_deref().unwrap_or("default"))
            .await?;
        let Some(desired) = desired.filter(|_| fargate) else {
            return Ok((Vec::new(), None));
        };
        let group = f.service_name.as_ref().map(|s| format!("service:{s}"));
        let list = self
            .store
            .list(&keys::cluster_tasks(&cluster.cluster_name))
            .await?;
        let mut tasks = Vec::new();
        for kv in &list.items {
            let rec: TaskRecord = decode(kv)?;
            let t = rec.task;
            if t.desired_status != desired {
                continue;
            }
            if let Some(fam) = &f.family {
                let family =
                    t.task_definition_arn
                        .parse::<Arn>()
                        .ok()
                        .and_then(|a| match a.resource {
                            EcsResource::TaskDefinition { family, .. } => Some(family),
                            EcsResource::Cluster(_) | EcsResource::Service { .. } => None,
                        });
                if family.as_deref() != Some(fam.as_str()) {
                    continue;
                }
            }
            if f.started_by.is_some() && t.started_by != f.started_by {
                continue;
            }
            if group.is_some() && t.group != group {
                continue;
            }
            tasks.push(t);
        }
        let sort_key = |t: &Task| format!("{:020}|{}", t.created_at.0.max(0), t.id());
        tasks.sort_by_key(sort_key);
        let (page, next) = paginate(tasks, sort_key, after, size, false);
        Ok((page.into_iter().map(|t| t.task_arn).collect(), next))
    }

    /// How many of a cluster's tasks have not reached STOPPED.
    pub async fn active_task_count(&self, cluster: &str) -> Result<u64, EcsError> {
        let list = self.store.list(&keys::cluster_tasks(cluster)).await?;
        let mut n = 0;
        for kv in &list.items {
            let rec: TaskRecord = decode(kv)?;
            if rec.task.last_status != TaskStatus::Stopped {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The cluster and id of a task ARN of this account and region.
    pub fn task_arn_parts(&self, arn: &str) -> Option<(String, String)> {
        let rest = arn.strip_prefix(&format!(
            "arn:aws:ecs:{}:{}:task/",
            self.scope.region, self.scope.account
        ))?;
        let (cluster, id) = rest.split_once('/')?;
        (is_task_id(id) && !cluster.is_empty()).then(|| (cluster.to_string(), id.to_string()))
    }

    /// Read-modify-write of a task's tags (TagResource / UntagResource).
    pub(crate) async fn modify_task_tags(
        &self,
        cluster: &str,
        id: &str,
        f: impl Fn(&mut Vec<Tag>) -> Result<(), EcsError>,
    ) -> Result<(), EcsError> {
        let key = keys::task(cluster, id);
        let _guard = self.lock(&key).await;
        let missing =
            || EcsError::ResourceNotFound(format!("task {id} does not exist in cluster {cluster}"));
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (mut rec, rev) = self.task_record(cluster, id).await?.ok_or_else(missing)?;
            f(&mut rec.task.tags)?;
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Put(key.clone(), encode(&rec)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
        Err(EcsError::Contention(key))
    }

    /// How many of a cluster's tasks are RUNNING, and how many are on their
    /// way there (PROVISIONING, PENDING, ACTIVATING), for DescribeClusters.
    pub async fn task_counts(&self, cluster: &str) -> Result<(u64, u64), EcsError> {
        let list = self.store.list(&keys::cluster_tasks(cluster)).await?;
        let (mut running, mut pending) = (0, 0);
        for kv in &list.items {
            let rec: TaskRecord = decode(kv)?;
            match rec.task.last_status {
                TaskStatus::Running => running += 1,
                TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating => {
                    pending += 1;
                }
                _ => {}
            }
        }
        Ok((running, pending))
    }
}

struct NewTaskInput<'a> {
    spec: &'a RunTaskSpec,
    cluster: &'a Cluster,
    td: &'a TaskDefinition,
    eff: &'a EffectiveTask,
    tags: &'a [Tag],
    provider: &'a str,
    host: &'a HostRecord,
    octet: u8,
    id: u128,
    extra: &'a [u128],
}

/// Refuses a revision that cannot run on FARGATE.
pub(super) fn check_fargate_compatible(td: &TaskDefinition) -> Result<(), EcsError> {
    if td.compatibilities.iter().any(|c| c == "FARGATE") {
        return Ok(());
    }
    Err(EcsError::client(format!(
        "task definition {} is not compatible with FARGATE; register a revision with \"requiresCompatibilities\": [\"FARGATE\"], \"networkMode\": \"awsvpc\" and task-level cpu and memory",
        td.family_revision()
    )))
}

/// Used by the agent module: the definition a task runs.
pub(super) fn family_revision_of(arn: &str) -> Option<(String, u32)> {
    match arn.parse::<Arn>().ok()?.resource {
        EcsResource::TaskDefinition { family, revision } => Some((family, revision)),
        EcsResource::Cluster(_) | EcsResource::Service { .. } => None,
    }
}
