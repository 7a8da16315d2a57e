//! ECS semantics over the store: clusters, task definitions, tags.
//!
//! Each operation is a method of [`Ecs`]. Writes follow one pattern:
//! read the record and its mod revision, decide, then write in a transaction
//! guarded by that mod revision; on conflict, read again (bounded retries).

mod clusters;
mod tags;
mod taskdefs;

pub use clusters::{ClusterField, ClusterSpec, ClusterUpdate};
pub use taskdefs::{
    FamilyRecord, FamilyStatusFilter, TaskDefinitionPage, TaskDefinitionRecord, TaskDefinitionRef,
};

use std::sync::Arc;

use berth_core::Scope;
use berth_store::{KeyValue, Store};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::EcsError;

/// How many times a conflicting write is retried before giving up.
const MAX_RETRIES: usize = 16;

/// The ECS control plane for one account and region.
#[derive(Clone)]
pub struct Ecs {
    store: Arc<dyn Store>,
    scope: Scope,
}

impl Ecs {
    /// ECS over `store`, naming resources in `scope`.
    pub fn new(store: Arc<dyn Store>, scope: Scope) -> Self {
        Self { store, scope }
    }

    /// The region and account of this control plane.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
}

fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, EcsError> {
    serde_json::from_slice(&kv.value).map_err(|e| EcsError::Corrupt {
        key: kv.key.clone(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising plain data structs to JSON cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}
