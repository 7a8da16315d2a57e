//! The ECR API (`AmazonEC2ContainerRegistry_V20150921`): registry tokens,
//! repositories and images. The images themselves move through the OCI
//! distribution API (`berth-registry`) on the same listener.

pub mod error;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use berth_control::ecr::{ImageId, ImageWithTags, Repository, TagStatus};
use berth_control::{Caller, Ecr, EcrError};
use berth_core::tags::Tag;
use berth_core::{Timestamp, ValidationError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::TokenAuthority;
use crate::ecs::ParseError;

/// The `X-Amz-Target` prefix of ECR.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921";

/// The SigV4 service name ECR requests are signed for.
pub const SIGNING_NAME: &str = "ecr";

/// Request bodies of the ECR operations (one shape serves them all; each
/// operation reads the members it takes).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcrRequest {
    registry_id: Option<String>,
    #[serde(default)]
    registry_ids: Vec<String>,
    repository_name: Option<String>,
    #[serde(default)]
    repository_names: Vec<String>,
    image_tag_mutability: Option<String>,
    #[serde(default)]
    tags: Vec<EcrTag>,
    force: Option<bool>,
    #[serde(default)]
    image_ids: Vec<ImageId>,
    #[serde(default)]
    accepted_media_types: Vec<String>,
    filter: Option<Filter>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// ECR tags are `{Key, Value}` (capitalised, unlike ECS).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EcrTag {
    key: Option<String>,
    value: Option<String>,
}

/// `filter` of ListImages / DescribeImages.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    tag_status: Option<String>,
}

/// The ECR operations Berth serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcrOperation {
    /// GetAuthorizationToken.
    GetAuthorizationToken,
    /// CreateRepository.
    CreateRepository,
    /// DescribeRepositories.
    DescribeRepositories,
    /// DeleteRepository.
    DeleteRepository,
    /// DescribeImages.
    DescribeImages,
    /// ListImages.
    ListImages,
    /// BatchGetImage.
    BatchGetImage,
    /// BatchDeleteImage.
    BatchDeleteImage,
}

/// One ECR request, parsed.
#[derive(Debug)]
pub struct EcrAction {
    /// Which operation.
    pub operation: EcrOperation,
    /// Its body.
    pub request: EcrRequest,
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

impl EcrAction {
    /// Parses an operation name and its JSON body.
    pub fn parse(operation: &str, raw: &[u8]) -> Result<Self, ParseError> {
        use EcrOperation::*;
        let op = match operation {
            "GetAuthorizationToken" => GetAuthorizationToken,
            "CreateRepository" => CreateRepository,
            "DescribeRepositories" => DescribeRepositories,
            "DeleteRepository" => DeleteRepository,
            "DescribeImages" => DescribeImages,
            "ListImages" => ListImages,
            "BatchGetImage" => BatchGetImage,
            "BatchDeleteImage" => BatchDeleteImage,
            other => return Err(ParseError::UnknownOperation(other.to_string())),
        };
        Ok(Self {
            operation: op,
            request: body(operation, raw)?,
        })
    }
}

/// What ECR dispatch needs besides the metadata.
pub struct EcrContext<'a> {
    /// The registry metadata.
    pub ecr: &'a Ecr,
    /// Issues registry tokens.
    pub tokens: &'a TokenAuthority,
    /// `host:port` the registry is reached at (repositoryUri, proxyEndpoint).
    pub registry_host: &'a str,
}

fn required(field: &str, v: Option<String>) -> Result<String, EcrError> {
    match v {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(ValidationError::invalid(format!("{field} is required")).into()),
    }
}

fn repo_json(r: &Repository, host: &str) -> Value {
    json!({
        "repositoryArn": r.repository_arn,
        "registryId": r.registry_id,
        "repositoryName": r.repository_name,
        "repositoryUri": format!("{host}/{}", r.repository_name),
        "createdAt": r.created_at,
        "imageTagMutability": r.image_tag_mutability,
        "imageScanningConfiguration": {"scanOnPush": false},
        "encryptionConfiguration": {"encryptionType": "AES256"},
    })
}

fn image_id_json(id: &ImageId) -> Value {
    serde_json::to_value(id).unwrap_or_default()
}

