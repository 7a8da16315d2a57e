//! The OCI distribution API (`/v2/...`), served on the same listener as the
//! AWS APIs: the ECR of the workflow ("push the image to the registry").
//!
//! * [`route`] parses a `/v2/` path into a typed [`route::Route`] (repository
//!   names contain slashes, so this is done by hand, not by a router).
//! * [`handlers`] implements each endpoint over `berth_control::Ecr`
//!   (repositories, tags, manifests, which blobs a repository holds) and
//!   `berth_oci::blobstore::BlobStore` (the bytes, content-addressed,
//!   written atomically).
//! * [`error`] is the spec's error codes and bodies, in one place.
//!
//! Authentication is ECR's: HTTP Basic with user `AWS` and a token from
//! GetAuthorizationToken (or an access key id and secret), checked by the
//! [`RegistryAuth`] the binary plugs in. Unauthenticated requests get a 401
//! with a `WWW-Authenticate: Basic` challenge that docker, podman and skopeo
//! answer.

pub mod error;
pub mod handlers;
pub mod route;

use std::sync::Arc;

use axum::routing::any;
use axum::Router;
use berth_control::{Caller, Ecr};
use berth_oci::blobstore::BlobStore;

/// Checks the `Authorization` header of a registry request.
pub trait RegistryAuth: Send + Sync + 'static {
    /// The caller, or a message saying why the credentials were refused.
    fn authenticate(&self, authorization: Option<&str>, now_secs: i64) -> Result<Caller, String>;
}

/// The registry's state.
pub struct Registry {
    /// Repository, tag and manifest metadata.
    pub ecr: Ecr,
    /// Blob bytes and upload sessions.
    pub blobs: BlobStore,
    /// Credential checks.
    pub auth: Arc<dyn RegistryAuth>,
}

/// The `/v2` routes, to merge into the API's router.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(handlers::handle))
        .route("/v2/", any(handlers::handle))
        .route("/v2/{*rest}", any(handlers::handle))
        .with_state(registry)
}
