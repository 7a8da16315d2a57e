//! The ECS API (`AmazonEC2ContainerServiceV20141113`): request shapes, the
//! typed [`EcsAction`] each request becomes, and [`dispatch`], which runs an
//! action against the control plane and shapes the reply.

pub mod error;

use berth_control::ecs::{
    ClusterField, ClusterSpec, ClusterUpdate, CreateServiceSpec, Failure, FamilyStatusFilter,
    RunTaskSpec, ServiceFilter, TaskFilter, UpdateServiceSpec,
};
use berth_control::{Caller, Ecs, EcsError, IdSource};
use berth_core::cluster::ClusterSetting;
use berth_core::tags::Tag;
use berth_core::taskdef::{TaskDefinitionInput, TaskDefinitionStatus};
use berth_core::Timestamp;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

/// The `X-Amz-Target` prefix of ECS.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";

/// The SigV4 service name ECS requests are signed for.
pub const SIGNING_NAME: &str = "ecs";

/// CreateCluster's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateClusterRequest {
    cluster_name: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    settings: Vec<ClusterSetting>,
    configuration: Option<Value>,
    #[serde(default)]
    capacity_providers: Vec<String>,
    #[serde(default)]
    default_capacity_provider_strategy: Vec<Value>,
    service_connect_defaults: Option<Value>,
}

/// DescribeClusters' body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeClustersRequest {
    #[serde(default)]
    clusters: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

/// The body of the List* operations.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRequest {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// DeleteCluster's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRequest {
    cluster: Option<String>,
}

/// UpdateCluster's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateClusterRequest {
    cluster: Option<String>,
    settings: Option<Vec<ClusterSetting>>,
    configuration: Option<Value>,
    service_connect_defaults: Option<Value>,
}

/// RegisterTaskDefinition's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterTaskDefinitionRequest {
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(flatten)]
    input: TaskDefinitionInput,
}

/// DescribeTaskDefinition's and DeregisterTaskDefinition's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinitionRequest {
    task_definition: Option<String>,
    #[serde(default)]
    include: Vec<String>,
}

/// DeleteTaskDefinitions' body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteTaskDefinitionsRequest {
    #[serde(default)]
    task_definitions: Vec<String>,
}

/// TagResource's, UntagResource's and ListTagsForResource's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagRequest {
    resource_arn: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    tag_keys: Vec<String>,
}

/// StopTask's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopTaskRequest {
    cluster: Option<String>,
    task: Option<String>,
    reason: Option<String>,
}

/// DescribeTasks' body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeTasksRequest {
    cluster: Option<String>,
    #[serde(default)]
    tasks: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

/// ListTasks' body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListTasksRequest {
    cluster: Option<String>,
    /// Accepted and ignored (FARGATE tasks have no container instance).
    #[allow(dead_code)]
    container_instance: Option<String>,
    family: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    started_by: Option<String>,
    service_name: Option<String>,
    desired_status: Option<String>,
    launch_type: Option<String>,
    daemon_name: Option<String>,
}

/// DeleteService's body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteServiceRequest {
    cluster: Option<String>,
    service: Option<String>,
    force: Option<bool>,
}

/// DescribeServices' body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeServicesRequest {
    cluster: Option<String>,
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

/// ListServices' body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListServicesRequest {
    cluster: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    launch_type: Option<String>,
    scheduling_strategy: Option<String>,
    /// Accepted; every Berth service is customer-managed.
    #[allow(dead_code)]
    resource_management_type: Option<String>,
}

/// One ECS request, parsed and typed.
#[derive(Debug)]
pub enum EcsAction {
    /// CreateCluster.
    CreateCluster(CreateClusterRequest),
    /// DescribeClusters.
    DescribeClusters(DescribeClustersRequest),
    /// ListClusters.
    ListClusters(ListRequest),
    /// DeleteCluster.
    DeleteCluster(ClusterRequest),
    /// UpdateCluster.
    UpdateCluster(UpdateClusterRequest),
    /// RegisterTaskDefinition.
    RegisterTaskDefinition(Box<RegisterTaskDefinitionRequest>),
    /// DescribeTaskDefinition.
    DescribeTaskDefinition(TaskDefinitionRequest),
    /// ListTaskDefinitions.
    ListTaskDefinitions(ListRequest),
    /// ListTaskDefinitionFamilies.
    ListTaskDefinitionFamilies(ListRequest),
    /// DeregisterTaskDefinition.
    DeregisterTaskDefinition(TaskDefinitionRequest),
    /// DeleteTaskDefinitions.
    DeleteTaskDefinitions(DeleteTaskDefinitionsRequest),
    /// TagResource.
    TagResource(TagRequest),
    /// UntagResource.
    UntagResource(TagRequest),
    /// ListTagsForResource.
    ListTagsForResource(TagRequest),
    /// RunTask.
    RunTask(Box<RunTaskSpec>),
    /// StopTask.
    StopTask(StopTaskRequest),
    /// DescribeTasks.
    DescribeTasks(DescribeTasksRequest),
    /// ListTasks.
    ListTasks(ListTasksRequest),
    /// CreateService.
    CreateService(Box<CreateServiceSpec>),
    /// UpdateService.
    UpdateService(Box<UpdateServiceSpec>),
    /// DeleteService.
    DeleteService(DeleteServiceRequest),
    /// DescribeServices.
    DescribeServices(DescribeServicesRequest),
    /// ListServices.
    ListServices(ListServicesRequest),
}

