//! OCI images, shared by the registry (server side) and the agent (client
//! side).
//!
//! * [`digest`]: `sha256:...` content addresses and hashing.
//! * [`reference`](mod@reference): image references (`registry/repo:tag@digest`).
//! * [`manifest`]: OCI and Docker manifests, indexes and image configs.
//! * [`client`]: the OCI distribution client (pull and push, with Basic and
//!   Bearer token authentication).
//!
//! Start with [`manifest::Manifest::parse`]: every push and pull goes
//! through it. The agent pulls through [`client::RegistryClient::resolve`]
//! and [`client::RegistryClient::fetch_blob`].

pub mod blobstore;
pub mod client;
pub mod digest;
pub mod manifest;
pub mod reference;

pub use client::{ClientConfig, ClientError, Credentials, RegistryClient, ResolvedImage};
pub use digest::Digest;
pub use reference::Reference;
