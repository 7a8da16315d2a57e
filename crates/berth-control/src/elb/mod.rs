//! ELBv2 (application load balancer) semantics over the store: load
//! balancers, target groups, listeners, rules, targets and their health,
//! tags and attributes.
//!
//! Each operation is a method of [`Elb`] and writes the records of
//! `berth_core::elb` under the `/elb/` keys of [`crate::keys`]. Writes follow
//! the pattern of [`crate::Ecs`]: read the records and their mod revisions,
//! decide, write in one transaction guarded by those revisions, and on a
//! conflict read again (bounded retries). Nothing here reads a clock or
//! makes ids: callers pass `now` and an [`IdSource`](crate::IdSource).
//!
//! Writes to the configuration (load balancers, target groups, listeners,
//! rules, tags, attributes) queue on one in-process lock, as they are rare
//! and check invariants across records (a port claimed once per machine, a
//! target group in use cannot be deleted); registering and deregistering
//! targets, which services do all the time, queue per target group.
//!
//! Where to start: [`targets`] (what the ECS service controller calls),
//! [`Elb::records`] (what the data path loads), then [`listeners`] and
//! [`rules`] for the routing configuration. ARNs and how they map to keys
//! are in [`arn`].

pub mod arn;
pub mod attributes;
mod error;
pub mod listeners;
pub mod load_balancers;
pub mod net;
pub mod rules;
pub mod spec;
mod tags;
pub mod target_groups;
pub mod targets;
#[cfg(test)]
mod tests;

pub use arn::ElbArn;
pub use error::ElbError;
pub use listeners::{CreateListenerSpec, ModifyListenerSpec};
pub use load_balancers::{AvailabilityZone, CreateLoadBalancerSpec};
pub use rules::{CreateRuleSpec, ModifyRuleSpec, RuleView};
pub use spec::{
    ActionSpec, CertificateSpec, ConditionSpec, FixedResponseSpec, ForwardSpec, HttpHeaderSpec,
    QueryPairSpec, RedirectSpec, TagSpec, ValuesSpec, WeightSpec,
};
pub use target_groups::{CreateTargetGroupSpec, HealthCheckSpec, TargetGroupView};
pub use targets::{TargetDescription, TargetHealthDescription, TargetSpec};

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_core::elb::dataplane::ElbRecords;
use berth_core::elb::{
    forwards_to, ListenerRecord, LoadBalancerRecord, RuleRecord, TargetGroupRecord,
    TargetHealthRecord, TargetRecord,
};
use berth_core::Scope;
use berth_store::{KeyValue, Store};
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, MutexGuard};

use self::arn::ArnProblem;
use self::net::Ipv4Cidr;
use crate::keys;

/// How many times a conflicting write is retried before giving up.
const MAX_RETRIES: usize = 32;

/// How many striped target locks an [`Elb`] holds.
const LOCK_STRIPES: usize = 64;

/// The network targets may be in when nothing else is configured: Berth's
/// default task network ([`Ipv4Cidr::BERTH_TASKS`]).
pub const DEFAULT_TARGET_NETWORK: &str = "10.213.0.0/16";

/// Where certificates are looked up when nothing else is configured.
pub const DEFAULT_CERTS_DIR: &str = "/var/lib/berth/certs";

/// The ELBv2 control plane for one account and region.
#[derive(Clone)]
pub struct Elb {
    store: Arc<dyn Store>,
    scope: Scope,
    /// Serialises configuration writes within this process (the CAS guards
    /// still protect against other replicas).
    config_lock: Arc<Mutex<()>>,
    /// Serialises target writes per target group within this process.
    target_locks: Arc<Vec<Mutex<()>>>,
    /// The networks whose addresses may be registered as targets.
    target_networks: Arc<Vec<Ipv4Cidr>>,
    /// `{name}.crt` and `{name}.key` for `arn:aws:acm:...:certificate/{name}`.
    certs_dir: PathBuf,
    /// Machine ports no listener may take, and what holds them.
    reserved_ports: Arc<Vec<(u16, String)>>,
}

