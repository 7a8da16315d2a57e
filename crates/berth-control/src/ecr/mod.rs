//! The registry's metadata: repositories, images (manifests) and tags, and
//! which blobs each repository holds. Shared by the ECR API and the OCI
//! distribution server, so `aws ecr describe-images` and `skopeo` see the
//! same state.
//!
//! Manifests are small (ECR caps them at 4 MiB) and are kept in the state
//! store with their record, so an image's metadata is one consistent read.
//! Layer and config bytes live in the blob store (`berth_oci::blobstore`).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use berth_core::tags::{validate_tags, Tag};
use berth_core::{Scope, Timestamp, ValidationError};
use berth_oci::reference::{validate_repository, validate_tag};
use berth_oci::Digest;
use berth_store::{Compare, KeyValue, Op, Store, Txn};
use serde::{Deserialize, Serialize};

use crate::page::{page_size, paginate, resume_after};

/// The largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

const REPOS: &str = "/ecr/repos/";

fn repo_key(name: &str) -> String {
    format!("{REPOS}{name}")
}
// A repository's keys end its name with ':', a character repository names
// cannot contain, so the prefix of `aa` is never a prefix of `aa/bb`'s keys.
fn image_prefix(repo: &str) -> String {
    format!("/ecr/images/{repo}:")
}
fn image_key(repo: &str, digest: &Digest) -> String {
    format!("/ecr/images/{repo}:{digest}")
}
fn tag_prefix(repo: &str) -> String {
    format!("/ecr/tags/{repo}:")
}
fn tag_key(repo: &str, tag: &str) -> String {
    format!("/ecr/tags/{repo}:{tag}")
}
fn blob_prefix(repo: &str) -> String {
    format!("/ecr/blobs/{repo}:")
}
fn blob_key(repo: &str, digest: &Digest) -> String {
    format!("/ecr/blobs/{repo}:{digest}")
}

/// A registry failure, before it becomes a wire error.
#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    /// a parameter is invalid
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// the repository does not exist
    #[error("repository {0} does not exist in this registry; create it with `aws ecr create-repository --repository-name {0}` or push to it")]
    RepositoryNotFound(String),
    /// the repository already exists
    #[error("repository {0} already exists")]
    RepositoryAlreadyExists(String),
    /// the repository still holds images
    #[error("repository {0} still holds images; delete them first or pass --force")]
    RepositoryNotEmpty(String),
    /// the image does not exist
    #[error("{0}")]
    ImageNotFound(String),
    /// an IMMUTABLE tag would be moved
    #[error("the image tag {tag:?} already exists in the {repo:?} repository and cannot be overwritten because the repository is immutable")]
    ImageTagAlreadyExists {
        /// The repository.
        repo: String,
        /// The tag.
        tag: String,
    },
    /// a manifest references a blob the repository does not hold
    #[error("manifest references blob {digest}, which repository {repo} does not hold; push the blob first")]
    ManifestBlobUnknown {
        /// The repository.
        repo: String,
        /// The missing blob.
        digest: Digest,
    },
    /// the state store failed
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    /// the manifest contradicts what the repository holds
    #[error("manifest is not valid: {0}")]
    ManifestInvalid(String),
    /// a stored record could not be decoded
    #[error("stored record {0} is not valid")]
    Corrupt(String),
}

/// A repository as stored and returned (less its URI, which depends on the
/// address the registry is reached at).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    /// `arn:aws:ecr:REGION:ACCOUNT:repository/NAME`.
    pub repository_arn: String,
    /// The account id.
    pub registry_id: String,
    /// The name.
    pub repository_name: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// `MUTABLE` or `IMMUTABLE`.
    pub image_tag_mutability: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// An image (a manifest) in a repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// The manifest digest.
    pub digest: Digest,
    /// The manifest media type.
    pub media_type: String,
    /// The config media type (the artifact type), if an image manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_media_type: Option<String>,
    /// Manifest plus referenced blob sizes.
    pub size: u64,
    /// When it was pushed.
    pub pushed_at: Timestamp,
    /// The manifest bytes, base64.
    pub manifest: String,
    /// Blobs and child manifests it references.
    #[serde(default)]
    pub references: Vec<Digest>,
}

