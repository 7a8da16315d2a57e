//! The one place where ECS failures become wire errors.

use berth_control::EcsError;
use berth_core::error::ValidationKind;
use http::StatusCode;

/// The `__type` and HTTP status of an ECS failure, per botocore's model
/// (client errors are 400; ServerException is 500).
pub fn wire(e: &EcsError) -> (StatusCode, &'static str) {
    match e {
        EcsError::Validation(v) => match v.kind {
            ValidationKind::Client => (StatusCode::BAD_REQUEST, "ClientException"),
            ValidationKind::InvalidParameter => {
                (StatusCode::BAD_REQUEST, "InvalidParameterException")
            }
        },
        EcsError::ClusterNotFound(_) => (StatusCode::BAD_REQUEST, "ClusterNotFoundException"),
        EcsError::ResourceNotFound(_) => (StatusCode::BAD_REQUEST, "ResourceNotFoundException"),
        EcsError::Conflict { .. } => (StatusCode::BAD_REQUEST, "ConflictException"),
        EcsError::ClusterContainsTasks(_) => {
            (StatusCode::BAD_REQUEST, "ClusterContainsTasksException")
        }
        EcsError::ClusterContainsServices(_) => {
            (StatusCode::BAD_REQUEST, "ClusterContainsServicesException")
        }
        EcsError::ServiceNotFound(_) => (StatusCode::BAD_REQUEST, "ServiceNotFoundException"),
        EcsError::ServiceNotActive(_) => (StatusCode::BAD_REQUEST, "ServiceNotActiveException"),
        // Agent-side failures never arise from an ECS operation; should one
        // leak, it is the caller's parameter that named a missing thing.
        EcsError::HostNotFound(_) | EcsError::TaskNotFound(_) | EcsError::NotAssigned { .. } => {
            (StatusCode::BAD_REQUEST, "InvalidParameterException")
        }
        // ECS answers a burst of writers to one family with a ClientException
        // ("Too many concurrent attempts..."); Berth does the same.
        EcsError::Contention(_) => (StatusCode::BAD_REQUEST, "ClientException"),
        EcsError::Store(_) | EcsError::Corrupt { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "ServerException")
        }
    }
}
