//! One function per endpoint of the distribution API.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use berth_control::ecr::NewManifest;
use berth_control::Caller;
use berth_core::Timestamp;
use berth_oci::manifest::Manifest;
use berth_oci::reference::{validate_repository, validate_tag};
use berth_oci::Digest;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::json;

use crate::error::DistError;
use crate::route::{self, Route};
use crate::Registry;

/// The largest manifest accepted (ECR's limit).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Upload bodies are appended to disk in pieces of at most this size.
const APPEND_CHUNK: usize = 4 * 1024 * 1024;

type Result<T> = std::result::Result<T, DistError>;

fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp(ms)
}

fn query(req: &Request) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header(r: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

fn check_name(name: &str) -> Result<()> {
    validate_repository(name)
        .map_err(|e| DistError::name_invalid(e).with_detail(json!({"name": name})))
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse::<Digest>()
        .map_err(|e| DistError::digest_invalid(e.to_string()).with_detail(json!({"digest": s})))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DistError::unknown(format!("registry task failed: {e}")))?
}

/// Entry point for every `/v2` request.
pub async fn handle(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    let mut resp = match dispatch(reg, req).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(code = e.code, error = %e.message, "registry request failed");
            }
            e.into_response()
        }
    };
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

async fn dispatch(reg: Arc<Registry>, req: Request) -> Result<Response> {
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let caller = reg
        .auth
        .authenticate(auth.as_deref(), now().secs())
        .map_err(DistError::unauthorized)?;
    let Some(route) = route::parse(req.uri().path()) else {
        return Err(DistError::unsupported(format!(
            "{} is not a registry endpoint",
            req.uri().path()
        )));
    };
    let method = req.method().clone();
    tracing::debug!(?route, %method, caller = %caller.arn, "registry request");
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => Ok(json_response(json!({}))),
        (Route::Catalog, Method::GET) => catalog(&reg, query(&req)).await,
        (Route::Tags(name), Method::GET) => tags(&reg, &name, query(&req)).await,
        (Route::Manifest(name, r), m @ (Method::GET | Method::HEAD)) => {
            get_manifest(&reg, &name, &r, m == Method::HEAD).await
        }
        (Route::Manifest(name, r), Method::PUT) => {
            put_manifest(&reg, &name, &r, req, &caller).await
        }
        (Route::Manifest(name, r), Method::DELETE) => delete_manifest(&reg, &name, &r).await,
        (Route::Blob(name, d), m @ (Method::GET | Method::HEAD)) => {
            let headers = req.headers().clone();
            get_blob(&reg, &name, &d, m == Method::HEAD, &headers).await
        }
        (Route::Blob(name, d), Method::DELETE) => delete_blob(&reg, &name, &d).await,
        (Route::UploadStart(name), Method::POST) => start_upload(&reg, &name, req).await,
        (Route::Upload(name, id), Method::PATCH) => patch_upload(&reg, &name, &id, req).await,
        (Route::Upload(name, id), Method::PUT) => finish_upload(&reg, &name, &id, req).await,
        (Route::Upload(name, id), Method::GET) => upload_status(&reg, &name, &id).await,
        (Route::Upload(name, id), Method::DELETE) => cancel_upload(&reg, &name, &id).await,
        (r, m) => Err(DistError::unsupported(format!(
            "{m} is not supported on {r:?}"
        ))),
    }
}

fn json_response(v: serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `n` and `last` pagination with a `Link` header, as the spec describes.
fn paginate(
    all: Vec<String>,
    q: &HashMap<String, String>,
    base: &str,
) -> Result<(Vec<String>, Option<String>)> {
    let last = q.get("last").cloned();
    let n = match q.get("n") {
        None => None,
        Some(s) => Some(s.parse::<usize>().map_err(|_| {
            DistError::unsupported(format!("n={s} is not a number"))
                .with_status(StatusCode::BAD_REQUEST)
        })?),
    };
    let mut items: Vec<String> = all
        .into_iter()
        .filter(|x| last.as_ref().is_none_or(|l| x > l))
        .collect();
    let mut link = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(l) = items.last() {
                link = Some(format!("<{base}?n={n}&last={l}>; rel=\"next\""));
            }
        }
    }
    Ok((items, link))
}

