//! Hosts: registration (with a task subnet per host) and heartbeats.
//!
//! Each host owns the task subnet `10.213.N.0/24`, `N` handed out once from a
//! counter (`/hostsubnets`) when the host first registers and kept for good;
//! `10.213.N.1` is the host's gateway (its bridge), tasks get `.2`–`.254`.

use berth_core::agent::{Heartbeat, HostRegistered, HostRegistration};
use berth_core::Timestamp;
use berth_store::{Compare, Op, Txn};
use serde::{Deserialize, Serialize};

use super::{backoff, decode, encode, Ecs, MAX_RETRIES};
use crate::ids::{self, IdSource};
use crate::{keys, EcsError};

/// The first two octets of every task address.
pub const TASK_NETWORK_PREFIX: &str = "10.213";

/// The prefix length of a host's task subnet.
pub const HOST_PREFIX_LEN: u8 = 24;

/// The largest subnet index (and so the most hosts).
pub const MAX_HOSTS: u16 = 254;

/// How often agents heartbeat unless configured otherwise.
pub const DEFAULT_HEARTBEAT_SECONDS: u64 = 10;

/// A registered host as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRecord {
    /// The host's id.
    pub host_id: String,
    /// The machine's hostname.
    pub hostname: String,
    /// CPU units offered to tasks.
    pub cpu: u32,
    /// Memory offered to tasks, MiB.
    pub memory: u32,
    /// The agent's version.
    pub agent_version: String,
    /// `N` of the host's subnet `NETWORK.N.0/24`.
    pub subnet_index: u16,
    /// The first two octets of the task network (`10.213`), fixed when the
    /// host registered.
    #[serde(default = "default_network")]
    pub network: String,
    /// First registration.
    pub registered_at: Timestamp,
    /// Last registration or heartbeat.
    pub last_heartbeat: Timestamp,
    /// The task ids the agent said it runs, in its last heartbeat.
    #[serde(default)]
    pub running_tasks: Vec<String>,
}

fn default_network() -> String {
    TASK_NETWORK_PREFIX.to_string()
}

impl HostRecord {
    /// `10.213.N.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}.{}.0/{HOST_PREFIX_LEN}", self.network, self.subnet_index)
    }

    /// `10.213.N.1`.
    pub fn gateway(&self) -> String {
        self.address(1)
    }

    /// `10.213.N.octet`.
    pub fn address(&self, octet: u8) -> String {
        format!("{}.{}.{octet}", self.network, self.subnet_index)
    }
}

/// The last host subnet index handed out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubnetCounter {
    /// The last `N` given to a host.
    pub last: u16,
}

/// A host's allocation guard: how many tasks RunTask has placed there.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocRecord {
    /// Tasks placed on the host, ever.
    pub placements: u64,
}

fn validate_registration(r: &HostRegistration) -> Result<(), EcsError> {
    if r.hostname.is_empty() || r.hostname.len() > 255 {
        return Err(EcsError::invalid(
            "hostname must be 1 to 255 characters long",
        ));
    }
    if r.cpu == 0 || r.memory == 0 {
        return Err(EcsError::invalid(format!(
            "host {}: cpu ({}) and memory ({}) must be positive",
            r.hostname, r.cpu, r.memory
        )));
    }
    if r.agent_version.len() > 128 {
        return Err(EcsError::invalid(
            "agentVersion must be at most 128 characters long",
        ));
    }
    Ok(())
}

