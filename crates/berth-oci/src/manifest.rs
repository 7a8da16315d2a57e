//! Manifests, indexes and image configs, in their OCI and Docker schema 2
//! forms (the two share a shape; only the media types differ).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// `application/vnd.oci.image.manifest.v1+json`
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `application/vnd.oci.image.index.v1+json`
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `application/vnd.oci.image.config.v1+json`
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `application/vnd.oci.image.layer.v1.tar`
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// `application/vnd.oci.image.layer.v1.tar+gzip`
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// `application/vnd.oci.image.layer.v1.tar+zstd`
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// `application/vnd.docker.distribution.manifest.v2+json`
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// `application/vnd.docker.distribution.manifest.list.v2+json`
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// `application/vnd.docker.container.image.v1+json`
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// `application/vnd.docker.image.rootfs.diff.tar.gzip`
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The manifest media types a registry accepts, for `Accept` headers.
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// The compression a layer media type declares, or `None` if it is not a
/// layer type Berth can unpack.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        OCI_LAYER_TAR | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        OCI_LAYER_GZIP
        | DOCKER_LAYER_GZIP
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        OCI_LAYER_ZSTD => Some(Compression::Zstd),
        _ => None,
    }
}

/// A platform an image is built for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Platform {
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `linux`, ...
    pub os: String,
    /// `v8`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

/// A pointer to content: media type, digest, size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// For index entries: the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type (optional in OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index / manifest list: one manifest per platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type (optional in OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A parsed manifest of either kind, with the media type it was served or
/// stored under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// A single image.
    Image(ImageManifest, String),
    /// An index of images.
    Index(ImageIndex, String),
}

/// Why bytes are not a manifest Berth accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// not JSON of a known manifest shape
    #[error("manifest is not valid: {0}")]
    Invalid(String),
    /// a media type Berth does not handle
    #[error("manifest media type {0:?} is not supported (use OCI image manifest/index or Docker schema 2 manifest/list)")]
    Unsupported(String),
}

impl Manifest {
    /// Parses manifest bytes. `content_type` is the media type the bytes
    /// came with (a `Content-Type` header), if any; otherwise the document's
    /// own `mediaType`, otherwise its shape, decides.
    pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Self, ManifestError> {
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::Invalid(format!("not JSON: {e}")))?;
        let declared = v.get("mediaType").and_then(serde_json::Value::as_str);
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or(c).trim())
            .filter(|c| {
                !c.is_empty() && *c != "application/json" && *c != "application/octet-stream"
            });
        let media_type = match (content_type, declared) {
            (Some(c), _) => c.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) if v.get("manifests").is_some() => OCI_INDEX.to_string(),
            (None, None) if v.get("config").is_some() => OCI_MANIFEST.to_string(),
            (None, None) => {
                return Err(ManifestError::Invalid(
                    "neither a manifest nor an index".into(),
                ))
            }
        };
        if let (Some(d), Some(c)) = (declared, content_type) {
            if d != c {
                return Err(ManifestError::Invalid(format!(
                    "the document declares mediaType {d:?} but was sent as {c:?}"
                )));
            }
        }
        if v.get("schemaVersion").and_then(serde_json::Value::as_u64) != Some(2) {
            return Err(ManifestError::Invalid("schemaVersion must be 2".into()));
        }
        match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => serde_json::from_value(v)
                .map(|m| Self::Image(m, media_type))
                .map_err(|e| ManifestError::Invalid(e.to_string())),
            OCI_INDEX | DOCKER_MANIFEST_LIST => serde_json::from_value(v)
                .map(|m| Self::Index(m, media_type))
                .map_err(|e| ManifestError::Invalid(e.to_string())),
            other => Err(ManifestError::Unsupported(other.to_string())),
        }
    }

    /// The media type.
    pub fn media_type(&self) -> &str {
        match self {
            Self::Image(_, t) | Self::Index(_, t) => t,
        }
    }

    /// The blobs an image manifest references (config, then layers); empty
    /// for an index.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        match self {
            Self::Image(m, _) => std::iter::once(&m.config).chain(m.layers.iter()).collect(),
            Self::Index(_, _) => Vec::new(),
        }
    }

    /// The manifests an index references; empty for an image manifest.
    pub fn children(&self) -> Vec<&Descriptor> {
        match self {
            Self::Index(i, _) => i.manifests.iter().collect(),
            Self::Image(_, _) => Vec::new(),
        }
    }
}

/// The runtime part of an image config (`config` member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `user`, `uid`, `user:group`, `uid:gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `["tcp/80": {}]` style set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// `NAME=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Stop signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// The layers' uncompressed digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layer tars, base first.
    pub diff_ids: Vec<Digest>,
}

/// An image config (OCI `application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Creation time (RFC 3339), omitted for reproducible images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// CPU architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// How to run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    /// The layers.
    pub rootfs: RootFs,
    /// Build history, kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(mt: &str, data: &[u8]) -> serde_json::Value {
        serde_json::json!({"mediaType": mt, "digest": Digest::of(data).to_string(), "size": data.len()})
    }

    #[test]
    fn parses_by_header_declaration_or_shape() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "config": desc(OCI_CONFIG, b"{}"),
            "layers": [desc(OCI_LAYER_GZIP, b"l")],
        });
        let bytes = serde_json::to_vec(&m).unwrap();
        let p = Manifest::parse(None, &bytes).unwrap();
        assert_eq!(p.media_type(), OCI_MANIFEST);
        assert_eq!(p.blobs().len(), 2);
        let p = Manifest::parse(Some(DOCKER_MANIFEST), &bytes).unwrap();
        assert_eq!(p.media_type(), DOCKER_MANIFEST);
        let idx = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc(OCI_MANIFEST, &bytes)]});
        let p =
            Manifest::parse(Some("application/json"), &serde_json::to_vec(&idx).unwrap()).unwrap();
        assert_eq!(p.children().len(), 1);
        assert!(
            Manifest::parse(Some(DOCKER_MANIFEST), &serde_json::to_vec(&idx).unwrap()).is_err()
        );
        assert!(Manifest::parse(None, b"nope").is_err());
        assert!(matches!(
            Manifest::parse(
                Some("application/vnd.docker.distribution.manifest.v1+json"),
                &bytes
            ),
            Err(ManifestError::Unsupported(_))
        ));
    }
}
