//! The registry client against a small scripted registry (axum), for what
//! Debian's `docker-registry` can't show without a token server or a
//! storage backend: Bearer tokens (fetch, cache, anonymous refusal), `Link`
//! pagination, redirects to another host (no `Authorization` carried
//! there, no plain http to non-loopback hosts), content that does not
//! match its digest, and the exact chunked-upload requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use berth_oci::client::{ClientConfig, ClientError, Credentials, RegistryClient};
use berth_oci::manifest::Descriptor;
use berth_oci::{Digest, Reference};

#[derive(Default)]
struct Fake {
    /// `user:password` the token service wants, if any.
    token_credentials: Option<String>,
    /// Where blob GETs redirect to (`scheme://host:port`).
    storage_base: String,
    /// Token requests' query strings.
    token_queries: Vec<String>,
    /// Tokens handed out.
    tokens: Vec<String>,
    /// Blobs by digest (what the registry has).
    blobs: HashMap<String, Vec<u8>>,
    /// What the storage server serves, by digest (may be wrong on purpose).
    storage: HashMap<String, Vec<u8>>,
    /// The `Authorization` header of each storage request.
    storage_auth: Vec<Option<String>>,
    /// The open upload's bytes.
    upload: Vec<u8>,
    /// `Content-Range` of each PATCH.
    patches: Vec<String>,
    /// Requests the registry served: `METHOD path?query`.
    requests: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

fn respond(status: StatusCode, headers: &[(&str, String)], body: impl Into<Body>) -> Response {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    b.body(body.into()).expect("response")
}

async fn registry(State(fake): State<(Shared, String)>, req: Request) -> Response {
    let (fake, self_base) = fake;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let range = req
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .expect("body");
    let mut f = fake.lock().expect("lock");

    if path == "/token" {
        if let Some(want) = &f.token_credentials {
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(want)
            );
            if auth.as_deref() != Some(expected.as_str()) {
                return respond(
                    StatusCode::UNAUTHORIZED,
                    &[],
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
                );
            }
        }
        let token = format!("tok-{}", f.tokens.len());
        f.tokens.push(token.clone());
        f.token_queries.push(query);
        // `access_token` only: the client must accept either name.
        return respond(
            StatusCode::OK,
            &[],
            format!(r#"{{"access_token":"{token}","expires_in":300}}"#),
        );
    }

    let authorized = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| f.tokens.iter().any(|k| k == t));
    if !authorized {
        let actions = if method == Method::GET || method == Method::HEAD {
            "pull"
        } else {
            "pull,push"
        };
        let challenge = format!(
            r#"Bearer realm="{self_base}/token",service="fake registry",scope="repository:app:{actions}""#
        );
        return respond(
            StatusCode::UNAUTHORIZED,
            &[("www-authenticate", challenge)],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
    }
    f.requests.push(format!("{method} {path}?{query}"));

    let blob_prefix = "/v2/app/blobs/sha256:";
    match (method.as_str(), path.as_str()) {
        ("GET", "/v2/app/tags/list") if query.is_empty() => respond(
            StatusCode::OK,
            &[(
                "link",
                r#"</v2/app/tags/list?last=b&n=2>; rel="next""#.to_string(),
            )],
            r#"{"name":"app","tags":["a","b"]}"#,
        ),
        ("GET", "/v2/app/tags/list") if query == "last=b&n=2" => {
            respond(StatusCode::OK, &[], r#"{"name":"app","tags":["c"]}"#)
        }
        ("GET", p) if p.starts_with(blob_prefix) => {
            let digest = &p["/v2/app/blobs/".len()..];
            let target = if digest.ends_with("0000") {
                // Sends the client to a non-loopback plain-http host.
                "http://registry.example.invalid/blob".to_string()
            } else {
                format!("{}/storage/{digest}", f.storage_base)
            };
            respond(
                StatusCode::TEMPORARY_REDIRECT,
                &[("location", target)],
                Body::empty(),
            )
        }
        ("HEAD", p) if p.starts_with(blob_prefix) => {
            let digest = &p["/v2/app/blobs/".len()..];
            if f.blobs.contains_key(digest) {
                respond(StatusCode::OK, &[], Body::empty())
            } else {
                respond(StatusCode::NOT_FOUND, &[], Body::empty())
            }
        }
        ("POST", "/v2/app/blobs/uploads/") => {
            f.upload.clear();
            respond(
                StatusCode::ACCEPTED,
                // Relative, with a query of its own, as real registries do.
                &[("location", "/v2/app/blobs/uploads/s1?_state=x".into())],
                Body::empty(),
            )
        }
        ("PATCH", "/v2/app/blobs/uploads/s1") => {
            let range = range.unwrap_or_default();
            let want = format!("{}-{}", f.upload.len(), f.upload.len() + body.len() - 1);
            if range != want {
                return respond(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    &[],
                    format!("range {range:?}, expected {want:?}"),
                );
            }
            f.patches.push(range);
            f.upload.extend_from_slice(&body);
            respond(
                StatusCode::ACCEPTED,
                &[("location", "/v2/app/blobs/uploads/s1?_state=y".into())],
                Body::empty(),
            )
        }
        ("PUT", "/v2/app/blobs/uploads/s1") => {
            f.upload.extend_from_slice(&body);
            let digest = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("digest="))
                .unwrap_or_default()
                .replace("%3A", ":");
            let data = std::mem::take(&mut f.upload);
            if Digest::of(&data).to_string() != digest {
                return respond(
                    StatusCode::BAD_REQUEST,
                    &[],
                    r#"{"errors":[{"code":"DIGEST_INVALID","message":"digest mismatch"}]}"#,
                );
            }
            f.blobs.insert(digest, data);
            respond(StatusCode::CREATED, &[], Body::empty())
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            &[],
            r#"{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}"#,
        ),
    }
}

async fn storage(State(fake): State<Shared>, req: Request) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let digest = req
        .uri()
        .path()
        .strip_prefix("/storage/")
        .unwrap_or_default()
        .to_string();
    let mut f = fake.lock().expect("lock");
    f.storage_auth.push(auth);
    match f.storage.get(&digest) {
        Some(data) => respond(StatusCode::OK, &[], data.clone()),
        None => respond(StatusCode::NOT_FOUND, &[], Body::empty()),
    }
}

