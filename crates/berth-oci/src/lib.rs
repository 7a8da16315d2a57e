//! OCI images, shared by the registry (server side) and the agent (client
//! side).
//!
//! * [`digest`]: `sha256:...` content addresses and hashing.
//! * [`reference`]: image references (`registry/repo:tag@digest`).
//! * [`manifest`]: OCI and Docker manifests, indexes and image configs.
//! * [`layout`]: OCI image layout directories, the local image store.
//! * [`build`]: reproducible image building from directories, files and
//!   tar archives.
//!
//! Start with [`manifest::Manifest::parse`]: every push and pull goes
//! through it. To make images, start with [`build::build_image`].

pub mod build;
pub mod digest;
pub mod layout;
pub mod manifest;
pub mod reference;

pub use digest::Digest;
pub use layout::{LocalImage, OciLayout};
pub use reference::Reference;
