//! The edge of Berth: the wire protocols existing AWS clients already speak.
//!
//! A request flows through this crate in four steps, each in its own module:
//!
//! 1. [`server`]: the HTTP listener reads the request (bounded in size) and
//!    answers every request it cannot route with a typed 4xx.
//! 2. [`auth`] and [`sigv4`]: every request must carry a valid AWS Signature
//!    Version 4 made with a key Berth issued; there is no unauthenticated mode.
//! 3. [`ecs`]: the `X-Amz-Target` and JSON body become a typed
//!    [`ecs::EcsAction`]; the control plane (`berth-control`) never sees HTTP.
//! 4. [`json11`] and [`ecs::error`]: results and errors are framed as AWS JSON
//!    1.1, with the `__type` names and status codes of botocore's model. Wire
//!    errors are chosen in exactly one place per protocol.
//!
//! The ELBv2 API ([`elbv2`], AWS Query protocol: form-encoded `Action=...`
//! requests signed for `elasticloadbalancing`, XML answers) is routed to
//! when a request to `/` has no `X-Amz-Target`.
//!
//! Two more protocols share the listener, routed by path after
//! authentication: the agent protocol ([`agent`], `/agent/v1/...`, signed
//! for `berth-agent`) that host agents speak, and Berth's own read API for
//! task output ([`tasklogs`], `GET /berth/v1/tasks/{id}/logs`).
//!
//! Adding an ECS operation: add its request shape and a variant to
//! [`ecs::EcsAction`] (`ecs/mod.rs`), its semantics to `berth_control::Ecs`,
//! the dispatch arm in `ecs::dispatch`, and an end-to-end test driving it
//! with the AWS CLI or boto3 (`tests/e2e`).

pub mod agent;
pub mod auth;
pub mod ecr;
pub mod ecs;
pub mod elbv2;
pub mod json11;
pub mod server;
pub mod tasklogs;

/// AWS Signature Version 4 (re-exported from `berth-sigv4`).
pub use berth_sigv4 as sigv4;

pub use auth::{AccessKey, KeyRing, TokenAuthority};
pub use server::{router, ApiState, RandomIds};