impl ImageRecord {
    /// The manifest bytes.
    pub fn manifest_bytes(&self) -> Vec<u8> {
        STANDARD.decode(&self.manifest).unwrap_or_default()
    }
}

/// An image and its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageWithTags {
    /// The image.
    pub image: ImageRecord,
    /// The tags pointing at it, sorted.
    pub tags: Vec<String>,
}

/// A manifest being stored by a push.
#[derive(Debug, Clone)]
pub struct NewManifest {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// The config media type, for image manifests.
    pub artifact_media_type: Option<String>,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Blobs (config, layers) it references: must be held by the repository.
    pub blobs: Vec<(Digest, u64)>,
    /// Manifests (index entries) it references: must be images of the repository.
    pub manifests: Vec<Digest>,
}

/// Selects images by digest, tag, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageId {
    /// The manifest digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// A tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
}

/// One image that a batch operation could not handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFailure {
    /// The id as given.
    pub image_id: ImageId,
    /// ECR's failure code (ImageNotFound, InvalidImageDigest, ...).
    pub code: &'static str,
    /// Why.
    pub reason: String,
}

/// Which images a listing includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagStatus {
    /// Images with at least one tag.
    Tagged,
    /// Images without tags.
    Untagged,
    /// All.
    Any,
}

/// The registry metadata of one account.
#[derive(Clone)]
pub struct Ecr {
    store: Arc<dyn Store>,
    scope: Scope,
}

