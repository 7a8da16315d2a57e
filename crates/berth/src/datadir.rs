//! The data directory: what a Berth installation keeps on disk.
//!
//! ```text
//! DATA_DIR/            0700
//!   config.json        account id and region, fixed at creation
//!   credentials.json   0600: the admin access key pair
//!   state.redb         the embedded state store
//!   registry-token.key 0600: the key that signs registry tokens
//!   registry/          the registry's blobs and upload sessions
//!   agent/             the agent's host id, layer cache and task sandboxes
//!   logs/              container output: logs/<taskId>/<container>.log (+ .log.1)
//!   endpoint           the URL the running server listens on (for `berth env`)
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berth_api::AccessKey;
use berth_core::Scope;
use serde::{Deserialize, Serialize};

/// The default API listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7480";

/// The default region.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Fixed facts about an installation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// 12-digit account id.
    pub account: String,
    /// Region name.
    pub region: String,
}

/// An opened data directory.
pub struct DataDir {
    path: PathBuf,
    /// The installation's configuration.
    pub config: Config,
}

impl DataDir {
    /// Opens the data directory, creating and initialising it on first use.
    pub fn open_or_create(path: &Path, region: Option<&str>) -> anyhow::Result<Self> {
        fs::create_dir_all(path)
            .with_context(|| format!("creating data dir {}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("setting permissions of {}", path.display()))?;
        let config_path = path.join("config.json");
        if !config_path.exists() {
            let region = region.unwrap_or(DEFAULT_REGION);
            validate_region(region)?;
            let mut digits = [0u8; 12];
            getrandom::fill(&mut digits)
                .map_err(|e| anyhow::anyhow!("no randomness for the account id: {e}"))?;
            let mut account: String = digits.iter().map(|d| char::from(b'0' + d % 10)).collect();
            if account.starts_with('0') {
                account.replace_range(0..1, "1");
            }
            let config = Config {
                account,
                region: region.to_string(),
            };
            write_atomic(
                &config_path,
                serde_json::to_string_pretty(&config)?.as_bytes(),
                0o644,
            )?;
        }
        let dd = Self::open_existing(path)?;
        if let Some(r) = region {
            if r != dd.config.region {
                bail!(
                    "data dir {} was created for region {}, not {r}; omit --region or use another data dir",
                    path.display(),
                    dd.config.region
                );
            }
        }
        let creds = dd.credentials_path();
        if !creds.exists() {
            let key = AccessKey::generate(&format!("arn:aws:iam::{}:root", dd.config.account))
                .map_err(|e| anyhow::anyhow!("no randomness for the admin key: {e}"))?;
            write_atomic(
                &creds,
                serde_json::to_string_pretty(&key)?.as_bytes(),
                0o600,
            )?;
        }
        Ok(dd)
    }

    /// The key that signs registry tokens, created on first use.
    pub fn token_key(&self) -> anyhow::Result<Vec<u8>> {
        let p = self.path.join("registry-token.key");
        if !p.exists() {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key)
                .map_err(|e| anyhow::anyhow!("no randomness for the token key: {e}"))?;
            write_atomic(&p, hex_encode(&key).as_bytes(), 0o600)?;
        }
        let raw = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let key =
            hex_decode(raw.trim()).with_context(|| format!("{} is not a hex key", p.display()))?;
        if key.len() < 32 {
            bail!(
                "{} holds a key shorter than 32 bytes; delete it to make a new one",
                p.display()
            );
        }
        Ok(key)
    }

    /// Where the agent keeps its host id, layer cache and task sandboxes.
    pub fn agent_dir(&self) -> PathBuf {
        self.path.join("agent")
    }

    /// Where the registry keeps blobs and upload sessions.
    pub fn registry_dir(&self) -> PathBuf {
        self.path.join("registry")
    }

    /// Where task output is kept.
    pub fn logs_dir(&self) -> PathBuf {
        self.path.join("logs")
    }

    /// Where HTTPS listeners' certificates are read from: the ACM-style ARN
    /// `arn:aws:acm:REGION:ACCOUNT:certificate/NAME` is `NAME.crt` and
    /// `NAME.key` (PEM) in this directory.
    pub fn certs_dir(&self) -> PathBuf {
        self.path.join("certs")
    }

    /// Opens a data directory that `berth up` or `berth server` created.
    pub fn open_existing(path: &Path) -> anyhow::Result<Self> {
        let config_path = path.join("config.json");
        let raw = fs::read(&config_path).with_context(|| {
            format!(
                "{} is not a Berth data dir (no config.json); start `berth up --data-dir {}` first",
                path.display(),
                path.display()
            )
        })?;
        let config: Config = serde_json::from_slice(&raw)
            .with_context(|| format!("reading {}", config_path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            config,
        })
    }

    /// The ARN scope of this installation.
    pub fn scope(&self) -> Scope {
        Scope {
            region: self.config.region.clone(),
            account: self.config.account.clone(),
        }
    }

    fn credentials_path(&self) -> PathBuf {
        self.path.join("credentials.json")
    }

    /// The state store's file.
    pub fn state_path(&self) -> PathBuf {
        self.path.join("state.redb")
    }

    /// The admin access key.
    pub fn admin_key(&self) -> anyhow::Result<AccessKey> {
        let p = self.credentials_path();
        let raw = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_slice(&raw).with_context(|| format!("parsing {}", p.display()))
    }

    /// Records the URL the server listens on.
    pub fn write_endpoint(&self, url: &str) -> anyhow::Result<()> {
        write_atomic(
            &self.path.join("endpoint"),
            format!("{url}\n").as_bytes(),
            0o644,
        )
    }

    /// Records the address load balancer listeners are bound to.
    pub fn write_lb_host(&self, host: &str) -> anyhow::Result<()> {
        write_atomic(
            &self.path.join("lb-host"),
            format!("{host}\n").as_bytes(),
            0o644,
        )
    }

    /// The address to reach load balancer listeners at on this machine
    /// (`127.0.0.1` when they are bound to every address).
    pub fn lb_host(&self) -> String {
        fs::read_to_string(self.path.join("lb-host"))
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty() && s != "0.0.0.0")
            .unwrap_or_else(|| "127.0.0.1".to_string())
    }

    /// The URL the server last listened on, or the default.
    pub fn endpoint(&self) -> String {
        fs::read_to_string(self.path.join("endpoint"))
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("http://{DEFAULT_LISTEN}"))
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        bail!("odd length");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(Into::into))
        .collect()
}

fn validate_region(r: &str) -> anyhow::Result<()> {
    let ok = !r.is_empty()
        && r.len() <= 63
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !r.starts_with('-')
        && !r.ends_with('-');
    if !ok {
        bail!(
            "region {r:?} is not valid: use lowercase letters, digits and hyphens, e.g. us-east-1"
        );
    }
    Ok(())
}

/// Writes a file atomically (temp file, fsync, rename) with `mode`.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
