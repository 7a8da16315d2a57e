//! Reproducible image building, without Docker: layers from a directory, a
//! list of files or a tar archive, an image config and an OCI manifest,
//! written into an [`OciLayout`].
//!
//! The same inputs give the same bytes, so the same digest:
//!
//! * entries are sorted by path, component by component, so a directory
//!   comes right before its contents; missing parent directories are added
//!   (mode 0755);
//! * every entry has mtime 0, uid and gid 0 and no user or group names;
//!   only the permission bits (`0o7777`) of the source are kept;
//! * symlinks stay symlinks; files hard-linked together within one layer
//!   become one file and tar hard links to it; devices, fifos and sockets
//!   are left out, and so are extended attributes;
//! * tar is GNU format (long names as GNU long-name entries), gzip has mtime
//!   0, no file name, OS "unknown" and level 6;
//! * the config has no `created` time and its history names no host paths.
//!
//! Start with [`build_image`]; [`build_layer`] makes one layer.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::{write::GzEncoder, Compression, GzBuilder};
use serde_json::{json, Map, Value};

use crate::digest::{Digest, Hasher};
use crate::layout::{host_architecture, LayoutError, OciLayout, TempPath};
use crate::manifest::{
    Descriptor, ImageManifest, Platform, RootFs, RunConfig, DOCKER_LAYER_GZIP, OCI_CONFIG,
    OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST,
};

/// The gzip level layers are compressed with.
pub const GZIP_LEVEL: u32 = 6;

/// The annotation recording the base image's manifest digest.
pub const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";

/// What a layer is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSource {
    /// A directory whose contents become the image root.
    Dir(PathBuf),
    /// Host files or directories, each placed at a path in the image. A
    /// directory is copied recursively; a file given here that is a
    /// symlink is followed (symlinks inside a copied directory are kept).
    Files(Vec<(PathBuf, String)>),
    /// An existing tar archive, plain or gzipped, repackaged
    /// deterministically.
    Tar(PathBuf),
}

impl LayerSource {
    fn describe(&self) -> &'static str {
        match self {
            Self::Dir(_) => "directory",
            Self::Files(_) => "files",
            Self::Tar(_) => "tar archive",
        }
    }
}

/// How the image runs and what it runs on. Fields left empty (`None`, empty
/// list, empty string) keep the base image's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// ENTRYPOINT. Setting it without `cmd` clears the base image's CMD, as
    /// Docker does.
    pub entrypoint: Option<Vec<String>>,
    /// CMD.
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` entries, merged into the base image's by name.
    pub env: Vec<String>,
    /// Working directory (absolute).
    pub working_dir: Option<String>,
    /// Ports: `8080`, `8080/tcp`, `53/udp`; added to the base image's.
    pub exposed_ports: Vec<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`.
    pub user: Option<String>,
    /// Labels, merged into the base image's.
    pub labels: BTreeMap<String, String>,
    /// CPU architecture (`amd64`, `arm64`, ...); empty: the base image's,
    /// or this machine's.
    pub architecture: String,
    /// Operating system; empty: the base image's, or `linux`.
    pub os: String,
}

impl Default for ImageSpec {
    /// Nothing set; a platform of this machine's architecture and `linux`.
    fn default() -> Self {
        Self {
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            working_dir: None,
            exposed_ports: Vec::new(),
            user: None,
            labels: BTreeMap::new(),
            architecture: host_architecture().to_string(),
            os: "linux".to_string(),
        }
    }
}

/// A layer written into a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltLayer {
    /// The gzipped blob ([`OCI_LAYER_GZIP`]).
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
}

/// Why an image or layer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// a file system operation on a source failed
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// the image store failed
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// a source cannot be used as given
    #[error("{}: {reason}", path.display())]
    Source {
        /// The source file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// a path in the image is not valid
    #[error("image path {path:?} is not valid: {reason}")]
    ImagePath {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// the spec has a value that cannot go into an image config
    #[error("{0}")]
    Spec(String),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BuildError + 'a {
    move |source| BuildError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
enum Content {
    /// A host file.
    Host(PathBuf),
    /// `size` bytes at an offset of the (plain) tar being repackaged.
    TarAt { offset: u64, size: u64 },
}

#[derive(Debug, Clone)]
enum Node {
    Dir,
    File {
        content: Content,
        /// Files with the same key are hard links of one another.
        link: Option<(u64, u64)>,
    },
    Symlink(String),
}

#[derive(Debug, Clone)]
struct Item {
    mode: u32,
    node: Node,
}

/// A layer's entries, keyed by path components (so a directory sorts right
/// before its contents).
#[derive(Default)]
struct Tree {
    items: BTreeMap<Vec<String>, Item>,
}

/// Splits an image path into components: leading `/`, empty and `.`
/// components are dropped; `..` is refused.
fn components(path: &str) -> Result<Vec<String>, BuildError> {
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(BuildError::ImagePath {
                    path: path.to_string(),
                    reason: "it must not contain '..'".into(),
                })
            }
            c => out.push(c.to_string()),
        }
    }
    Ok(out)
}

