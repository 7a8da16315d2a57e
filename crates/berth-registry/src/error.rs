//! The distribution spec's errors: `{"errors":[{"code","message","detail"}]}`
//! with the spec's status codes. Every registry failure is mapped here.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::json;

/// A registry failure with its spec code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DistError {
    /// The spec's code (BLOB_UNKNOWN, ...).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// Structured detail (e.g. the missing digest).
    pub detail: Option<serde_json::Value>,
    /// The HTTP status.
    pub status: StatusCode,
}

macro_rules! ctor {
    ($name:ident, $code:literal, $status:expr, $doc:literal) => {
        #[doc = $doc]
        pub fn $name(message: impl Into<String>) -> Self {
            Self {
                code: $code,
                message: message.into(),
                detail: None,
                status: $status,
            }
        }
    };
}

impl DistError {
    ctor!(
        blob_unknown,
        "BLOB_UNKNOWN",
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN (404)."
    );
    ctor!(
        blob_upload_unknown,
        "BLOB_UPLOAD_UNKNOWN",
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN (404)."
    );
    ctor!(
        blob_upload_invalid,
        "BLOB_UPLOAD_INVALID",
        StatusCode::BAD_REQUEST,
        "BLOB_UPLOAD_INVALID (400)."
    );
    ctor!(
        digest_invalid,
        "DIGEST_INVALID",
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID (400)."
    );
    ctor!(
        manifest_unknown,
        "MANIFEST_UNKNOWN",
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN (404)."
    );
    ctor!(
        manifest_invalid,
        "MANIFEST_INVALID",
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID (400)."
    );
    ctor!(
        manifest_blob_unknown,
        "MANIFEST_BLOB_UNKNOWN",
        StatusCode::BAD_REQUEST,
        "MANIFEST_BLOB_UNKNOWN (400)."
    );
    ctor!(
        name_unknown,
        "NAME_UNKNOWN",
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN (404)."
    );
    ctor!(
        name_invalid,
        "NAME_INVALID",
        StatusCode::BAD_REQUEST,
        "NAME_INVALID (400)."
    );
    ctor!(
        tag_invalid,
        "TAG_INVALID",
        StatusCode::BAD_REQUEST,
        "TAG_INVALID (400)."
    );
    ctor!(
        size_invalid,
        "SIZE_INVALID",
        StatusCode::BAD_REQUEST,
        "SIZE_INVALID (400)."
    );
    ctor!(
        unauthorized,
        "UNAUTHORIZED",
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED (401), with a Basic challenge."
    );
    ctor!(denied, "DENIED", StatusCode::FORBIDDEN, "DENIED (403).");
    ctor!(
        unsupported,
        "UNSUPPORTED",
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED (405)."
    );
    ctor!(
        unknown,
        "UNKNOWN",
        StatusCode::INTERNAL_SERVER_ERROR,
        "An internal failure (500)."
    );

    /// Adds structured detail.
    #[must_use]
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Overrides the status (e.g. 416 for a bad upload range).
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

/// The challenge sent with every 401.
pub const CHALLENGE: &str = "Basic realm=\"Berth Registry\"";

impl IntoResponse for DistError {
    fn into_response(self) -> Response {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = self.detail {
            e["detail"] = d;
        }
        let mut r = Response::new(Body::from(json!({"errors": [e]}).to_string()));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CHALLENGE),
            );
        }
        r
    }
}

impl From<berth_control::EcrError> for DistError {
    fn from(e: berth_control::EcrError) -> Self {
        use berth_control::EcrError as E;
        match &e {
            E::Validation(_) => Self::name_invalid(e.to_string()),
            E::RepositoryNotFound(_) => Self::name_unknown(e.to_string()),
            E::ImageNotFound(_) => Self::manifest_unknown(e.to_string()),
            E::ImageTagAlreadyExists { .. } => Self::tag_invalid(e.to_string()),
            E::ManifestBlobUnknown { digest, .. } => {
                let d = digest.to_string();
                Self::manifest_blob_unknown(e.to_string()).with_detail(json!({"digest": d}))
            }
            E::ManifestInvalid(_) => Self::manifest_invalid(e.to_string()),
            E::RepositoryAlreadyExists(_) | E::RepositoryNotEmpty(_) => Self::denied(e.to_string()),
            E::Store(_) | E::Corrupt(_) => Self::unknown(e.to_string()),
        }
    }
}

impl From<berth_oci::blobstore::BlobError> for DistError {
    fn from(e: berth_oci::blobstore::BlobError) -> Self {
        use berth_oci::blobstore::BlobError as B;
        match &e {
            B::DigestMismatch { .. } => Self::digest_invalid(e.to_string()),
            B::UploadUnknown(_) => Self::blob_upload_unknown(e.to_string()),
            B::RangeMismatch { .. } => Self::blob_upload_invalid(e.to_string())
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE),
            _ => Self::unknown(e.to_string()),
        }
    }
}
