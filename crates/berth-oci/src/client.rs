//! The OCI distribution client: pulls manifests, configs and blobs for the
//! agent, and pushes them for `berth image push`.
//!
//! Start with [`RegistryClient::resolve`] (reference → platform manifest and
//! config) and [`RegistryClient::fetch_blob`] (one layer to a file, verified
//! as it streams). Pushing is [`RegistryClient::push_blob`] for each blob,
//! then [`RegistryClient::put_manifest`].
//!
//! Authentication follows the distribution spec: a request goes out without
//! credentials (or with ones learnt earlier); on `401` the client reads
//! `WWW-Authenticate` and either retries with Basic credentials or fetches a
//! Bearer token from the named realm, caching it per (registry, scope) until
//! it expires. Registries are reached over https, except loopback registries
//! and those listed in [`ClientConfig::insecure_registries`], which use plain
//! http. Redirects are followed (blob downloads redirect to storage), never
//! to plain http elsewhere, and never carrying the `Authorization` header to
//! another host.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, LINK, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::digest::{Digest, Hasher};
use crate::manifest::{
    Descriptor, ImageConfig, ImageManifest, Manifest, ManifestError, Platform, MANIFEST_MEDIA_TYPES,
};
use crate::reference::{host_of, is_loopback_authority, Reference};

/// Blobs larger than this are uploaded in `PATCH` chunks of this size;
/// smaller ones in one `PUT`.
pub const DEFAULT_CHUNK_SIZE: usize = 8 << 20;

/// The largest manifest the client reads (the distribution spec suggests
/// registries accept at least 4 MiB).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// The largest blob [`RegistryClient::fetch_blob_bytes`] reads into memory
/// (image configs are far smaller).
pub const MAX_IN_MEMORY_BLOB: u64 = 32 << 20;

/// How long a token lives when the token service does not say.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// How many redirects one request may follow.
const MAX_REDIRECTS: usize = 10;

/// How many pages of tags `list_tags` follows before giving up.
const MAX_TAG_PAGES: usize = 10_000;

/// How much of an error body is read.
const MAX_ERROR_BODY: u64 = 64 << 10;

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
const OCTET_STREAM: &str = "application/octet-stream";

/// How the client authenticates to one registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// No credentials: anonymous pulls (and anonymous tokens).
    #[default]
    Anonymous,
    /// A username and password (or access token), sent as HTTP Basic to the
    /// registry or to its token service.
    Basic {
        /// The user name.
        username: String,
        /// The password or access token.
        password: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// What a [`RegistryClient`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Credentials per registry, keyed by `host[:port]` exactly as written
    /// in image references (`docker.io`, `registry.example.com:5000`).
    pub credentials: HashMap<String, Credentials>,
    /// Registries (`host[:port]`, or `host` for any port) reached over plain
    /// http. Loopback registries always use http; all others use https.
    pub insecure_registries: Vec<String>,
    /// The platform picked from image indexes.
    pub platform: Platform,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            credentials: HashMap::new(),
            insecure_registries: Vec::new(),
            platform: Platform {
                architecture: "amd64".into(),
                os: "linux".into(),
                variant: None,
                os_version: None,
            },
        }
    }
}

/// What went wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// the HTTP client could not be built
    #[error("registry client could not be set up: {0}")]
    Setup(String),
    /// a URL (from configuration or a registry's answer) is not usable
    #[error("url {url:?} is not valid: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// plain http to a host that is neither loopback nor insecure-listed
    #[error("refusing plain http to {url}: the host is not loopback; add it to the insecure registries to allow http")]
    InsecureUrl {
        /// The URL refused.
        url: String,
    },
    /// the request could not be sent or its answer read
    #[error("request to {url} failed: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// the registry wants credentials that are missing or were rejected
    #[error("registry {registry}: unauthorized: {reason}")]
    Unauthorized {
        /// The registry (`host[:port]`).
        registry: String,
        /// What happened and what to do.
        reason: String,
    },
    /// the registry answered with an error status
    #[error("{url}: registry answered {status} {code}: {message}")]
    Registry {
        /// The HTTP status.
        status: u16,
        /// The first distribution error code (`MANIFEST_UNKNOWN`, ...), or
        /// `UNKNOWN` when the body carried none.
        code: String,
        /// The error messages (joined by `; `), or the body text.
        message: String,
        /// The URL requested.
        url: String,
    },
    /// the registry answered success with something the client can't use
    #[error("{url}: unexpected answer from the registry: {reason}")]
    UnexpectedResponse {
        /// The URL requested.
        url: String,
        /// What is wrong with the answer.
        reason: String,
    },
    /// content did not match the digest or size it was asked for by
    #[error(
        "{location}: content does not match: expected {expected}{}, got {actual} ({actual_size} bytes)",
        fmt_size(.expected_size)
    )]
    DigestMismatch {
        /// Where the content came from (URL or file).
        location: String,
        /// The digest asked for.
        expected: Digest,
        /// The size asked for, when known.
        expected_size: Option<u64>,
        /// The digest of what arrived (of the part that arrived, when it
        /// was cut off for being too long).
        actual: Digest,
        /// How many bytes arrived.
        actual_size: u64,
    },
    /// the manifest is not one Berth accepts
    #[error("manifest of {reference}: {source}")]
    Manifest {
        /// The image reference.
        reference: String,
        /// Why the manifest was refused.
        #[source]
        source: ManifestError,
    },
    /// an index entry points at something other than an image manifest
    #[error("{reference}: expected an image manifest, got {media_type}")]
    NotAnImage {
        /// The image reference.
        reference: String,
        /// The media type found.
        media_type: String,
    },
    /// the index has no manifest for the wanted platform
    #[error("{reference}: no image for platform {platform} (the index has: {available})")]
    NoMatchingPlatform {
        /// The image reference.
        reference: String,
        /// The platform wanted (`os/arch[/variant]`).
        platform: String,
        /// The platforms the index offers.
        available: String,
    },
    /// the image config is not valid JSON of the expected shape
    #[error("{reference}: image config {digest} is not valid: {reason}")]
    InvalidConfig {
        /// The image reference.
        reference: String,
        /// The config blob's digest.
        digest: Digest,
        /// The parse error.
        reason: String,
    },
    /// a local file could not be read or written
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn fmt_size(size: &Option<u64>) -> String {
    size.map(|s| format!(" ({s} bytes)")).unwrap_or_default()
}