impl Elb {
    /// ELBv2 over `store`, naming resources in `scope`; targets may be in
    /// [`DEFAULT_TARGET_NETWORK`], certificates are read from
    /// [`DEFAULT_CERTS_DIR`].
    pub fn new(store: Arc<dyn Store>, scope: Scope) -> Self {
        Self {
            store,
            scope,
            config_lock: Arc::new(Mutex::new(())),
            target_locks: Arc::new((0..LOCK_STRIPES).map(|_| Mutex::new(())).collect()),
            target_networks: Arc::new(vec![Ipv4Cidr::BERTH_TASKS]),
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
            reserved_ports: Arc::new(Vec::new()),
        }
    }

    /// Sets the networks (IPv4 CIDR blocks, e.g. `10.213.0.0/16`) whose
    /// addresses RegisterTargets accepts; replaces the default.
    pub fn with_target_networks<S: AsRef<str>>(mut self, cidrs: &[S]) -> Result<Self, ElbError> {
        let mut nets = Vec::new();
        for c in cidrs {
            let net: Ipv4Cidr = c
                .as_ref()
                .trim()
                .parse()
                .map_err(|e: String| ElbError::validation(format!("target network {e}")))?;
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        if nets.is_empty() {
            return Err(ElbError::validation(
                "at least one target network is needed (e.g. 10.213.0.0/16)",
            ));
        }
        self.target_networks = Arc::new(nets);
        Ok(self)
    }

    /// Sets the directory certificates are read from.
    #[must_use]
    pub fn with_certs_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.certs_dir = dir.into();
        self
    }

    /// Reserves a machine port no listener may take (e.g. the API's own),
    /// with what holds it for the error message.
    #[must_use]
    pub fn with_reserved_port(mut self, port: u16, holder: impl Into<String>) -> Self {
        let mut v = (*self.reserved_ports).clone();
        v.push((port, holder.into()));
        self.reserved_ports = Arc::new(v);
        self
    }

    /// The region and account of this control plane.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The networks targets may be in, as CIDR text.
    pub fn target_networks(&self) -> Vec<String> {
        self.target_networks
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// The directory certificates are read from.
    pub fn certs_dir(&self) -> &Path {
        &self.certs_dir
    }

    /// Everything under `/elb/`, read in one listing, and the revision it
    /// reflects (watch `/elb/` from `revision + 1` to follow changes). Health
    /// records of target groups that no longer exist are left out.
    pub async fn records(&self) -> Result<(ElbRecords, u64), ElbError> {
        let list = self.store.list(keys::ELB).await?;
        let mut out = ElbRecords::default();
        let mut health: Vec<(String, String, TargetHealthRecord)> = Vec::new();
        for kv in &list.items {
            let k = kv.key.as_str();
            if k.starts_with(keys::ELB_LBS) {
                out.load_balancers.push(decode(kv)?);
            } else if k.starts_with(keys::ELB_TGS) {
                out.target_groups.push(decode(kv)?);
            } else if k.starts_with(keys::ELB_LISTENERS) {
                out.listeners.push(decode(kv)?);
            } else if k.starts_with(keys::ELB_RULES) {
                out.rules.push(decode(kv)?);
            } else if k.starts_with(keys::ELB_TARGETS) {
                out.targets.push(decode(kv)?);
            } else if let Some(rest) = k.strip_prefix(keys::ELB_HEALTH) {
                if let Some((tg, target)) = rest.split_once('/') {
                    health.push((tg.to_string(), target.to_string(), decode(kv)?));
                }
            }
        }
        for (tg_name, target, rec) in health {
            if let Some(tg) = out.target_groups.iter().find(|t| t.name == tg_name) {
                out.health.insert((tg.arn.clone(), target), rec);
            }
        }
        Ok((out, list.revision))
    }

    // ---- shared lookups ---------------------------------------------------

    /// The configuration write lock.
    async fn config_guard(&self) -> MutexGuard<'_, ()> {
        self.config_lock.lock().await
    }