fn detail_json(ecr: &Ecr, repo: &str, i: &ImageWithTags) -> Value {
    let mut v = json!({
        "registryId": ecr.registry_id(),
        "repositoryName": repo,
        "imageDigest": i.image.digest.to_string(),
        "imageSizeInBytes": i.image.size,
        "imagePushedAt": i.image.pushed_at,
        "imageManifestMediaType": i.image.media_type,
        "imageStatus": "ACTIVE",
    });
    if !i.tags.is_empty() {
        v["imageTags"] = json!(i.tags);
    }
    if let Some(a) = &i.image.artifact_media_type {
        v["artifactMediaType"] = json!(a);
    }
    v
}

fn failures_json(f: &[berth_control::ecr::ImageFailure]) -> Value {
    Value::Array(
        f.iter()
            .map(|f| json!({"imageId": image_id_json(&f.image_id), "failureCode": f.code, "failureReason": f.reason}))
            .collect(),
    )
}

fn tag_status(f: Option<&Filter>) -> Result<TagStatus, EcrError> {
    match f.and_then(|f| f.tag_status.as_deref()) {
        None | Some("ANY") => Ok(TagStatus::Any),
        Some("TAGGED") => Ok(TagStatus::Tagged),
        Some("UNTAGGED") => Ok(TagStatus::Untagged),
        Some(o) => Err(ValidationError::invalid(format!(
            "filter.tagStatus {o:?} is not valid (use TAGGED, UNTAGGED or ANY)"
        ))
        .into()),
    }
}

fn with_token(mut v: Value, token: Option<String>) -> Value {
    if let Some(t) = token {
        v["nextToken"] = json!(t);
    }
    v
}

