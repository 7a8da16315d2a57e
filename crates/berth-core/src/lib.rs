//! Berth's domain types: the vocabulary every other crate speaks.
//!
//! This crate owns *what things are*, never *how they are stored or sent*:
//! ARNs ([`arn`]), Fargate task sizes ([`resources`]), tags ([`tags`]),
//! clusters ([`cluster`]), task definitions and their ECS/Fargate validation
//! ([`taskdef`]), tasks ([`task`]), services and their deployments
//! ([`service`]), how tasks are launched ([`launch`]), and time as the
//! control plane sees it ([`time`]).
//! It has no I/O and few dependencies, so the wire layer (`berth-api`), the
//! control plane (`berth-control`) and the agent can all share it.
//!
//! Start reading at [`taskdef::validate`]: it is where a user's JSON becomes
//! a task definition Berth agrees to run.

pub mod agent;
pub mod arn;
pub mod cluster;
pub mod elb;
pub mod error;
pub mod launch;
pub mod resources;
pub mod service;
pub mod tags;
pub mod task;
pub mod taskdef;
pub mod time;

pub use arn::{Arn, Scope};
pub use error::ValidationError;
pub use time::Timestamp;
