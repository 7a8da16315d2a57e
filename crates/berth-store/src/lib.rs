//! The state database: Berth's single source of truth.
//!
//! The [`Store`] trait is shaped like etcd's v3 API on purpose, so that a
//! second backend (etcd, for several control-plane replicas) can sit behind it
//! without touching callers:
//!
//! * a flat, ordered key space of byte values;
//! * one global, monotonically increasing **revision**, bumped by every
//!   successful write transaction; every key remembers the revision that
//!   created it and last modified it;
//! * **transactions** of compare-and-swap guards ([`Compare`]) and operations
//!   ([`Op`]), applied atomically (optimistic concurrency: read, decide,
//!   write guarded by the mod revisions read);
//! * **watches** of a key prefix from a revision ([`Store::watch`]): the
//!   history since that revision, then live changes, in revision order. This is
//!   what drives the level-triggered reconcilers.
//!
//! The store never reads a clock or makes an id: values are opaque bytes made
//! by the caller, so writes are deterministic.
//!
//! Start with [`Store`], then [`embedded::EmbeddedStore`], the default backend
//! (redb: copy-on-write B-trees, fsync on every commit, so an acknowledged write
//! survives `kill -9`).

pub mod embedded;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use embedded::EmbeddedStore;

/// A key, its value, and its revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value, opaque to the store.
    pub value: Vec<u8>,
    /// The revision of the write that created the key.
    pub create_revision: u64,
    /// The revision of the last write to the key.
    pub mod_revision: u64,
    /// How many times the key has been written since it was created.
    pub version: u64,
}

/// A guard of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod revision equals this value; 0 means "the key is absent".
    ModRevision(String, u64),
    /// The key exists.
    Exists(String),
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or replace a key.
    Put(String, Vec<u8>),
    /// Remove a key (a no-op if it is absent).
    Delete(String),
}

/// An atomic transaction: if every compare holds, apply `success`, else
/// apply `failure`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Guards, all of which must hold.
    pub compares: Vec<Compare>,
    /// Applied when the guards hold.
    pub success: Vec<Op>,
    /// Applied when a guard fails.
    pub failure: Vec<Op>,
}

impl Txn {
    /// A transaction with no guards.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a guard.
    #[must_use]
    pub fn when(mut self, c: Compare) -> Self {
        self.compares.push(c);
        self
    }

    /// Adds an operation applied on success.
    #[must_use]
    pub fn then(mut self, op: Op) -> Self {
        self.success.push(op);
        self
    }
}

/// The outcome of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether the guards held (and `success` was applied).
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: u64,
}

/// A prefix listing, consistent as of one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    /// The keys under the prefix, in key order.
    pub items: Vec<KeyValue>,
    /// The revision the listing reflects; watch from `revision + 1` to follow it.
    pub revision: u64,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or replaced.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The revision of the transaction that made the change.
    pub revision: u64,
    /// Put or delete.
    pub kind: EventKind,
    /// The key changed.
    pub key: String,
    /// The new value (puts only).
    pub value: Option<Vec<u8>>,
}

/// A stream of events under a prefix, in revision order.
///
/// It ends with an error when the watcher fell too far behind
/// ([`StoreError::Compacted`]); the caller then lists again and watches from
/// the listing's revision, as a Kubernetes reflector does.
pub struct Watch {
    rx: mpsc::Receiver<Result<Event, StoreError>>,
}

impl Watch {
    /// Wraps a channel of events (for backends).
    pub fn from_channel(rx: mpsc::Receiver<Result<Event, StoreError>>) -> Self {
        Self { rx }
    }

    /// The next event; `None` when the store shut down.
    pub async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        self.rx.recv().await
    }
}

/// What can go wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// the history needed by a watch has been compacted away
    #[error("revision {requested} has been compacted (oldest kept: {oldest}); list again and watch from the listing's revision")]
    Compacted {
        /// The revision asked for.
        requested: u64,
        /// The oldest revision still in the history.
        oldest: u64,
    },
    /// the backend failed (disk, corruption, ...)
    #[error("state store backend error: {0}")]
    Backend(String),
    /// the store's data is not what this version of Berth wrote
    #[error("state store data is corrupt: {0}")]
    Corrupt(String),
}

/// The state database. See the crate docs for the model.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Reads every key under a prefix, with the revision the read reflects.
    async fn list(&self, prefix: &str) -> Result<ListResult, StoreError>;

    /// Applies a transaction atomically and durably: when this returns
    /// `Ok`, the write survives a crash of the process.
    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError>;

    /// Watches a prefix: every change with revision >= `from_revision`, then
    /// live changes. `from_revision` 0 means "live changes only".
    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError>;

    /// The store's current revision.
    async fn revision(&self) -> Result<u64, StoreError>;
}
