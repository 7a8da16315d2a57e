//! The key layout of ECS state in the store.
//!
//! | key | value |
//! |---|---|
//! | `/ecs/clusters/{name}` | [`berth_core::cluster::Cluster`] as JSON |
//! | `/ecs/families/{family}` | [`crate::ecs::FamilyRecord`]: the last revision handed out |
//! | `/ecs/taskdefs/{family}/{revision:010}` | [`crate::ecs::TaskDefinitionRecord`] |
//!
//! Revisions are zero-padded so that key order is revision order.

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
