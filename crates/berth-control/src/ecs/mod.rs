//! ECS semantics over the store: clusters, task definitions, tags, tasks,
//! and the hosts that run them.
//!
//! Each operation is a method of [`Ecs`]. Writes follow one pattern:
//! read the record and its mod revision, decide, then write in a transaction
//! guarded by that mod revision; on conflict, read again (bounded retries).
//!
//! Tasks: [`tasks`] (RunTask, StopTask, DescribeTasks, ListTasks), placed by
//! the pure [`crate::scheduler`] on hosts that [`hosts`] registers; hosts
//! learn their tasks and report back through [`agent`].
//!
//! Services: [`services`] (CreateService, UpdateService, DeleteService,
//! DescribeServices, ListServices) keeps their desired state; the pure
//! [`crate::service_reconciler`] decides, and `Ecs::reconcile_service`
//! applies its plans.

pub mod agent;
mod clusters;
pub mod hosts;
pub mod lb;
pub mod run_spec;
mod service_apply;
#[cfg(test)]
mod service_tests;
pub mod services;
mod tags;
#[cfg(test)]
mod task_tests;
mod taskdefs;
pub mod tasks;

pub use agent::apply_report;
pub use clusters::{ClusterField, ClusterSpec, ClusterUpdate};
pub use hosts::{AllocRecord, HostRecord, SubnetCounter, DEFAULT_HEARTBEAT_SECONDS};
pub use service_apply::ReconcileOutcome;
pub use services::{
    CompletedDeployment, CreateServiceSpec, DeploymentRecord, ServiceFilter, ServiceRecord,
    UpdateServiceSpec,
};
pub use taskdefs::{
    FamilyRecord, FamilyStatusFilter, TaskDefinitionPage, TaskDefinitionRecord, TaskDefinitionRef,
};
pub use tasks::{
    ClientTokenRecord, Failure, PlacementRecord, RunTaskOutput, RunTaskSpec, TaskFilter, TaskIndex,
    TaskRecord,
};

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};

use berth_core::Scope;
use berth_store::{KeyValue, Store};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::EcsError;

/// How many times a conflicting write is retried before giving up.
const MAX_RETRIES: usize = 32;

/// How many striped write locks an [`Ecs`] holds.
const LOCK_STRIPES: usize = 64;

/// The ECS control plane for one account and region.
#[derive(Clone)]
pub struct Ecs {
    store: Arc<dyn Store>,
    scope: Scope,
    /// Serialises read-modify-write cycles on the same key within this
    /// process, so concurrent requests queue instead of failing their
    /// compare-and-swap; the CAS guard still protects against other replicas.
    locks: Arc<Vec<Mutex<()>>>,
    /// How often agents are told to heartbeat.
    heartbeat_seconds: u64,
    /// The first two octets of the /16 host subnets are cut from.
    task_network: String,
}

impl Ecs {
    /// ECS over `store`, naming resources in `scope`.
    pub fn new(store: Arc<dyn Store>, scope: Scope) -> Self {
        Self {
            store,
            scope,
            locks: Arc::new((0..LOCK_STRIPES).map(|_| Mutex::new(())).collect()),
            heartbeat_seconds: DEFAULT_HEARTBEAT_SECONDS,
            task_network: hosts::TASK_NETWORK_PREFIX.to_string(),
        }
    }

    /// Sets the heartbeat interval agents are told to keep (at least 1 s);
    /// a host silent for three intervals gets no new tasks.
    #[must_use]
    pub fn with_heartbeat_seconds(mut self, seconds: u64) -> Self {
        self.heartbeat_seconds = seconds.max(1);
        self
    }

    /// Sets the /16 task network that host subnets are cut from, e.g.
    /// `10.213.0.0/16`. Only the first two octets matter.
    pub fn with_task_network(mut self, cidr: &str) -> Result<Self, EcsError> {
        let ip = cidr.split('/').next().unwrap_or("");
        let octets: Vec<&str> = ip.split('.').collect();
        let ok = octets.len() == 4 && octets.iter().all(|o| o.parse::<u8>().is_ok());
        if !ok || !cidr.ends_with("/16") {
            return Err(EcsError::invalid(format!(
                "task network {cidr:?} is not an IPv4 /16 such as 10.213.0.0/16"
            )));
        }
        self.task_network = format!("{}.{}", octets[0], octets[1]);
        Ok(self)
    }

    /// The first two octets of the task network.
    pub fn task_network(&self) -> &str {
        &self.task_network
    }

    /// The heartbeat interval agents are told to keep.
    pub fn heartbeat_seconds(&self) -> u64 {
        self.heartbeat_seconds
    }

