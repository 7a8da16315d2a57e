//! The ways an ECS operation fails, before they become wire errors.
//!
//! `berth-api` maps each variant to an ECS `__type` and HTTP status in one
//! place (`berth_api::ecs::error`).

use berth_core::ValidationError;
use berth_store::StoreError;

/// An ECS operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EcsError {
    /// the request is invalid (ClientException / InvalidParameterException)
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// the named cluster does not exist or is INACTIVE
    #[error(
        "cluster {0} not found; create it with CreateCluster or use an existing one (ListClusters)"
    )]
    ClusterNotFound(String),
    /// the named resource does not exist
    #[error("{0}")]
    ResourceNotFound(String),
    /// the state store failed
    #[error(transparent)]
    Store(#[from] StoreError),
    /// a stored record could not be decoded
    #[error("stored record {key} is not valid: {reason}")]
    Corrupt {
        /// The store key.
        key: String,
        /// What failed to decode.
        reason: String,
    },
    /// the cluster still has tasks that have not stopped
    #[error("{0}")]
    ClusterContainsTasks(String),
    /// the cluster still has ACTIVE or DRAINING services
    #[error("{0}")]
    ClusterContainsServices(String),
    /// the named service does not exist (or is INACTIVE where that counts as gone)
    #[error("{0}")]
    ServiceNotFound(String),
    /// the named service exists but is not ACTIVE
    #[error("{0}")]
    ServiceNotActive(String),
    /// no host with this id is registered
    #[error("host {0} is not registered; register it again (POST /agent/v1/register)")]
    HostNotFound(String),
    /// no task with this id exists (agent and logs endpoints)
    #[error("task {0} not found")]
    TaskNotFound(String),
    /// a host reported on a task placed on another host
    #[error(
        "task {task} is not placed on host {host}; report only tasks from this host's assignments"
    )]
    NotAssigned {
        /// The task.
        task: String,
        /// The host that reported.
        host: String,
    },
    /// the request conflicts with an earlier one (a reused RunTask clientToken)
    #[error("{message}")]
    Conflict {
        /// What conflicts.
        message: String,
        /// The resources the earlier request made.
        resource_ids: Vec<String>,
    },
    /// the write kept conflicting with concurrent writers
    #[error("Too many concurrent attempts to update {0}; retry the request")]
    Contention(String),
}

impl EcsError {
    /// A `ClientException`.
    pub fn client(msg: impl Into<String>) -> Self {
        Self::Validation(ValidationError::client(msg))
    }

    /// An `InvalidParameterException`.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Validation(ValidationError::invalid(msg))
    }
}
