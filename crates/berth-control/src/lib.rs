//! The control plane: what Berth *decides*, kept apart from how requests
//! arrive (`berth-api`) and how containers run (the agent).
//!
//! Today it owns the ECS semantics of clusters, task definitions and tags
//! ([`ecs::Ecs`]): reading the store, deciding, and writing back with
//! compare-and-swap transactions so concurrent requests never lose an update.
//! The reconcilers (cluster manager) and the scheduler (capacity manager) of
//! later issues live here too, as pure functions over a view of the state.
//!
//! Every operation takes the caller's identity and the current time as
//! arguments: nothing here reads a clock or makes a random id, so the same
//! inputs always write the same state.
//!
//! [`ecr::Ecr`] owns the registry's metadata (repositories, tags, manifests,
//! which blobs belong to which repository), shared by the ECR API and the
//! OCI distribution server; the blob bytes live in `berth-oci`'s blob store.
//!
//! Tasks run for real through three pieces: [`ecs::tasks`] (RunTask and
//! friends) asks the pure [`scheduler`] where each task goes and records it
//! as a *placement* of that host; [`ecs::agent`] serves a host its
//! placements (its desired state) and applies the state it reports; and
//! [`logs`] keeps the container output agents send, outside the store.
//! Ids come from the caller through [`ids::IdSource`].
//!
//! Start with [`ecs::Ecs`]; [`keys`] documents the key layout in the store.

pub mod controller;
pub mod ecr;
pub mod ecs;
pub mod error;
pub mod ids;
pub mod keys;
pub mod logs;
pub mod page;
pub mod scheduler;
pub mod service_reconciler;

pub use ecr::{Ecr, EcrError};
pub use ecs::Ecs;
pub use error::EcsError;
pub use ids::IdSource;

/// Who is making a request, as the API layer authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The principal's ARN, e.g. `arn:aws:iam::123456789012:root`.
    pub arn: String,
}
