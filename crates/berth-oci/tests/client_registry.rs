//! The registry client against an independent registry: Debian's
//! `docker-registry` (the CNCF distribution server), started per test on a
//! free loopback port with its own storage. The tests fail, not skip, when
//! `/usr/bin/docker-registry` is missing.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_oci::client::{ClientConfig, ClientError, Credentials, RegistryClient};
use berth_oci::manifest::{
    Descriptor, Platform, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST,
};
use berth_oci::{Digest, Reference};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running `docker-registry`, stopped and deleted on drop.
struct TestRegistry {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
}

impl TestRegistry {
    /// Starts a registry; with `htpasswd = Some((user, password))` it
    /// requires Basic authentication.
    async fn start(htpasswd: Option<(&str, &str)>) -> Self {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: install Debian's docker-registry package (apt-get install -y docker-registry)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog: {{ level: warn }}\nstorage: {{ filesystem: {{ rootdirectory: {} }}, delete: {{ enabled: true }} }}\nhttp: {{ addr: {addr} }}\n",
            storage.display()
        );
        if let Some((user, password)) = htpasswd {
            let hash = bcrypt::hash_with_result(password, 4)
                .expect("bcrypt")
                .format_for_version(bcrypt::Version::TwoY);
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{hash}\n")).expect("write htpasswd");
            config.push_str(&format!(
                "auth: {{ htpasswd: {{ realm: test, path: {} }} }}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut reg = Self { child, dir, addr };
        reg.wait_ready().await;
        reg
    }

    async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let url = format!("http://{}/v2/", self.addr);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(resp) = http.get(&url).send().await {
                // 200, or 401 when authentication is on: it is serving.
                if resp.status().is_success() || resp.status().as_u16() == 401 {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "docker-registry exited with {status} before serving:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer {url} within 30s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn reference(&self, s: &str) -> Reference {
        format!("{}/{s}", self.addr).parse().expect("reference")
    }

    fn work_dir(&self) -> PathBuf {
        let d = self.dir.path().join("work");
        std::fs::create_dir_all(&d).expect("work dir");
        d
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> RegistryClient {
    RegistryClient::new(ClientConfig::default()).expect("client")
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    getrandom::fill(&mut b).expect("random bytes");
    b
}

/// A built image: its blobs and manifest.
struct TestImage {
    layer: Vec<u8>,
    layer_desc: Descriptor,
    config: Vec<u8>,
    config_desc: Descriptor,
    manifest: Vec<u8>,
    manifest_digest: Digest,
}

/// An image of one gzipped layer of `layer_size` random bytes.
fn build_image(arch: &str, layer_size: usize) -> TestImage {
    let raw = random_bytes(layer_size);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).expect("gzip");
    let layer = gz.finish().expect("gzip");
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/true"], "Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&raw).to_string()]},
    }))
    .expect("config json");
    let layer_desc = descriptor(OCI_LAYER_GZIP, &layer);
    let config_desc = descriptor(OCI_CONFIG, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": [layer_desc],
    }))
    .expect("manifest json");
    let manifest_digest = Digest::of(&manifest);
    TestImage {
        layer,
        layer_desc,
        config,
        config_desc,
        manifest,
        manifest_digest,
    }
}

fn descriptor(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: Digest::of(data),
        size: data.len() as u64,
        platform: None,
        annotations: None,
    }
}

/// Pushes an image's blobs (the layer from a file, the config from memory)
/// and its manifest under `r`'s tag or digest.
async fn push_image(c: &RegistryClient, r: &Reference, img: &TestImage, dir: &Path) -> Digest {
    let layer_path = dir.join(format!("layer-{}", img.layer_desc.digest.hex()));
    std::fs::write(&layer_path, &img.layer).expect("write layer");
    c.push_blob(r, &img.layer_desc.digest, &layer_path, None)
        .await
        .expect("push layer");
    c.push_blob_bytes(r, &img.config_desc.digest, img.config.clone())
        .await
        .expect("push config");
    c.put_manifest(r, OCI_MANIFEST, img.manifest.clone())
        .await
        .expect("put manifest")
}