async fn catalog(reg: &Registry, q: HashMap<String, String>) -> Result<Response> {
    let names = reg.ecr.repository_names().await?;
    let (items, link) = paginate(names, &q, "/v2/_catalog")?;
    let mut r = json_response(json!({"repositories": items}));
    if let Some(l) = link {
        header(&mut r, "Link", &l);
    }
    Ok(r)
}

async fn tags(reg: &Registry, name: &str, q: HashMap<String, String>) -> Result<Response> {
    check_name(name)?;
    if reg.ecr.get_repository(name).await?.is_none() {
        return Err(DistError::name_unknown(format!(
            "repository {name} is not known to this registry"
        )));
    }
    let tags: Vec<String> = reg.ecr.tags(name).await?.into_keys().collect();
    let (items, link) = paginate(tags, &q, &format!("/v2/{name}/tags/list"))?;
    let mut r = json_response(json!({"name": name, "tags": items}));
    if let Some(l) = link {
        header(&mut r, "Link", &l);
    }
    Ok(r)
}

async fn get_manifest(reg: &Registry, name: &str, reference: &str, head: bool) -> Result<Response> {
    check_name(name)?;
    if reg.ecr.get_repository(name).await?.is_none() {
        return Err(DistError::name_unknown(format!(
            "repository {name} is not known to this registry"
        )));
    }
    let Some(image) = reg.ecr.get_image(name, reference).await? else {
        return Err(DistError::manifest_unknown(format!(
            "manifest {reference} is not in repository {name}"
        ))
        .with_detail(json!({"name": name, "reference": reference})));
    };
    let bytes = image.manifest_bytes();
    let len = bytes.len();
    let mut r = Response::new(if head {
        Body::empty()
    } else {
        Body::from(bytes)
    });
    header(&mut r, "Content-Type", &image.media_type);
    header(&mut r, "Docker-Content-Digest", &image.digest.to_string());
    header(&mut r, "Content-Length", &len.to_string());
    header(&mut r, "ETag", &format!("\"{}\"", image.digest));
    Ok(r)
}

async fn put_manifest(
    reg: &Registry,
    name: &str,
    reference: &str,
    req: Request,
    _caller: &Caller,
) -> Result<Response> {
    check_name(name)?;
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = axum::body::to_bytes(req.into_body(), MAX_MANIFEST_BYTES)
        .await
        .map_err(|_| {
            DistError::size_invalid(format!(
                "manifest is larger than {MAX_MANIFEST_BYTES} bytes"
            ))
        })?
        .to_vec();
    let manifest = Manifest::parse(content_type.as_deref(), &bytes)
        .map_err(|e| DistError::manifest_invalid(e.to_string()))?;
    let digest = Digest::of(&bytes);
    let tag = match route::as_digest(reference) {
        Some(d) if d != digest => {
            return Err(DistError::digest_invalid(format!(
                "manifest bytes hash to {digest}, not to the {d} they were pushed under"
            )))
        }
        Some(_) => None,
        None => {
            validate_tag(reference).map_err(DistError::tag_invalid)?;
            Some(reference.to_string())
        }
    };
    let (blobs, manifests, artifact) = match &manifest {
        Manifest::Image(m, _) => (
            manifest
                .blobs()
                .iter()
                .map(|d| (d.digest.clone(), d.size))
                .collect(),
            Vec::new(),
            Some(m.config.media_type.clone()),
        ),
        Manifest::Index(..) => (
            Vec::new(),
            manifest
                .children()
                .iter()
                .map(|d| d.digest.clone())
                .collect(),
            None,
        ),
    };
    let record = reg
        .ecr
        .put_manifest(
            name,
            tag.as_deref(),
            NewManifest {
                digest: digest.clone(),
                media_type: manifest.media_type().to_string(),
                artifact_media_type: artifact,
                bytes,
                blobs,
                manifests,
            },
            now(),
        )
        .await?;
    let mut r = empty(StatusCode::CREATED);
    header(
        &mut r,
        "Location",
        &format!("/v2/{name}/manifests/{}", record.digest),
    );
    header(&mut r, "Docker-Content-Digest", &record.digest.to_string());
    Ok(r)
}