fn utf8_name(path: &Path, name: &std::ffi::OsStr) -> Result<String, BuildError> {
    name.to_str()
        .map(str::to_string)
        .ok_or_else(|| BuildError::Source {
            path: path.to_path_buf(),
            reason: "the name is not UTF-8; rename it".into(),
        })
}

impl Tree {
    fn insert(&mut self, key: Vec<String>, item: Item) {
        if !key.is_empty() {
            self.items.insert(key, item);
        }
    }

    /// Adds `host` (not following a symlink unless `follow`) at `key`,
    /// recursing into directories.
    fn add_host(&mut self, host: &Path, key: Vec<String>, follow: bool) -> Result<(), BuildError> {
        let meta = if follow {
            fs::metadata(host)
        } else {
            fs::symlink_metadata(host)
        }
        .map_err(io_err("reading", host))?;
        let ft = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        if ft.is_dir() {
            self.insert(
                key.clone(),
                Item {
                    mode,
                    node: Node::Dir,
                },
            );
            let mut children = Vec::new();
            for entry in fs::read_dir(host).map_err(io_err("listing", host))? {
                let entry = entry.map_err(io_err("listing", host))?;
                children.push(entry.path());
            }
            for child in children {
                let name = child.file_name().unwrap_or_default();
                let mut k = key.clone();
                k.push(utf8_name(&child, name)?);
                self.add_host(&child, k, false)?;
            }
        } else if ft.is_file() {
            let link = (meta.nlink() > 1).then(|| (meta.dev(), meta.ino()));
            self.insert(
                key,
                Item {
                    mode,
                    node: Node::File {
                        content: Content::Host(host.to_path_buf()),
                        link,
                    },
                },
            );
        } else if ft.is_symlink() {
            let target = fs::read_link(host).map_err(io_err("reading the symlink", host))?;
            let target = target
                .to_str()
                .ok_or_else(|| BuildError::Source {
                    path: host.to_path_buf(),
                    reason: "the symlink target is not UTF-8".into(),
                })?
                .to_string();
            self.insert(
                key,
                Item {
                    mode: 0o777,
                    node: Node::Symlink(target),
                },
            );
        } else if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket() {
            // Left out: unprivileged unpacking cannot make them.
        }
        Ok(())
    }

    /// Adds the missing parent directories (0755) and checks that every
    /// parent is a directory.
    fn complete(&mut self) -> Result<(), BuildError> {
        let mut missing = Vec::new();
        for key in self.items.keys() {
            for n in 1..key.len() {
                let parent = &key[..n];
                match self.items.get(parent) {
                    Some(Item {
                        node: Node::Dir, ..
                    }) => {}
                    Some(_) => {
                        return Err(BuildError::ImagePath {
                            path: key.join("/"),
                            reason: format!(
                                "its parent {} is not a directory in the image",
                                parent.join("/")
                            ),
                        })
                    }
                    None => missing.push(parent.to_vec()),
                }
            }
        }
        for key in missing {
            self.items.insert(
                key,
                Item {
                    mode: 0o755,
                    node: Node::Dir,
                },
            );
        }
        Ok(())
    }
}

/// Fails with `UnexpectedEof` if the inner reader ends before `remaining`
/// bytes (a file that shrank while it was archived).
struct Exact<R> {
    inner: io::Take<R>,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file changed while it was being archived",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Hashes what passes through (the uncompressed tar, for the diff id).
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

/// Writes the tree as a tar into `out`.
fn write_tar<W: Write>(
    tree: &Tree,
    tar_src: Option<(&Path, &mut fs::File)>,
    out: W,
) -> Result<W, BuildError> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    let mut tar_src = tar_src;
    let mut first_of_link: HashMap<(u64, u64), String> = HashMap::new();
    let werr = |path: &str| {
        let p = PathBuf::from(path);
        move |source| BuildError::Io {
            op: "archiving",
            path: p,
            source,
        }
    };
    for (key, item) in &tree.items {
        let path = key.join("/");
        match &item.node {
            Node::Dir => {
                let mut h = header(tar::EntryType::Directory, item.mode, 0);
                b.append_data(&mut h, format!("{path}/"), io::empty())
                    .map_err(werr(&path))?;
            }
            Node::Symlink(target) => {
                let mut h = header(tar::EntryType::Symlink, item.mode, 0);
                b.append_link(&mut h, &path, target).map_err(werr(&path))?;
            }
            Node::File { content, link } => {
                if let Some(k) = link {
                    if let Some(first) = first_of_link.get(k) {
                        let mut h = header(tar::EntryType::Link, item.mode, 0);
                        b.append_link(&mut h, &path, first).map_err(werr(&path))?;
                        continue;
                    }
                    first_of_link.insert(*k, path.clone());
                }
                match content {
                    Content::Host(host) => {
                        let f = fs::File::open(host).map_err(io_err("opening", host))?;
                        let size = f.metadata().map_err(io_err("reading", host))?.len();
                        let mut h = header(tar::EntryType::Regular, item.mode, size);
                        let r = Exact {
                            inner: f.take(size),
                            remaining: size,
                        };
                        b.append_data(&mut h, &path, r)
                            .map_err(io_err("archiving", host))?;
                    }
                    Content::TarAt { offset, size } => {
                        let Some((tar_path, f)) = tar_src.as_mut() else {
                            return Err(BuildError::Spec(format!(
                                "internal: no archive for entry {path}"
                            )));
                        };
                        let tar_path: &Path = tar_path;
                        f.seek(SeekFrom::Start(*offset))
                            .map_err(io_err("reading", tar_path))?;
                        let mut h = header(tar::EntryType::Regular, item.mode, *size);
                        let r = Exact {
                            inner: (&mut **f).take(*size),
                            remaining: *size,
                        };
                        b.append_data(&mut h, &path, r)
                            .map_err(io_err("repackaging", tar_path))?;
                    }
                }
            }
        }
    }
    b.into_inner().map_err(werr("the end of the layer"))
}

