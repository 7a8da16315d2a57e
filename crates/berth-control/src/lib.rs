//! The control plane: what Berth *decides*, kept apart from how requests
//! arrive (`berth-api`) and how containers run (the agent).
//!
//! It owns the ECS semantics of clusters, task definitions, tags, tasks and
//! services ([`ecs::Ecs`]): reading the store, deciding, and writing back
//! with compare-and-swap transactions so concurrent requests never lose an
//! update. The decisions themselves are pure functions over a view of the
//! state that *propose* what to do: the [`scheduler`] (capacity manager:
//! which host runs a task) and the [`service_reconciler`] (cluster manager:
//! which tasks a service starts and stops); their callers apply the
//! proposals in guarded transactions. [`controller`] is the loop that runs
//! the service reconciler on store watches and a periodic resync.
//!
//! Every operation takes the caller's identity and the current time as
//! arguments: nothing here reads a clock or makes a random id (the
//! controller's clock and id source are handed to it), so the same inputs
//! always write the same state.
//!
//! [`elb::Elb`] owns the ELBv2 semantics of load balancers, target groups,
//! listeners, rules and targets over the records of `berth_core::elb` (the
//! contract with the data path and the service controller).
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
//! Start with [`ecs::Ecs`]; [`keys`] documents the key layout in the store;
//! for services read [`service_reconciler`] first.

pub mod controller;
pub mod ecr;
pub mod ecs;
pub mod elb;
pub mod error;
pub mod ids;
pub mod keys;
pub mod logs;
pub mod page;
pub mod scheduler;
pub mod service_reconciler;

pub use ecr::{Ecr, EcrError};
pub use ecs::Ecs;
pub use elb::{Elb, ElbError};
pub use error::EcsError;
pub use ids::IdSource;

/// Who is making a request, as the API layer authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The principal's ARN, e.g. `arn:aws:iam::123456789012:root`.
    pub arn: String,
}
