//! OCI image layout directories: Berth's local image store and the format
//! `berth image export` hands to other tools (`skopeo`, `umoci`, ...).
//!
//! ```text
//! DIR/
//!   oci-layout          {"imageLayoutVersion":"1.0.0"}
//!   index.json          an OCI image index; each named image carries the
//!                       annotation org.opencontainers.image.ref.name
//!   blobs/sha256/<hex>  content-addressed blobs (manifests, configs, layers)
//!   .tmp/               Berth's scratch space for blobs being written
//! ```
//!
//! See <https://github.com/opencontainers/image-spec/blob/main/image-layout.md>.
//!
//! Blobs are written to a scratch file and renamed into place, so a blob
//! path either does not exist or holds complete content. `index.json` is
//! rewritten the same way. Concurrent writers of the same layout are not
//! coordinated: the last `index.json` update wins.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

use crate::digest::{Digest, Hasher};
use crate::manifest::{
    Descriptor, ImageConfig, ImageManifest, Manifest, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
    OCI_INDEX, OCI_MANIFEST,
};

/// The annotation naming an image in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The layout version Berth writes and reads.
pub const LAYOUT_VERSION: &str = "1.0.0";

/// What went wrong with an image layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// a file system operation failed
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done (`reading`, `writing`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// the directory is not an OCI image layout
    #[error("{} is not an OCI image layout: {reason}", path.display())]
    NotALayout {
        /// The directory.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// a file of the layout does not hold what it should
    #[error("{} is not valid: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// no image of that name or digest
    #[error("no image {name:?} in {}", layout.display())]
    NotFound {
        /// The layout searched.
        layout: PathBuf,
        /// The name or digest asked for.
        name: String,
    },
    /// a referenced blob is not in the layout
    #[error("blob {digest} is missing from {}", layout.display())]
    BlobMissing {
        /// The layout.
        layout: PathBuf,
        /// The blob.
        digest: Digest,
    },
    /// a blob's content does not match its name
    #[error("blob {} is corrupt: its content has digest {actual}", path.display())]
    Corrupt {
        /// The blob file.
        path: PathBuf,
        /// The digest of what it holds.
        actual: Digest,
    },
    /// a name that cannot be used as an `org.opencontainers.image.ref.name`
    #[error("image name {name:?} is not valid: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// the name points at content Berth cannot use as one image
    #[error("image {name:?} is not usable: {reason}")]
    Unsupported {
        /// The name or digest.
        name: String,
        /// Why.
        reason: String,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayoutError + 'a {
    move |source| LayoutError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// An opened OCI image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    root: PathBuf,
}

/// One image of a layout, read and parsed.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// The manifest's descriptor (as listed in `index.json`, or built from
    /// the blob when found by digest).
    pub manifest_desc: Descriptor,
    /// The image manifest.
    pub manifest: ImageManifest,
    /// The image config.
    pub config: ImageConfig,
}

impl LocalImage {
    /// The bytes the image occupies: manifest, config and compressed layers.
    pub fn size(&self) -> u64 {
        self.manifest_desc.size
            + self.manifest.config.size
            + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// A blob being written: bytes are hashed as they go to a scratch file, and
/// [`BlobWriter::commit`] moves the file to its content address. Dropping
/// it uncommitted removes the scratch file.
pub struct BlobWriter {
    blobs: PathBuf,
    tmp: TempPath,
    file: BufWriter<fs::File>,
    hasher: Hasher,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Finishes the blob: syncs it and renames it to `blobs/sha256/<hex>`.
    /// Returns its digest and size.
    pub fn commit(self) -> Result<(Digest, u64), LayoutError> {
        let Self {
            blobs,
            tmp,
            file,
            hasher,
        } = self;
        let file = file
            .into_inner()
            .map_err(|e| io_err("writing", &tmp.path)(e.into_error()))?;
        file.sync_all().map_err(io_err("syncing", &tmp.path))?;
        drop(file);
        let size = hasher.len();
        let digest = hasher.finish();
        let dest = blobs.join(digest.hex());
        tmp.persist(&dest)?;
        Ok((digest, size))
    }
}

/// A scratch file that is removed when dropped unless persisted.
pub(crate) struct TempPath {
    pub(crate) path: PathBuf,
    keep: bool,
}

impl TempPath {
    fn persist(mut self, dest: &Path) -> Result<(), LayoutError> {
        fs::rename(&self.path, dest).map_err(|source| LayoutError::Io {
            op: "moving a finished blob to",
            path: dest.to_path_buf(),
            source,
        })?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn read_json(path: &Path) -> Result<Value, LayoutError> {
    let raw = fs::read(path).map_err(io_err("reading", path))?;
    serde_json::from_slice(&raw).map_err(|e| LayoutError::Invalid {
        path: path.to_path_buf(),
        reason: format!("not JSON: {e}"),
    })
}

/// Checks a name for `org.opencontainers.image.ref.name`: letters, digits
/// and `._-:@+/`, starting and ending with a letter or digit.
pub fn validate_ref_name(name: &str) -> Result<(), LayoutError> {
    let bad = |reason: &str| LayoutError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 512 {
        return Err(bad("use 1 to 512 characters"));
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || b"._-:@+/".contains(c))
    {
        return Err(bad("use letters, digits and . _ - : @ + /"));
    }
    if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err(bad("it must start and end with a letter or digit"));
    }
    Ok(())
}

fn ref_name_of(entry: &Value) -> Option<&str> {
    entry
        .get("annotations")
        .and_then(|a| a.get(REF_NAME_ANNOTATION))
        .and_then(Value::as_str)
}

/// The OCI name of this machine's CPU architecture (`amd64`, `arm64`, ...).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        other => other,
    }
}

impl OciLayout {
    /// Opens the layout at `dir`, creating the directory, `oci-layout`,
    /// an empty `index.json` and `blobs/sha256` as needed.
    pub fn create_or_open(dir: &Path) -> Result<Self, LayoutError> {
        fs::create_dir_all(dir.join("blobs").join("sha256"))
            .map_err(io_err("creating", &dir.join("blobs").join("sha256")))?;
        let layout = Self {
            root: dir.to_path_buf(),
        };
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            layout.write_atomic(
                &marker,
                &serde_json::to_vec(&json!({ "imageLayoutVersion": LAYOUT_VERSION })).map_err(
                    |e| LayoutError::Invalid {
                        path: marker.clone(),
                        reason: e.to_string(),
                    },
                )?,
            )?;
        }
        let index = layout.index_path();
        if !index.exists() {
            layout.write_index(&json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [],
            }))?;
        }
        Self::open(dir)
    }

    /// Opens an existing layout; fails if `dir` is not one.
    pub fn open(dir: &Path) -> Result<Self, LayoutError> {
        let not = |reason: String| LayoutError::NotALayout {
            path: dir.to_path_buf(),
            reason,
        };
        let marker = dir.join("oci-layout");
        let raw = match fs::read(&marker) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(not("it has no oci-layout file".into()))
            }
            Err(e) => return Err(io_err("reading", &marker)(e)),
        };
        let v: Value = serde_json::from_slice(&raw)
            .map_err(|e| not(format!("its oci-layout file is not JSON: {e}")))?;
        match v.get("imageLayoutVersion").and_then(Value::as_str) {
            Some(LAYOUT_VERSION) => {}
            Some(other) => {
                return Err(not(format!(
                    "layout version {other:?} is not supported (only {LAYOUT_VERSION})"
                )))
            }
            None => return Err(not("oci-layout has no imageLayoutVersion".into())),
        }
        if !dir.join("index.json").is_file() {
            return Err(not("it has no index.json".into()));
        }
        Ok(Self {
            root: dir.to_path_buf(),
        })
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// A new, empty scratch file inside the layout (same file system as the
    /// blobs, so it can be renamed into place).
    pub(crate) fn temp_file(&self) -> Result<(TempPath, fs::File), LayoutError> {
        let dir = self.root.join(".tmp");
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}-{nanos}", std::process::id()));
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("creating", &path))?;
        Ok((TempPath { path, keep: false }, file))
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), LayoutError> {
        let (tmp, mut file) = self.temp_file()?;
        file.write_all(data).map_err(io_err("writing", &tmp.path))?;
        file.sync_all().map_err(io_err("syncing", &tmp.path))?;
        drop(file);
        fs::rename(&tmp.path, path).map_err(io_err("replacing", path))?;
        let mut tmp = tmp;
        tmp.keep = true;
        if let Ok(d) = fs::File::open(&self.root) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Starts writing a blob whose digest is known only at the end.
    pub fn blob_writer(&self) -> Result<BlobWriter, LayoutError> {
        let (tmp, file) = self.temp_file()?;
        Ok(BlobWriter {
            blobs: self.blobs_dir(),
            tmp,
            file: BufWriter::new(file),
            hasher: Hasher::new(),
        })
    }

    /// Stores `data` as a blob and returns its digest. Storing content that
    /// is already there is a no-op.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest, LayoutError> {
        let digest = Digest::of(data);
        if self.has_blob(&digest, data.len() as u64) {
            return Ok(digest);
        }
        let mut w = self.blob_writer()?;
        w.write_all(data).map_err(io_err("writing", &w.tmp.path))?;
        let (d, _) = w.commit()?;
        Ok(d)
    }

    /// Stores the file at `src` as a blob; returns its digest and size.
    pub fn put_blob_file(&self, src: &Path) -> Result<(Digest, u64), LayoutError> {
        let mut f = fs::File::open(src).map_err(io_err("opening", src))?;
        let mut w = self.blob_writer()?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(io_err("reading", src))?;
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n])
                .map_err(io_err("writing", &w.tmp.path))?;
        }
        w.commit()
    }

    fn has_blob(&self, d: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(d)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Where the blob `d` lives (whether or not it exists).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }

    /// Reads a blob whole and checks its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, LayoutError> {
        let path = self.blob_path(d);
        let data = match fs::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LayoutError::BlobMissing {
                    layout: self.root.clone(),
                    digest: d.clone(),
                })
            }
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        let actual = Digest::of(&data);
        if &actual != d {
            return Err(LayoutError::Corrupt { path, actual });
        }
        Ok(data)
    }

    fn read_index(&self) -> Result<Value, LayoutError> {
        let path = self.index_path();
        let v = read_json(&path)?;
        let ok = v.get("schemaVersion").and_then(Value::as_u64) == Some(2)
            && v.get("manifests").is_some_and(Value::is_array);
        if !ok {
            return Err(LayoutError::Invalid {
                path,
                reason: "not an OCI image index (schemaVersion 2 with a manifests array)".into(),
            });
        }
        Ok(v)
    }

    fn write_index(&self, index: &Value) -> Result<(), LayoutError> {
        let path = self.index_path();
        let data = serde_json::to_vec(index).map_err(|e| LayoutError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        self.write_atomic(&path, &data)
    }

    fn entries(&self) -> Result<Vec<Value>, LayoutError> {
        let index = self.read_index()?;
        Ok(match index.get("manifests") {
            Some(Value::Array(a)) => a.clone(),
            _ => Vec::new(),
        })
    }

    fn parse_entry(&self, entry: &Value) -> Result<Descriptor, LayoutError> {
        serde_json::from_value(entry.clone()).map_err(|e| LayoutError::Invalid {
            path: self.index_path(),
            reason: format!("a manifests entry is not a descriptor: {e}"),
        })
    }

    /// Names `manifest` `name` in `index.json` (annotation
    /// `org.opencontainers.image.ref.name`), replacing any entry that had
    /// the name.
    pub fn tag(&self, name: &str, manifest: Descriptor) -> Result<(), LayoutError> {
        validate_ref_name(name)?;
        let mut index = self.read_index()?;
        let mut desc = manifest;
        desc.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(REF_NAME_ANNOTATION.to_string(), name.to_string());
        let entry = serde_json::to_value(&desc).map_err(|e| LayoutError::Invalid {
            path: self.index_path(),
            reason: e.to_string(),
        })?;
        if let Some(Value::Array(list)) = index.get_mut("manifests") {
            list.retain(|e| ref_name_of(e) != Some(name));
            list.push(entry);
        }
        self.write_index(&index)
    }

    /// Removes the name `name` from `index.json`. Returns whether it was
    /// there. Blobs stay until [`OciLayout::gc`].
    pub fn untag(&self, name: &str) -> Result<bool, LayoutError> {
        let mut index = self.read_index()?;
        let mut removed = false;
        if let Some(Value::Array(list)) = index.get_mut("manifests") {
            let before = list.len();
            list.retain(|e| ref_name_of(e) != Some(name));
            removed = list.len() != before;
        }
        if removed {
            self.write_index(&index)?;
        }
        Ok(removed)
    }

    /// The named entries of `index.json`, sorted by name. Entries without a
    /// ref name annotation are left out.
    pub fn list(&self) -> Result<Vec<(String, Descriptor)>, LayoutError> {
        let mut out = Vec::new();
        for e in self.entries()? {
            if let Some(name) = ref_name_of(&e) {
                out.push((name.to_string(), self.parse_entry(&e)?));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Finds a manifest by ref name, or by digest (`sha256:...`): first
    /// among the entries of `index.json`, then among the blobs.
    pub fn resolve(&self, name_or_digest: &str) -> Result<Descriptor, LayoutError> {
        let entries = self.entries()?;
        if let Ok(d) = name_or_digest.parse::<Digest>() {
            for e in &entries {
                let desc = self.parse_entry(e)?;
                if desc.digest == d {
                    return Ok(desc);
                }
            }
            let path = self.blob_path(&d);
            if path.is_file() {
                let data = self.read_blob(&d)?;
                let m = Manifest::parse(None, &data).map_err(|e| LayoutError::Unsupported {
                    name: name_or_digest.to_string(),
                    reason: e.to_string(),
                })?;
                return Ok(Descriptor {
                    media_type: m.media_type().to_string(),
                    digest: d,
                    size: data.len() as u64,
                    platform: None,
                    annotations: None,
                });
            }
        } else {
            for e in &entries {
                if ref_name_of(e) == Some(name_or_digest) {
                    return self.parse_entry(e);
                }
            }
        }
        Err(LayoutError::NotFound {
            layout: self.root.clone(),
            name: name_or_digest.to_string(),
        })
    }

    /// Reads the image `name_or_digest` (see [`OciLayout::resolve`]): its
    /// manifest and config. A name that points at an index resolves to the
    /// index's manifest for this machine's platform (`linux`).
    pub fn image(&self, name_or_digest: &str) -> Result<LocalImage, LayoutError> {
        let unsupported = |reason: String| LayoutError::Unsupported {
            name: name_or_digest.to_string(),
            reason,
        };
        let mut desc = self.resolve(name_or_digest)?;
        for _ in 0..4 {
            let data = self.read_blob(&desc.digest)?;
            let parsed = Manifest::parse(Some(&desc.media_type), &data)
                .map_err(|e| unsupported(format!("manifest {}: {e}", desc.digest)))?;
            match parsed {
                Manifest::Image(manifest, _) => {
                    let raw = self.read_blob(&manifest.config.digest)?;
                    let config: ImageConfig =
                        serde_json::from_slice(&raw).map_err(|e| LayoutError::Invalid {
                            path: self.blob_path(&manifest.config.digest),
                            reason: format!("not an image config: {e}"),
                        })?;
                    return Ok(LocalImage {
                        manifest_desc: desc,
                        manifest,
                        config,
                    });
                }
                Manifest::Index(index, _) => {
                    let arch = host_architecture();
                    let child = index
                        .manifests
                        .iter()
                        .find(|m| {
                            m.platform
                                .as_ref()
                                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
                        })
                        .or_else(|| {
                            if index.manifests.len() == 1 {
                                index.manifests.first()
                            } else {
                                None
                            }
                        })
                        .ok_or_else(|| {
                            unsupported(format!("its index has no manifest for linux/{arch}"))
                        })?;
                    desc = child.clone();
                }
            }
        }
        Err(unsupported("indexes are nested too deeply".into()))
    }

    /// Deletes the blobs no named or listed image references, and leftover
    /// scratch files. Returns how many blobs were deleted and their bytes.
    /// Do not run it while another process writes to the layout.
    pub fn gc(&self) -> Result<(usize, u64), LayoutError> {
        let mut keep = BTreeSet::new();
        let mut todo: Vec<Descriptor> = self
            .entries()?
            .iter()
            .map(|e| self.parse_entry(e))
            .collect::<Result<_, _>>()?;
        while let Some(desc) = todo.pop() {
            if !keep.insert(desc.digest.clone()) {
                continue;
            }
            let is_manifest = [
                OCI_MANIFEST,
                OCI_INDEX,
                DOCKER_MANIFEST,
                DOCKER_MANIFEST_LIST,
            ]
            .contains(&desc.media_type.as_str());
            if !is_manifest {
                continue;
            }
            let data = self.read_blob(&desc.digest)?;
            if let Ok(m) = Manifest::parse(Some(&desc.media_type), &data) {
                todo.extend(m.blobs().into_iter().cloned());
                todo.extend(m.children().into_iter().cloned());
            }
        }
        let dir = self.blobs_dir();
        let mut removed = (0, 0);
        for entry in fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let entry = entry.map_err(io_err("listing", &dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(d) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            if keep.contains(&d) {
                continue;
            }
            let path = entry.path();
            let len = entry.metadata().map_or(0, |m| m.len());
            fs::remove_file(&path).map_err(io_err("removing", &path))?;
            removed.0 += 1;
            removed.1 += len;
        }
        let tmp = self.root.join(".tmp");
        if tmp.is_dir() {
            let _ = fs::remove_dir_all(&tmp);
        }
        Ok(removed)
    }

    /// Copies the image `name_or_digest` (manifest, config, layers) into
    /// `dest` and names it `dest_name` there. Every blob is re-hashed on the
    /// way. Returns the manifest descriptor.
    pub fn copy_image(
        &self,
        name_or_digest: &str,
        dest: &OciLayout,
        dest_name: &str,
    ) -> Result<Descriptor, LayoutError> {
        validate_ref_name(dest_name)?;
        let img = self.image(name_or_digest)?;
        for desc in std::iter::once(&img.manifest.config).chain(img.manifest.layers.iter()) {
            self.copy_blob(desc, dest)?;
        }
        self.copy_blob(&img.manifest_desc, dest)?;
        let mut desc = img.manifest_desc;
        if let Some(a) = desc.annotations.as_mut() {
            a.remove(REF_NAME_ANNOTATION);
            if a.is_empty() {
                desc.annotations = None;
            }
        }
        dest.tag(dest_name, desc.clone())?;
        Ok(desc)
    }

    fn copy_blob(&self, desc: &Descriptor, dest: &OciLayout) -> Result<(), LayoutError> {
        if dest.has_blob(&desc.digest, desc.size) {
            return Ok(());
        }
        let src = self.blob_path(&desc.digest);
        if !src.is_file() {
            return Err(LayoutError::BlobMissing {
                layout: self.root.clone(),
                digest: desc.digest.clone(),
            });
        }
        let (digest, _) = dest.put_blob_file(&src)?;
        if digest != desc.digest {
            let _ = fs::remove_file(dest.blob_path(&digest));
            return Err(LayoutError::Corrupt {
                path: src,
                actual: digest,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_desc(layout: &OciLayout, marker: &str) -> Descriptor {
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Labels": {"m": marker}},
        }))
        .unwrap();
        let cd = layout.put_blob(&config).unwrap();
        let m = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": crate::manifest::OCI_CONFIG, "digest": cd.to_string(), "size": config.len()},
            "layers": [],
        }))
        .unwrap();
        let md = layout.put_blob(&m).unwrap();
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: md,
            size: m.len() as u64,
            platform: None,
            annotations: None,
        }
    }

    #[test]
    fn creates_a_layout_and_refuses_other_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            OciLayout::open(tmp.path()),
            Err(LayoutError::NotALayout { .. })
        ));
        let dir = tmp.path().join("store");
        let l = OciLayout::create_or_open(&dir).unwrap();
        let marker: Value = read_json(&dir.join("oci-layout")).unwrap();
        assert_eq!(marker, json!({"imageLayoutVersion": "1.0.0"}));
        let index = read_json(&dir.join("index.json")).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], OCI_INDEX);
        assert!(l.list().unwrap().is_empty());
        OciLayout::open(&dir).unwrap();
        // Reopening with create_or_open keeps what is there.
        l.tag("a:1", manifest_desc(&l, "a")).unwrap();
        let l = OciLayout::create_or_open(&dir).unwrap();
        assert_eq!(l.list().unwrap().len(), 1);
    }

    #[test]
    fn blobs_are_content_addressed_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let l = OciLayout::create_or_open(tmp.path()).unwrap();
        let d = l.put_blob(b"hello").unwrap();
        assert_eq!(d, Digest::of(b"hello"));
        assert_eq!(l.put_blob(b"hello").unwrap(), d);
        assert_eq!(l.read_blob(&d).unwrap(), b"hello");
        assert_eq!(
            l.blob_path(&d),
            tmp.path().join("blobs/sha256").join(d.hex())
        );
        let src = tmp.path().join("src");
        fs::write(&src, b"file content").unwrap();
        let (fd, size) = l.put_blob_file(&src).unwrap();
        assert_eq!((fd.clone(), size), (Digest::of(b"file content"), 12));
        fs::write(l.blob_path(&fd), b"tampered").unwrap();
        assert!(matches!(l.read_blob(&fd), Err(LayoutError::Corrupt { .. })));
        assert!(matches!(
            l.read_blob(&Digest::of(b"absent")),
            Err(LayoutError::BlobMissing { .. })
        ));
        // No scratch files are left behind.
        let left: Vec<_> = fs::read_dir(tmp.path().join(".tmp")).unwrap().collect();
        assert!(left.is_empty());
    }

    #[test]
    fn tags_replace_untag_resolve_and_gc() {
        let tmp = tempfile::tempdir().unwrap();
        let l = OciLayout::create_or_open(tmp.path()).unwrap();
        let a = manifest_desc(&l, "a");
        let b = manifest_desc(&l, "b");
        l.tag("app:v1", a.clone()).unwrap();
        l.tag("app:v2", a.clone()).unwrap();
        l.tag("app:v1", b.clone()).unwrap();
        let names: Vec<_> = l
            .list()
            .unwrap()
            .into_iter()
            .map(|(n, d)| (n, d.digest))
            .collect();
        assert_eq!(
            names,
            vec![
                ("app:v1".to_string(), b.digest.clone()),
                ("app:v2".to_string(), a.digest.clone())
            ]
        );
        assert_eq!(l.resolve("app:v1").unwrap().digest, b.digest);
        assert_eq!(
            l.resolve(&a.digest.to_string()).unwrap().digest,
            a.digest.clone()
        );
        assert!(matches!(
            l.resolve("app:v3"),
            Err(LayoutError::NotFound { .. })
        ));
        let img = l.image("app:v1").unwrap();
        assert_eq!(
            img.config.config.unwrap().labels.unwrap()["m"],
            "b".to_string()
        );
        assert!(l.tag("-bad", a.clone()).is_err());
        assert!(l.tag("has space", a.clone()).is_err());

        assert!(l.untag("app:v2").unwrap());
        assert!(!l.untag("app:v2").unwrap());
        // a's manifest and config are now unreferenced.
        let (n, _) = l.gc().unwrap();
        assert_eq!(n, 2);
        assert!(!l.blob_path(&a.digest).exists());
        assert!(l.blob_path(&b.digest).exists());
        l.image("app:v1").unwrap();
    }

    #[test]
    fn copies_images_between_layouts() {
        let tmp = tempfile::tempdir().unwrap();
        let src = OciLayout::create_or_open(&tmp.path().join("a")).unwrap();
        let dst = OciLayout::create_or_open(&tmp.path().join("b")).unwrap();
        let a = manifest_desc(&src, "a");
        src.tag("app:v1", a.clone()).unwrap();
        let copied = src.copy_image("app:v1", &dst, "v1").unwrap();
        assert_eq!(copied.digest, a.digest);
        assert_eq!(copied.annotations, None);
        let (name, desc) = dst.list().unwrap().remove(0);
        assert_eq!((name.as_str(), desc.digest), ("v1", a.digest));
        dst.image("v1").unwrap();
    }
}