/// Starts the fake registry on 127.0.0.1 and its storage on `localhost`
/// (a different host name, so redirects cross hosts). Returns the shared
/// state and the registry's `host:port`.
async fn start(token_credentials: Option<&str>) -> (Shared, String) {
    let fake: Shared = Arc::default();
    let storage_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let storage_port = storage_listener.local_addr().expect("addr").port();
    {
        let mut f = fake.lock().expect("lock");
        f.storage_base = format!("http://localhost:{storage_port}");
        f.token_credentials = token_credentials.map(str::to_string);
    }
    let app = Router::new().fallback(storage).with_state(fake.clone());
    tokio::spawn(async move { axum::serve(storage_listener, app).await });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let app = Router::new()
        .fallback(registry)
        .with_state((fake.clone(), format!("http://{addr}")));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, addr)
}

fn reference(addr: &str) -> Reference {
    format!("{addr}/app:v1").parse().expect("reference")
}

fn descriptor(data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: "application/octet-stream".into(),
        digest: Digest::of(data),
        size: data.len() as u64,
        platform: None,
        annotations: None,
    }
}

#[tokio::test]
async fn bearer_token_is_fetched_once_cached_and_tags_paginate() {
    let (fake, addr) = start(None).await;
    let c = RegistryClient::new(ClientConfig::default()).unwrap();
    let r = reference(&addr);
    assert_eq!(c.list_tags(&r).await.unwrap(), ["a", "b", "c"]);
    assert_eq!(c.list_tags(&r).await.unwrap(), ["a", "b", "c"]);
    let f = fake.lock().unwrap();
    assert_eq!(
        f.tokens.len(),
        1,
        "one token for both listings and all pages: {:?}",
        f.token_queries
    );
    let q = &f.token_queries[0];
    assert!(
        q.contains("service=fake+registry") || q.contains("service=fake%20registry"),
        "{q}"
    );
    assert!(q.contains("scope=repository%3Aapp%3Apull"), "{q}");
}

#[tokio::test]
async fn bearer_token_service_refusing_anonymous_is_unauthorized() {
    let (_fake, addr) = start(Some("berth:pw")).await;
    let r = reference(&addr);
    let anonymous = RegistryClient::new(ClientConfig::default()).unwrap();
    let err = anonymous.list_tags(&r).await.unwrap_err();
    match &err {
        ClientError::Unauthorized { registry, reason } => {
            assert_eq!(registry, &addr);
            assert!(reason.contains("configure credentials"), "{err}");
        }
        other => panic!("expected Unauthorized, got {other}"),
    }
    let c = RegistryClient::new(ClientConfig {
        credentials: HashMap::from([(
            addr.clone(),
            Credentials::Basic {
                username: "berth".into(),
                password: "pw".into(),
            },
        )]),
        ..ClientConfig::default()
    })
    .unwrap();
    assert_eq!(c.list_tags(&r).await.unwrap(), ["a", "b", "c"]);
}

