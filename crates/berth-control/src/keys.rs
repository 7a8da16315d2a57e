//! The key layout of ECS state in the store.
//!
//! | key | value |
//! |---|---|
//! | `/ecs/clusters/{name}` | [`berth_core::cluster::Cluster`] as JSON |
//! | `/ecs/families/{family}` | [`crate::ecs::FamilyRecord`]: the last revision handed out |
//! | `/ecs/taskdefs/{family}/{revision:010}` | [`crate::ecs::TaskDefinitionRecord`] |
//! | `/ecs/tasks/{cluster}/{taskId}` | [`crate::ecs::TaskRecord`]: the task, its host, its size |
//! | `/ecs/taskids/{taskId}` | [`crate::ecs::TaskIndex`]: the cluster and host of a task |
//! | `/ecs/services/{cluster}/{name}` | [`crate::ecs::ServiceRecord`]: the service, its deployments and events |
//! | `/ecs/clienttokens/{hex(token)}` | [`crate::ecs::ClientTokenRecord`]: what a RunTask token started |
//! | `/hosts/{hostId}` | [`crate::ecs::HostRecord`]: a registered host, its subnet, its last heartbeat |
//! | `/hostalloc/{hostId}` | [`crate::ecs::AllocRecord`]: bumped by every RunTask placing there |
//! | `/hostsubnets` | [`crate::ecs::SubnetCounter`]: the last host subnet handed out |
//! | `/placements/{hostId}/{taskId}` | [`crate::ecs::PlacementRecord`]: a task the host must run or stop |
//!
//! Revisions are zero-padded so that key order is revision order.
//!
//! A placement exists from RunTask until the host reports the task STOPPED;
//! the set of placements under one host *is* that host's desired state, so
//! an agent's long poll watches `/placements/{hostId}/`. The alloc key makes
//! concurrent RunTasks on several replicas conflict instead of over-committing
//! a host: every RunTask guards its transaction on the alloc keys of the
//! hosts it read.

/// Prefix of all clusters.
pub const CLUSTERS: &str = "/ecs/clusters/";
/// Prefix of all family counters.
pub const FAMILIES: &str = "/ecs/families/";
/// Prefix of all task definition revisions.
pub const TASK_DEFINITIONS: &str = "/ecs/taskdefs/";

/// The key of a cluster.
pub fn cluster(name: &str) -> String {
    format!("{CLUSTERS}{name}")
}

/// The key of a family's revision counter.
pub fn family(family: &str) -> String {
    format!("{FAMILIES}{family}")
}

/// The prefix of one family's revisions.
pub fn family_revisions(family: &str) -> String {
    format!("{TASK_DEFINITIONS}{family}/")
}

/// The key of one task definition revision.
pub fn task_definition(family: &str, revision: u32) -> String {
    format!("{TASK_DEFINITIONS}{family}/{revision:010}")
}

/// Prefix of all services.
pub const SERVICES: &str = "/ecs/services/";

/// The prefix of one cluster's services.
pub fn cluster_services(cluster: &str) -> String {
    format!("{SERVICES}{cluster}/")
}

/// The key of a service.
pub fn service(cluster: &str, name: &str) -> String {
    format!("{SERVICES}{cluster}/{name}")
}

/// Prefix of all tasks.
pub const TASKS: &str = "/ecs/tasks/";
/// Prefix of the task id index.
pub const TASK_IDS: &str = "/ecs/taskids/";
/// Prefix of RunTask client tokens.
pub const CLIENT_TOKENS: &str = "/ecs/clienttokens/";
/// Prefix of all hosts.
pub const HOSTS: &str = "/hosts/";
/// Prefix of the per-host allocation guards.
pub const HOST_ALLOC: &str = "/hostalloc/";
/// The host subnet counter.
pub const HOST_SUBNETS: &str = "/hostsubnets";
/// Prefix of all placements.
pub const PLACEMENTS: &str = "/placements/";

/// The prefix of one cluster's tasks.
pub fn cluster_tasks(cluster: &str) -> String {
    format!("{TASKS}{cluster}/")
}

/// The key of a task.
pub fn task(cluster: &str, id: &str) -> String {
    format!("{TASKS}{cluster}/{id}")
}

/// The key of a task's index entry.
pub fn task_index(id: &str) -> String {
    format!("{TASK_IDS}{id}")
}

/// The key of a RunTask client token (hex-encoded: tokens may hold `/`).
pub fn client_token(token: &str) -> String {
    let hex: String = token.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{CLIENT_TOKENS}{hex}")
}

/// The key of a host.
pub fn host(id: &str) -> String {
    format!("{HOSTS}{id}")
}

/// The key of a host's allocation guard.
pub fn host_alloc(id: &str) -> String {
    format!("{HOST_ALLOC}{id}")
}

/// The prefix of one host's placements (its desired state).
pub fn host_placements(host: &str) -> String {
    format!("{PLACEMENTS}{host}/")
}

/// The key of one placement.
pub fn placement(host: &str, task: &str) -> String {
    format!("{PLACEMENTS}{host}/{task}")
}
