//! OCI images, shared by the registry (server side) and the agent (client
//! side).
//!
//! * [`digest`]: `sha256:...` content addresses and hashing.
//! * [`reference`](mod@reference): image references (`registry/repo:tag@digest`).
//! * [`manifest`]: OCI and Docker manifests, indexes and image configs.
//! * [`client`]: the OCI distribution client (pull and push, with Basic and
//!   Bearer token authentication).
//! * [`blobstore`]: the content-addressed blob store on disk, with
//!   resumable upload sessions (the registry's storage, and the cache's).
//! * [`unpack`]: safe unpacking of one layer tar into a directory.
//! * [`cache`]: the host's layer cache: fetch once, verify, unpack, pin,
//!   evict.
//! * [`layout`]: OCI image layout directories, the local image store.
//! * [`build`]: reproducible image building from directories, files and
//!   tar archives.
//!
//! Start with [`manifest::Manifest::parse`]: every push and pull goes
//! through it. The agent pulls through [`client::RegistryClient::resolve`],
//! and [`cache::LayerCache::get_or_fetch`] is where a layer goes from a
//! descriptor to a directory. To make images, start with
//! [`build::build_image`].

pub mod blobstore;
pub mod build;
pub mod cache;
pub mod client;
pub mod digest;
pub mod layout;
pub mod manifest;
pub mod reference;
pub mod unpack;

pub use client::{ClientConfig, ClientError, Credentials, RegistryClient, ResolvedImage};
pub use digest::Digest;
pub use layout::{LocalImage, OciLayout};
pub use reference::Reference;
