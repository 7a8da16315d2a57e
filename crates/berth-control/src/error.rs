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