impl Ecs {
    /// Registers a host, or re-registers a known one (same id and subnet,
    /// updated capacity). A `hostId` the store does not know gets a new id
    /// from `ids`: the agent must use the id in the answer.
    pub async fn register_host(
        &self,
        reg: HostRegistration,
        ids: &dyn IdSource,
        now: Timestamp,
    ) -> Result<HostRegistered, EcsError> {
        validate_registration(&reg)?;
        if let Some(id) = reg.host_id.as_deref() {
            let key = keys::host(id);
            let _guard = self.lock(&key).await;
            for attempt in 0..MAX_RETRIES {
                if attempt > 0 {
                    backoff(attempt).await;
                }
                let Some(kv) = self.store.get(&key).await? else {
                    break;
                };
                let mut h: HostRecord = decode(&kv)?;
                h.hostname.clone_from(&reg.hostname);
                h.cpu = reg.cpu;
                h.memory = reg.memory;
                h.agent_version.clone_from(&reg.agent_version);
                h.last_heartbeat = now;
                let txn = Txn::new()
                    .when(Compare::ModRevision(key.clone(), kv.mod_revision))
                    .then(Op::Put(key.clone(), encode(&h)));
                if self.store.txn(txn).await?.succeeded {
                    return Ok(self.registered(&h));
                }
            }
            if self.store.get(&key).await?.is_some() {
                return Err(EcsError::Contention(key));
            }
        }
        let host_id = ids::host(ids.next_u128());
        let key = keys::host(&host_id);
        let _guard = self.lock(keys::HOST_SUBNETS).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let current = self.store.get(keys::HOST_SUBNETS).await?;
            let (rev, mut counter) = match &current {
                Some(kv) => (kv.mod_revision, decode::<SubnetCounter>(kv)?),
                None => (0, SubnetCounter::default()),
            };
            if counter.last >= MAX_HOSTS {
                return Err(EcsError::client(format!(
                    "every task subnet of {TASK_NETWORK_PREFIX}.0.0/16 is taken ({MAX_HOSTS} hosts registered); no more hosts can join"
                )));
            }
            counter.last += 1;
            let h = HostRecord {
                host_id: host_id.clone(),
                hostname: reg.hostname.clone(),
                cpu: reg.cpu,
                memory: reg.memory,
                agent_version: reg.agent_version.clone(),
                subnet_index: counter.last,
                network: self.task_network().to_string(),
                registered_at: now,
                last_heartbeat: now,
                running_tasks: Vec::new(),
            };
            let txn = Txn::new()
                .when(Compare::ModRevision(keys::HOST_SUBNETS.to_string(), rev))
                .when(Compare::ModRevision(key.clone(), 0))
                .then(Op::Put(keys::HOST_SUBNETS.to_string(), encode(&counter)))
                .then(Op::Put(key.clone(), encode(&h)))
                .then(Op::Put(
                    keys::host_alloc(&host_id),
                    encode(&AllocRecord::default()),
                ));
            if self.store.txn(txn).await?.succeeded {
                return Ok(self.registered(&h));
            }
        }
        Err(EcsError::Contention(keys::HOST_SUBNETS.to_string()))
    }

    fn registered(&self, h: &HostRecord) -> HostRegistered {
        HostRegistered {
            host_id: h.host_id.clone(),
            subnet: h.subnet(),
            gateway: h.gateway(),
            heartbeat_seconds: self.heartbeat_seconds,
        }
    }

    /// Records a heartbeat.
    pub async fn heartbeat(
        &self,
        host_id: &str,
        hb: Heartbeat,
        now: Timestamp,
    ) -> Result<(), EcsError> {
        let key = keys::host(host_id);
        let _guard = self.lock(&key).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some(kv) = self.store.get(&key).await? else {
                return Err(EcsError::HostNotFound(host_id.to_string()));
            };
            let mut h: HostRecord = decode(&kv)?;
            h.last_heartbeat = h.last_heartbeat.max(now);
            h.running_tasks.clone_from(&hb.running_tasks);
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), kv.mod_revision))
                .then(Op::Put(key.clone(), encode(&h)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(());
            }
        }
        Err(EcsError::Contention(key))
    }

    /// Reads a host.
    pub async fn host(&self, host_id: &str) -> Result<HostRecord, EcsError> {
        match self.store.get(&keys::host(host_id)).await? {
            Some(kv) => decode(&kv),
            None => Err(EcsError::HostNotFound(host_id.to_string())),
        }
    }

    /// Every registered host, in id order.
    pub async fn hosts(&self) -> Result<Vec<HostRecord>, EcsError> {
        let list = self.store.list(keys::HOSTS).await?;
        list.items.iter().map(decode).collect()
    }
}
