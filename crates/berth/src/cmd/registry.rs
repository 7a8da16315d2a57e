//! `berth registry login | password`: make `skopeo`, `podman` and `docker`
//! talk to this Berth's registry.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use base64::Engine;
use berth_api::TokenAuthority;
use berth_control::Caller;

use crate::datadir::DataDir;
use crate::Common;

fn token(c: &Common) -> anyhow::Result<(String, String)> {
    let dd = DataDir::open_existing(&c.data_dir)?;
    let key = dd.admin_key()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let (token, _) = TokenAuthority::new(dd.token_key()?).issue(
        &Caller {
            arn: key.principal_arn.clone(),
        },
        &key.access_key_id,
        now,
    );
    let host = match c.listen {
        Some(a) => a.to_string(),
        None => dd
            .endpoint()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string(),
    };
    Ok((host, token))
}

/// Prints a registry password (like `aws ecr get-login-password`).
pub fn password(c: &Common) -> anyhow::Result<()> {
    let (_, token) = token(c)?;
    println!("{token}");
    Ok(())
}

/// The auth files skopeo/podman and docker read.
pub(crate) fn auth_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(p) = std::env::var("REGISTRY_AUTH_FILE") {
        out.push(PathBuf::from(p));
    } else if let Ok(dir) = std::env::var("XDG_RUNTIME_DIR") {
        out.push(Path::new(&dir).join("containers/auth.json"));
    } else {
        let uid = fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0);
        out.push(PathBuf::from(format!("/run/containers/{uid}/auth.json")));
    }
    if let Ok(home) = std::env::var("HOME") {
        out.push(Path::new(&home).join(".docker/config.json"));
    }
    out
}

/// Writes credentials for this registry into the auth files of skopeo,
/// podman and docker, so `skopeo copy ... docker://$BERTH_REGISTRY/...`
/// works without further flags (add `--dest-tls-verify=false`: the registry
/// speaks plain HTTP on loopback).
pub fn login(c: &Common) -> anyhow::Result<()> {
    let (host, token) = token(c)?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{token}"));
    for path in auth_files() {
        let mut doc: serde_json::Value = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        if !doc.is_object() {
            doc = serde_json::json!({});
        }
        if !doc["auths"].is_object() {
            doc["auths"] = serde_json::json!({});
        }
        doc["auths"][&host] = serde_json::json!({ "auth": auth });
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        fs::write(&path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
        let _ = fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
        println!("logged in to {host} (credentials in {})", path.display());
    }
    Ok(())
}
