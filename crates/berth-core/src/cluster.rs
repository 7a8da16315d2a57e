//! Clusters: named groups of tasks and services.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tags::Tag;
use crate::ValidationError;

/// `ACTIVE` or `INACTIVE` (deleted, kept visible as ECS does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ClusterStatus {
    /// Usable.
    Active,
    /// Deleted; DescribeClusters still shows it until it is created again.
    Inactive,
}

/// A cluster setting such as `containerInsights`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSetting {
    /// The setting's name (`containerInsights`).
    pub name: Option<String>,
    /// `enhanced`, `enabled` or `disabled`.
    pub value: Option<String>,
}

/// A cluster as the store keeps it and ECS returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`.
    pub cluster_arn: String,
    /// 1–255 letters, digits, hyphens and underscores.
    pub cluster_name: String,
    /// ACTIVE or INACTIVE.
    pub status: ClusterStatus,
    /// Tags; returned only when asked for (`include: ["TAGS"]`).
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Cluster settings (containerInsights).
    #[serde(default)]
    pub settings: Vec<ClusterSetting>,
    /// Execute-command and managed storage configuration, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Value>,
    /// Capacity provider names associated with the cluster.
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    /// The default capacity provider strategy, kept as given.
    #[serde(default)]
    pub default_capacity_provider_strategy: Vec<Value>,
    /// Service Connect defaults, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect_defaults: Option<Value>,
}

/// The cluster every account has without creating it.
pub const DEFAULT_CLUSTER: &str = "default";

/// Capacity providers a Berth cluster can use.
pub const CAPACITY_PROVIDERS: &[&str] = &["FARGATE", "FARGATE_SPOT"];

/// Checks a cluster name: 1–255 letters, digits, hyphens and underscores.
pub fn validate_cluster_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ValidationError::invalid(format!(
            "clusterName {name:?} is not valid: use 1 to 255 letters, digits, hyphens and underscores"
        )));
    }
    Ok(())
}

/// Checks cluster settings: only `containerInsights` with `enhanced`,
/// `enabled` or `disabled`.
pub fn validate_settings(settings: &[ClusterSetting]) -> Result<(), ValidationError> {
    for s in settings {
        match s.name.as_deref() {
            Some("containerInsights") => {}
            other => {
                return Err(ValidationError::invalid(format!(
                "settings: unknown setting name {:?} (the only setting is \"containerInsights\")",
                other.unwrap_or("")
            )))
            }
        }
        match s.value.as_deref() {
            Some("enhanced" | "enabled" | "disabled") => {}
            other => {
                return Err(ValidationError::invalid(format!(
                    "settings: containerInsights value {:?} is not valid (use enhanced, enabled or disabled)",
                    other.unwrap_or("")
                )))
            }
        }
    }
    Ok(())
}

/// Merges settings by name, the way UpdateCluster does.
pub fn merge_settings(current: &mut Vec<ClusterSetting>, new: &[ClusterSetting]) {
    for s in new {
        if let Some(slot) = current.iter_mut().find(|c| c.name == s.name) {
            slot.value = s.value.clone();
        } else {
            current.push(s.clone());
        }
    }
}
