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

// ---- load balancers (ELBv2) -------------------------------------------------
//
// | key | value |
// |---|---|
// | `/elb/lbs/{name}` | [`berth_core::elb::LoadBalancerRecord`] |
// | `/elb/tgs/{name}` | [`berth_core::elb::TargetGroupRecord`] |
// | `/elb/listeners/{lbName}/{listenerId}` | [`berth_core::elb::ListenerRecord`] |
// | `/elb/rules/{listenerId}/{ruleId}` | [`berth_core::elb::RuleRecord`] |
// | `/elb/ports/{port}` | the ARN of the listener that holds this machine port (raw UTF-8, not JSON) |
// | `/elb/targets/{tgName}/{ip}:{port}` | [`berth_core::elb::TargetRecord`] |
// | `/elb/health/{tgName}/{ip}:{port}` | [`berth_core::elb::TargetHealthRecord`] (written by the data path) |

/// Prefix of everything the load balancers keep (the data path watches it).
pub const ELB: &str = "/elb/";
/// Prefix of all load balancers.
pub const ELB_LBS: &str = "/elb/lbs/";
/// Prefix of all target groups.
pub const ELB_TGS: &str = "/elb/tgs/";
/// Prefix of all listeners.
pub const ELB_LISTENERS: &str = "/elb/listeners/";
/// Prefix of all rules.
pub const ELB_RULES: &str = "/elb/rules/";
/// Prefix of the port claims.
pub const ELB_PORTS: &str = "/elb/ports/";
/// Prefix of all registered targets.
pub const ELB_TARGETS: &str = "/elb/targets/";
/// Prefix of all target health records.
pub const ELB_HEALTH: &str = "/elb/health/";

/// The key of a load balancer.
pub fn elb_lb(name: &str) -> String {
    format!("{ELB_LBS}{name}")
}

/// The key of a target group.
pub fn elb_tg(name: &str) -> String {
    format!("{ELB_TGS}{name}")
}

/// The prefix of one load balancer's listeners.
pub fn elb_lb_listeners(lb: &str) -> String {
    format!("{ELB_LISTENERS}{lb}/")
}

/// The key of a listener.
pub fn elb_listener(lb: &str, id: &str) -> String {
    format!("{ELB_LISTENERS}{lb}/{id}")
}

/// The prefix of one listener's rules.
pub fn elb_listener_rules(listener_id: &str) -> String {
    format!("{ELB_RULES}{listener_id}/")
}

/// The key of a rule.
pub fn elb_rule(listener_id: &str, id: &str) -> String {
    format!("{ELB_RULES}{listener_id}/{id}")
}

/// The key of a machine port claim.
pub fn elb_port(port: u16) -> String {
    format!("{ELB_PORTS}{port}")
}

/// The prefix of one target group's targets.
pub fn elb_tg_targets(tg: &str) -> String {
    format!("{ELB_TARGETS}{tg}/")
}

/// The key of a target (`ip:port`).
pub fn elb_target(tg: &str, ip: &str, port: u16) -> String {
    format!("{ELB_TARGETS}{tg}/{ip}:{port}")
}

/// The prefix of one target group's health records.
pub fn elb_tg_health(tg: &str) -> String {
    format!("{ELB_HEALTH}{tg}/")
}

/// The key of a target's health record.
pub fn elb_health(tg: &str, ip: &str, port: u16) -> String {
    format!("{ELB_HEALTH}{tg}/{ip}:{port}")
}