/// Reads the entries of the plain tar `file` (named `path` in errors).
fn tar_tree(path: &Path, file: &fs::File) -> Result<Tree, BuildError> {
    let bad = |reason: String| BuildError::Source {
        path: path.to_path_buf(),
        reason,
    };
    let mut tree = Tree::default();
    let mut groups = 0u64;
    let mut archive = tar::Archive::new(file);
    let not_tar = |_| bad("it is not a tar archive (plain or gzipped), or it is damaged".into());
    let entries = archive.entries_with_seek().map_err(not_tar)?;
    for entry in entries {
        let entry = entry.map_err(not_tar)?;
        let raw_path = entry.path_bytes();
        let name = std::str::from_utf8(&raw_path)
            .map_err(|_| bad(format!("entry {:?} has a name that is not UTF-8", raw_path)))?
            .to_string();
        let key = components(&name)?;
        let h = entry.header();
        // Links have no mode of their own; only files and directories need one.
        let mode = || -> Result<u32, BuildError> {
            Ok(h.mode().map_err(io_err("reading the tar", path))? & 0o7777)
        };
        let link_target = || -> Result<String, BuildError> {
            let t = entry
                .link_name_bytes()
                .ok_or_else(|| bad(format!("link {name} has no target")))?;
            std::str::from_utf8(&t)
                .map(str::to_string)
                .map_err(|_| bad(format!("link {name} has a target that is not UTF-8")))
        };
        let kind = h.entry_type();
        let item = match kind {
            tar::EntryType::Directory => Item {
                mode: mode()?,
                node: Node::Dir,
            },
            tar::EntryType::Regular | tar::EntryType::Continuous => Item {
                mode: mode()?,
                node: Node::File {
                    content: Content::TarAt {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    },
                    link: None,
                },
            },
            tar::EntryType::Symlink => Item {
                mode: 0o777,
                node: Node::Symlink(link_target()?),
            },
            tar::EntryType::Link => {
                let target = link_target()?;
                let tkey = components(&target)?;
                let Some(t) = tree.items.get_mut(&tkey) else {
                    return Err(bad(format!(
                        "hard link {name} points to {target}, which is not earlier in the archive"
                    )));
                };
                let Node::File { content, link } = &mut t.node else {
                    return Err(bad(format!(
                        "hard link {name} points to {target}, which is not a regular file"
                    )));
                };
                let k = *link.get_or_insert_with(|| {
                    groups += 1;
                    (u64::MAX, groups)
                });
                Item {
                    mode: t.mode,
                    node: Node::File {
                        content: content.clone(),
                        link: Some(k),
                    },
                }
            }
            tar::EntryType::GNUSparse => {
                return Err(bad(format!(
                    "entry {name} is a sparse file, which Berth cannot repackage; make the archive without --sparse"
                )))
            }
            // Devices and fifos are left out; other entry kinds (tar
            // extensions the reader already applied) carry no file.
            _ => continue,
        };
        tree.insert(key, item);
    }
    Ok(tree)
}

/// Whether the file starts with the gzip magic number.
fn is_gzip(path: &Path) -> Result<bool, BuildError> {
    let mut f = fs::File::open(path).map_err(io_err("opening", path))?;
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        let n = f.read(&mut magic[got..]).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got == 2 && magic == [0x1f, 0x8b])
}