/// Runs an ECR action and shapes botocore's output shape.
pub async fn dispatch(
    cx: &EcrContext<'_>,
    action: EcrAction,
    caller: &Caller,
    access_key_id: &str,
    now: Timestamp,
) -> Result<Value, EcrError> {
    let ecr = cx.ecr;
    let host = cx.registry_host;
    let r = action.request;
    match action.operation {
        EcrOperation::GetAuthorizationToken => {
            for id in &r.registry_ids {
                ecr.registry(Some(id))?;
            }
            let (token, expires) = cx.tokens.issue(caller, access_key_id, now.secs());
            Ok(json!({"authorizationData": [{
                "authorizationToken": STANDARD.encode(format!("AWS:{token}")),
                "expiresAt": Timestamp::from_secs(expires),
                "proxyEndpoint": format!("http://{host}"),
            }]}))
        }
        EcrOperation::CreateRepository => {
            let name = required("repositoryName", r.repository_name)?;
            let tags: Vec<Tag> = r
                .tags
                .into_iter()
                .map(|t| Tag {
                    key: t.key,
                    value: t.value,
                })
                .collect();
            let repo = ecr
                .create_repository(
                    r.registry_id.as_deref(),
                    &name,
                    r.image_tag_mutability.as_deref(),
                    tags,
                    now,
                )
                .await?;
            Ok(json!({"repository": repo_json(&repo, host)}))
        }
        EcrOperation::DescribeRepositories => {
            let (repos, next) = ecr
                .describe_repositories(
                    r.registry_id.as_deref(),
                    &r.repository_names,
                    r.max_results,
                    r.next_token.as_deref(),
                )
                .await?;
            Ok(with_token(
                json!({"repositories": repos.iter().map(|x| repo_json(x, host)).collect::<Vec<_>>()}),
                next,
            ))
        }
        EcrOperation::DeleteRepository => {
            let name = required("repositoryName", r.repository_name)?;
            let repo = ecr
                .delete_repository(r.registry_id.as_deref(), &name, r.force.unwrap_or(false))
                .await?;
            Ok(json!({"repository": repo_json(&repo, host)}))
        }
        EcrOperation::ListImages => {
            let name = required("repositoryName", r.repository_name)?;
            let status = tag_status(r.filter.as_ref())?;
            let (images, next) = ecr
                .list_images(
                    r.registry_id.as_deref(),
                    &name,
                    status,
                    r.max_results,
                    r.next_token.as_deref(),
                )
                .await?;
            let mut ids = Vec::new();
            for i in &images {
                if i.tags.is_empty() {
                    ids.push(json!({"imageDigest": i.image.digest.to_string()}));
                }
                for t in &i.tags {
                    ids.push(json!({"imageDigest": i.image.digest.to_string(), "imageTag": t}));
                }
            }
            Ok(with_token(json!({"imageIds": ids}), next))
        }
        EcrOperation::DescribeImages => {
            let name = required("repositoryName", r.repository_name)?;
            ecr.registry(r.registry_id.as_deref())?;
            if !r.image_ids.is_empty() {
                let (found, failures) = ecr.resolve_ids(&name, &r.image_ids).await?;
                if let Some(f) = failures.first() {
                    return Err(EcrError::ImageNotFound(format!(
                        "The image with imageId {} does not exist within the repository with name '{name}' in the registry with id '{}'",
                        image_id_json(&f.image_id),
                        ecr.registry_id()
                    )));
                }
                let details: Vec<Value> = found
                    .iter()
                    .map(|(_, i)| detail_json(ecr, &name, i))
                    .collect();
                return Ok(json!({"imageDetails": details}));
            }
            let status = tag_status(r.filter.as_ref())?;
            let (images, next) = ecr
                .list_images(
                    r.registry_id.as_deref(),
                    &name,
                    status,
                    r.max_results,
                    r.next_token.as_deref(),
                )
                .await?;
            Ok(with_token(
                json!({"imageDetails": images.iter().map(|i| detail_json(ecr, &name, i)).collect::<Vec<_>>()}),
                next,
            ))
        }
        EcrOperation::BatchGetImage => {
            let name = required("repositoryName", r.repository_name)?;
            ecr.registry(r.registry_id.as_deref())?;
            if r.image_ids.is_empty() || r.image_ids.len() > 100 {
                return Err(
                    ValidationError::invalid("imageIds must hold 1 to 100 image ids").into(),
                );
            }
            let (found, mut failures) = ecr.resolve_ids(&name, &r.image_ids).await?;
            let mut images = Vec::new();
            for (id, i) in found {
                if !r.accepted_media_types.is_empty()
                    && !r.accepted_media_types.contains(&i.image.media_type)
                {
                    failures.push(berth_control::ecr::ImageFailure {
                        image_id: id,
                        code: "UnsupportedImageType",
                        reason: format!(
                            "the manifest is {}, which is not among acceptedMediaTypes",
                            i.image.media_type
                        ),
                    });
                    continue;
                }
                let manifest = String::from_utf8_lossy(&i.image.manifest_bytes()).into_owned();
                let mut image_id = json!({"imageDigest": i.image.digest.to_string()});
                if let Some(t) = &id.image_tag {
                    image_id["imageTag"] = json!(t);
                }
                images.push(json!({
                    "registryId": ecr.registry_id(),
                    "repositoryName": name,
                    "imageId": image_id,
                    "imageManifest": manifest,
                    "imageManifestMediaType": i.image.media_type,
                }));
            }
            Ok(json!({"images": images, "failures": failures_json(&failures)}))
        }
        EcrOperation::BatchDeleteImage => {
            let name = required("repositoryName", r.repository_name)?;
            ecr.registry(r.registry_id.as_deref())?;
            if r.image_ids.is_empty() || r.image_ids.len() > 100 {
                return Err(
                    ValidationError::invalid("imageIds must hold 1 to 100 image ids").into(),
                );
            }
            let (found, failures) = ecr.resolve_ids(&name, &r.image_ids).await?;
            let mut deleted = Vec::new();
            for (id, i) in found {
                if id.image_digest.is_some() {
                    ecr.delete_image(&name, &i.image.digest).await?;
                    for t in &i.tags {
                        deleted.push(
                            json!({"imageDigest": i.image.digest.to_string(), "imageTag": t}),
                        );
                    }
                    if i.tags.is_empty() {
                        deleted.push(json!({"imageDigest": i.image.digest.to_string()}));
                    }
                } else if let Some(t) = &id.image_tag {
                    ecr.delete_tag(&name, t).await?;
                    deleted.push(json!({"imageDigest": i.image.digest.to_string(), "imageTag": t}));
                }
            }
            Ok(json!({"imageIds": deleted, "failures": failures_json(&failures)}))
        }
    }
}
