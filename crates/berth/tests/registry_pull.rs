//! End-to-end: the agent's pull path (berth-oci's client, layer cache and
//! unpacker) against Berth's own registry, authenticated the ECR way.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::HashMap;
use std::io::Write;

use berth_oci::cache::LayerCache;
use berth_oci::client::{ClientConfig, Credentials, RegistryClient};
use berth_oci::manifest::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use berth_oci::{Digest, Reference};
use common::Berth;

fn layer() -> (Vec<u8>, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    let body = b"hello from a berth layer\n";
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "etc/greeting", &body[..]).unwrap();
    let raw = tar.into_inner().unwrap();
    let diff_id = Digest::of(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    (gz.finish().unwrap(), diff_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_pull_path_against_berths_registry() {
    let b = Berth::start();
    let registry = b.var("BERTH_REGISTRY");
    let token = b.cli(&["registry", "password"]).trim().to_string();

    let (layer, diff_id) = layer();
    let layer_digest = Digest::of(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["cat", "/etc/greeting"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    }))
    .unwrap();
    let config_digest = Digest::of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest.to_string(), "size": layer.len()}],
    }))
    .unwrap();

    let anonymous = RegistryClient::new(ClientConfig::default()).unwrap();
    let reference: Reference = format!("{registry}/team/hello:v1").parse().unwrap();
    let err = anonymous.get_manifest(&reference).await.unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("unauthorized") || err.to_string().contains("401"),
        "{err}"
    );

    let mut creds = HashMap::new();
    creds.insert(
        registry.clone(),
        Credentials::Basic {
            username: "AWS".into(),
            password: token,
        },
    );
    let client = RegistryClient::new(ClientConfig {
        credentials: creds,
        ..ClientConfig::default()
    })
    .unwrap();
    client
        .push_blob_bytes(&reference, &layer_digest, layer.clone())
        .await
        .unwrap();
    client
        .push_blob_bytes(&reference, &config_digest, config.clone())
        .await
        .unwrap();
    let pushed = client
        .put_manifest(&reference, OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    assert_eq!(pushed, Digest::of(&manifest));

    let resolved = client.resolve(&reference).await.unwrap();
    assert_eq!(resolved.manifest_digest, pushed);
    assert_eq!(
        resolved.config.config.unwrap().cmd.unwrap(),
        ["cat", "/etc/greeting"]
    );

    // The host's layer cache: one download, verified, unpacked.
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = LayerCache::open(cache_dir.path(), 1 << 30).unwrap();
    let desc = resolved.manifest.layers[0].clone();
    let (c2, r2, d2) = (client.clone(), reference.clone(), desc.clone());
    let cached = cache
        .get_or_fetch(&desc, move |dest| async move {
            c2.fetch_blob(&r2, &d2, &dest)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .await
        .unwrap();
    let text = std::fs::read_to_string(cached.dir.join("etc/greeting")).unwrap();
    assert_eq!(text, "hello from a berth layer\n");
}