async fn delete_manifest(reg: &Registry, name: &str, reference: &str) -> Result<Response> {
    check_name(name)?;
    let Some(digest) = route::as_digest(reference) else {
        return Err(DistError::unsupported(
            "deleting a manifest by tag is not supported; delete it by digest (or untag with `aws ecr batch-delete-image`)",
        ));
    };
    if reg.ecr.get_repository(name).await?.is_none() {
        return Err(DistError::name_unknown(format!(
            "repository {name} is not known to this registry"
        )));
    }
    if !reg.ecr.delete_image(name, &digest).await? {
        return Err(DistError::manifest_unknown(format!(
            "manifest {digest} is not in repository {name}"
        )));
    }
    Ok(empty(StatusCode::ACCEPTED))
}

/// What a `Range` header asks of a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// No usable single range: serve the whole blob (200).
    Whole,
    /// Serve `start..=end` (206).
    Part(u64, u64),
    /// The range lies outside the blob (416).
    Unsatisfiable,
}

/// Parses `Range` per RFC 7233: `bytes=A-B` (B clamped to the end),
/// `bytes=A-`, and suffix `bytes=-N`. Multiple ranges are answered with the
/// whole blob, which the RFC allows.
fn parse_range(h: &HeaderMap, size: u64) -> RangeAsk {
    let Some(v) = h.get(http::header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAsk::Whole;
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAsk::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix: the last N bytes.
        return match b.parse::<u64>() {
            Ok(0) | Err(_) => RangeAsk::Unsatisfiable,
            Ok(_) if size == 0 => RangeAsk::Unsatisfiable,
            Ok(n) => RangeAsk::Part(size.saturating_sub(n), size - 1),
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeAsk::Whole;
    };
    if start >= size {
        return RangeAsk::Unsatisfiable;
    }
    let end = if b.is_empty() {
        size - 1
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.min(size - 1),
            _ => return RangeAsk::Whole,
        }
    };
    RangeAsk::Part(start, end)
}

