//! The data path end to end on loopback: real backends, a real
//! `DataPlane`, real clients. Tests assert behaviour, never timings; they
//! wait on conditions with deadlines.

#![allow(clippy::unwrap_used, missing_docs)]

mod health;
mod lifecycle;
mod protocols;
mod routing;
mod support;
