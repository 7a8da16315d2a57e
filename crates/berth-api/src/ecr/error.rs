//! The one place where registry (ECR) failures become wire errors.

use berth_control::EcrError;
use berth_core::error::ValidationKind;
use http::StatusCode;

/// The `__type` and HTTP status of an ECR failure, per botocore's model.
pub fn wire(e: &EcrError) -> (StatusCode, &'static str) {
    let bad = StatusCode::BAD_REQUEST;
    match e {
        EcrError::Validation(v) => match v.kind {
            ValidationKind::Client | ValidationKind::InvalidParameter => {
                (bad, "InvalidParameterException")
            }
        },
        EcrError::RepositoryNotFound(_) => (bad, "RepositoryNotFoundException"),
        EcrError::RepositoryAlreadyExists(_) => (bad, "RepositoryAlreadyExistsException"),
        EcrError::RepositoryNotEmpty(_) => (bad, "RepositoryNotEmptyException"),
        EcrError::ImageNotFound(_) => (bad, "ImageNotFoundException"),
        EcrError::ImageTagAlreadyExists { .. } => (bad, "ImageTagAlreadyExistsException"),
        EcrError::ManifestBlobUnknown { .. } => (bad, "LayersNotFoundException"),
        EcrError::ManifestInvalid(_) => (bad, "InvalidParameterException"),
        EcrError::Store(_) | EcrError::Corrupt(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "ServerException")
        }
    }
}