/// Builds one layer from `src` and writes its gzipped blob into `layout`.
pub fn build_layer(src: &LayerSource, layout: &OciLayout) -> Result<BuiltLayer, BuildError> {
    let mut tree = Tree::default();
    // For a tar source: the plain tar to copy file bytes from, and the
    // scratch file holding it when the source was gzipped.
    let mut plain: Option<(PathBuf, fs::File, Option<TempPath>)> = None;
    match src {
        LayerSource::Dir(dir) => {
            let meta = fs::metadata(dir).map_err(io_err("reading", dir))?;
            if !meta.is_dir() {
                return Err(BuildError::Source {
                    path: dir.clone(),
                    reason: "not a directory".into(),
                });
            }
            tree.add_host(dir, Vec::new(), true)?;
        }
        LayerSource::Files(files) => {
            if files.is_empty() {
                return Err(BuildError::Spec("no files given for the layer".into()));
            }
            for (host, dest) in files {
                let key = components(dest)?;
                let meta = fs::metadata(host).map_err(io_err("reading", host))?;
                if key.is_empty() && !meta.is_dir() {
                    return Err(BuildError::ImagePath {
                        path: dest.clone(),
                        reason: format!(
                            "{} is a file; give it a path below the image root",
                            host.display()
                        ),
                    });
                }
                tree.add_host(host, key, true)?;
            }
        }
        LayerSource::Tar(path) => {
            let (file, scratch) = if is_gzip(path)? {
                let (tmp, mut out) = layout.temp_file()?;
                let f = fs::File::open(path).map_err(io_err("opening", path))?;
                let mut gz = flate2::read::MultiGzDecoder::new(io::BufReader::new(f));
                io::copy(&mut gz, &mut out).map_err(io_err("decompressing", path))?;
                (out, Some(tmp))
            } else {
                (fs::File::open(path).map_err(io_err("opening", path))?, None)
            };
            let mut file = file;
            file.seek(SeekFrom::Start(0))
                .map_err(io_err("reading", path))?;
            tree = tar_tree(path, &file)?;
            plain = Some((path.clone(), file, scratch));
        }
    }
    tree.complete()?;

    let blob = layout.blob_writer()?;
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(blob, Compression::new(GZIP_LEVEL));
    let hashing = HashingWriter {
        inner: gz,
        hasher: Hasher::new(),
    };
    let tar_src = plain.as_mut().map(|(p, f, _)| (p.as_path(), f));
    let hashing = write_tar(&tree, tar_src, hashing)?;
    let diff_id = hashing.hasher.finish();
    let blob = GzEncoder::finish(hashing.inner).map_err(|source| BuildError::Io {
        op: "compressing the layer into",
        path: layout.root().to_path_buf(),
        source,
    })?;
    let (digest, size) = blob.commit()?;
    drop(plain);
    Ok(BuiltLayer {
        descriptor: Descriptor {
            media_type: OCI_LAYER_GZIP.to_string(),
            digest,
            size,
            platform: None,
            annotations: None,
        },
        diff_id,
    })
}

/// Normalises `8080`, `8080/TCP`, `53/udp` to `port/proto`.
fn normalize_port(p: &str) -> Result<String, BuildError> {
    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let ok_port = port.parse::<u16>().is_ok_and(|n| n > 0);
    if !ok_port || !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(BuildError::Spec(format!(
            "exposed port {p:?} is not valid: use PORT or PORT/tcp, PORT/udp, PORT/sctp with PORT from 1 to 65535"
        )));
    }
    Ok(format!("{port}/{proto}"))
}

fn env_name(e: &str) -> Result<&str, BuildError> {
    match e.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(k),
        _ => Err(BuildError::Spec(format!(
            "environment entry {e:?} is not valid: use NAME=value"
        ))),
    }
}

/// Applies `spec` on top of a base image's run config.
fn merge_run_config(base: RunConfig, spec: &ImageSpec) -> Result<RunConfig, BuildError> {
    let mut rc = base;
    if let Some(ep) = &spec.entrypoint {
        rc.entrypoint = Some(ep.clone());
        if spec.cmd.is_none() {
            rc.cmd = None;
        }
    }
    if let Some(cmd) = &spec.cmd {
        rc.cmd = Some(cmd.clone());
    }
    if !spec.env.is_empty() {
        let mut env = rc.env.take().unwrap_or_default();
        for e in &spec.env {
            let name = env_name(e)?;
            match env
                .iter_mut()
                .find(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) == name)
            {
                Some(slot) => slot.clone_from(e),
                None => env.push(e.clone()),
            }
        }
        rc.env = Some(env);
    }
    if let Some(wd) = &spec.working_dir {
        if !wd.starts_with('/') {
            return Err(BuildError::Spec(format!(
                "working directory {wd:?} must be an absolute path"
            )));
        }
        rc.working_dir = Some(wd.clone());
    }
    if !spec.exposed_ports.is_empty() {
        let ports = rc.exposed_ports.get_or_insert_with(BTreeMap::new);
        for p in &spec.exposed_ports {
            ports.insert(normalize_port(p)?, json!({}));
        }
    }
    if let Some(u) = &spec.user {
        rc.user = Some(u.clone());
    }
    if !spec.labels.is_empty() {
        let labels = rc.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &spec.labels {
            if k.is_empty() {
                return Err(BuildError::Spec("a label needs a non-empty key".into()));
            }
            labels.insert(k.clone(), v.clone());
        }
    }
    Ok(rc)
}

fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, BuildError> {
    serde_json::to_value(v).map_err(|e| BuildError::Spec(format!("internal: {e}")))
}

/// Run-config keys Berth sets; other keys of a base config (`Healthcheck`,
/// `Volumes`, ...) are kept as they are.
const RUN_CONFIG_KEYS: &[&str] = &[
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "WorkingDir",
    "Labels",
    "StopSignal",
];

