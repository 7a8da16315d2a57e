//! OCI images, shared by the registry (server side) and the agent (client
//! side).
//!
//! * [`digest`]: `sha256:...` content addresses and hashing.
//! * [`reference`]: image references (`registry/repo:tag@digest`).
//! * [`manifest`]: OCI and Docker manifests, indexes and image configs.
//!
//! Start with [`manifest::Manifest::parse`]: every push and pull goes
//! through it.

pub mod blobstore;
pub mod digest;
pub mod manifest;
pub mod reference;
pub mod unpack;

pub use digest::Digest;
pub use reference::Reference;