impl ClientError {
    /// Whether the registry said the thing asked for does not exist (404).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Registry { status: 404, .. })
    }
}

/// An image resolved for one platform: its manifest and config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The reference as given.
    pub reference: Reference,
    /// The platform's image manifest.
    pub manifest: ImageManifest,
    /// The image manifest's digest (pull by this to get the same image).
    pub manifest_digest: Digest,
    /// The index's digest, when the reference named an index.
    pub index_digest: Option<Digest>,
    /// The parsed image config.
    pub config: ImageConfig,
    /// The config blob as stored (its digest is `manifest.config.digest`).
    pub config_bytes: Vec<u8>,
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme as sent (`Bearer`, `Basic`); compare case-insensitively.
    pub scheme: String,
    /// The parameters, names lowercased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

/// Parses a `WWW-Authenticate` header value into its challenges:
/// `Bearer realm="https://auth/token",service="reg",scope="repository:a:pull,push"`.
/// Quoted values may hold commas and backslash escapes. Unparseable parts
/// are skipped.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let chars: Vec<char> = header.chars().collect();
    let mut out: Vec<Challenge> = Vec::new();
    let mut i = 0;
    let is_sep = |c: char| c == ',' || c == '=' || c.is_whitespace();
    while i < chars.len() {
        while i < chars.len() && (chars[i] == ',' || chars[i].is_whitespace()) {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && !is_sep(chars[i]) && chars[i] != '"' {
            i += 1;
        }
        let token: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        if token.is_empty() {
            // A stray character (a quote, an '='): skip it.
            i += 1;
            continue;
        }
        if j < chars.len() && chars[j] == '=' {
            i = j + 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            let mut value = String::new();
            if i < chars.len() && chars[i] == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                i += 1; // closing quote
            } else {
                while i < chars.len() && chars[i] != ',' && !chars[i].is_whitespace() {
                    value.push(chars[i]);
                    i += 1;
                }
            }
            if let Some(c) = out.last_mut() {
                c.params.push((token.to_ascii_lowercase(), value));
            }
        } else {
            out.push(Challenge {
                scheme: token,
                params: Vec::new(),
            });
        }
    }
    out
}

/// Whether an authority (`host[:port]`) may be reached over plain http:
/// loopback hosts always, others when listed in `insecure` (as
/// `host:port`, or as `host` for any port).
pub fn allows_plain_http(authority: &str, insecure: &[String]) -> bool {
    let host = host_of(authority);
    is_loopback_authority(authority)
        || insecure
            .iter()
            .any(|i| i.eq_ignore_ascii_case(authority) || i.eq_ignore_ascii_case(host))
}

/// `host[:port]` of a URL, as written in image references.
fn authority_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// Checks that a URL is https, or http to a host that allows it.
fn check_scheme(url: &Url, insecure: &[String]) -> Result<(), ClientError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allows_plain_http(&authority_of(url), insecure) => Ok(()),
        "http" => Err(ClientError::InsecureUrl {
            url: url.to_string(),
        }),
        other => Err(ClientError::Url {
            url: url.to_string(),
            reason: format!("scheme {other:?} is not http or https"),
        }),
    }
}

/// Writes `stream` to `dest` (created or truncated), hashing as it goes,
/// and checks that exactly `expected_size` bytes with digest `expected`
/// arrived. A stream longer than `expected_size` is cut off as soon as it
/// overruns. On any failure `dest` is removed; on a mismatch the error is
/// [`ClientError::DigestMismatch`]. `location` names the source in errors.
pub async fn write_verified<S>(
    stream: S,
    dest: &Path,
    expected: &Digest,
    expected_size: u64,
    location: &str,
) -> Result<(), ClientError>
where
    S: Stream<Item = Result<Bytes, ClientError>>,
{
    let io = |source| ClientError::Io {
        path: dest.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
    let result = async {
        let mut stream = pin!(stream);
        let mut hasher = Hasher::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            if hasher.len() > expected_size {
                let actual_size = hasher.len();
                return Err(ClientError::DigestMismatch {
                    location: location.to_string(),
                    expected: expected.clone(),
                    expected_size: Some(expected_size),
                    actual: hasher.finish(),
                    actual_size,
                });
            }
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        let actual_size = hasher.len();
        let actual = hasher.finish();
        if actual_size != expected_size || actual != *expected {
            return Err(ClientError::DigestMismatch {
                location: location.to_string(),
                expected: expected.clone(),
                expected_size: Some(expected_size),
                actual,
                actual_size,
            });
        }
        Ok(())
    }
    .await;
    drop(file);
    if result.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = tokio::fs::remove_file(dest).await;
    }
    result
}

/// A cached Bearer token.
struct Token {
    value: String,
    expires: Instant,
}

/// What the client has learnt about registries' authentication.
#[derive(Default)]
struct AuthState {
    /// Registries that asked for Basic credentials.
    basic: HashSet<String>,
    /// Bearer tokens per (registry, scope).
    tokens: HashMap<(String, String), Token>,
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    auth: Mutex<AuthState>,
}

/// A client for OCI distribution registries. Cheap to clone; clones share
/// the connection pool and the token cache.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
    chunk_size: usize,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("registries", &self.inner.config.credentials.keys())
            .field(
                "insecure_registries",
                &self.inner.config.insecure_registries,
            )
            .field("platform", &self.inner.config.platform)
            .field("chunk_size", &self.chunk_size)
            .finish()
    }
}