    /// The id a request names for a cluster-scoped resource: a bare id, or
    /// an ARN `arn:aws:ecs:REGION:ACCOUNT:KIND/CLUSTER/ID` (or the old form
    /// `KIND/ID`) of this account and `cluster`; `None` otherwise.
    pub(crate) fn resource_in_cluster(
        &self,
        kind: &str,
        cluster: &str,
        s: &str,
        valid: impl Fn(&str) -> bool,
    ) -> Option<String> {
        if !s.starts_with("arn:") {
            return valid(s).then(|| s.to_string());
        }
        let rest = s.strip_prefix(&format!(
            "arn:aws:ecs:{}:{}:{kind}/",
            self.scope.region, self.scope.account
        ))?;
        let id = match rest.split_once('/') {
            Some((c, id)) if c == cluster => id,
            Some(_) => return None,
            None => rest,
        };
        valid(id).then(|| id.to_string())
    }

    /// The write lock covering `key`.
    async fn lock(&self, key: &str) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let i = usize::try_from(h.finish() % LOCK_STRIPES as u64).unwrap_or(0);
        self.locks[i].lock().await
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

/// Waits before retry `attempt` of a conflicting write (another replica won
/// the race): 1, 2, 4, ... ms, capped at 50 ms.
pub(crate) async fn backoff(attempt: usize) {
    let ms = 1u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(ms.min(50))).await;
}

fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, EcsError> {
    serde_json::from_slice(&kv.value).map_err(|e| EcsError::Corrupt {
        key: kv.key.clone(),
        reason: e.to_string(),
    })
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising plain data structs to JSON cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use berth_core::taskdef::TaskDefinitionInput;
    use berth_store::EmbeddedStore;
    use serde_json::json;

    use super::*;
    use crate::Caller;

    fn ecs() -> Ecs {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
        Ecs::new(
            store,
            Scope {
                region: "us-east-1".into(),
                account: "123456789012".into(),
            },
        )
    }

    fn input(family: &str) -> TaskDefinitionInput {
        serde_json::from_value(json!({
            "family": family,
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "cpu": "0.25 vCPU",
            "memory": "0.5 GB",
            "containerDefinitions": [{"name": "app", "image": "busybox"}],
        }))
        .unwrap()
    }

    fn caller() -> Caller {
        Caller {
            arn: "arn:aws:iam::123456789012:root".into(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_registrations_get_distinct_revisions() {
        let e = ecs();
        let mut handles = Vec::new();
        for i in 0..12 {
            let e = e.clone();
            handles.push(tokio::spawn(async move {
                e.register_task_definition(
                    input("race"),
                    vec![],
                    &caller(),
                    berth_core::Timestamp(i),
                )
                .await
                .unwrap()
                .task_definition
                .revision
            }));
        }
        let mut revs = BTreeSet::new();
        for h in handles {
            assert!(
                revs.insert(h.await.unwrap()),
                "a revision was handed out twice"
            );
        }
        assert_eq!(revs, (1..=12).collect());
    }

    #[tokio::test]
    async fn revisions_are_not_reused_after_delete() {
        let e = ecs();
        let now = berth_core::Timestamp(1);
        e.register_task_definition(input("web"), vec![], &caller(), now)
            .await
            .unwrap();
        e.deregister_task_definition("web:1", now).await.unwrap();
        let (deleted, failures) = e
            .delete_task_definitions(&["web:1".into()], now)
            .await
            .unwrap();
        assert_eq!((deleted.len(), failures.len()), (1, 0));
        let td = e
            .register_task_definition(input("web"), vec![], &caller(), now)
            .await
            .unwrap()
            .task_definition;
        assert_eq!(td.revision, 2);
        assert_eq!(td.input.cpu.as_deref(), Some("256"));
        assert_eq!(td.input.memory.as_deref(), Some("512"));
    }

    #[tokio::test]
    async fn default_cluster_is_created_once() {
        let e = ecs();
        e.ensure_default_cluster().await.unwrap();
        e.delete_cluster("default").await.unwrap();
        // A restart must not resurrect a cluster the user deleted.
        e.ensure_default_cluster().await.unwrap();
        let c = e.get_cluster("default").await.unwrap().unwrap();
        assert_eq!(c.status, berth_core::cluster::ClusterStatus::Inactive);
    }

    #[tokio::test]
    async fn list_pages_never_repeat_or_skip() {
        let e = ecs();
        for f in ["a", "a-b", "b", "a_c"] {
            for _ in 0..3 {
                e.register_task_definition(input(f), vec![], &caller(), berth_core::Timestamp(0))
                    .await
                    .unwrap();
            }
        }
        for descending in [false, true] {
            let mut token: Option<String> = None;
            let mut all = Vec::new();
            loop {
                let page = e
                    .list_task_definitions(
                        None,
                        berth_core::taskdef::TaskDefinitionStatus::Active,
                        descending,
                        Some(5),
                        token.as_deref(),
                    )
                    .await
                    .unwrap();
                all.extend(page.items);
                match page.next_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            assert_eq!(all.len(), 12);
            let families: Vec<&str> = all
                .iter()
                .map(|a| a.rsplit_once('/').unwrap().1.split(':').next().unwrap())
                .collect();
            let mut expected = families.clone();
            expected.sort_unstable();
            if descending {
                expected.reverse();
            }
            assert_eq!(families, expected);
        }
    }
}
