//! TagResource, UntagResource, ListTagsForResource: clusters, task
//! definitions, tasks and services.

use berth_core::arn::{Arn, EcsResource};
use berth_core::tags::{count_new_keys, merge_tags, validate_tags, Tag, MAX_TAGS};

use super::Ecs;
use crate::EcsError;

fn parse_arn(arn: &str) -> Result<EcsResource, EcsError> {
    let parsed: Arn = arn
        .parse()
        .map_err(|e: berth_core::arn::ArnError| EcsError::invalid(format!("resourceArn: {e}")))?;
    Ok(parsed.resource)
}

impl Ecs {
    fn check_scope(&self, arn: &str) -> Result<(), EcsError> {
        let parsed: Arn = arn.parse().map_err(|e: berth_core::arn::ArnError| {
            EcsError::invalid(format!("resourceArn: {e}"))
        })?;
        if parsed.region != self.scope.region || parsed.account != self.scope.account {
            return Err(EcsError::ResourceNotFound(format!(
                "{arn} is not a resource of this account and region ({} in {})",
                self.scope.account, self.scope.region
            )));
        }
        Ok(())
    }

    /// Applies `f` to the tags of the resource named by `arn`.
    async fn modify_tags(
        &self,
        arn: &str,
        f: impl Fn(&mut Vec<Tag>) -> Result<(), EcsError>,
    ) -> Result<(), EcsError> {
        if let Some((cluster, id)) = self.task_arn_parts(arn) {
            return self.modify_task_tags(&cluster, &id, f).await;
        }
        let resource = parse_arn(arn)?;
        self.check_scope(arn)?;
        match resource {
            EcsResource::Cluster(name) => {
                self.modify_cluster(&name, |c| f(&mut c.tags)).await?;
            }
            EcsResource::TaskDefinition { family, revision } => {
                self.modify_task_definition_tags(&family, revision, f)
                    .await?;
            }
            EcsResource::Service { cluster, name } => {
                self.modify_service(&cluster, &name, |s| f(&mut s.service.tags))
                    .await?;
            }
        }
        Ok(())
    }

    /// TagResource: adds or replaces tags.
    pub async fn tag_resource(&self, arn: &str, tags: &[Tag]) -> Result<(), EcsError> {
        validate_tags(tags, 0)?;
        self.modify_tags(arn, |existing| {
            let after = existing.len() + count_new_keys(existing, tags);
            if after > MAX_TAGS {
                return Err(EcsError::invalid(format!(
                    "a resource may carry at most {MAX_TAGS} tags; this request would leave {after}"
                )));
            }
            merge_tags(existing, tags);
            Ok(())
        })
        .await
    }

    /// UntagResource: removes tags by key.
    pub async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<(), EcsError> {
        self.modify_tags(arn, |existing| {
            existing.retain(|t| !keys.iter().any(|k| t.key.as_deref() == Some(k.as_str())));
            Ok(())
        })
        .await
    }

    /// ListTagsForResource.
    pub async fn list_tags(&self, arn: &str) -> Result<Vec<Tag>, EcsError> {
        if let Some((cluster, id)) = self.task_arn_parts(arn) {
            return match self.task_record(&cluster, &id).await? {
                Some((rec, _)) => Ok(rec.task.tags),
                None => Err(EcsError::ResourceNotFound(format!(
                    "task {id} does not exist in cluster {cluster}"
                ))),
            };
        }
        let resource = parse_arn(arn)?;
        self.check_scope(arn)?;
        match resource {
            EcsResource::Cluster(name) => Ok(self.active_cluster(&name).await?.tags),
            EcsResource::TaskDefinition { family, revision } => {
                let r = super::TaskDefinitionRef::Revision(family.clone(), revision);
                match self.get_task_definition(&r).await {
                    Ok((rec, _)) => Ok(rec.tags),
                    Err(EcsError::Validation(_)) => Err(EcsError::ResourceNotFound(format!(
                        "task definition {family}:{revision} does not exist"
                    ))),
                    Err(e) => Err(e),
                }
            }
            EcsResource::Service { cluster, name } => {
                match self.service_record(&cluster, &name).await? {
                    Some((rec, _)) => Ok(rec.service.tags),
                    None => Err(EcsError::ServiceNotFound(format!(
                        "service {name} does not exist in cluster {cluster}"
                    ))),
                }
            }
        }
    }
}