/// Why a request could not become an [`EcsAction`].
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// the operation is not one Berth implements (UnknownOperationException)
    #[error("operation {0:?} is not supported by this Berth ECS endpoint")]
    UnknownOperation(String),
    /// the body is not the JSON the operation takes (SerializationException)
    #[error("{operation}: the request body is not valid: {reason}")]
    Serialization {
        /// The operation.
        operation: String,
        /// What serde reported.
        reason: String,
    },
}

fn body<T: DeserializeOwned + Default>(operation: &str, raw: &[u8]) -> Result<T, ParseError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(raw).map_err(|e| ParseError::Serialization {
        operation: operation.to_string(),
        reason: e.to_string(),
    })
}

impl EcsAction {
    /// Parses an operation name (the part of `X-Amz-Target` after the dot)
    /// and its JSON body.
    pub fn parse(operation: &str, raw: &[u8]) -> Result<Self, ParseError> {
        let op = operation;
        Ok(match op {
            "CreateCluster" => Self::CreateCluster(body(op, raw)?),
            "DescribeClusters" => Self::DescribeClusters(body(op, raw)?),
            "ListClusters" => Self::ListClusters(body(op, raw)?),
            "DeleteCluster" => Self::DeleteCluster(body(op, raw)?),
            "UpdateCluster" => Self::UpdateCluster(body(op, raw)?),
            "RegisterTaskDefinition" => Self::RegisterTaskDefinition(Box::new(body(op, raw)?)),
            "DescribeTaskDefinition" => Self::DescribeTaskDefinition(body(op, raw)?),
            "ListTaskDefinitions" => Self::ListTaskDefinitions(body(op, raw)?),
            "ListTaskDefinitionFamilies" => Self::ListTaskDefinitionFamilies(body(op, raw)?),
            "DeregisterTaskDefinition" => Self::DeregisterTaskDefinition(body(op, raw)?),
            "DeleteTaskDefinitions" => Self::DeleteTaskDefinitions(body(op, raw)?),
            "TagResource" => Self::TagResource(body(op, raw)?),
            "UntagResource" => Self::UntagResource(body(op, raw)?),
            "ListTagsForResource" => Self::ListTagsForResource(body(op, raw)?),
            "RunTask" => Self::RunTask(Box::new(body(op, raw)?)),
            "StopTask" => Self::StopTask(body(op, raw)?),
            "DescribeTasks" => Self::DescribeTasks(body(op, raw)?),
            "ListTasks" => Self::ListTasks(body(op, raw)?),
            "CreateService" => Self::CreateService(Box::new(body(op, raw)?)),
            "UpdateService" => Self::UpdateService(Box::new(body(op, raw)?)),
            "DeleteService" => Self::DeleteService(body(op, raw)?),
            "DescribeServices" => Self::DescribeServices(body(op, raw)?),
            "ListServices" => Self::ListServices(body(op, raw)?),
            other => return Err(ParseError::UnknownOperation(other.to_string())),
        })
    }
}

fn required(field: &str, v: Option<String>) -> Result<String, EcsError> {
    match v {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(EcsError::invalid(format!("{field} is required"))),
    }
}

fn cluster_json(
    c: &berth_core::cluster::Cluster,
    include_statistics: bool,
    (running, pending): (u64, u64),
    services: u64,
) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("registeredContainerInstancesCount".into(), json!(0));
        o.insert("runningTasksCount".into(), json!(running));
        o.insert("pendingTasksCount".into(), json!(pending));
        o.insert("activeServicesCount".into(), json!(services));
        o.insert("statistics".into(), json!([]));
        if !include_statistics {
            o.remove("statistics");
        }
        o.insert("attachments".into(), json!([]));
    }
    v
}

fn with_token(mut v: Value, token: Option<String>) -> Value {
    if let (Some(o), Some(t)) = (v.as_object_mut(), token) {
        o.insert("nextToken".into(), Value::String(t));
    }
    v
}