async fn get_blob(
    reg: &Registry,
    name: &str,
    digest: &str,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response> {
    check_name(name)?;
    let d = parse_digest(digest)?;
    let unknown = || {
        DistError::blob_unknown(format!("blob {d} is not in repository {name}"))
            .with_detail(json!({"digest": d.to_string()}))
    };
    if reg.ecr.blob_size(name, &d).await?.is_none() {
        return Err(unknown());
    }
    let store = reg.blobs.clone();
    let d2 = d.clone();
    let file = blocking(move || Ok(store.open_blob(&d2)?))
        .await?
        .ok_or_else(unknown)?;
    let size = file
        .metadata()
        .map_err(|e| DistError::unknown(e.to_string()))?
        .len();
    let (start, len, status) = match parse_range(headers, size) {
        RangeAsk::Whole => (0, size, StatusCode::OK),
        RangeAsk::Part(s, e) => (s, e - s + 1, StatusCode::PARTIAL_CONTENT),
        RangeAsk::Unsatisfiable => {
            let mut r = DistError::blob_unknown(format!(
                "the requested range is not within the blob's {size} bytes"
            ))
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .into_response();
            header(&mut r, "Content-Range", &format!("bytes */{size}"));
            return Ok(r);
        }
    };
    let body = if head {
        Body::empty()
    } else {
        let mut f = file;
        f.seek(SeekFrom::Start(start))
            .map_err(|e| DistError::unknown(e.to_string()))?;
        let reader = tokio::fs::File::from_std(f);
        let limited = tokio::io::AsyncReadExt::take(reader, len);
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            limited,
            256 * 1024,
        ))
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    header(&mut r, "Content-Type", "application/octet-stream");
    header(&mut r, "Content-Length", &len.to_string());
    header(&mut r, "Docker-Content-Digest", &d.to_string());
    header(&mut r, "Accept-Ranges", "bytes");
    header(&mut r, "ETag", &format!("\"{d}\""));
    if status == StatusCode::PARTIAL_CONTENT {
        header(
            &mut r,
            "Content-Range",
            &format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    Ok(r)
}

async fn delete_blob(reg: &Registry, name: &str, digest: &str) -> Result<Response> {
    check_name(name)?;
    let d = parse_digest(digest)?;
    if !reg.ecr.unlink_blob(name, &d).await? {
        return Err(DistError::blob_unknown(format!(
            "blob {d} is not in repository {name}"
        )));
    }
    Ok(empty(StatusCode::ACCEPTED))
}

fn upload_response(status: StatusCode, name: &str, id: &str, size: u64) -> Response {
    let mut r = empty(status);
    header(
        &mut r,
        "Location",
        &format!("/v2/{name}/blobs/uploads/{id}"),
    );
    header(&mut r, "Docker-Upload-UUID", id);
    header(&mut r, "Range", &format!("0-{}", size.saturating_sub(1)));
    header(&mut r, "Content-Length", "0");
    r
}

fn blob_created(name: &str, d: &Digest) -> Response {
    let mut r = empty(StatusCode::CREATED);
    header(&mut r, "Location", &format!("/v2/{name}/blobs/{d}"));
    header(&mut r, "Docker-Content-Digest", &d.to_string());
    header(&mut r, "Content-Length", "0");
    r
}

/// Streams a request body into an upload session. `offset` is the Content-Range
/// start the client claimed, checked against the session's size.
async fn append_body(reg: &Registry, id: &str, body: Body, mut offset: Option<u64>) -> Result<u64> {
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(APPEND_CHUNK);
    let mut size = {
        let store = reg.blobs.clone();
        let id = id.to_string();
        blocking(move || Ok(store.upload_size(&id)?)).await?
    };
    loop {
        let next = stream.next().await;
        let done = next.is_none();
        if let Some(chunk) = next {
            let chunk = chunk.map_err(|e| {
                DistError::blob_upload_invalid(format!("reading the upload body failed: {e}"))
            })?;
            buf.extend_from_slice(&chunk);
        }
        if buf.len() >= APPEND_CHUNK || (done && (!buf.is_empty() || offset.is_some())) {
            let data = std::mem::take(&mut buf);
            let store = reg.blobs.clone();
            let id = id.to_string();
            let expected = offset.take();
            size = blocking(move || Ok(store.upload_append(&id, expected, &data)?)).await?;
        }
        if done {
            return Ok(size);
        }
    }
}

async fn session_for(reg: &Registry, name: &str, id: &str) -> Result<()> {
    match reg.ecr.upload_repository(id).await? {
        Some(r) if r == name => Ok(()),
        Some(r) => Err(DistError::denied(format!(
            "upload {id} belongs to repository {r}, not {name}"
        ))),
        None => Err(DistError::blob_upload_unknown(format!(
            "upload {id} is not known; start a new one with POST /v2/{name}/blobs/uploads/"
        ))),
    }
}

async fn start_upload(reg: &Registry, name: &str, req: Request) -> Result<Response> {
    check_name(name)?;
    reg.ecr.ensure_repository(name, now()).await?;
    let q = query(&req);
    if let (Some(mount), Some(from)) = (q.get("mount"), q.get("from")) {
        let d = parse_digest(mount)?;
        if validate_repository(from).is_ok() {
            if let Some(size) = reg.ecr.blob_size(from, &d).await? {
                let store = reg.blobs.clone();
                let d2 = d.clone();
                if blocking(move || Ok(store.size(&d2)?)).await?.is_some() {
                    reg.ecr.link_blob(name, &d, size).await?;
                    return Ok(blob_created(name, &d));
                }
            }
        }
        // Not mountable: fall through to a normal upload, as the spec says.
    }
    let monolithic = match q.get("digest") {
        Some(digest) => Some(parse_digest(digest)?),
        None => None,
    };
    let store = reg.blobs.clone();
    let id = blocking(move || Ok(store.start_upload()?)).await?;
    reg.ecr.record_upload(&id, name).await?;
    if let Some(d) = monolithic {
        if let Err(e) = append_body(reg, &id, req.into_body(), None).await {
            // A monolithic upload has no session the client knows of.
            let store = reg.blobs.clone();
            let id2 = id.clone();
            let _ = blocking(move || Ok(store.cancel_upload(&id2)?)).await;
            reg.ecr.forget_upload(&id).await?;
            return Err(e);
        }
        return complete(reg, name, &id, &d).await;
    }
    Ok(upload_response(StatusCode::ACCEPTED, name, &id, 0))
}

fn content_range_start(h: &HeaderMap) -> Result<Option<u64>> {
    let Some(v) = h.get(http::header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("");
    let s = s.strip_prefix("bytes ").unwrap_or(s);
    let start = s.split('-').next().unwrap_or("");
    start.parse::<u64>().map(Some).map_err(|_| {
        DistError::blob_upload_invalid(format!("Content-Range {s:?} is not START-END"))
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    })
}

async fn patch_upload(reg: &Registry, name: &str, id: &str, req: Request) -> Result<Response> {
    check_name(name)?;
    session_for(reg, name, id).await?;
    let offset = content_range_start(req.headers())?;
    let size = append_body(reg, id, req.into_body(), offset).await?;
    Ok(upload_response(StatusCode::ACCEPTED, name, id, size))
}

async fn complete(reg: &Registry, name: &str, id: &str, d: &Digest) -> Result<Response> {
    let store = reg.blobs.clone();
    let (id2, d2) = (id.to_string(), d.clone());
    let result = blocking(move || Ok(store.finish_upload(&id2, &d2)?)).await;
    // The store removes the session on success and on a digest mismatch; on
    // any other failure it stays, so the client may retry the PUT.
    if result.is_ok() || result.as_ref().is_err_and(|e| e.code == "DIGEST_INVALID") {
        reg.ecr.forget_upload(id).await?;
    }
    let size = result?;
    reg.ecr.link_blob(name, d, size).await?;
    Ok(blob_created(name, d))
}

async fn finish_upload(reg: &Registry, name: &str, id: &str, req: Request) -> Result<Response> {
    check_name(name)?;
    session_for(reg, name, id).await?;
    let q = query(&req);
    let Some(digest) = q.get("digest") else {
        return Err(DistError::digest_invalid(
            "the final PUT of an upload must carry ?digest=sha256:...",
        ));
    };
    let d = parse_digest(digest)?;
    let offset = content_range_start(req.headers())?;
    append_body(reg, id, req.into_body(), offset).await?;
    complete(reg, name, id, &d).await
}

async fn upload_status(reg: &Registry, name: &str, id: &str) -> Result<Response> {
    check_name(name)?;
    session_for(reg, name, id).await?;
    let store = reg.blobs.clone();
    let id2 = id.to_string();
    let size = blocking(move || Ok(store.upload_size(&id2)?)).await?;
    Ok(upload_response(StatusCode::NO_CONTENT, name, id, size))
}

async fn cancel_upload(reg: &Registry, name: &str, id: &str) -> Result<Response> {
    check_name(name)?;
    session_for(reg, name, id).await?;
    let store = reg.blobs.clone();
    let id2 = id.to_string();
    blocking(move || Ok(store.cancel_upload(&id2)?)).await?;
    reg.ecr.forget_upload(id).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Cancels upload sessions started more than `max_age` ago (abandoned
/// pushes); returns how many were removed. Run periodically by the server.
pub async fn expire_uploads(reg: &Registry, max_age: std::time::Duration) -> Result<usize> {
    let store = reg.blobs.clone();
    let stale: Vec<String> = blocking(move || {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for id in store.uploads()? {
            let started = store.upload_started_at(&id)?;
            if now.duration_since(started).is_ok_and(|age| age > max_age) {
                out.push(id);
            }
        }
        Ok(out)
    })
    .await?;
    for id in &stale {
        let store = reg.blobs.clone();
        let id2 = id.clone();
        blocking(move || Ok(store.cancel_upload(&id2)?)).await?;
        reg.ecr.forget_upload(id).await?;
    }
    Ok(stale.len())
}

/// Reads a whole small blob (tests and tools).
pub fn read_all(mut f: std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

#[cfg(test)]
mod range_tests {
    use super::*;

    fn ask(v: &str, size: u64) -> RangeAsk {
        let mut h = HeaderMap::new();
        h.insert(http::header::RANGE, HeaderValue::from_str(v).unwrap());
        parse_range(&h, size)
    }

    #[test]
    fn ranges_follow_rfc_7233() {
        assert_eq!(ask("bytes=2-100", 6), RangeAsk::Part(2, 5));
        assert_eq!(ask("bytes=2-", 6), RangeAsk::Part(2, 5));
        assert_eq!(ask("bytes=-2", 6), RangeAsk::Part(4, 5));
        assert_eq!(ask("bytes=-10", 6), RangeAsk::Part(0, 5));
        assert_eq!(ask("bytes=0-0", 6), RangeAsk::Part(0, 0));
        assert_eq!(ask("bytes=6-", 6), RangeAsk::Unsatisfiable);
        assert_eq!(ask("bytes=0-1,3-4", 6), RangeAsk::Whole);
        assert_eq!(ask("items=0-1", 6), RangeAsk::Whole);
        assert_eq!(ask("bytes=4-2", 6), RangeAsk::Whole);
        assert_eq!(
            ask(&format!("bytes=0-{}", u64::MAX), 6),
            RangeAsk::Part(0, 5)
        );
    }
}