#[tokio::test]
async fn blob_redirects_drop_authorization_and_bad_content_is_removed() {
    let (fake, addr) = start(None).await;
    let c = RegistryClient::new(ClientConfig::default()).unwrap();
    let r = reference(&addr);
    let dir = tempfile::tempdir().unwrap();

    let good = b"layer bytes".to_vec();
    let claimed = b"what the descriptor promises".to_vec();
    {
        let mut f = fake.lock().unwrap();
        f.storage
            .insert(Digest::of(&good).to_string(), good.clone());
        // Storage answers the promised digest with other bytes.
        f.storage.insert(
            Digest::of(&claimed).to_string(),
            b"tampered content!!!!!!!!!!!".to_vec(),
        );
    }

    let dest = dir.path().join("good");
    c.fetch_blob(&r, &descriptor(&good), &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), good);

    let dest = dir.path().join("bad");
    let err = c
        .fetch_blob(&r, &descriptor(&claimed), &dest)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::DigestMismatch { .. }),
        "expected DigestMismatch, got {err}"
    );
    assert!(!dest.exists(), "content that fails verification is removed");
    // The in-memory path (image configs) verifies too.
    let err = c
        .fetch_blob_bytes(&r, &descriptor(&claimed))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::DigestMismatch { .. }),
        "expected DigestMismatch, got {err}"
    );
    assert_eq!(
        c.fetch_blob_bytes(&r, &descriptor(&good)).await.unwrap(),
        good
    );

    let f = fake.lock().unwrap();
    assert_eq!(f.storage_auth.len(), 4);
    assert!(
        f.storage_auth.iter().all(Option::is_none),
        "the registry's token must not go to the storage host: {:?}",
        f.storage_auth
    );
}

#[tokio::test]
async fn redirect_to_plain_http_elsewhere_is_refused() {
    let (_fake, addr) = start(None).await;
    let c = RegistryClient::new(ClientConfig::default()).unwrap();
    let r = reference(&addr);
    let dir = tempfile::tempdir().unwrap();
    // The fake redirects digests ending in 0000 to http://registry.example.invalid.
    let d: Digest = format!("sha256:{}0000", "a".repeat(60)).parse().unwrap();
    let desc = Descriptor {
        digest: d,
        ..descriptor(b"x")
    };
    let err = c
        .fetch_blob(&r, &desc, &dir.path().join("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Http { .. }) && format!("{err:?}").contains("plain http"),
        "expected a refused redirect, got {err:?}"
    );
    assert!(!dir.path().join("x").exists());
}

#[tokio::test]
async fn chunked_upload_sends_ranges_then_commits() {
    let (fake, addr) = start(None).await;
    let c = RegistryClient::new(ClientConfig::default())
        .unwrap()
        .with_chunk_size(4);
    let r = reference(&addr);
    let dir = tempfile::tempdir().unwrap();
    let data = b"0123456789".to_vec();
    let digest = Digest::of(&data);
    let src = dir.path().join("blob");
    std::fs::write(&src, &data).unwrap();
    c.push_blob(&r, &digest, &src, None).await.unwrap();
    {
        let f = fake.lock().unwrap();
        assert_eq!(f.patches, ["0-3", "4-7", "8-9"]);
        assert_eq!(f.blobs.get(&digest.to_string()), Some(&data));
        let put = f
            .requests
            .iter()
            .find(|q| q.starts_with("PUT "))
            .expect("a PUT");
        assert!(
            put.contains("_state=y") && put.contains("digest=sha256"),
            "{put}"
        );
    }
    // Present now: a second push only asks.
    c.push_blob(&r, &digest, &src, None).await.unwrap();
    {
        let f = fake.lock().unwrap();
        assert_eq!(
            f.requests.iter().filter(|q| q.starts_with("PATCH")).count(),
            3
        );
    }

    // Small blobs go up in one PUT.
    let small = b"abc".to_vec();
    let c = c.with_chunk_size(1024);
    c.push_blob_bytes(&r, &Digest::of(&small), small.clone())
        .await
        .unwrap();
    let f = fake.lock().unwrap();
    assert_eq!(f.patches.len(), 3, "no PATCH for a small blob");
    assert_eq!(f.blobs.get(&Digest::of(&small).to_string()), Some(&small));
}