/// One request, replayable after an authentication challenge.
struct Call<'a> {
    registry: &'a str,
    scope: String,
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Bytes>,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

/// Where an upload's bytes come from.
enum BlobSource<'a> {
    File {
        file: tokio::fs::File,
        path: &'a Path,
    },
    Memory(Bytes),
}

impl BlobSource<'_> {
    async fn next_chunk(&mut self, n: usize) -> Result<Bytes, ClientError> {
        match self {
            Self::File { file, path } => {
                let mut buf = vec![0; n];
                file.read_exact(&mut buf)
                    .await
                    .map_err(|source| ClientError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?;
                Ok(buf.into())
            }
            Self::Memory(b) => Ok(b.split_to(n.min(b.len()))),
        }
    }

    fn location(&self) -> String {
        match self {
            Self::File { path, .. } => path.display().to_string(),
            Self::Memory(_) => "in-memory blob".into(),
        }
    }
}

fn pull_scope(r: &Reference) -> String {
    format!("repository:{}:pull", r.repository)
}

fn push_scope(r: &Reference) -> String {
    format!("repository:{}:pull,push", r.repository)
}

/// The push scope, plus pull on the repository a blob is mounted from.
fn upload_scope(r: &Reference, mount_from: Option<&str>) -> String {
    match mount_from {
        Some(from) => format!("{} repository:{from}:pull", push_scope(r)),
        None => push_scope(r),
    }
}

fn http_error(url: &Url, source: reqwest::Error) -> ClientError {
    ClientError::Http {
        url: url.to_string(),
        source,
    }
}

fn unexpected(url: &Url, reason: impl Into<String>) -> ClientError {
    ClientError::UnexpectedResponse {
        url: url.to_string(),
        reason: reason.into(),
    }
}

fn header_str(resp: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads a body of at most `limit` bytes.
async fn read_limited(
    resp: reqwest::Response,
    limit: u64,
    url: &Url,
) -> Result<Vec<u8>, ClientError> {
    if let Some(len) = resp.content_length() {
        if len > limit {
            return Err(unexpected(
                url,
                format!("body of {len} bytes exceeds the limit of {limit}"),
            ));
        }
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| http_error(url, e))?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(unexpected(
                url,
                format!("body exceeds the limit of {limit} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Turns an error answer into [`ClientError::Registry`], reading the
/// distribution error body when there is one.
async fn status_error(resp: reqwest::Response, url: &Url) -> ClientError {
    let status = resp.status();
    let body = read_limited(resp, MAX_ERROR_BODY, url)
        .await
        .unwrap_or_default();
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) if !e.errors.is_empty() => (
            e.errors[0].code.clone().unwrap_or_else(|| "UNKNOWN".into()),
            e.errors
                .iter()
                .filter_map(|e| e.message.as_deref())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => {
            let text = String::from_utf8_lossy(&body).trim().to_string();
            let text = if text.is_empty() {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                text.chars().take(500).collect()
            };
            ("UNKNOWN".into(), text)
        }
    };
    ClientError::Registry {
        status: status.as_u16(),
        code,
        message,
        url: url.to_string(),
    }
}

/// The `rel="next"` target of a `Link` header.
fn link_next(header: &str) -> Option<&str> {
    header.split(',').find_map(|part| {
        let part = part.trim();
        let rest = part.strip_prefix('<')?;
        let (target, params) = rest.split_once('>')?;
        params
            .split(';')
            .map(str::trim)
            .any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("rel")
                        && v.trim()
                            .trim_matches('"')
                            .split_whitespace()
                            .any(|r| r == "next")
                })
            })
            .then_some(target)
    })
}