    /// The write lock of one target group's targets.
    async fn target_guard(&self, tg_name: &str) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        tg_name.hash(&mut h);
        let i = usize::try_from(h.finish() % LOCK_STRIPES as u64).unwrap_or(0);
        self.target_locks[i].lock().await
    }

    /// Reads an ARN the request gave in `field`, expecting a resource of
    /// `kind` ("load balancer", "target group", "listener", "rule"). A
    /// malformed ARN is a ValidationError naming the field; an ARN of
    /// another region or account is the kind's NotFound.
    fn resolve(&self, field: &str, arn: &str, kind: &str) -> Result<ElbArn, ElbError> {
        let example = match kind {
            "load balancer" => "loadbalancer/app/NAME/ID",
            "target group" => "targetgroup/NAME/ID",
            "listener" => "listener/app/LB-NAME/LB-ID/ID",
            _ => "listener-rule/app/LB-NAME/LB-ID/LISTENER-ID/ID",
        };
        match ElbArn::parse(arn, &self.scope) {
            Ok(a) if a.kind() == kind => Ok(a),
            Ok(a) => Err(ElbError::validation(format!(
                "{field}: '{arn}' is a {} ARN; give a {kind} ARN (arn:aws:elasticloadbalancing:{}:{}:{example})",
                a.kind(),
                self.scope.region,
                self.scope.account
            ))),
            Err(ArnProblem::Malformed) => Err(ElbError::validation(format!(
                "{field}: '{arn}' is not a valid {kind} ARN (expected arn:aws:elasticloadbalancing:{}:{}:{example})",
                self.scope.region, self.scope.account
            ))),
            Err(ArnProblem::Foreign) => Err(not_found(kind, arn)),
        }
    }

    async fn get_decoded<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, u64)>, ElbError> {
        match self.store.get(key).await? {
            Some(kv) => Ok(Some((decode(&kv)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    async fn list_decoded<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(T, u64)>, ElbError> {
        let list = self.store.list(prefix).await?;
        list.items
            .iter()
            .map(|kv| Ok((decode(kv)?, kv.mod_revision)))
            .collect()
    }

    /// A load balancer by name, with its mod revision.
    async fn lb_by_name(&self, name: &str) -> Result<Option<(LoadBalancerRecord, u64)>, ElbError> {
        self.get_decoded(&keys::elb_lb(name)).await
    }

    /// A target group by name, with its mod revision.
    async fn tg_by_name(&self, name: &str) -> Result<Option<(TargetGroupRecord, u64)>, ElbError> {
        self.get_decoded(&keys::elb_tg(name)).await
    }

    /// The load balancer an ARN (given in `field`) names, or LoadBalancerNotFound.
    async fn lb_by_arn(
        &self,
        field: &str,
        arn: &str,
    ) -> Result<(LoadBalancerRecord, u64), ElbError> {
        let ElbArn::LoadBalancer { name, .. } = self.resolve(field, arn, "load balancer")? else {
            return Err(not_found("load balancer", arn));
        };
        match self.lb_by_name(&name).await? {
            Some((rec, rev)) if rec.arn == arn => Ok((rec, rev)),
            _ => Err(not_found("load balancer", arn)),
        }
    }

    /// The target group an ARN (given in `field`) names, or TargetGroupNotFound.
    async fn tg_by_arn(
        &self,
        field: &str,
        arn: &str,
    ) -> Result<(TargetGroupRecord, u64), ElbError> {
        let ElbArn::TargetGroup { name, .. } = self.resolve(field, arn, "target group")? else {
            return Err(not_found("target group", arn));
        };
        match self.tg_by_name(&name).await? {
            Some((rec, rev)) if rec.arn == arn => Ok((rec, rev)),
            _ => Err(not_found("target group", arn)),
        }
    }

    /// The listener an ARN (given in `field`) names, or ListenerNotFound.
    async fn listener_by_arn(
        &self,
        field: &str,
        arn: &str,
    ) -> Result<(ListenerRecord, u64), ElbError> {
        let ElbArn::Listener { lb_name, id, .. } = self.resolve(field, arn, "listener")? else {
            return Err(not_found("listener", arn));
        };
        match self
            .get_decoded::<ListenerRecord>(&keys::elb_listener(&lb_name, &id))
            .await?
        {
            Some((rec, rev)) if rec.arn == arn => Ok((rec, rev)),
            _ => Err(not_found("listener", arn)),
        }
    }

    /// Every listener, with its mod revision.
    async fn all_listeners(&self) -> Result<Vec<(ListenerRecord, u64)>, ElbError> {
        self.list_decoded(keys::ELB_LISTENERS).await
    }

    /// Every rule, with its mod revision.
    async fn all_rules(&self) -> Result<Vec<(RuleRecord, u64)>, ElbError> {
        self.list_decoded(keys::ELB_RULES).await
    }

    /// The ARNs of the load balancers whose listeners or rules forward to
    /// the target group, sorted.
    async fn load_balancers_using(&self, tg_arn: &str) -> Result<Vec<String>, ElbError> {
        let listeners = self.all_listeners().await?;
        let rules = self.all_rules().await?;
        Ok(lbs_using(
            tg_arn,
            listeners.iter().map(|(l, _)| l),
            rules.iter().map(|(r, _)| r),
        ))
    }
}

/// The load balancers (ARNs, sorted, once each) whose listeners' default
/// actions or rules forward to `tg_arn`.
fn lbs_using<'a>(
    tg_arn: &str,
    listeners: impl Iterator<Item = &'a ListenerRecord> + Clone,
    rules: impl Iterator<Item = &'a RuleRecord>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in listeners.clone() {
        if forwards_to(&l.default_actions, tg_arn) {
            out.push(l.load_balancer_arn.clone());
        }
    }
    for r in rules {
        if forwards_to(&r.actions, tg_arn) {
            if let Some(l) = listeners.clone().find(|l| l.arn == r.listener_arn) {
                out.push(l.load_balancer_arn.clone());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The NotFound error of a resource kind.
fn not_found(kind: &str, arn: &str) -> ElbError {
    match kind {
        "load balancer" => {
            ElbError::LoadBalancerNotFound(format!("load balancer '{arn}' not found"))
        }
        "target group" => ElbError::TargetGroupNotFound(format!("target group '{arn}' not found")),
        "listener" => ElbError::ListenerNotFound(format!("listener '{arn}' not found")),
        _ => ElbError::RuleNotFound(format!("rule '{arn}' not found")),
    }
}

/// The most items a Describe call returns per page (`PageSize` 1–400).
pub const MAX_PAGE_SIZE: usize = 400;

/// Checks `PageSize` (1–400) and returns the page size.
fn page_size(given: Option<i64>) -> Result<usize, ElbError> {
    match given {
        None => Ok(MAX_PAGE_SIZE),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
            .ok_or_else(|| {
                ElbError::validation(format!(
                    "PageSize: {n} is out of range (use 1 to {MAX_PAGE_SIZE})"
                ))
            }),
    }
}

/// One page of `items` (sorted by `sort_key`) after `marker`, and the
/// marker of the next page when more remain.
fn page<T>(
    items: Vec<T>,
    sort_key: impl Fn(&T) -> String,
    marker: Option<&str>,
    size: usize,
) -> Result<(Vec<T>, Option<String>), ElbError> {
    let after = crate::page::resume_after(marker).map_err(|_| {
        ElbError::validation(
            "Marker: the marker is not valid; pass the NextMarker of the previous response unchanged",
        )
    })?;
    Ok(crate::page::paginate(items, sort_key, after, size, false))
}

/// Waits before retry `attempt` of a conflicting write.
async fn backoff(attempt: usize) {
    crate::ecs::backoff(attempt).await;
}

fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, ElbError> {
    serde_json::from_slice(&kv.value).map_err(|e| ElbError::Corrupt {
        key: kv.key.clone(),
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    crate::ecs::encode(v)
}

/// Health records of a target that no longer counts are found by key;
/// this is the `{ip}:{port}` of a target record.
fn target_key(tg_name: &str, t: &TargetRecord) -> String {
    keys::elb_target(tg_name, &t.id, t.port)
}
