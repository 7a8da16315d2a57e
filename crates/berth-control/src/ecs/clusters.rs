//! CreateCluster, DescribeClusters, ListClusters, DeleteCluster, UpdateCluster.

use berth_core::arn::{Arn, EcsResource};
use berth_core::cluster::{
    merge_settings, validate_cluster_name, validate_settings, Cluster, ClusterSetting,
    ClusterStatus, CAPACITY_PROVIDERS, DEFAULT_CLUSTER,
};
use berth_core::tags::{validate_tags, Tag};
use berth_store::{Compare, Op, Txn};
use serde_json::Value;

use super::{backoff, decode, encode, Ecs, MAX_RETRIES};
use crate::page::{page_size, paginate, resume_after};
use crate::{keys, EcsError};

/// What CreateCluster asks for.
#[derive(Debug, Clone, Default)]
pub struct ClusterSpec {
    /// The name; `default` when absent.
    pub name: Option<String>,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Settings (containerInsights).
    pub settings: Vec<ClusterSetting>,
    /// Configuration, kept as given.
    pub configuration: Option<Value>,
    /// Capacity providers.
    pub capacity_providers: Vec<String>,
    /// Default capacity provider strategy, kept as given.
    pub default_capacity_provider_strategy: Vec<Value>,
    /// Service Connect defaults, kept as given.
    pub service_connect_defaults: Option<Value>,
}

/// What UpdateCluster changes.
#[derive(Debug, Clone, Default)]
pub struct ClusterUpdate {
    /// Settings merged by name.
    pub settings: Option<Vec<ClusterSetting>>,
    /// Replaces the configuration.
    pub configuration: Option<Value>,
    /// Replaces the Service Connect defaults.
    pub service_connect_defaults: Option<Value>,
}

/// Optional parts of a cluster that DescribeClusters includes on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterField {
    /// Attachments.
    Attachments,
    /// The configuration.
    Configurations,
    /// The settings.
    Settings,
    /// Task and service counts.
    Statistics,
    /// Tags.
    Tags,
}

impl std::str::FromStr for ClusterField {
    type Err = EcsError;
    fn from_str(s: &str) -> Result<Self, EcsError> {
        Ok(match s {
            "ATTACHMENTS" => Self::Attachments,
            "CONFIGURATIONS" => Self::Configurations,
            "SETTINGS" => Self::Settings,
            "STATISTICS" => Self::Statistics,
            "TAGS" => Self::Tags,
            other => {
                return Err(EcsError::invalid(format!(
                    "include value {other:?} is not valid (use ATTACHMENTS, CONFIGURATIONS, SETTINGS, STATISTICS or TAGS)"
                )))
            }
        })
    }
}

/// A cluster as DescribeClusters shows it, with only the requested parts.
pub fn cluster_view(c: &Cluster, include: &[ClusterField]) -> Cluster {
    let mut v = c.clone();
    if !include.contains(&ClusterField::Tags) {
        v.tags.clear();
    }
    if !include.contains(&ClusterField::Settings) {
        v.settings.clear();
    }
    if !include.contains(&ClusterField::Configurations) {
        v.configuration = None;
    }
    v
}

impl Ecs {
    /// Resolves a cluster name or ARN to a name. ARNs of another region or
    /// account, or of another resource type, are refused.
    pub fn cluster_name(&self, name_or_arn: &str) -> Result<String, EcsError> {
        if !name_or_arn.starts_with("arn:") {
            validate_cluster_name(name_or_arn)?;
            return Ok(name_or_arn.to_string());
        }
        let arn: Arn = name_or_arn
            .parse()
            .map_err(|e: berth_core::arn::ArnError| EcsError::invalid(e.to_string()))?;
        match arn.resource {
            EcsResource::Cluster(name)
                if arn.region == self.scope.region && arn.account == self.scope.account =>
            {
                Ok(name)
            }
            EcsResource::Cluster(_) => Err(EcsError::ClusterNotFound(name_or_arn.to_string())),
            _ => Err(EcsError::invalid(format!(
                "{name_or_arn} is not a cluster ARN"
            ))),
        }
    }