fn platform_name(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// Whether an index entry's platform `have` serves the wanted platform.
fn platform_matches(want: &Platform, have: &Platform) -> bool {
    let variant_ok = match (&want.variant, &have.variant) {
        (None, _) => true,
        (Some(w), Some(h)) => w == h,
        (Some(w), None) => want.architecture == "arm64" && w == "v8",
    };
    want.os == have.os && want.architecture == have.architecture && variant_ok
}

impl RegistryClient {
    /// A client for `config`.
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let insecure = config.insecure_registries.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                let err = format!("more than {MAX_REDIRECTS} redirects");
                return attempt.error(err);
            }
            match check_scheme(attempt.url(), &insecure) {
                Ok(()) => attempt.follow(),
                Err(e) => {
                    let err = format!("refusing redirect: {e}");
                    attempt.error(err)
                }
            }
        });
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .redirect(policy)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                auth: Mutex::default(),
            }),
            chunk_size: DEFAULT_CHUNK_SIZE,
        })
    }

    /// Sets the upload chunk size (bytes, at least 1): blobs up to this
    /// size go up in one request, larger ones in chunks of this size.
    #[must_use]
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size.max(1);
        self
    }

    /// The upload chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// `scheme://host[:port]/` for a registry.
    fn base_url(&self, registry: &str) -> Result<Url, ClientError> {
        let scheme = if allows_plain_http(registry, &self.inner.config.insecure_registries) {
            "http"
        } else {
            "https"
        };
        // Docker Hub's API lives on a different host than its name.
        let host = match registry {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        let url = format!("{scheme}://{host}/");
        Url::parse(&url).map_err(|e| ClientError::Url {
            url,
            reason: e.to_string(),
        })
    }

    /// `/v2/<repo>/<suffix>` on the reference's registry.
    fn repo_url(&self, r: &Reference, suffix: &str) -> Result<Url, ClientError> {
        let base = self.base_url(&r.registry)?;
        let path = format!("v2/{}/{suffix}", r.repository);
        base.join(&path).map_err(|e| ClientError::Url {
            url: format!("{base}{path}"),
            reason: e.to_string(),
        })
    }

    fn credentials(&self, registry: &str) -> Option<(&str, &str)> {
        match self.inner.config.credentials.get(registry) {
            Some(Credentials::Basic { username, password }) => Some((username, password)),
            _ => None,
        }
    }

    fn auth_state(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.inner
            .auth
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The `Authorization` header to send to `registry` for `scope`, from
    /// what earlier challenges taught.
    fn auth_header(&self, registry: &str, scope: &str) -> Option<HeaderValue> {
        let state = self.auth_state();
        let key = (registry.to_string(), scope.to_string());
        let mut value = match state.tokens.get(&key) {
            Some(t) if t.expires > Instant::now() => {
                HeaderValue::from_str(&format!("Bearer {}", t.value)).ok()?
            }
            _ if state.basic.contains(registry) => {
                let (user, pass) = self.credentials(registry)?;
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                HeaderValue::from_str(&format!("Basic {encoded}")).ok()?
            }
            _ => return None,
        };
        value.set_sensitive(true);
        Some(value)
    }

    /// Sends a call, answering one authentication challenge.
    async fn send(&self, call: &Call<'_>) -> Result<reqwest::Response, ClientError> {
        // Credentials go only to the registry itself, not to other hosts an
        // upload location may point at.
        let same_host = self
            .base_url(call.registry)
            .is_ok_and(|b| b.host_str() == call.url.host_str() && b.port() == call.url.port());
        check_scheme(&call.url, &self.inner.config.insecure_registries)?;
        let mut answered_challenge = false;
        loop {
            let mut req = self
                .inner
                .http
                .request(call.method.clone(), call.url.clone())
                .headers(call.headers.clone());
            if let Some(body) = &call.body {
                req = req.body(body.clone());
            }
            if same_host {
                if let Some(auth) = self.auth_header(call.registry, &call.scope) {
                    req = req.header(AUTHORIZATION, auth);
                }
            }
            let resp = req.send().await.map_err(|e| http_error(&call.url, e))?;
            if resp.status() != StatusCode::UNAUTHORIZED || !same_host {
                return Ok(resp);
            }
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_www_authenticate)
                .collect();
            if answered_challenge {
                let detail = match status_error(resp, &call.url).await {
                    ClientError::Registry { message, .. } => message,
                    other => other.to_string(),
                };
                let reason = match self.credentials(call.registry) {
                    Some((user, _)) => format!(
                        "the registry rejected the credentials of user {user:?} for {}: {detail}",
                        call.scope
                    ),
                    None => format!(
                        "anonymous access to {} was refused ({detail}); configure credentials for this registry",
                        call.scope
                    ),
                };
                return Err(ClientError::Unauthorized {
                    registry: call.registry.to_string(),
                    reason,
                });
            }
            self.authenticate(call.registry, &call.scope, &challenges)
                .await?;
            answered_challenge = true;
        }
    }

    /// Answers a `401`'s challenges: remembers that the registry wants
    /// Basic credentials, or fetches and caches a Bearer token.
    async fn authenticate(
        &self,
        registry: &str,
        scope: &str,
        challenges: &[Challenge],
    ) -> Result<(), ClientError> {
        let unauthorized = |reason: String| ClientError::Unauthorized {
            registry: registry.to_string(),
            reason,
        };
        if let Some(c) = challenges.iter().find(|c| c.is("bearer")) {
            let realm = c
                .param("realm")
                .ok_or_else(|| unauthorized("the bearer challenge names no realm".into()))?;
            let token_scope = c.param("scope").unwrap_or(scope);
            let (value, lifetime) = self
                .fetch_token(registry, realm, c.param("service"), token_scope)
                .await?;
            let mut state = self.auth_state();
            state.tokens.insert(
                (registry.to_string(), scope.to_string()),
                Token {
                    value,
                    expires: Instant::now() + lifetime,
                },
            );
            return Ok(());
        }
        if challenges.iter().any(|c| c.is("basic")) {
            if self.credentials(registry).is_none() {
                return Err(unauthorized(
                    "the registry requires a username and password and none is configured for it"
                        .into(),
                ));
            }
            let mut state = self.auth_state();
            state.basic.insert(registry.to_string());
            return Ok(());
        }
        Err(unauthorized(format!(
            "the registry answered 401 without a usable challenge (got {challenges:?})"
        )))
    }

    /// Gets a token from a token service; returns it with how long to
    /// keep it.
    async fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(String, Duration), ClientError> {
        let mut url = Url::parse(realm).map_err(|e| ClientError::Url {
            url: realm.to_string(),
            reason: e.to_string(),
        })?;
        check_scheme(&url, &self.inner.config.insecure_registries)?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scope.split_whitespace() {
                q.append_pair("scope", s);
            }
        }
        let mut req = self.inner.http.get(url.clone());
        if let Some((user, pass)) = self.credentials(registry) {
            req = req.basic_auth(user, Some(pass));
        }
        let resp = req.send().await.map_err(|e| http_error(&url, e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let detail = status_error(resp, &url).await;
            let who = match self.credentials(registry) {
                Some((user, _)) => format!("user {user:?}"),
                None => "anonymous access (configure credentials for this registry)".into(),
            };
            return Err(ClientError::Unauthorized {
                registry: registry.to_string(),
                reason: format!("token service {realm} refused {who} for {scope}: {detail}"),
            });
        }
        if !status.is_success() {
            return Err(status_error(resp, &url).await);
        }
        let body = read_limited(resp, 1 << 20, &url).await?;
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| unexpected(&url, format!("token answer is not valid JSON: {e}")))?;
        let token = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| unexpected(&url, "token answer has neither token nor access_token"))?;
        let lifetime = parsed
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        // Renew a little early so a token does not expire in flight.
        let lifetime = lifetime.saturating_sub((lifetime / 10).min(Duration::from_secs(30)));
        Ok((token, lifetime))
    }

    /// Checks that a registry answers the API (`GET /v2/`) and that the
    /// configured credentials, if any, are accepted.
    pub async fn ping(&self, registry: &str) -> Result<(), ClientError> {
        let base = self.base_url(registry)?;
        let url = base.join("v2/").map_err(|e| ClientError::Url {
            url: format!("{base}v2/"),
            reason: e.to_string(),
        })?;
        let resp = self
            .send(&Call {
                registry,
                scope: String::new(),
                method: Method::GET,
                url: url.clone(),
                headers: HeaderMap::new(),
                body: None,
            })
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_error(resp, &url).await)
        }
    }

    /// `GET /v2/<repo>/manifests/<tag|digest>` with `Accept` of all
    /// [`MANIFEST_MEDIA_TYPES`]; verifies the digest when pulling by digest
    /// (and the `Docker-Content-Digest` header when present). Returns the
    /// parsed manifest, its bytes and its digest.
    pub async fn get_manifest(
        &self,
        r: &Reference,
    ) -> Result<(Manifest, Vec<u8>, Digest), ClientError> {
        let url = self.repo_url(r, &format!("manifests/{}", r.target()))?;
        let mut headers = HeaderMap::new();
        let accept = MANIFEST_MEDIA_TYPES.join(", ");
        headers.insert(
            ACCEPT,
            HeaderValue::from_str(&accept).map_err(|e| ClientError::Setup(e.to_string()))?,
        );
        let resp = self
            .send(&Call {
                registry: &r.registry,
                scope: pull_scope(r),
                method: Method::GET,
                url: url.clone(),
                headers,
                body: None,
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &url).await);
        }
        let content_type = header_str(&resp, CONTENT_TYPE).map(str::to_string);
        let header_digest = header_str(&resp, DOCKER_CONTENT_DIGEST).map(str::to_string);
        let bytes = read_limited(resp, MAX_MANIFEST_SIZE, &url).await?;
        let digest = Digest::of(&bytes);
        let mismatch = |expected: &Digest| ClientError::DigestMismatch {
            location: url.to_string(),
            expected: expected.clone(),
            expected_size: None,
            actual: digest.clone(),
            actual_size: bytes.len() as u64,
        };
        if let Some(want) = &r.digest {
            if *want != digest {
                return Err(mismatch(want));
            }
        }
        // A header in another algorithm can't be checked; it is ignored.
        if let Some(said) = header_digest.and_then(|h| h.parse::<Digest>().ok()) {
            if said != digest {
                return Err(mismatch(&said));
            }
        }
        let manifest = Manifest::parse(content_type.as_deref(), &bytes).map_err(|source| {
            ClientError::Manifest {
                reference: r.to_string(),
                source,
            }
        })?;
        Ok((manifest, bytes, digest))
    }

    /// Resolves a reference to an image for the configured platform: if
    /// the manifest is an index (or Docker list), picks the entry for
    /// [`ClientConfig::platform`] (entries without a platform, such as
    /// attestations, are ignored) and fetches it; then fetches and verifies
    /// the config blob.
    pub async fn resolve(&self, r: &Reference) -> Result<ResolvedImage, ClientError> {
        let (manifest, _, digest) = self.get_manifest(r).await?;
        let (image, manifest_digest, index_digest) = match manifest {
            Manifest::Image(m, _) => (m, digest, None),
            Manifest::Index(index, _) => {
                let want = &self.inner.config.platform;
                let entry = index
                    .manifests
                    .iter()
                    .filter(|d| MANIFEST_MEDIA_TYPES.contains(&d.media_type.as_str()))
                    .find(|d| {
                        d.platform
                            .as_ref()
                            .is_some_and(|p| platform_matches(want, p))
                    })
                    .ok_or_else(|| ClientError::NoMatchingPlatform {
                        reference: r.to_string(),
                        platform: platform_name(want),
                        available: {
                            let names: Vec<String> = index
                                .manifests
                                .iter()
                                .filter_map(|d| d.platform.as_ref().map(platform_name))
                                .collect();
                            if names.is_empty() {
                                "none".into()
                            } else {
                                names.join(", ")
                            }
                        },
                    })?;
                let child = Reference {
                    digest: Some(entry.digest.clone()),
                    ..r.clone()
                };
                let (m, bytes, child_digest) = self.get_manifest(&child).await?;
                if bytes.len() as u64 != entry.size {
                    return Err(ClientError::DigestMismatch {
                        location: child.to_string(),
                        expected: entry.digest.clone(),
                        expected_size: Some(entry.size),
                        actual: child_digest,
                        actual_size: bytes.len() as u64,
                    });
                }
                match m {
                    Manifest::Image(m, _) => (m, child_digest, Some(digest)),
                    Manifest::Index(_, media_type) => {
                        return Err(ClientError::NotAnImage {
                            reference: child.to_string(),
                            media_type,
                        })
                    }
                }
            }
        };
        let config_bytes = self.fetch_blob_bytes(r, &image.config).await?;
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| ClientError::InvalidConfig {
                reference: r.to_string(),
                digest: image.config.digest.clone(),
                reason: e.to_string(),
            })?;
        Ok(ResolvedImage {
            reference: r.clone(),
            manifest: image,
            manifest_digest,
            index_digest,
            config,
            config_bytes,
        })
    }

    /// Starts `GET /v2/<repo>/blobs/<digest>`, following redirects.
    async fn get_blob(
        &self,
        r: &Reference,
        digest: &Digest,
    ) -> Result<(reqwest::Response, Url), ClientError> {
        let url = self.repo_url(r, &format!("blobs/{digest}"))?;
        let resp = self
            .send(&Call {
                registry: &r.registry,
                scope: pull_scope(r),
                method: Method::GET,
                url: url.clone(),
                headers: HeaderMap::new(),
                body: None,
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &url).await);
        }
        Ok((resp, url))
    }

    /// Streams a blob to `dest` (created or truncated), hashing as it goes
    /// and verifying size and digest against `desc`; on a mismatch removes
    /// `dest` and returns [`ClientError::DigestMismatch`].
    pub async fn fetch_blob(
        &self,
        r: &Reference,
        desc: &Descriptor,
        dest: &Path,
    ) -> Result<(), ClientError> {
        let (resp, url) = self.get_blob(r, &desc.digest).await?;
        let stream_url = url.clone();
        let stream = resp
            .bytes_stream()
            .map(move |c| c.map_err(|e| http_error(&stream_url, e)));
        write_verified(stream, dest, &desc.digest, desc.size, url.as_str()).await
    }

    /// Reads a small blob (at most [`MAX_IN_MEMORY_BLOB`] bytes, such as an
    /// image config) into memory, verifying size and digest against `desc`.
    pub async fn fetch_blob_bytes(
        &self,
        r: &Reference,
        desc: &Descriptor,
    ) -> Result<Vec<u8>, ClientError> {
        let url = self.repo_url(r, &format!("blobs/{}", desc.digest))?;
        if desc.size > MAX_IN_MEMORY_BLOB {
            return Err(unexpected(
                &url,
                format!(
                    "blob of {} bytes is too large to read into memory (limit {MAX_IN_MEMORY_BLOB})",
                    desc.size
                ),
            ));
        }
        let (resp, url) = self.get_blob(r, &desc.digest).await?;
        let mut bytes = Vec::new();
        let mut hasher = Hasher::new();
        let mut stream = resp.bytes_stream();
        let mut overrun = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| http_error(&url, e))?;
            hasher.update(&chunk);
            if hasher.len() > desc.size {
                overrun = true;
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        let actual_size = hasher.len();
        let actual = hasher.finish();
        if overrun || actual_size != desc.size || actual != desc.digest {
            return Err(ClientError::DigestMismatch {
                location: url.to_string(),
                expected: desc.digest.clone(),
                expected_size: Some(desc.size),
                actual,
                actual_size,
            });
        }
        Ok(bytes)
    }

    /// Whether the repository has the blob (`HEAD /v2/<repo>/blobs/<digest>`).
    pub async fn blob_exists(&self, r: &Reference, digest: &Digest) -> Result<bool, ClientError> {
        let url = self.repo_url(r, &format!("blobs/{digest}"))?;
        let resp = self
            .send(&Call {
                registry: &r.registry,
                scope: pull_scope(r),
                method: Method::HEAD,
                url: url.clone(),
                headers: HeaderMap::new(),
                body: None,
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(resp, &url).await),
        }
    }

    /// Uploads the blob in file `src` unless the repository already has it.
    /// With `mount_from` (a repository on the same registry), first asks
    /// the registry to mount the blob from there. Blobs up to the chunk
    /// size go up in one `PUT`; larger ones in `PATCH` chunks, then a
    /// closing `PUT`. The file's content is checked against `digest` before
    /// the upload is committed.
    pub async fn push_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        src: &Path,
        mount_from: Option<&str>,
    ) -> Result<(), ClientError> {
        if self.blob_exists(r, digest).await? {
            return Ok(());
        }
        let scope = upload_scope(r, mount_from);
        let Some(location) = self.start_upload(r, &scope, digest, mount_from).await? else {
            return Ok(()); // mounted
        };
        let io = |source| ClientError::Io {
            path: src.to_path_buf(),
            source,
        };
        let opened = async {
            let file = tokio::fs::File::open(src).await.map_err(io)?;
            let size = file.metadata().await.map_err(io)?.len();
            Ok((file, size))
        }
        .await;
        let (file, size) = match opened {
            Ok(f) => f,
            Err(e) => {
                self.abandon_upload(r, &scope, &location).await;
                return Err(e);
            }
        };
        self.upload(
            r,
            &scope,
            location,
            digest,
            size,
            BlobSource::File { file, path: src },
        )
        .await
    }

    /// Uploads a blob held in memory unless the repository already has it.
    /// Fails with [`ClientError::DigestMismatch`] before any request when
    /// `data` does not match `digest`.
    pub async fn push_blob_bytes(
        &self,
        r: &Reference,
        digest: &Digest,
        data: Vec<u8>,
    ) -> Result<(), ClientError> {
        let actual = Digest::of(&data);
        if actual != *digest {
            return Err(ClientError::DigestMismatch {
                location: "in-memory blob".into(),
                expected: digest.clone(),
                expected_size: None,
                actual,
                actual_size: data.len() as u64,
            });
        }
        if self.blob_exists(r, digest).await? {
            return Ok(());
        }
        let scope = push_scope(r);
        let Some(location) = self.start_upload(r, &scope, digest, None).await? else {
            return Ok(());
        };
        let size = data.len() as u64;
        self.upload(
            r,
            &scope,
            location,
            digest,
            size,
            BlobSource::Memory(data.into()),
        )
        .await
    }

    /// The upload location a response names, resolved against `base`.
    fn upload_location(&self, resp: &reqwest::Response, base: &Url) -> Result<Url, ClientError> {
        let loc = header_str(resp, LOCATION)
            .ok_or_else(|| unexpected(base, "upload answer has no Location header"))?;
        let url = base.join(loc).map_err(|e| ClientError::Url {
            url: loc.to_string(),
            reason: e.to_string(),
        })?;
        check_scheme(&url, &self.inner.config.insecure_registries)?;
        Ok(url)
    }

    /// Opens an upload session (`POST /v2/<repo>/blobs/uploads/`), asking
    /// for a mount from `mount_from` when given. Returns the session's
    /// location, or `None` when the blob was mounted.
    async fn start_upload(
        &self,
        r: &Reference,
        scope: &str,
        digest: &Digest,
        mount_from: Option<&str>,
    ) -> Result<Option<Url>, ClientError> {
        let mut url = self.repo_url(r, "blobs/uploads/")?;
        if let Some(from) = mount_from {
            url.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from);
        }
        let resp = self
            .send(&Call {
                registry: &r.registry,
                scope: scope.to_string(),
                method: Method::POST,
                url: url.clone(),
                headers: HeaderMap::new(),
                body: Some(Bytes::new()),
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount_from.is_some() => Ok(None),
            StatusCode::ACCEPTED => self.upload_location(&resp, &url).map(Some),
            _ => Err(status_error(resp, &url).await),
        }
    }

    /// Cancels an upload session, best effort.
    async fn abandon_upload(&self, r: &Reference, scope: &str, location: &Url) {
        let call = Call {
            registry: &r.registry,
            scope: scope.to_string(),
            method: Method::DELETE,
            url: location.clone(),
            headers: HeaderMap::new(),
            body: None,
        };
        // Nothing to do if it fails: the registry expires stale sessions.
        let _ = self.send(&call).await;
    }

    /// Sends a blob into an open upload session and commits it.
    async fn upload(
        &self,
        r: &Reference,
        scope: &str,
        mut location: Url,
        digest: &Digest,
        size: u64,
        mut source: BlobSource<'_>,
    ) -> Result<(), ClientError> {
        let call = |url: Url, headers: HeaderMap, method: Method, body: Bytes| Call {
            registry: &r.registry,
            scope: scope.to_string(),
            method,
            url,
            headers,
            body: Some(body),
        };
        let mut octets = HeaderMap::new();
        octets.insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
        let mut hasher = Hasher::new();
        let final_body = if size <= self.chunk_size as u64 {
            // Monolithic: the whole blob goes with the closing PUT.
            let data = source
                .next_chunk(usize::try_from(size).unwrap_or(usize::MAX))
                .await?;
            hasher.update(&data);
            data
        } else {
            let mut offset = 0u64;
            while offset < size {
                let n = usize::try_from(size - offset)
                    .map_or(self.chunk_size, |rest| rest.min(self.chunk_size));
                let chunk = source.next_chunk(n).await?;
                hasher.update(&chunk);
                let mut headers = octets.clone();
                let range = format!("{offset}-{}", offset + n as u64 - 1);
                headers.insert(
                    CONTENT_RANGE,
                    HeaderValue::from_str(&range).map_err(|e| ClientError::Setup(e.to_string()))?,
                );
                let resp = self
                    .send(&call(location.clone(), headers, Method::PATCH, chunk))
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(status_error(resp, &location).await);
                }
                location = self.upload_location(&resp, &location)?;
                offset += n as u64;
            }
            Bytes::new()
        };
        let actual_size = hasher.len();
        let actual = hasher.finish();
        if actual != *digest || actual_size != size {
            self.abandon_upload(r, scope, &location).await;
            return Err(ClientError::DigestMismatch {
                location: source.location(),
                expected: digest.clone(),
                expected_size: None,
                actual,
                actual_size,
            });
        }
        location
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let resp = self
            .send(&call(location.clone(), octets, Method::PUT, final_body))
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(resp, &location).await);
        }
        Ok(())
    }

    /// `PUT /v2/<repo>/manifests/<tag or digest>` with `Content-Type:
    /// media_type`; returns the manifest's digest (checked against the
    /// `Docker-Content-Digest` header when the registry sends one, and
    /// against the reference's digest when it has one).
    pub async fn put_manifest(
        &self,
        r: &Reference,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Digest, ClientError> {
        let digest = Digest::of(&bytes);
        let url = self.repo_url(r, &format!("manifests/{}", r.target()))?;
        let size = bytes.len() as u64;
        if let Some(want) = &r.digest {
            if *want != digest {
                return Err(ClientError::DigestMismatch {
                    location: r.to_string(),
                    expected: want.clone(),
                    expected_size: None,
                    actual: digest,
                    actual_size: size,
                });
            }
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|e| ClientError::Url {
                url: url.to_string(),
                reason: format!("media type {media_type:?} is not a valid header value: {e}"),
            })?,
        );
        let resp = self
            .send(&Call {
                registry: &r.registry,
                scope: push_scope(r),
                method: Method::PUT,
                url: url.clone(),
                headers,
                body: Some(bytes.into()),
            })
            .await?;
        if !resp.status().is_success() {
            return Err(status_error(resp, &url).await);
        }
        if let Some(said) =
            header_str(&resp, DOCKER_CONTENT_DIGEST).and_then(|h| h.parse::<Digest>().ok())
        {
            if said != digest {
                return Err(ClientError::DigestMismatch {
                    location: url.to_string(),
                    expected: digest,
                    expected_size: Some(size),
                    actual: said,
                    actual_size: size,
                });
            }
        }
        Ok(digest)
    }

    /// The repository's tags (`GET /v2/<repo>/tags/list`), following `Link`
    /// pagination.
    pub async fn list_tags(&self, r: &Reference) -> Result<Vec<String>, ClientError> {
        let mut url = self.repo_url(r, "tags/list")?;
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let resp = self
                .send(&Call {
                    registry: &r.registry,
                    scope: pull_scope(r),
                    method: Method::GET,
                    url: url.clone(),
                    headers: HeaderMap::new(),
                    body: None,
                })
                .await?;
            if !resp.status().is_success() {
                return Err(status_error(resp, &url).await);
            }
            let next = header_str(&resp, LINK)
                .and_then(link_next)
                .map(str::to_string);
            let body = read_limited(resp, 16 << 20, &url).await?;
            let page: TagList = serde_json::from_slice(&body)
                .map_err(|e| unexpected(&url, format!("tag list is not valid JSON: {e}")))?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => {
                    url = url.join(&next).map_err(|e| ClientError::Url {
                        url: next.clone(),
                        reason: e.to_string(),
                    })?;
                }
                None => return Ok(tags),
            }
        }
        Err(unexpected(
            &url,
            format!("tag list has more than {MAX_TAG_PAGES} pages"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenge_with_commas_in_quotes() {
        let h = r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/app:pull,push""#;
        let c = parse_www_authenticate(h);
        assert_eq!(c.len(), 1);
        assert!(c[0].is("bearer"));
        assert_eq!(c[0].param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c[0].param("service"), Some("registry.example.com"));
        assert_eq!(c[0].param("scope"), Some("repository:team/app:pull,push"));
    }

    #[test]
    fn parses_several_challenges_escapes_and_bare_values() {
        let h = r#"Bearer realm="https://a/token", error="insufficient_scope", Basic realm="say \"hi\", please" , Other k=v"#;
        let c = parse_www_authenticate(h);
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
        assert!(c[1].is("Basic"));
        assert_eq!(c[1].param("realm"), Some(r#"say "hi", please"#));
        assert_eq!(c[2].scheme, "Other");
        assert_eq!(c[2].param("k"), Some("v"));
        let c = parse_www_authenticate(r#"basic REALM = "x""#);
        assert_eq!(c[0].param("realm"), Some("x"));
        assert!(parse_www_authenticate("").is_empty());
        assert!(parse_www_authenticate(r#"realm="x""#).is_empty());
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_hosts() {
        let none: Vec<String> = Vec::new();
        assert!(allows_plain_http("127.0.0.1:5000", &none));
        assert!(allows_plain_http("localhost", &none));
        assert!(allows_plain_http("[::1]:5000", &none));
        assert!(!allows_plain_http("127.example.com:5000", &none));
        assert!(!allows_plain_http("registry.example.com", &none));
        let listed = vec![
            "reg.internal:5000".to_string(),
            "other.internal".to_string(),
        ];
        assert!(allows_plain_http("reg.internal:5000", &listed));
        assert!(!allows_plain_http("reg.internal:6000", &listed));
        assert!(allows_plain_http("other.internal:6000", &listed));
        let url = Url::parse("http://example.com/x").unwrap();
        assert!(matches!(
            check_scheme(&url, &none),
            Err(ClientError::InsecureUrl { .. })
        ));
        assert!(check_scheme(&Url::parse("https://example.com/").unwrap(), &none).is_ok());
    }

    #[test]
    fn finds_next_link() {
        assert_eq!(
            link_next(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(link_next(r#"</x>; rel="prev", </y>; rel=next"#), Some("/y"));
        assert_eq!(link_next(r#"</x>; rel="prev""#), None);
    }

    #[test]
    fn matches_platforms() {
        let p = |os: &str, arch: &str, v: Option<&str>| Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: v.map(str::to_string),
            os_version: None,
        };
        assert!(platform_matches(
            &p("linux", "amd64", None),
            &p("linux", "amd64", None)
        ));
        assert!(!platform_matches(
            &p("linux", "amd64", None),
            &p("linux", "arm64", None)
        ));
        assert!(!platform_matches(
            &p("linux", "amd64", None),
            &p("unknown", "unknown", None)
        ));
        assert!(platform_matches(
            &p("linux", "arm64", Some("v8")),
            &p("linux", "arm64", None)
        ));
        assert!(!platform_matches(
            &p("linux", "arm", Some("v7")),
            &p("linux", "arm", Some("v6"))
        ));
    }

    fn chunks(parts: &[&[u8]]) -> impl Stream<Item = Result<Bytes, ClientError>> {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::copy_from_slice(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn write_verified_accepts_matching_content() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("blob");
        let d = Digest::of(b"hello world");
        write_verified(chunks(&[b"hello ", b"world"]), &dest, &d, 11, "test")
            .await
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello world");
    }

    #[tokio::test]
    async fn write_verified_removes_dest_on_wrong_digest() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("blob");
        let d = Digest::of(b"hello world");
        let err = write_verified(chunks(&[b"hello ", b"WORLD"]), &dest, &d, 11, "test")
            .await
            .unwrap_err();
        match err {
            ClientError::DigestMismatch {
                expected,
                actual,
                actual_size,
                ..
            } => {
                assert_eq!(expected, d);
                assert_eq!(actual, Digest::of(b"hello WORLD"));
                assert_eq!(actual_size, 11);
            }
            other => panic!("expected DigestMismatch, got {other}"),
        }
        assert!(!dest.exists(), "dest must be removed on mismatch");
    }

    #[tokio::test]
    async fn write_verified_rejects_wrong_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("blob");
        let d = Digest::of(b"hello");
        // Too long: cut off as soon as it overruns.
        let err = write_verified(chunks(&[b"hel", b"lo", b"!!"]), &dest, &d, 5, "test")
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::DigestMismatch { actual_size: 7, .. }),
            "{err}"
        );
        assert!(!dest.exists());
        // Too short.
        let err = write_verified(chunks(&[b"hel"]), &dest, &d, 5, "test")
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::DigestMismatch { actual_size: 3, .. }),
            "{err}"
        );
        assert!(!dest.exists());
        // A stream error also removes the partial file.
        let failing = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"he")),
            Err(ClientError::Setup("boom".into())),
        ]);
        let err = write_verified(failing, &dest, &d, 5, "test")
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Setup(_)));
        assert!(!dest.exists());
    }

    #[test]
    fn error_messages_name_what_failed() {
        let e = ClientError::DigestMismatch {
            location: "http://r/v2/a/blobs/x".into(),
            expected: Digest::of(b"a"),
            expected_size: Some(1),
            actual: Digest::of(b"b"),
            actual_size: 2,
        };
        let s = e.to_string();
        assert!(
            s.contains("http://r/v2/a/blobs/x")
                && s.contains("(1 bytes)")
                && s.contains("(2 bytes)"),
            "{s}"
        );
        let creds = Credentials::Basic {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{creds:?}").contains("secret"));
    }
}
