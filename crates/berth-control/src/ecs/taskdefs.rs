//! RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition, DeleteTaskDefinitions.

use std::collections::BTreeMap;

use berth_core::arn::{Arn, EcsResource};
use berth_core::tags::{validate_tags, Tag};
use berth_core::taskdef::{validate, TaskDefinition, TaskDefinitionInput, TaskDefinitionStatus};
use berth_core::Timestamp;
use berth_store::{Compare, Op, Txn};
use serde::{Deserialize, Serialize};

use super::{backoff, decode, encode, Ecs, MAX_RETRIES};
use crate::page::{page_size, paginate, resume_after};
use crate::{keys, Caller, EcsError};

/// A family's revision counter: revisions are never reused, even after a
/// revision is deleted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FamilyRecord {
    /// The last revision handed out.
    pub last_revision: u32,
}

/// A stored task definition revision and its tags.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinitionRecord {
    /// The revision.
    pub task_definition: TaskDefinition,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// How a request names a task definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskDefinitionRef {
    /// `family`: the latest ACTIVE revision.
    Family(String),
    /// `family:revision` or a full ARN.
    Revision(String, u32),
}

impl TaskDefinitionRef {
    /// Parses `family`, `family:revision` or
    /// `arn:aws:ecs:REGION:ACCOUNT:task-definition/family:revision`.
    pub fn parse(s: &str) -> Result<Self, EcsError> {
        if s.starts_with("arn:") {
            let arn: Arn = s
                .parse()
                .map_err(|e: berth_core::arn::ArnError| EcsError::invalid(e.to_string()))?;
            return match arn.resource {
                EcsResource::TaskDefinition { family, revision } => {
                    Ok(Self::Revision(family, revision))
                }
                _ => Err(EcsError::invalid(format!(
                    "{s} is not a task definition ARN"
                ))),
            };
        }
        let bad = || {
            EcsError::client(format!(
                "task definition {s:?} is not valid: use FAMILY, FAMILY:REVISION or a task definition ARN"
            ))
        };
        let is_family = |f: &str| {
            !f.is_empty()
                && f.len() <= 255
                && f.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        match s.split_once(':') {
            Some((family, rev)) => {
                let revision: u32 = rev.parse().map_err(|_| bad())?;
                if !is_family(family) || revision == 0 {
                    return Err(bad());
                }
                Ok(Self::Revision(family.to_string(), revision))
            }
            None if is_family(s) => Ok(Self::Family(s.to_string())),
            None => Err(bad()),
        }
    }

    /// The family named.
    pub fn family(&self) -> &str {
        match self {
            Self::Family(f) | Self::Revision(f, _) => f,
        }
    }
}

/// Which families ListTaskDefinitionFamilies returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyStatusFilter {
    /// Families with at least one ACTIVE revision.
    Active,
    /// Families with no ACTIVE revision.
    Inactive,
    /// All families.
    All,
}

/// One page of ListTaskDefinitions or ListTaskDefinitionFamilies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefinitionPage {
    /// ARNs or family names.
    pub items: Vec<String>,
    /// Resumes the listing.
    pub next_token: Option<String>,
}

/// The sort key of a revision: family order first, then revision order.
/// `\u{1}` sorts before every character a family may contain.
fn sort_key(family: &str, revision: u32) -> String {
    format!("{family}\u{1}{revision:010}")
}