    /// Reads a cluster by name, ACTIVE or INACTIVE.
    pub async fn get_cluster(&self, name: &str) -> Result<Option<Cluster>, EcsError> {
        match self.store.get(&keys::cluster(name)).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// Reads an ACTIVE cluster by name or ARN, or fails with ClusterNotFound.
    pub async fn active_cluster(&self, name_or_arn: &str) -> Result<Cluster, EcsError> {
        let name = self.cluster_name(name_or_arn)?;
        match self.get_cluster(&name).await? {
            Some(c) if c.status == ClusterStatus::Active => Ok(c),
            _ => Err(EcsError::ClusterNotFound(name)),
        }
    }

    /// Creates the `default` cluster when the store has never had one.
    /// Called once when a data directory is initialised.
    pub async fn ensure_default_cluster(&self) -> Result<(), EcsError> {
        let key = keys::cluster(DEFAULT_CLUSTER);
        let cluster = self.new_cluster(ClusterSpec::default(), DEFAULT_CLUSTER);
        self.store
            .txn(
                Txn::new()
                    .when(Compare::ModRevision(key.clone(), 0))
                    .then(Op::Put(key, encode(&cluster))),
            )
            .await?;
        Ok(())
    }

    fn new_cluster(&self, spec: ClusterSpec, name: &str) -> Cluster {
        let mut settings = vec![ClusterSetting {
            name: Some("containerInsights".into()),
            value: Some("disabled".into()),
        }];
        merge_settings(&mut settings, &spec.settings);
        Cluster {
            cluster_arn: self.scope.cluster_arn(name),
            cluster_name: name.to_string(),
            status: ClusterStatus::Active,
            tags: spec.tags,
            settings,
            configuration: spec.configuration,
            capacity_providers: spec.capacity_providers,
            default_capacity_provider_strategy: spec.default_capacity_provider_strategy,
            service_connect_defaults: spec.service_connect_defaults,
        }
    }

    /// CreateCluster. Creating an ACTIVE cluster again returns it unchanged,
    /// as ECS does; creating an INACTIVE one makes it ACTIVE again.
    pub async fn create_cluster(&self, spec: ClusterSpec) -> Result<Cluster, EcsError> {
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
        validate_cluster_name(&name)?;
        validate_tags(&spec.tags, 0)?;
        validate_settings(&spec.settings)?;
        for cp in &spec.capacity_providers {
            if !CAPACITY_PROVIDERS.contains(&cp.as_str()) {
                return Err(EcsError::invalid(format!(
                    "capacityProviders: {cp:?} is not a capacity provider of this account (use FARGATE or FARGATE_SPOT)"
                )));
            }
        }
        let key = keys::cluster(&name);
        let _guard = self.lock(&key).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let current = self.store.get(&key).await?;
            let rev = current.as_ref().map_or(0, |kv| kv.mod_revision);
            if let Some(kv) = &current {
                let existing: Cluster = decode(kv)?;
                if existing.status == ClusterStatus::Active {
                    return Ok(existing);
                }
            }
            let cluster = self.new_cluster(spec.clone(), &name);
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .then(Op::Put(key.clone(), encode(&cluster)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(cluster);
            }
        }
        Err(EcsError::Contention(key))
    }

    /// DescribeClusters: found clusters, and a MISSING failure for each name
    /// that does not exist. No names means `default`.
    pub async fn describe_clusters(
        &self,
        names: &[String],
        include: &[ClusterField],
    ) -> Result<(Vec<Cluster>, Vec<(String, String)>), EcsError> {
        if names.len() > 100 {
            return Err(EcsError::invalid(format!(
                "clusters has {} entries; describe at most 100 clusters per call",
                names.len()
            )));
        }
        let default = [DEFAULT_CLUSTER.to_string()];
        let names = if names.is_empty() {
            &default[..]
        } else {
            names
        };
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for n in names {
            let name = match self.cluster_name(n) {
                Ok(name) => name,
                Err(EcsError::ClusterNotFound(_)) => {
                    failures.push((n.clone(), "MISSING".to_string()));
                    continue;
                }
                Err(e) => return Err(e),
            };
            match self.get_cluster(&name).await? {
                Some(c) => found.push(cluster_view(&c, include)),
                None => failures.push((self.scope.cluster_arn(&name), "MISSING".to_string())),
            }
        }
        Ok((found, failures))
    }

    /// ListClusters: ARNs of ACTIVE clusters, in name order.
    pub async fn list_clusters(
        &self,
        max_results: Option<i64>,
        next_token: Option<&str>,
    ) -> Result<(Vec<String>, Option<String>), EcsError> {
        let size = page_size(max_results, 100)?;
        let after = resume_after(next_token)?;
        let list = self.store.list(keys::CLUSTERS).await?;
        let mut clusters = Vec::new();
        for kv in &list.items {
            let c: Cluster = decode(kv)?;
            if c.status == ClusterStatus::Active {
                clusters.push(c);
            }
        }
        let (page, next) = paginate(clusters, |c| c.cluster_name.clone(), after, size, false);
        Ok((page.into_iter().map(|c| c.cluster_arn).collect(), next))
    }

    /// DeleteCluster: marks the cluster INACTIVE and returns it. A cluster
    /// with ACTIVE or DRAINING services, or with tasks that have not
    /// stopped, cannot be deleted.
    pub async fn delete_cluster(&self, name_or_arn: &str) -> Result<Cluster, EcsError> {
        let name = self.cluster_name(name_or_arn)?;
        let (services, draining) = self.service_counts(&name).await?;
        if services + draining > 0 {
            return Err(EcsError::ClusterContainsServices(format!(
                "The Cluster cannot be deleted while Services are active: cluster {name} has {services} active and {draining} draining service(s); delete them with DeleteService (force) and wait until they are INACTIVE"
            )));
        }
        let active = self.active_task_count(&name).await?;
        if active > 0 {
            return Err(EcsError::ClusterContainsTasks(format!(
                "The Cluster cannot be deleted while Tasks are active: cluster {name} has {active} task(s) not STOPPED; stop them with StopTask first"
            )));
        }
        self.modify_cluster(name_or_arn, |c| {
            c.status = ClusterStatus::Inactive;
            Ok(())
        })
        .await
    }

    /// UpdateCluster.
    pub async fn update_cluster(
        &self,
        name_or_arn: &str,
        update: ClusterUpdate,
    ) -> Result<Cluster, EcsError> {
        if let Some(s) = &update.settings {
            validate_settings(s)?;
        }
        self.modify_cluster(name_or_arn, |c| {
            if let Some(s) = &update.settings {
                merge_settings(&mut c.settings, s);
            }
            if let Some(conf) = &update.configuration {
                c.configuration = Some(conf.clone());
            }
            if let Some(sc) = &update.service_connect_defaults {
                c.service_connect_defaults = Some(sc.clone());
            }
            Ok(())
        })
        .await
    }

    /// Read-modify-write of an ACTIVE cluster, guarded by its mod revision.
    pub(crate) async fn modify_cluster(
        &self,
        name_or_arn: &str,
        f: impl Fn(&mut Cluster) -> Result<(), EcsError>,
    ) -> Result<Cluster, EcsError> {
        let name = self.cluster_name(name_or_arn)?;
        let key = keys::cluster(&name);
        let _guard = self.lock(&key).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let Some(kv) = self.store.get(&key).await? else {
                return Err(EcsError::ClusterNotFound(name));
            };
            let mut c: Cluster = decode(&kv)?;
            if c.status != ClusterStatus::Active {
                return Err(EcsError::ClusterNotFound(name));
            }
            f(&mut c)?;
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), kv.mod_revision))
                .then(Op::Put(key.clone(), encode(&c)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(c);
            }
        }
        Err(EcsError::Contention(key))
    }
}