/// Builds the layers, writes the config and manifest, and names the image
/// `tag` in `layout`. With `base` (a name or digest in the same layout),
/// the new layers go on top of the base image's and its config is the
/// starting point. Returns the manifest's descriptor.
pub fn build_image(
    layout: &OciLayout,
    base: Option<&str>,
    layers: &[LayerSource],
    spec: &ImageSpec,
    tag: &str,
) -> Result<Descriptor, BuildError> {
    crate::layout::validate_ref_name(tag)?;
    let base = base.map(|b| layout.image(b)).transpose()?;
    if base.is_none() && layers.is_empty() {
        return Err(BuildError::Spec(
            "nothing to build: give at least one layer source or a base image".into(),
        ));
    }

    // The raw base config, to keep fields Berth does not model.
    let mut config: Map<String, Value> = match &base {
        Some(b) => {
            let raw = layout.read_blob(&b.manifest.config.digest)?;
            match serde_json::from_slice(&raw) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(LayoutError::Invalid {
                        path: layout.blob_path(&b.manifest.config.digest),
                        reason: "the base image config is not a JSON object".into(),
                    }
                    .into())
                }
            }
        }
        None => Map::new(),
    };
    for k in ["created", "container", "container_config", "author"] {
        config.remove(k);
    }

    let pick = |given: &str, from_base: Option<&str>, fallback: &str| -> String {
        if !given.is_empty() {
            given.to_string()
        } else {
            from_base.unwrap_or(fallback).to_string()
        }
    };
    let architecture = pick(
        &spec.architecture,
        base.as_ref().map(|b| b.config.architecture.as_str()),
        host_architecture(),
    );
    let os = pick(
        &spec.os,
        base.as_ref().map(|b| b.config.os.as_str()),
        "linux",
    );
    if let Some(b) = &base {
        if b.config.architecture != architecture || b.config.os != os {
            return Err(BuildError::Spec(format!(
                "the base image is for {}/{}, not {os}/{architecture}; leave the platform unset to use the base image's",
                b.config.os, b.config.architecture
            )));
        }
    }

    let mut manifest_layers: Vec<Descriptor> = Vec::new();
    let mut diff_ids: Vec<Digest> = Vec::new();
    let mut history: Option<Vec<Value>> = None;
    if let Some(b) = &base {
        for l in &b.manifest.layers {
            let mut l = l.clone();
            // Same bytes; an OCI manifest names them with OCI media types.
            if l.media_type == DOCKER_LAYER_GZIP {
                l.media_type = OCI_LAYER_GZIP.to_string();
            } else if l.media_type == "application/vnd.docker.image.rootfs.diff.tar" {
                l.media_type = OCI_LAYER_TAR.to_string();
            }
            manifest_layers.push(l);
        }
        diff_ids.clone_from(&b.config.rootfs.diff_ids);
        history.clone_from(&b.config.history);
    } else {
        history = Some(Vec::new());
    }
    for src in layers {
        let built = build_layer(src, layout)?;
        manifest_layers.push(built.descriptor);
        diff_ids.push(built.diff_id);
        if let Some(h) = history.as_mut() {
            h.push(json!({
                "created_by": format!("berth image build: layer from a {}", src.describe()),
            }));
        }
    }

    let base_rc = base
        .as_ref()
        .and_then(|b| b.config.config.clone())
        .unwrap_or_default();
    let rc = merge_run_config(base_rc, spec)?;
    let mut run: Map<String, Value> = match config.remove("config") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for k in RUN_CONFIG_KEYS {
        run.remove(*k);
    }
    if let Value::Object(typed) = to_value(&rc)? {
        run.extend(typed);
    }
    config.insert("architecture".into(), Value::String(architecture.clone()));
    config.insert("os".into(), Value::String(os.clone()));
    config.insert("config".into(), Value::Object(run));
    config.insert(
        "rootfs".into(),
        to_value(&RootFs {
            kind: "layers".into(),
            diff_ids,
        })?,
    );
    match history {
        Some(h) => config.insert("history".into(), Value::Array(h)),
        None => config.remove("history"),
    };
    let config_bytes = serde_json::to_vec(&Value::Object(config))
        .map_err(|e| BuildError::Spec(format!("internal: {e}")))?;
    let config_digest = layout.put_blob(&config_bytes)?;

    let annotations = base.as_ref().map(|b| {
        BTreeMap::from([(
            BASE_DIGEST_ANNOTATION.to_string(),
            b.manifest_desc.digest.to_string(),
        )])
    });
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: Descriptor {
            media_type: OCI_CONFIG.to_string(),
            digest: config_digest,
            size: config_bytes.len() as u64,
            platform: None,
            annotations: None,
        },
        layers: manifest_layers,
        annotations,
    };
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| BuildError::Spec(format!("internal: {e}")))?;
    let manifest_digest = layout.put_blob(&manifest_bytes)?;
    let desc = Descriptor {
        media_type: OCI_MANIFEST.to_string(),
        digest: manifest_digest,
        size: manifest_bytes.len() as u64,
        platform: Some(Platform {
            architecture,
            os,
            variant: None,
            os_version: None,
        }),
        annotations: None,
    };
    layout.tag(tag, desc.clone())?;
    Ok(desc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct Entry {
        path: String,
        kind: tar::EntryType,
        mode: u32,
        mtime: u64,
        uid: u64,
        gid: u64,
        uname: Vec<u8>,
        link: Option<String>,
        data: Vec<u8>,
    }

    fn layer_entries(layout: &OciLayout, l: &BuiltLayer) -> Vec<Entry> {
        let gz = layout.read_blob(&l.descriptor.digest).unwrap();
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(Digest::of(&plain), l.diff_id);
        let mut out = Vec::new();
        let mut a = tar::Archive::new(&plain[..]);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.push(Entry {
                path: String::from_utf8(e.path_bytes().to_vec()).unwrap(),
                kind: h.entry_type(),
                mode: h.mode().unwrap(),
                mtime: h.mtime().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                uname: h.username_bytes().unwrap_or_default().to_vec(),
                link: e
                    .link_name_bytes()
                    .map(|b| String::from_utf8(b.to_vec()).unwrap()),
                data,
            });
        }
        out
    }

    fn paths(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    fn set_mode(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A small tree: dirs, an executable, a symlink, a hard link, a fifo, a
    /// long path.
    fn sample(root: &Path) {
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("etc/app")).unwrap();
        fs::write(root.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
        set_mode(&root.join("bin/tool"), 0o755);
        symlink("tool", root.join("bin/sh")).unwrap();
        fs::write(root.join("etc/app/conf"), b"a=1\n").unwrap();
        set_mode(&root.join("etc/app/conf"), 0o600);
        fs::hard_link(root.join("etc/app/conf"), root.join("etc/app/conf.link")).unwrap();
        fs::write(root.join("etc/a-b"), b"dash").unwrap();
        let long = "d".repeat(90);
        fs::create_dir_all(root.join(&long)).unwrap();
        fs::write(root.join(&long).join("f".repeat(40)), b"long").unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(root.join("fifo"))
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn layout_in(dir: &Path) -> OciLayout {
        OciLayout::create_or_open(dir).unwrap()
    }

    #[test]
    fn dir_layer_is_normalised() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sample(&src);
        let l = layout_in(&tmp.path().join("store"));
        let built = build_layer(&LayerSource::Dir(src.clone()), &l).unwrap();
        assert_eq!(built.descriptor.media_type, OCI_LAYER_GZIP);
        let entries = layer_entries(&l, &built);
        let long = format!("{}/{}", "d".repeat(90), "f".repeat(40));
        assert_eq!(
            paths(&entries),
            vec![
                "bin/",
                "bin/sh",
                "bin/tool",
                &format!("{}/", "d".repeat(90)),
                &long,
                "etc/",
                "etc/a-b",
                "etc/app/",
                "etc/app/conf",
                "etc/app/conf.link",
            ]
        );
        for e in &entries {
            assert_eq!((e.mtime, e.uid, e.gid), (0, 0, 0), "{}", e.path);
            assert!(e.uname.is_empty());
        }
        let get = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
        assert_eq!(get("bin/sh").kind, tar::EntryType::Symlink);
        assert_eq!(get("bin/sh").link.as_deref(), Some("tool"));
        assert_eq!(get("bin/tool").mode, 0o755);
        assert_eq!(get("bin/tool").data, b"#!/bin/sh\necho hi\n");
        assert_eq!(get("etc/app/conf").mode, 0o600);
        assert_eq!(get("etc/app/conf").kind, tar::EntryType::Regular);
        assert_eq!(get("etc/app/conf.link").kind, tar::EntryType::Link);
        assert_eq!(
            get("etc/app/conf.link").link.as_deref(),
            Some("etc/app/conf")
        );
        assert_eq!(get(&long).data, b"long");

        // Gzip header: mtime 0, no name, OS unknown.
        let gz = l.read_blob(&built.descriptor.digest).unwrap();
        assert_eq!(&gz[3..10], &[0, 0, 0, 0, 0, 0, 255][..]);
    }

    #[test]
    fn same_inputs_same_digest_and_content_changes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sample(&src);
        let spec = ImageSpec {
            entrypoint: Some(vec!["/bin/tool".into()]),
            exposed_ports: vec!["8080".into()],
            ..ImageSpec::default()
        };
        let layers = [LayerSource::Dir(src.clone())];
        let l1 = layout_in(&tmp.path().join("one"));
        let l2 = layout_in(&tmp.path().join("two"));
        let d1 = build_image(&l1, None, &layers, &spec, "app:v1").unwrap();
        let d2 = build_image(&l2, None, &layers, &spec, "app:v1").unwrap();
        assert_eq!(d1.digest, d2.digest);

        // Touching a file (new mtime, same content) changes nothing.
        let f = fs::File::options()
            .append(true)
            .open(src.join("bin/tool"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
            .unwrap();
        drop(f);
        let d3 = build_image(&l2, None, &layers, &spec, "app:v1").unwrap();
        assert_eq!(d1.digest, d3.digest);

        // New content, new digest.
        fs::write(src.join("etc/app/conf"), b"a=2\n").unwrap();
        let d4 = build_image(&l2, None, &layers, &spec, "app:v1").unwrap();
        assert_ne!(d1.digest, d4.digest);
        // A mode change is content too.
        fs::write(src.join("etc/app/conf"), b"a=1\n").unwrap();
        assert_eq!(
            build_image(&l2, None, &layers, &spec, "app:v1")
                .unwrap()
                .digest,
            d1.digest
        );
        set_mode(&src.join("bin/tool"), 0o700);
        assert_ne!(
            build_image(&l2, None, &layers, &spec, "app:v1")
                .unwrap()
                .digest,
            d1.digest
        );

        let img = l1.image("app:v1").unwrap();
        assert_eq!(img.config.created, None);
        assert_eq!(img.manifest.media_type.as_deref(), Some(OCI_MANIFEST));
        assert_eq!(img.manifest.config.media_type, OCI_CONFIG);
        let rc = img.config.config.unwrap();
        assert_eq!(rc.entrypoint, Some(vec!["/bin/tool".to_string()]));
        assert!(rc.exposed_ports.unwrap().contains_key("8080/tcp"));
    }

    #[test]
    fn files_layer_places_files_and_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        sample(&src);
        let single = tmp.path().join("app.bin");
        fs::write(&single, b"binary").unwrap();
        set_mode(&single, 0o750);
        let l = layout_in(&tmp.path().join("store"));
        let built = build_layer(
            &LayerSource::Files(vec![
                (single.clone(), "/usr/local/bin/app".into()),
                (src.join("etc"), "/opt/etc".into()),
            ]),
            &l,
        )
        .unwrap();
        let entries = layer_entries(&l, &built);
        assert_eq!(
            paths(&entries),
            vec![
                "opt/",
                "opt/etc/",
                "opt/etc/a-b",
                "opt/etc/app/",
                "opt/etc/app/conf",
                "opt/etc/app/conf.link",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/app",
            ]
        );
        let get = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
        assert_eq!(get("usr/").mode, 0o755);
        assert_eq!(get("opt/").mode, 0o755);
        assert_eq!(get("usr/local/bin/app").mode, 0o750);
        assert_eq!(get("usr/local/bin/app").data, b"binary");

        // '..' and a file at the root are refused.
        for dest in ["../x", "/"] {
            let e = build_layer(&LayerSource::Files(vec![(single.clone(), dest.into())]), &l);
            assert!(matches!(e, Err(BuildError::ImagePath { .. })), "{dest}");
        }
        // A file where a directory must be is refused.
        let e = build_layer(
            &LayerSource::Files(vec![
                (single.clone(), "/a".into()),
                (single.clone(), "/a/b".into()),
            ]),
            &l,
        );
        assert!(matches!(e, Err(BuildError::ImagePath { .. })));
    }

    fn write_messy_tar(path: &Path, gzip: bool, mtime: u64, reverse: bool) {
        let mut entries: Vec<(&str, tar::EntryType, &[u8], u32)> = vec![
            ("./", tar::EntryType::Directory, b"", 0o755),
            ("./usr/bin/", tar::EntryType::Directory, b"", 0o755),
            ("./usr/bin/x", tar::EntryType::Regular, b"xx", 0o755),
            ("./etc/motd", tar::EntryType::Regular, b"hello", 0o644),
            ("/etc/conf", tar::EntryType::Regular, b"c", 0o600),
            ("./dev/null", tar::EntryType::Char, b"", 0o666),
        ];
        if reverse {
            entries.reverse();
        }
        let mut b = tar::Builder::new(Vec::new());
        for (p, kind, data, mode) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_mtime(mtime);
            h.set_uid(1000);
            h.set_gid(1000);
            h.set_username("someone").unwrap();
            h.set_size(data.len() as u64);
            // Written raw: the tar crate would refuse a leading '/'.
            let name = p.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mtime(mtime);
        h.set_size(0);
        b.append_link(&mut h, "usr/bin/y", "x").unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Link);
        h.set_mtime(mtime);
        h.set_size(0);
        b.append_link(&mut h, "etc/motd2", "etc/motd").unwrap();
        let raw = b.into_inner().unwrap();
        if gzip {
            let mut e = GzBuilder::new()
                .mtime(12345)
                .filename("orig.tar")
                .write(Vec::new(), Compression::new(9));
            e.write_all(&raw).unwrap();
            fs::write(path, e.finish().unwrap()).unwrap();
        } else {
            fs::write(path, raw).unwrap();
        }
    }

    #[test]
    fn tar_source_is_repackaged_deterministically() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout_in(&tmp.path().join("store"));
        let a = tmp.path().join("a.tar");
        let b = tmp.path().join("b.tar.gz");
        write_messy_tar(&a, false, 1_700_000_000, false);
        write_messy_tar(&b, true, 42, true);
        let la = build_layer(&LayerSource::Tar(a), &l).unwrap();
        let lb = build_layer(&LayerSource::Tar(b), &l).unwrap();
        assert_eq!(la, lb);
        let entries = layer_entries(&l, &la);
        assert_eq!(
            paths(&entries),
            vec![
                "etc/",
                "etc/conf",
                "etc/motd",
                "etc/motd2",
                "usr/",
                "usr/bin/",
                "usr/bin/x",
                "usr/bin/y"
            ]
        );
        for e in &entries {
            assert_eq!((e.mtime, e.uid, e.gid), (0, 0, 0), "{}", e.path);
            assert!(e.uname.is_empty());
        }
        let get = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
        assert_eq!(get("etc/").mode, 0o755);
        assert_eq!(get("etc/conf").mode, 0o600);
        assert_eq!(get("etc/motd").data, b"hello");
        assert_eq!(get("etc/motd2").kind, tar::EntryType::Link);
        assert_eq!(get("etc/motd2").link.as_deref(), Some("etc/motd"));
        assert_eq!(get("usr/bin/y").link.as_deref(), Some("x"));
        assert!(!l.root().join(".tmp").read_dir().unwrap().any(|_| true));

        let junk = tmp.path().join("junk");
        fs::write(&junk, "root:x:0:0:root:/root:/bin/bash\n".repeat(40)).unwrap();
        let e = build_layer(&LayerSource::Tar(junk), &l).unwrap_err();
        assert!(e.to_string().contains("is not a tar archive"), "{e}");
    }

    #[test]
    fn base_image_keeps_layers_and_merges_config() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout_in(&tmp.path().join("store"));
        let base_dir = tmp.path().join("base");
        fs::create_dir_all(base_dir.join("bin")).unwrap();
        fs::write(base_dir.join("bin/a"), b"a").unwrap();
        let base_spec = ImageSpec {
            env: vec!["PATH=/bin".into(), "MODE=base".into()],
            cmd: Some(vec!["a".into()]),
            exposed_ports: vec!["80/tcp".into()],
            labels: BTreeMap::from([("tier".into(), "base".into())]),
            ..ImageSpec::default()
        };
        let base = build_image(
            &l,
            None,
            &[LayerSource::Dir(base_dir)],
            &base_spec,
            "base:1",
        )
        .unwrap();
        let extra = tmp.path().join("extra");
        fs::write(&extra, b"b").unwrap();
        let spec = ImageSpec {
            env: vec!["MODE=app".into(), "EXTRA=1".into()],
            exposed_ports: vec!["8080".into()],
            working_dir: Some("/srv".into()),
            labels: BTreeMap::from([("app".into(), "x".into())]),
            architecture: String::new(),
            os: String::new(),
            ..ImageSpec::default()
        };
        let app = build_image(
            &l,
            Some("base:1"),
            &[LayerSource::Files(vec![(extra, "/bin/b".into())])],
            &spec,
            "app:1",
        )
        .unwrap();
        let base_img = l.image("base:1").unwrap();
        let img = l.image("app:1").unwrap();
        assert_eq!(img.manifest_desc.digest, app.digest);
        assert_eq!(img.manifest.layers.len(), 2);
        assert_eq!(img.manifest.layers[0], base_img.manifest.layers[0]);
        assert_eq!(
            img.config.rootfs.diff_ids[0],
            base_img.config.rootfs.diff_ids[0]
        );
        assert_eq!(img.config.history.as_ref().unwrap().len(), 2);
        assert_eq!(
            img.manifest.annotations.as_ref().unwrap()[BASE_DIGEST_ANNOTATION],
            base.digest.to_string()
        );
        let rc = img.config.config.unwrap();
        assert_eq!(
            rc.env.unwrap(),
            vec![
                "PATH=/bin".to_string(),
                "MODE=app".to_string(),
                "EXTRA=1".to_string()
            ]
        );
        assert_eq!(rc.cmd, Some(vec!["a".to_string()]));
        assert_eq!(
            rc.exposed_ports.unwrap().keys().collect::<Vec<_>>(),
            vec!["80/tcp", "8080/tcp"]
        );
        assert_eq!(rc.working_dir.as_deref(), Some("/srv"));
        assert_eq!(rc.labels.unwrap().len(), 2);

        // A new entrypoint without a cmd clears the base cmd.
        let spec = ImageSpec {
            entrypoint: Some(vec!["/bin/b".into()]),
            architecture: String::new(),
            os: String::new(),
            ..ImageSpec::default()
        };
        build_image(&l, Some("base:1"), &[], &spec, "app:2").unwrap();
        let rc = l.image("app:2").unwrap().config.config.unwrap();
        assert_eq!(rc.cmd, None);
        assert_eq!(l.image("app:2").unwrap().manifest.layers.len(), 1);

        // A platform other than the base's is refused.
        let spec = ImageSpec {
            architecture: "s390x".into(),
            ..ImageSpec::default()
        };
        assert!(matches!(
            build_image(&l, Some("base:1"), &[], &spec, "app:3"),
            Err(BuildError::Spec(_))
        ));
    }

    #[test]
    fn bad_spec_values_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let l = layout_in(&tmp.path().join("store"));
        let dir = tmp.path().join("d");
        fs::create_dir_all(&dir).unwrap();
        let layers = [LayerSource::Dir(dir)];
        for spec in [
            ImageSpec {
                env: vec!["NOVALUE".into()],
                ..ImageSpec::default()
            },
            ImageSpec {
                exposed_ports: vec!["99999".into()],
                ..ImageSpec::default()
            },
            ImageSpec {
                exposed_ports: vec!["80/http".into()],
                ..ImageSpec::default()
            },
            ImageSpec {
                working_dir: Some("relative".into()),
                ..ImageSpec::default()
            },
        ] {
            assert!(matches!(
                build_image(&l, None, &layers, &spec, "x:1"),
                Err(BuildError::Spec(_))
            ));
        }
        assert!(matches!(
            build_image(&l, None, &[], &ImageSpec::default(), "x:1"),
            Err(BuildError::Spec(_))
        ));
        assert!(matches!(
            build_image(&l, Some("nope:1"), &[], &ImageSpec::default(), "x:1"),
            Err(BuildError::Layout(LayoutError::NotFound { .. }))
        ));
    }
}