impl Ecs {
    /// RegisterTaskDefinition: validates, takes the family's next revision,
    /// and stores it ACTIVE.
    pub async fn register_task_definition(
        &self,
        mut input: TaskDefinitionInput,
        tags: Vec<Tag>,
        caller: &Caller,
        now: Timestamp,
    ) -> Result<TaskDefinitionRecord, EcsError> {
        let compatibilities = validate(&mut input)?;
        validate_tags(&tags, 0)?;
        let family_key = keys::family(&input.family);
        let _guard = self.lock(&family_key).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let current = self.store.get(&family_key).await?;
            let (rev, mut fam) = match &current {
                Some(kv) => (kv.mod_revision, decode::<FamilyRecord>(kv)?),
                None => (0, FamilyRecord::default()),
            };
            fam.last_revision += 1;
            let revision = fam.last_revision;
            let record = TaskDefinitionRecord {
                task_definition: TaskDefinition {
                    task_definition_arn: self.scope.task_definition_arn(&input.family, revision),
                    revision,
                    status: TaskDefinitionStatus::Active,
                    compatibilities: compatibilities.clone(),
                    requires_attributes: Vec::new(),
                    registered_at: now,
                    registered_by: Some(caller.arn.clone()),
                    deregistered_at: None,
                    delete_requested_at: None,
                    input: input.clone(),
                },
                tags: tags.clone(),
            };
            let txn = Txn::new()
                .when(Compare::ModRevision(family_key.clone(), rev))
                .then(Op::Put(family_key.clone(), encode(&fam)))
                .then(Op::Put(
                    keys::task_definition(&input.family, revision),
                    encode(&record),
                ));
            if self.store.txn(txn).await?.succeeded {
                return Ok(record);
            }
        }
        Err(EcsError::Contention(family_key))
    }

    /// Reads one revision, or the latest ACTIVE revision of a family.
    pub async fn get_task_definition(
        &self,
        r: &TaskDefinitionRef,
    ) -> Result<(TaskDefinitionRecord, u64), EcsError> {
        match r {
            TaskDefinitionRef::Revision(family, revision) => {
                match self.store.get(&keys::task_definition(family, *revision)).await? {
                    Some(kv) => Ok((decode(&kv)?, kv.mod_revision)),
                    None => Err(EcsError::client(format!(
                        "task definition {family}:{revision} does not exist; list revisions with ListTaskDefinitions --family-prefix {family}"
                    ))),
                }
            }
            TaskDefinitionRef::Family(family) => {
                let list = self.store.list(&keys::family_revisions(family)).await?;
                for kv in list.items.iter().rev() {
                    let rec: TaskDefinitionRecord = decode(kv)?;
                    if rec.task_definition.status == TaskDefinitionStatus::Active {
                        return Ok((rec, kv.mod_revision));
                    }
                }
                Err(EcsError::client(if list.items.is_empty() {
                    format!("task definition family {family} does not exist; register it with RegisterTaskDefinition")
                } else {
                    format!("task definition family {family} has no ACTIVE revision; name an inactive one as {family}:REVISION or register a new one")
                }))
            }
        }
    }

    /// DescribeTaskDefinition.
    pub async fn describe_task_definition(
        &self,
        name: &str,
    ) -> Result<TaskDefinitionRecord, EcsError> {
        let r = TaskDefinitionRef::parse(name)?;
        Ok(self.get_task_definition(&r).await?.0)
    }

    async fn all_task_definitions(&self, prefix: &str) -> Result<Vec<TaskDefinition>, EcsError> {
        let list = self.store.list(prefix).await?;
        list.items
            .iter()
            .map(|kv| decode::<TaskDefinitionRecord>(kv).map(|r| r.task_definition))
            .collect()
    }

    /// ListTaskDefinitions: ARNs in family then revision order (`DESC`
    /// reverses it). `family` limits the listing to one family, as ECS's
    /// `familyPrefix` does.
    pub async fn list_task_definitions(
        &self,
        family: Option<&str>,
        status: TaskDefinitionStatus,
        descending: bool,
        max_results: Option<i64>,
        next_token: Option<&str>,
    ) -> Result<TaskDefinitionPage, EcsError> {
        let size = page_size(max_results, 100)?;
        let after = resume_after(next_token)?;
        let prefix = match family {
            Some(f) if !f.is_empty() => keys::family_revisions(f),
            _ => keys::TASK_DEFINITIONS.to_string(),
        };
        let mut tds: Vec<TaskDefinition> = self
            .all_task_definitions(&prefix)
            .await?
            .into_iter()
            .filter(|t| t.status == status)
            .collect();
        tds.sort_by_key(|t| sort_key(&t.input.family, t.revision));
        if descending {
            tds.reverse();
        }
        let (page, next) = paginate(
            tds,
            |t| sort_key(&t.input.family, t.revision),
            after,
            size,
            descending,
        );
        Ok(TaskDefinitionPage {
            items: page.into_iter().map(|t| t.task_definition_arn).collect(),
            next_token: next,
        })
    }

    /// ListTaskDefinitionFamilies: family names starting with `prefix`.
    pub async fn list_task_definition_families(
        &self,
        prefix: Option<&str>,
        status: FamilyStatusFilter,
        max_results: Option<i64>,
        next_token: Option<&str>,
    ) -> Result<TaskDefinitionPage, EcsError> {
        let size = page_size(max_results, 100)?;
        let after = resume_after(next_token)?;
        let mut families: BTreeMap<String, bool> = BTreeMap::new();
        for t in self.all_task_definitions(keys::TASK_DEFINITIONS).await? {
            if !t.input.family.starts_with(prefix.unwrap_or("")) {
                continue;
            }
            let active = families.entry(t.input.family.clone()).or_insert(false);
            *active |= t.status == TaskDefinitionStatus::Active;
        }
        let names: Vec<String> = families
            .into_iter()
            .filter(|(_, active)| match status {
                FamilyStatusFilter::All => true,
                FamilyStatusFilter::Active => *active,
                FamilyStatusFilter::Inactive => !*active,
            })
            .map(|(f, _)| f)
            .collect();
        let (items, next_token) = paginate(names, |f| format!("{f}\u{1}"), after, size, false);
        Ok(TaskDefinitionPage { items, next_token })
    }

    /// Read-modify-write of one revision.
    async fn modify_task_definition(
        &self,
        family: &str,
        revision: u32,
        f: impl Fn(&mut TaskDefinitionRecord) -> Result<(), EcsError>,
    ) -> Result<TaskDefinitionRecord, EcsError> {
        let r = TaskDefinitionRef::Revision(family.to_string(), revision);
        let key = keys::task_definition(family, revision);
        let _guard = self.lock(&key).await;
        for attempt in 0..MAX_RETRIES {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let (mut rec, modrev) = self.get_task_definition(&r).await?;
            f(&mut rec)?;
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), modrev))
                .then(Op::Put(key.clone(), encode(&rec)));
            if self.store.txn(txn).await?.succeeded {
                return Ok(rec);
            }
        }
        Err(EcsError::Contention(key))
    }

    /// DeregisterTaskDefinition: marks one revision INACTIVE.
    pub async fn deregister_task_definition(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<TaskDefinition, EcsError> {
        let (family, revision) = match TaskDefinitionRef::parse(name)? {
            TaskDefinitionRef::Revision(f, r) => (f, r),
            TaskDefinitionRef::Family(f) => {
                return Err(EcsError::client(format!(
                    "deregister needs a revision: name it as {f}:REVISION or by ARN"
                )))
            }
        };
        let rec = self
            .modify_task_definition(&family, revision, |rec| {
                let td = &mut rec.task_definition;
                match td.status {
                    TaskDefinitionStatus::Active => {
                        td.status = TaskDefinitionStatus::Inactive;
                        td.deregistered_at = Some(now);
                        Ok(())
                    }
                    TaskDefinitionStatus::Inactive => Ok(()),
                    TaskDefinitionStatus::DeleteInProgress => Err(EcsError::client(format!(
                        "task definition {family}:{revision} is being deleted"
                    ))),
                }
            })
            .await?;
        Ok(rec.task_definition)
    }

    /// DeleteTaskDefinitions: marks INACTIVE revisions DELETE_IN_PROGRESS.
    /// Each name that cannot be deleted becomes a failure `(arn, reason, detail)`.
    pub async fn delete_task_definitions(
        &self,
        names: &[String],
        now: Timestamp,
    ) -> Result<(Vec<TaskDefinition>, Vec<(String, String, Option<String>)>), EcsError> {
        if names.is_empty() || names.len() > 10 {
            return Err(EcsError::invalid(format!(
                "taskDefinitions has {} entries; delete 1 to 10 task definitions per call",
                names.len()
            )));
        }
        let mut deleted = Vec::new();
        let mut failures = Vec::new();
        for name in names {
            let (family, revision) = match TaskDefinitionRef::parse(name) {
                Ok(TaskDefinitionRef::Revision(f, r)) => (f, r),
                Ok(TaskDefinitionRef::Family(_)) => {
                    failures.push((
                        name.clone(),
                        "The specified task definition identifier is invalid. Specify a valid name or ARN and try again.".to_string(),
                        Some("name it as FAMILY:REVISION or by ARN".to_string()),
                    ));
                    continue;
                }
                Err(e) => {
                    failures.push((name.clone(), e.to_string(), None));
                    continue;
                }
            };
            let arn = self.scope.task_definition_arn(&family, revision);
            let result = self
                .modify_task_definition(&family, revision, |rec| {
                    let td = &mut rec.task_definition;
                    match td.status {
                        TaskDefinitionStatus::Active => Err(EcsError::client(
                            "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
                        )),
                        TaskDefinitionStatus::Inactive => {
                            td.status = TaskDefinitionStatus::DeleteInProgress;
                            td.delete_requested_at = Some(now);
                            Ok(())
                        }
                        TaskDefinitionStatus::DeleteInProgress => Ok(()),
                    }
                })
                .await;
            match result {
                Ok(rec) => deleted.push(rec.task_definition),
                Err(EcsError::Validation(v)) => failures.push((arn, v.message, None)),
                Err(e) => return Err(e),
            }
        }
        Ok((deleted, failures))
    }

    /// Replaces a revision's tags (TagResource / UntagResource).
    pub(crate) async fn modify_task_definition_tags(
        &self,
        family: &str,
        revision: u32,
        f: impl Fn(&mut Vec<Tag>) -> Result<(), EcsError>,
    ) -> Result<(), EcsError> {
        let exists = self
            .store
            .get(&keys::task_definition(family, revision))
            .await?
            .is_some();
        if !exists {
            return Err(EcsError::ResourceNotFound(format!(
                "task definition {family}:{revision} does not exist"
            )));
        }
        self.modify_task_definition(family, revision, |rec| f(&mut rec.tags))
            .await?;
        Ok(())
    }
}