#[tokio::test]
async fn push_then_resolve_by_tag_and_digest_and_fetch_blobs() {
    let reg = TestRegistry::start(None).await;
    let c = client();
    let img = build_image("amd64", 64 << 10);
    let r = reg.reference("team/app:v1");
    let dir = reg.work_dir();

    assert!(!c.blob_exists(&r, &img.layer_desc.digest).await.unwrap());
    let digest = push_image(&c, &r, &img, &dir).await;
    assert_eq!(digest, img.manifest_digest);
    assert!(c.blob_exists(&r, &img.layer_desc.digest).await.unwrap());
    // Pushing again finds the blobs present and succeeds.
    push_image(&c, &r, &img, &dir).await;

    let resolved = c.resolve(&r).await.unwrap();
    assert_eq!(resolved.manifest_digest, img.manifest_digest);
    assert_eq!(resolved.index_digest, None);
    assert_eq!(resolved.config_bytes, img.config);
    assert_eq!(resolved.config.architecture, "amd64");
    assert_eq!(
        resolved.config.config.as_ref().and_then(|c| c.cmd.clone()),
        Some(vec!["/bin/true".to_string()])
    );
    assert_eq!(resolved.manifest.layers, vec![img.layer_desc.clone()]);

    let by_digest = reg.reference(&format!("team/app@{}", img.manifest_digest));
    let (manifest, bytes, d) = c.get_manifest(&by_digest).await.unwrap();
    assert_eq!(d, img.manifest_digest);
    assert_eq!(bytes, img.manifest);
    assert_eq!(manifest.media_type(), OCI_MANIFEST);
    let resolved = c.resolve(&by_digest).await.unwrap();
    assert_eq!(resolved.config_bytes, img.config);

    let dest = dir.join("pulled-layer");
    c.fetch_blob(&r, &resolved.manifest.layers[0], &dest)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), img.layer);

    // The registry serves the real blob; a descriptor with a wrong size
    // must fail verification and leave no file behind.
    let mut wrong = img.layer_desc.clone();
    wrong.size -= 1;
    let dest = dir.join("short-layer");
    let err = c.fetch_blob(&r, &wrong, &dest).await.unwrap_err();
    assert!(
        matches!(err, ClientError::DigestMismatch { .. }),
        "expected DigestMismatch, got {err}"
    );
    assert!(!dest.exists(), "a blob that fails verification is removed");
}

#[tokio::test]
async fn registry_errors_are_mapped() {
    let reg = TestRegistry::start(None).await;
    let c = client();
    let r = reg.reference("team/app:missing");
    let err = c.resolve(&r).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    match &err {
        ClientError::Registry { status, code, .. } => {
            assert_eq!(*status, 404);
            assert!(
                code == "NAME_UNKNOWN" || code == "MANIFEST_UNKNOWN",
                "{err}"
            );
        }
        other => panic!("expected a registry error, got {other}"),
    }
    // A manifest naming blobs the registry does not have is refused.
    let img = build_image("amd64", 1024);
    let err = c
        .put_manifest(&r, OCI_MANIFEST, img.manifest.clone())
        .await
        .unwrap_err();
    match &err {
        ClientError::Registry { status, code, .. } => {
            assert_eq!(*status, 400, "{err}");
            assert_eq!(code, "MANIFEST_BLOB_UNKNOWN", "{err}");
        }
        other => panic!("expected a registry error, got {other}"),
    }
    // Pushing by a digest that is not the manifest's fails before sending.
    let r = reg.reference(&format!("team/app@{}", Digest::of(b"other")));
    let err = c
        .put_manifest(&r, OCI_MANIFEST, img.manifest.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::DigestMismatch { .. }), "{err}");
    // A blob that does not match its digest is not uploaded.
    let err = c
        .push_blob_bytes(&r, &Digest::of(b"x"), b"y".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn index_resolves_to_the_configured_platform() {
    let reg = TestRegistry::start(None).await;
    let c = client();
    let dir = reg.work_dir();
    let amd = build_image("amd64", 2048);
    let arm = build_image("arm64", 2048);
    let repo = reg.reference("team/multi");
    for img in [&amd, &arm] {
        let r = Reference {
            digest: Some(img.manifest_digest.clone()),
            ..repo.clone()
        };
        push_image(&c, &r, img, &dir).await;
    }
    let entry = |img: &TestImage, platform: serde_json::Value| {
        serde_json::json!({
            "mediaType": OCI_MANIFEST,
            "digest": img.manifest_digest.to_string(),
            "size": img.manifest.len(),
            "platform": platform,
        })
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            // An attestation-like entry first: must be skipped.
            entry(&arm, serde_json::json!({"os": "unknown", "architecture": "unknown"})),
            entry(&arm, serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"})),
            entry(&amd, serde_json::json!({"os": "linux", "architecture": "amd64"})),
        ],
    }))
    .unwrap();
    let tagged = reg.reference("team/multi:latest");
    let index_digest = c
        .put_manifest(&tagged, OCI_INDEX, index.clone())
        .await
        .unwrap();
    assert_eq!(index_digest, Digest::of(&index));

    let resolved = c.resolve(&tagged).await.unwrap();
    assert_eq!(resolved.config.architecture, "amd64");
    assert_eq!(resolved.manifest_digest, amd.manifest_digest);
    assert_eq!(resolved.index_digest, Some(index_digest.clone()));
    assert_eq!(resolved.config_bytes, amd.config);

    let arm_client = RegistryClient::new(ClientConfig {
        platform: Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
            os_version: None,
        },
        ..ClientConfig::default()
    })
    .unwrap();
    let resolved = arm_client.resolve(&tagged).await.unwrap();
    assert_eq!(resolved.config.architecture, "arm64");
    assert_eq!(resolved.manifest_digest, arm.manifest_digest);

    let s390x = RegistryClient::new(ClientConfig {
        platform: Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
            os_version: None,
        },
        ..ClientConfig::default()
    })
    .unwrap();
    let err = s390x.resolve(&tagged).await.unwrap_err();
    match &err {
        ClientError::NoMatchingPlatform { available, .. } => {
            assert!(available.contains("linux/amd64"), "{err}");
        }
        other => panic!("expected NoMatchingPlatform, got {other}"),
    }
}