fn decode<T: serde::de::DeserializeOwned>(kv: &KeyValue) -> Result<T, EcrError> {
    serde_json::from_slice(&kv.value).map_err(|_| EcrError::Corrupt(kv.key.clone()))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn check_repo_name(name: &str) -> Result<(), EcrError> {
    if name.len() < 2 {
        return Err(ValidationError::invalid(format!(
            "repositoryName {name:?} is too short: use 2 to 256 characters"
        ))
        .into());
    }
    validate_repository(name)
        .map_err(|e| ValidationError::invalid(format!("repositoryName: {e}")))?;
    Ok(())
}

impl Ecr {
    /// Registry metadata over `store`, for `scope`'s account.
    pub fn new(store: Arc<dyn Store>, scope: Scope) -> Self {
        Self { store, scope }
    }

    /// The account id (ECR's registry id).
    pub fn registry_id(&self) -> &str {
        &self.scope.account
    }

    /// The scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    fn check_registry_id(&self, id: Option<&str>) -> Result<(), EcrError> {
        match id {
            Some(id) if id != self.scope.account => Err(ValidationError::invalid(format!(
                "registryId {id} is not this registry (its id is {})",
                self.scope.account
            ))
            .into()),
            _ => Ok(()),
        }
    }

    fn new_repository(
        &self,
        name: &str,
        mutability: &str,
        tags: Vec<Tag>,
        now: Timestamp,
    ) -> Repository {
        Repository {
            repository_arn: format!(
                "arn:aws:ecr:{}:{}:repository/{name}",
                self.scope.region, self.scope.account
            ),
            registry_id: self.scope.account.clone(),
            repository_name: name.to_string(),
            created_at: now,
            image_tag_mutability: mutability.to_string(),
            tags,
        }
    }

    /// CreateRepository.
    pub async fn create_repository(
        &self,
        registry_id: Option<&str>,
        name: &str,
        mutability: Option<&str>,
        tags: Vec<Tag>,
        now: Timestamp,
    ) -> Result<Repository, EcrError> {
        self.check_registry_id(registry_id)?;
        check_repo_name(name)?;
        validate_tags(&tags, 0)?;
        let mutability = match mutability.unwrap_or("MUTABLE") {
            m @ ("MUTABLE" | "IMMUTABLE") => m,
            other => {
                return Err(ValidationError::invalid(format!(
                    "imageTagMutability {other:?} is not valid (use MUTABLE or IMMUTABLE)"
                ))
                .into())
            }
        };
        let repo = self.new_repository(name, mutability, tags, now);
        let key = repo_key(name);
        let txn = Txn::new()
            .when(Compare::ModRevision(key.clone(), 0))
            .then(Op::Put(key, encode(&repo)));
        if self.store.txn(txn).await?.succeeded {
            Ok(repo)
        } else {
            Err(EcrError::RepositoryAlreadyExists(name.to_string()))
        }
    }

    /// The repository, created (MUTABLE) if it does not exist: a push to a
    /// new name creates its repository.
    pub async fn ensure_repository(
        &self,
        name: &str,
        now: Timestamp,
    ) -> Result<Repository, EcrError> {
        check_repo_name(name)?;
        if let Some(r) = self.get_repository(name).await? {
            return Ok(r);
        }
        match self
            .create_repository(None, name, None, Vec::new(), now)
            .await
        {
            Ok(r) => Ok(r),
            Err(EcrError::RepositoryAlreadyExists(_)) => self
                .get_repository(name)
                .await?
                .ok_or_else(|| EcrError::RepositoryNotFound(name.to_string())),
            Err(e) => Err(e),
        }
    }

    /// A repository, if it exists.
    pub async fn get_repository(&self, name: &str) -> Result<Option<Repository>, EcrError> {
        match self.store.get(&repo_key(name)).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    async fn repository(&self, name: &str) -> Result<Repository, EcrError> {
        check_repo_name(name)?;
        self.get_repository(name)
            .await?
            .ok_or_else(|| EcrError::RepositoryNotFound(name.to_string()))
    }

    /// DescribeRepositories: the named ones (each must exist) or all, paginated.
    pub async fn describe_repositories(
        &self,
        registry_id: Option<&str>,
        names: &[String],
        max_results: Option<i64>,
        next_token: Option<&str>,
    ) -> Result<(Vec<Repository>, Option<String>), EcrError> {
        self.check_registry_id(registry_id)?;
        if !names.is_empty() {
            if max_results.is_some() || next_token.is_some() {
                return Err(ValidationError::invalid(
                    "maxResults and nextToken cannot be used with repositoryNames",
                )
                .into());
            }
            let mut out = Vec::new();
            for n in names {
                out.push(self.repository(n).await?);
            }
            return Ok((out, None));
        }
        let size = page_size(max_results, 1000).map_err(to_ecr)?;
        let after = resume_after(next_token).map_err(to_ecr)?;
        let list = self.store.list(REPOS).await?;
        let repos: Vec<Repository> = list.items.iter().map(decode).collect::<Result<_, _>>()?;
        Ok(paginate(
            repos,
            |r| r.repository_name.clone(),
            after,
            size,
            false,
        ))
    }

    /// All repository names, sorted (the registry catalog).
    pub async fn repository_names(&self) -> Result<Vec<String>, EcrError> {
        let list = self.store.list(REPOS).await?;
        Ok(list
            .items
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(REPOS).map(str::to_string))
            .collect())
    }

    /// DeleteRepository: refuses a repository with images unless `force`.
    pub async fn delete_repository(
        &self,
        registry_id: Option<&str>,
        name: &str,
        force: bool,
    ) -> Result<Repository, EcrError> {
        self.check_registry_id(registry_id)?;
        let repo = self.repository(name).await?;
        let images = self.store.list(&image_prefix(name)).await?;
        if !images.items.is_empty() && !force {
            return Err(EcrError::RepositoryNotEmpty(name.to_string()));
        }
        let mut txn = Txn::new().then(Op::Delete(repo_key(name)));
        for prefix in [image_prefix(name), tag_prefix(name), blob_prefix(name)] {
            for kv in self.store.list(&prefix).await?.items {
                txn = txn.then(Op::Delete(kv.key));
            }
        }
        for kv in self.store.list("/ecr/uploads/").await?.items {
            if kv.value == name.as_bytes() {
                txn = txn.then(Op::Delete(kv.key));
            }
        }
        self.store.txn(txn).await?;
        Ok(repo)
    }

    /// Records that `repo` holds blob `digest` (after an upload or mount).
    pub async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<(), EcrError> {
        let key = blob_key(repo, digest);
        self.store
            .txn(Txn::new().then(Op::Put(key, size.to_string().into_bytes())))
            .await?;
        Ok(())
    }

    /// Whether `repo` holds blob `digest`, and its size.
    pub async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, EcrError> {
        Ok(self
            .store
            .get(&blob_key(repo, digest))
            .await?
            .and_then(|kv| String::from_utf8(kv.value).ok())
            .and_then(|s| s.parse().ok()))
    }

    /// Removes blob `digest` from `repo`; false if it was not there.
    pub async fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, EcrError> {
        let key = blob_key(repo, digest);
        let existed = self.store.get(&key).await?.is_some();
        self.store.txn(Txn::new().then(Op::Delete(key))).await?;
        Ok(existed)
    }

    /// Stores a pushed manifest and, if `tag` is given, points the tag at it.
    /// Every referenced blob must be held by the repository and every
    /// referenced manifest must be one of its images.
    pub async fn put_manifest(
        &self,
        repo: &str,
        tag: Option<&str>,
        m: NewManifest,
        now: Timestamp,
    ) -> Result<ImageRecord, EcrError> {
        let repository = self.ensure_repository(repo, now).await?;
        if let Some(t) = tag {
            validate_tag(t).map_err(ValidationError::invalid)?;
        }
        let mut size = m.bytes.len() as u64;
        for (d, s) in &m.blobs {
            let Some(held) = self.blob_size(repo, d).await? else {
                return Err(EcrError::ManifestBlobUnknown {
                    repo: repo.to_string(),
                    digest: d.clone(),
                });
            };
            if held != *s {
                return Err(EcrError::ManifestInvalid(format!(
                    "the manifest gives blob {d} a size of {s} bytes, but the blob holds {held}"
                )));
            }
            size = size.saturating_add(*s);
        }
        for d in &m.manifests {
            if self.store.get(&image_key(repo, d)).await?.is_none() {
                return Err(EcrError::ManifestBlobUnknown {
                    repo: repo.to_string(),
                    digest: d.clone(),
                });
            }
        }
        let image_k = image_key(repo, &m.digest);
        for _ in 0..32 {
            let existing = self.store.get(&image_k).await?;
            let record = match &existing {
                Some(kv) => decode::<ImageRecord>(kv)?,
                None => ImageRecord {
                    digest: m.digest.clone(),
                    media_type: m.media_type.clone(),
                    artifact_media_type: m.artifact_media_type.clone(),
                    size,
                    pushed_at: now,
                    manifest: STANDARD.encode(&m.bytes),
                    references: m
                        .blobs
                        .iter()
                        .map(|(d, _)| d.clone())
                        .chain(m.manifests.iter().cloned())
                        .collect(),
                },
            };
            let mut txn = Txn::new().when(Compare::ModRevision(
                image_k.clone(),
                existing.as_ref().map_or(0, |kv| kv.mod_revision),
            ));
            if existing.is_none() {
                txn = txn.then(Op::Put(image_k.clone(), encode(&record)));
            }
            if let Some(t) = tag {
                let tk = tag_key(repo, t);
                let current = self.store.get(&tk).await?;
                let current_digest = current
                    .as_ref()
                    .and_then(|kv| String::from_utf8(kv.value.clone()).ok());
                if let Some(cd) = &current_digest {
                    if repository.image_tag_mutability == "IMMUTABLE" && *cd != m.digest.to_string()
                    {
                        return Err(EcrError::ImageTagAlreadyExists {
                            repo: repo.to_string(),
                            tag: t.to_string(),
                        });
                    }
                }
                txn = txn
                    .when(Compare::ModRevision(
                        tk.clone(),
                        current.as_ref().map_or(0, |kv| kv.mod_revision),
                    ))
                    .then(Op::Put(tk, m.digest.to_string().into_bytes()));
            }
            if txn.success.is_empty() || self.store.txn(txn).await?.succeeded {
                return Ok(record);
            }
            // A concurrent push changed the tag or image: read again.
        }
        Err(EcrError::Store(berth_store::StoreError::Backend(format!(
            "too many concurrent pushes to {repo}; retry"
        ))))
    }

    /// The image a tag or digest names in `repo`.
    pub async fn get_image(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<ImageRecord>, EcrError> {
        let digest = match reference.parse::<Digest>() {
            Ok(d) => d,
            Err(_) if validate_tag(reference).is_err() => return Ok(None),
            Err(_) => match self.store.get(&tag_key(repo, reference)).await? {
                Some(kv) => match String::from_utf8(kv.value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                {
                    Some(d) => d,
                    None => return Err(EcrError::Corrupt(kv.key)),
                },
                None => return Ok(None),
            },
        };
        match self.store.get(&image_key(repo, &digest)).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// Tags of `repo`, sorted, with the digest each points at.
    pub async fn tags(&self, repo: &str) -> Result<BTreeMap<String, Digest>, EcrError> {
        let prefix = tag_prefix(repo);
        let mut out = BTreeMap::new();
        for kv in self.store.list(&prefix).await?.items {
            let tag = kv.key[prefix.len()..].to_string();
            if let Some(d) = String::from_utf8(kv.value)
                .ok()
                .and_then(|s| s.parse().ok())
            {
                out.insert(tag, d);
            }
        }
        Ok(out)
    }

    /// Every image of `repo` with its tags, in digest order.
    pub async fn images(&self, repo: &str) -> Result<Vec<ImageWithTags>, EcrError> {
        self.repository(repo).await?;
        let tags = self.tags(repo).await?;
        let mut out = Vec::new();
        for kv in self.store.list(&image_prefix(repo)).await?.items {
            let image: ImageRecord = decode(&kv)?;
            let t = tags
                .iter()
                .filter(|(_, d)| **d == image.digest)
                .map(|(t, _)| t.clone())
                .collect();
            out.push(ImageWithTags { image, tags: t });
        }
        Ok(out)
    }

    /// Deletes an image (by digest) and every tag pointing at it.
    pub async fn delete_image(&self, repo: &str, digest: &Digest) -> Result<bool, EcrError> {
        let key = image_key(repo, digest);
        if self.store.get(&key).await?.is_none() {
            return Ok(false);
        }
        let mut txn = Txn::new().then(Op::Delete(key));
        for (t, d) in self.tags(repo).await? {
            if d == *digest {
                txn = txn.then(Op::Delete(tag_key(repo, &t)));
            }
        }
        self.store.txn(txn).await?;
        Ok(true)
    }

    /// Removes one tag; deletes the image too when it was its last tag.
    pub async fn delete_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>, EcrError> {
        let tags = self.tags(repo).await?;
        let Some(digest) = tags.get(tag).cloned() else {
            return Ok(None);
        };
        let others = tags
            .iter()
            .filter(|(t, d)| t.as_str() != tag && **d == digest)
            .count();
        let mut txn = Txn::new().then(Op::Delete(tag_key(repo, tag)));
        if others == 0 {
            txn = txn.then(Op::Delete(image_key(repo, &digest)));
        }
        self.store.txn(txn).await?;
        Ok(Some(digest))
    }

    /// Resolves ECR image ids to images, with a failure for each that does
    /// not resolve (BatchGetImage, DescribeImages, BatchDeleteImage).
    pub async fn resolve_ids(
        &self,
        repo: &str,
        ids: &[ImageId],
    ) -> Result<(Vec<(ImageId, ImageWithTags)>, Vec<ImageFailure>), EcrError> {
        let all = self.images(repo).await?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for id in ids {
            let fail = |code: &'static str, reason: String| ImageFailure {
                image_id: id.clone(),
                code,
                reason,
            };
            let digest = match id.image_digest.as_deref() {
                Some(d) => match d.parse::<Digest>() {
                    Ok(d) => Some(d),
                    Err(_) => {
                        failures.push(fail(
                            "InvalidImageDigest",
                            format!("Invalid request parameters: image digest {d:?} is not valid"),
                        ));
                        continue;
                    }
                },
                None => None,
            };
            if let Some(t) = id.image_tag.as_deref() {
                if validate_tag(t).is_err() {
                    failures.push(fail(
                        "InvalidImageTag",
                        format!("Invalid request parameters: image tag {t:?} is not valid"),
                    ));
                    continue;
                }
            }
            let hit = all.iter().find(|i| {
                digest.as_ref().is_none_or(|d| i.image.digest == *d)
                    && id.image_tag.as_ref().is_none_or(|t| i.tags.contains(t))
            });
            match (hit, &digest, &id.image_tag) {
                (_, None, None) => failures.push(fail(
                    "MissingDigestAndTag",
                    "Invalid request parameters: give imageDigest or imageTag".into(),
                )),
                (Some(i), _, _) => found.push((id.clone(), i.clone())),
                (None, Some(d), Some(t)) if all.iter().any(|i| i.image.digest == *d) => failures
                    .push(fail(
                        "ImageTagDoesNotMatchDigest",
                        format!("Invalid request parameters: tag {t} does not point at digest {d}"),
                    )),
                (None, _, _) => {
                    failures.push(fail("ImageNotFound", "Requested image not found".into()))
                }
            }
        }
        Ok((found, failures))
    }

    /// ListImages / DescribeImages over all images of a repository.
    pub async fn list_images(
        &self,
        registry_id: Option<&str>,
        repo: &str,
        status: TagStatus,
        max_results: Option<i64>,
        next_token: Option<&str>,
    ) -> Result<(Vec<ImageWithTags>, Option<String>), EcrError> {
        self.check_registry_id(registry_id)?;
        let size = page_size(max_results, 1000).map_err(to_ecr)?;
        let after = resume_after(next_token).map_err(to_ecr)?;
        let images: Vec<ImageWithTags> = self
            .images(repo)
            .await?
            .into_iter()
            .filter(|i| match status {
                TagStatus::Any => true,
                TagStatus::Tagged => !i.tags.is_empty(),
                TagStatus::Untagged => i.tags.is_empty(),
            })
            .collect();
        Ok(paginate(
            images,
            |i| i.image.digest.to_string(),
            after,
            size,
            false,
        ))
    }

    /// Records that upload session `id` belongs to `repo`.
    pub async fn record_upload(&self, id: &str, repo: &str) -> Result<(), EcrError> {
        self.store
            .txn(Txn::new().then(Op::Put(
                format!("/ecr/uploads/{id}"),
                repo.as_bytes().to_vec(),
            )))
            .await?;
        Ok(())
    }

    /// The repository an upload session belongs to.
    pub async fn upload_repository(&self, id: &str) -> Result<Option<String>, EcrError> {
        Ok(self
            .store
            .get(&format!("/ecr/uploads/{id}"))
            .await?
            .and_then(|kv| String::from_utf8(kv.value).ok()))
    }

    /// Forgets an upload session (finished or cancelled).
    pub async fn forget_upload(&self, id: &str) -> Result<(), EcrError> {
        self.store
            .txn(Txn::new().then(Op::Delete(format!("/ecr/uploads/{id}"))))
            .await?;
        Ok(())
    }

    /// Checks a registryId parameter (public for the API layer).
    pub fn registry(&self, id: Option<&str>) -> Result<(), EcrError> {
        self.check_registry_id(id)
    }
}

fn to_ecr(e: crate::EcsError) -> EcrError {
    match e {
        crate::EcsError::Validation(v) => EcrError::Validation(v),
        crate::EcsError::Store(s) => EcrError::Store(s),
        other => EcrError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