fn include_tags(include: &[String]) -> Result<bool, EcsError> {
    for i in include {
        if i != "TAGS" {
            return Err(EcsError::invalid(format!(
                "include value {i:?} is not valid (the only value is TAGS)"
            )));
        }
    }
    Ok(!include.is_empty())
}

/// Runs an action against the control plane and shapes the reply as botocore's
/// output shape for the operation.
pub async fn dispatch(
    ecs: &Ecs,
    ids: &dyn IdSource,
    action: EcsAction,
    caller: &Caller,
    now: Timestamp,
) -> Result<Value, EcsError> {
    match action {
        EcsAction::CreateCluster(r) => {
            let c = ecs
                .create_cluster(ClusterSpec {
                    name: r.cluster_name,
                    tags: r.tags,
                    settings: r.settings,
                    configuration: r.configuration,
                    capacity_providers: r.capacity_providers,
                    default_capacity_provider_strategy: r.default_capacity_provider_strategy,
                    service_connect_defaults: r.service_connect_defaults,
                })
                .await?;
            Ok(json!({"cluster": cluster_json(&c, false, (0, 0), 0)}))
        }
        EcsAction::DescribeClusters(r) => {
            let include: Vec<ClusterField> = r
                .include
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_, _>>()?;
            let (clusters, failures) = ecs.describe_clusters(&r.clusters, &include).await?;
            let stats = include.contains(&ClusterField::Statistics);
            let mut shaped = Vec::new();
            for c in &clusters {
                let counts = ecs.task_counts(&c.cluster_name).await?;
                let (services, _) = ecs.service_counts(&c.cluster_name).await?;
                shaped.push(cluster_json(c, stats, counts, services));
            }
            Ok(json!({
                "clusters": shaped,
                "failures": failures.iter().map(|(arn, reason)| json!({"arn": arn, "reason": reason})).collect::<Vec<_>>(),
            }))
        }
        EcsAction::ListClusters(r) => {
            let (arns, next) = ecs
                .list_clusters(r.max_results, r.next_token.as_deref())
                .await?;
            Ok(with_token(json!({"clusterArns": arns}), next))
        }
        EcsAction::DeleteCluster(r) => {
            let c = ecs.delete_cluster(&required("cluster", r.cluster)?).await?;
            Ok(json!({"cluster": cluster_json(&c, false, (0, 0), 0)}))
        }
        EcsAction::UpdateCluster(r) => {
            let name = required("cluster", r.cluster)?;
            let c = ecs
                .update_cluster(
                    &name,
                    ClusterUpdate {
                        settings: r.settings,
                        configuration: r.configuration,
                        service_connect_defaults: r.service_connect_defaults,
                    },
                )
                .await?;
            Ok(json!({"cluster": cluster_json(&c, false, (0, 0), 0)}))
        }
        EcsAction::RegisterTaskDefinition(r) => {
            let r = *r;
            let rec = ecs
                .register_task_definition(r.input, r.tags, caller, now)
                .await?;
            Ok(json!({"taskDefinition": rec.task_definition, "tags": rec.tags}))
        }
        EcsAction::DescribeTaskDefinition(r) => {
            let tags = include_tags(&r.include)?;
            let rec = ecs
                .describe_task_definition(&required("taskDefinition", r.task_definition)?)
                .await?;
            let mut v = json!({"taskDefinition": rec.task_definition});
            if tags {
                v["tags"] = json!(rec.tags);
            }
            Ok(v)
        }
        EcsAction::ListTaskDefinitions(r) => {
            let status = match r.status.as_deref() {
                None | Some("ACTIVE") => TaskDefinitionStatus::Active,
                Some("INACTIVE") => TaskDefinitionStatus::Inactive,
                Some("DELETE_IN_PROGRESS") => TaskDefinitionStatus::DeleteInProgress,
                Some(o) => {
                    return Err(EcsError::invalid(format!(
                        "status {o:?} is not valid (use ACTIVE, INACTIVE or DELETE_IN_PROGRESS)"
                    )))
                }
            };
            let descending = match r.sort.as_deref() {
                None | Some("ASC") => false,
                Some("DESC") => true,
                Some(o) => {
                    return Err(EcsError::invalid(format!(
                        "sort {o:?} is not valid (use ASC or DESC)"
                    )))
                }
            };
            let page = ecs
                .list_task_definitions(
                    r.family_prefix.as_deref(),
                    status,
                    descending,
                    r.max_results,
                    r.next_token.as_deref(),
                )
                .await?;
            Ok(with_token(
                json!({"taskDefinitionArns": page.items}),
                page.next_token,
            ))
        }
        EcsAction::ListTaskDefinitionFamilies(r) => {
            let status = match r.status.as_deref() {
                None | Some("ALL") => FamilyStatusFilter::All,
                Some("ACTIVE") => FamilyStatusFilter::Active,
                Some("INACTIVE") => FamilyStatusFilter::Inactive,
                Some(o) => {
                    return Err(EcsError::invalid(format!(
                        "status {o:?} is not valid (use ACTIVE, INACTIVE or ALL)"
                    )))
                }
            };
            let page = ecs
                .list_task_definition_families(
                    r.family_prefix.as_deref(),
                    status,
                    r.max_results,
                    r.next_token.as_deref(),
                )
                .await?;
            Ok(with_token(json!({"families": page.items}), page.next_token))
        }
        EcsAction::DeregisterTaskDefinition(r) => {
            let td = ecs
                .deregister_task_definition(&required("taskDefinition", r.task_definition)?, now)
                .await?;
            Ok(json!({"taskDefinition": td}))
        }
        EcsAction::DeleteTaskDefinitions(r) => {
            let (tds, failures) = ecs
                .delete_task_definitions(&r.task_definitions, now)
                .await?;
            Ok(json!({
                "taskDefinitions": tds,
                "failures": failures.iter().map(|(arn, reason, detail)| {
                    let mut f = json!({"arn": arn, "reason": reason});
                    if let Some(d) = detail { f["detail"] = json!(d); }
                    f
                }).collect::<Vec<_>>(),
            }))
        }
        EcsAction::TagResource(r) => {
            if r.tags.is_empty() {
                return Err(EcsError::invalid("tags is required: pass at least one tag"));
            }
            ecs.tag_resource(&required("resourceArn", r.resource_arn)?, &r.tags)
                .await?;
            Ok(json!({}))
        }
        EcsAction::UntagResource(r) => {
            ecs.untag_resource(&required("resourceArn", r.resource_arn)?, &r.tag_keys)
                .await?;
            Ok(json!({}))
        }
        EcsAction::ListTagsForResource(r) => {
            let tags = ecs
                .list_tags(&required("resourceArn", r.resource_arn)?)
                .await?;
            Ok(json!({"tags": tags}))
        }
        EcsAction::RunTask(spec) => {
            let out = ecs.run_task(*spec, ids, now).await?;
            Ok(json!({"tasks": out.tasks, "failures": failures_json(&out.failures)}))
        }
        EcsAction::StopTask(r) => {
            let task = ecs
                .stop_task(
                    r.cluster.as_deref(),
                    &required("task", r.task)?,
                    r.reason.as_deref(),
                    now,
                )
                .await?;
            Ok(json!({"task": task}))
        }
        EcsAction::DescribeTasks(r) => {
            let tags = include_tags(&r.include)?;
            let (tasks, failures) = ecs
                .describe_tasks(r.cluster.as_deref(), &r.tasks, tags)
                .await?;
            Ok(json!({"tasks": tasks, "failures": failures_json(&failures)}))
        }
        EcsAction::ListTasks(r) => {
            if r.daemon_name.is_some() {
                return Ok(json!({"taskArns": []}));
            }
            let (arns, next) = ecs
                .list_tasks(&TaskFilter {
                    cluster: r.cluster,
                    family: r.family,
                    started_by: r.started_by,
                    service_name: r.service_name,
                    desired_status: r.desired_status,
                    launch_type: r.launch_type,
                    max_results: r.max_results,
                    next_token: r.next_token,
                })
                .await?;
            Ok(with_token(json!({"taskArns": arns}), next))
        }
        EcsAction::CreateService(spec) => {
            let s = ecs.create_service(*spec, caller, ids, now).await?;
            Ok(json!({"service": s}))
        }
        EcsAction::UpdateService(spec) => {
            let s = ecs.update_service(*spec, ids, now).await?;
            Ok(json!({"service": s}))
        }
        EcsAction::DeleteService(r) => {
            let s = ecs
                .delete_service(
                    r.cluster.as_deref(),
                    &required("service", r.service)?,
                    r.force.unwrap_or(false),
                    now,
                )
                .await?;
            Ok(json!({"service": s}))
        }
        EcsAction::DescribeServices(r) => {
            let tags = include_tags(&r.include)?;
            let (services, failures) = ecs
                .describe_services(r.cluster.as_deref(), &r.services, tags, now)
                .await?;
            Ok(json!({"services": services, "failures": failures_json(&failures)}))
        }
        EcsAction::ListServices(r) => {
            let (arns, next) = ecs
                .list_services(&ServiceFilter {
                    cluster: r.cluster,
                    launch_type: r.launch_type,
                    scheduling_strategy: r.scheduling_strategy,
                    max_results: r.max_results,
                    next_token: r.next_token,
                })
                .await?;
            Ok(with_token(json!({"serviceArns": arns}), next))
        }
    }
}

fn failures_json(failures: &[Failure]) -> Value {
    serde_json::to_value(failures).unwrap_or_else(|_| json!([]))
}