#[tokio::test]
async fn chunked_upload_and_cross_repo_mount() {
    let reg = TestRegistry::start(None).await;
    let c = client().with_chunk_size(1000);
    let dir = reg.work_dir();
    // Random bytes don't compress: the layer is several chunks long, the
    // last one short.
    let img = build_image("amd64", 5500);
    assert!(img.layer.len() > 5000);
    let r = reg.reference("team/chunked:v1");
    push_image(&c, &r, &img, &dir).await;
    let dest = dir.join("pulled");
    c.fetch_blob(&r, &img.layer_desc, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), img.layer);

    // Mount the layer into another repository instead of uploading it.
    let other = reg.reference("team/other:v1");
    assert!(!c.blob_exists(&other, &img.layer_desc.digest).await.unwrap());
    // A mounted blob is never read: pushing from a file that does not
    // exist succeeds only if the registry mounted it.
    let missing = dir.join("does-not-exist");
    c.push_blob(
        &other,
        &img.layer_desc.digest,
        &missing,
        Some("team/chunked"),
    )
    .await
    .unwrap();
    assert!(c.blob_exists(&other, &img.layer_desc.digest).await.unwrap());

    // A file whose content is not the digest it is pushed as is refused
    // before the upload is committed (chunked path).
    let wrong = dir.join("wrong");
    std::fs::write(&wrong, random_bytes(3500)).unwrap();
    let err = c
        .push_blob(&other, &Digest::of(b"something else"), &wrong, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn lists_tags() {
    let reg = TestRegistry::start(None).await;
    let c = client();
    let dir = reg.work_dir();
    let img = build_image("amd64", 512);
    let base = reg.reference("team/tagged");
    push_image(&c, &reg.reference("team/tagged:v1"), &img, &dir).await;
    for tag in ["v2", "latest", "a-tag"] {
        let r = Reference {
            tag: Some(tag.into()),
            ..base.clone()
        };
        c.put_manifest(&r, OCI_MANIFEST, img.manifest.clone())
            .await
            .unwrap();
    }
    let mut tags = c.list_tags(&base).await.unwrap();
    tags.sort();
    assert_eq!(tags, ["a-tag", "latest", "v1", "v2"]);
}

#[tokio::test]
async fn basic_auth_registry() {
    let reg = TestRegistry::start(Some(("berth", "s3cret"))).await;
    let dir = reg.work_dir();
    let r = reg.reference("team/private:v1");

    let anonymous = client();
    let err = anonymous.list_tags(&r).await.unwrap_err();
    match &err {
        ClientError::Unauthorized { registry, .. } => assert_eq!(registry, &reg.addr),
        other => panic!("expected Unauthorized, got {other}"),
    }
    assert!(err.to_string().contains(&reg.addr), "{err}");

    let with = |password: &str| {
        RegistryClient::new(ClientConfig {
            credentials: HashMap::from([(
                reg.addr.clone(),
                Credentials::Basic {
                    username: "berth".into(),
                    password: password.into(),
                },
            )]),
            ..ClientConfig::default()
        })
        .unwrap()
    };
    let wrong = with("nope");
    let err = wrong.resolve(&r).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Unauthorized { .. }),
        "expected Unauthorized, got {err}"
    );

    let c = with("s3cret");
    c.ping(&reg.addr).await.unwrap();
    let img = build_image("amd64", 4096);
    let digest = push_image(&c, &r, &img, &dir).await;
    let resolved = c.resolve(&r).await.unwrap();
    assert_eq!(resolved.manifest_digest, digest);
    let dest = dir.join("layer");
    c.fetch_blob(&r, &img.layer_desc, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), img.layer);
    assert_eq!(c.list_tags(&r).await.unwrap(), ["v1"]);
    // Clones share what the client learnt (and work the same).
    assert!(c
        .clone()
        .blob_exists(&r, &img.config_desc.digest)
        .await
        .unwrap());
}
