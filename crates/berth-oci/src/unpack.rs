//! Unpacking one image layer (a tar, plain or gzip- or zstd-compressed) into
//! a directory, safely.
//!
//! Layer tars come from registries, so they are untrusted input. The rule
//! this module keeps: nothing outside the target directory is ever created,
//! modified or deleted. To that end:
//!
//! * entry names are normalised (leading `/` and `.` components dropped) and
//!   any `..` component is refused;
//! * every existing parent component is checked with `lstat` and must be a
//!   real directory, never a symbolic link, before anything is created
//!   beneath it; missing parents are created as plain directories;
//! * the final component is removed first if it already exists with another
//!   type (a symlink is replaced, never written through), and files are
//!   created with `O_CREAT | O_EXCL`, which does not follow symlinks;
//! * hard links may only point at existing non-directories inside the target,
//!   reached without symlinks;
//! * whiteouts may only name a single file in their own directory;
//! * modes, owners and times are set through file descriptors (or
//!   `lchown`/`utimensat(AT_SYMLINK_NOFOLLOW)` for symlinks), so they never
//!   follow a link. Directory metadata is applied at the end, after checking
//!   the path again;
//! * of the extended attributes in pax `SCHILY.xattr.*` records only
//!   `user.*` and `security.capability` are kept: a layer may not set
//!   `trusted.*` attributes (which could forge overlayfs metadata) or
//!   security labels.
//!
//! Whiteouts (`.wh.NAME`, `.wh..wh..opq`) are either applied, for flattening
//! layers into one directory ([`WhiteoutMode::Apply`]), or turned into
//! overlayfs whiteouts so each layer directory can be an overlayfs lowerdir
//! ([`WhiteoutMode::Overlay`], which needs root for `mknod`).
//!
//! Character and block devices and fifos in layers are skipped: a container
//! gets its devices from the runtime, not from the image.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags, CWD};
use rustix::io::Errno;
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};
use tar::EntryType;

use crate::manifest::{layer_compression, Compression};

/// What to do with whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Apply them to what is already in the target: `.wh.NAME` deletes NAME,
    /// `.wh..wh..opq` deletes the directory's existing contents. Used to
    /// flatten several layers into one directory, lowest first.
    Apply,
    /// Write overlayfs whiteouts: `.wh.NAME` becomes a 0:0 character device
    /// named NAME, `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its
    /// directory. Each layer gets its own directory, used as an overlayfs
    /// lowerdir. Needs root (`mknod`, `trusted.*` xattrs).
    Overlay,
}

/// What an unpack created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Regular files written.
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// Whiteouts (and opaque markers) applied or written.
    pub whiteouts: u64,
    /// Device nodes and fifos skipped.
    pub skipped_devices: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// a filesystem operation in the target failed
    #[error("unpack i/o error at {path}: {source}")]
    Io {
        /// the file or directory involved
        path: PathBuf,
        /// the underlying error
        source: io::Error,
    },
    /// the layer stream could not be read or decompressed, or is not a tar
    #[error("reading layer archive: {source}")]
    Archive {
        /// the underlying error
        source: io::Error,
    },
    /// an entry would touch something outside the target directory
    #[error("unsafe layer entry {entry:?}: {reason}")]
    Unsafe {
        /// the entry's name as it appears in the tar
        entry: String,
        /// what is wrong with it
        reason: String,
    },
    /// an entry is malformed or conflicts with what is already there
    #[error("invalid layer entry {entry:?}: {reason}")]
    Invalid {
        /// the entry's name as it appears in the tar
        entry: String,
        /// what is wrong with it
        reason: String,
    },
    /// the media type is not a layer type Berth can unpack
    #[error("unsupported layer media type {0:?} (expected an OCI or Docker tar, tar+gzip or tar+zstd layer)")]
    UnsupportedMediaType(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn errno_err(path: &Path) -> impl FnOnce(Errno) -> UnpackError + '_ {
    move |e| UnpackError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Unpacks the layer in file `path`, whose compression is given by its
/// `media_type`, into `target` (created if missing).
pub fn unpack_layer_file(
    path: &Path,
    media_type: &str,
    target: &Path,
    mode: WhiteoutMode,
) -> Result<UnpackStats, UnpackError> {
    let compression = layer_compression(media_type)
        .ok_or_else(|| UnpackError::UnsupportedMediaType(media_type.to_string()))?;
    let file = File::open(path).map_err(io_err(path))?;
    unpack_layer(BufReader::new(file), compression, target, mode)
}

/// Unpacks one layer tar read from `reader` into `target` (created if
/// missing). See the module docs for the safety rules.
pub fn unpack_layer<R: Read>(
    reader: R,
    compression: Compression,
    target: &Path,
    mode: WhiteoutMode,
) -> Result<UnpackStats, UnpackError> {
    match compression {
        Compression::None => unpack_tar(reader, target, mode),
        Compression::Gzip => unpack_tar(flate2::read::MultiGzDecoder::new(reader), target, mode),
        Compression::Zstd => unpack_tar(ZstdReader::new(reader), target, mode),
    }
}

fn unpack_tar<R: Read>(
    reader: R,
    target: &Path,
    mode: WhiteoutMode,
) -> Result<UnpackStats, UnpackError> {
    fs::create_dir_all(target).map_err(io_err(target))?;
    let mut unpacker = Unpacker {
        target: target.to_path_buf(),
        mode,
        is_root: rustix::process::geteuid().is_root(),
        stats: UnpackStats::default(),
        created: HashSet::new(),
        dirs: Vec::new(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|source| UnpackError::Archive { source })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| UnpackError::Archive { source })?;
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish_dirs()?;
    // Read to the end of the stream so that the decompressor checks its
    // trailer (gzip CRC, zstd checksum) and a truncated layer is noticed.
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|source| UnpackError::Archive { source })?;
    Ok(unpacker.stats)
}

/// Ownership, permissions, modification time and extended attributes of an
/// entry.
#[derive(Debug, Clone)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    /// `SCHILY.xattr.*` pax records whose names pass [`xattr_allowed`].
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn times(&self) -> FileTimes {
        // A crafted header may carry any 64-bit mtime: clamp instead of
        // overflowing the SystemTime addition.
        let t = UNIX_EPOCH
            .checked_add(Duration::from_secs(self.mtime))
            .unwrap_or(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)));
        FileTimes::new().set_accessed(t).set_modified(t)
    }

    fn timestamps(&self) -> Timestamps {
        let t = Timespec {
            tv_sec: i64::try_from(self.mtime).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        Timestamps {
            last_access: t,
            last_modification: t,
        }
    }
}

/// The result of walking the parent components of an entry.
enum Walk {
    /// All parents are real directories; this is the absolute parent path.
    Dir(PathBuf),
    /// A parent is missing (only when not creating).
    Missing,
    /// This parent (relative to the target) is a symbolic link.
    Symlink(PathBuf),
    /// This parent (relative to the target) is not a directory.
    NotDir(PathBuf),
}

struct Unpacker {
    target: PathBuf,
    mode: WhiteoutMode,
    is_root: bool,
    stats: UnpackStats,
    /// Paths (relative to the target) created by this layer: whiteouts in
    /// Apply mode only hide what lower layers put there.
    created: HashSet<PathBuf>,
    /// Directories whose metadata is applied once everything is unpacked
    /// (a read-only directory must still receive its children).
    dirs: Vec<(PathBuf, Meta)>,
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = normalize(&raw).map_err(|reason| UnpackError::Unsafe {
            entry: name.clone(),
            reason: reason.to_string(),
        })?;
        let Some(file_name) = rel.file_name().map(OsStr::as_bytes) else {
            // The layer root itself ("./" or "/"): the target's own
            // metadata is not the layer's to change.
            return Ok(());
        };
        if file_name == b".wh..wh..opq" {
            return self.opaque(&name, &rel);
        }
        if file_name.starts_with(b".wh..wh.") {
            // Other aufs metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): not content.
            return Ok(());
        }
        if let Some(hidden) = file_name.strip_prefix(b".wh.") {
            let hidden = hidden.to_vec();
            return self.whiteout(&name, &rel, &hidden);
        }
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let meta = meta(entry, &name)?;
                self.file(entry, &name, &rel, meta)
            }
            EntryType::Directory => {
                let meta = meta(entry, &name)?;
                self.dir(&name, &rel, meta)
            }
            EntryType::Symlink => {
                let meta = meta(entry, &name)?;
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                self.symlink(&name, &rel, &link, meta)
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                self.hardlink(&name, &rel, &link)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.stats.skipped_devices += 1;
                Ok(())
            }
            other => Err(UnpackError::Invalid {
                entry: name,
                reason: format!("unsupported tar entry type {other:?}"),
            }),
        }
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        rel: &Path,
        meta: Meta,
    ) -> Result<(), UnpackError> {
        let path = self.prepare(name, rel)?;
        // create_new is O_CREAT|O_EXCL: it fails rather than follow a
        // symlink at the final component (and prepare removed any).
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(UnpackError::Archive { source }),
            };
            file.write_all(&buf[..n]).map_err(io_err(&path))?;
            self.stats.bytes += n as u64;
        }
        self.apply_meta(&file, &path, &meta)?;
        self.created.insert(rel.to_path_buf());
        self.stats.files += 1;
        Ok(())
    }

    fn dir(&mut self, name: &str, rel: &Path, meta: Meta) -> Result<(), UnpackError> {
        let path = self.parent(name, rel)?.join(file_name(rel));
        if !self.clear(&path, true)? {
            DirBuilder::new()
                .mode(0o755)
                .create(&path)
                .map_err(io_err(&path))?;
        }
        self.created.insert(rel.to_path_buf());
        self.dirs.push((rel.to_path_buf(), meta));
        self.stats.dirs += 1;
        Ok(())
    }

    fn symlink(
        &mut self,
        name: &str,
        rel: &Path,
        link: &[u8],
        meta: Meta,
    ) -> Result<(), UnpackError> {
        if link.is_empty() {
            return Err(UnpackError::Invalid {
                entry: name.to_string(),
                reason: "symbolic link has an empty target".to_string(),
            });
        }
        // The link's own target may point anywhere: it is only ever
        // dangerous if a later entry writes through it, which `parent`
        // refuses.
        let path = self.prepare(name, rel)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(link), &path).map_err(io_err(&path))?;
        if self.is_root {
            ignore_eperm(std::os::unix::fs::lchown(
                &path,
                Some(meta.uid),
                Some(meta.gid),
            ))
            .map_err(io_err(&path))?;
        }
        rustix::fs::utimensat(CWD, &path, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno_err(&path))?;
        self.created.insert(rel.to_path_buf());
        self.stats.symlinks += 1;
        Ok(())
    }

    fn hardlink(&mut self, name: &str, rel: &Path, link: &[u8]) -> Result<(), UnpackError> {
        let unsafe_err = |reason: String| UnpackError::Unsafe {
            entry: name.to_string(),
            reason,
        };
        let shown = String::from_utf8_lossy(link);
        let link_rel =
            normalize(link).map_err(|r| unsafe_err(format!("hard link target {shown:?} {r}")))?;
        if link_rel.as_os_str().is_empty() {
            return Err(unsafe_err(format!(
                "hard link target {shown:?} is the layer root"
            )));
        }
        let src = match self.walk(&link_rel, false)? {
            Walk::Dir(parent) => parent.join(file_name(&link_rel)),
            Walk::Missing => {
                return Err(UnpackError::Invalid {
                    entry: name.to_string(),
                    reason: format!("hard link target {shown:?} does not exist"),
                })
            }
            Walk::Symlink(at) => {
                return Err(unsafe_err(format!(
                    "hard link target {shown:?} goes through the symbolic link {}",
                    at.display()
                )))
            }
            Walk::NotDir(at) => {
                return Err(UnpackError::Invalid {
                    entry: name.to_string(),
                    reason: format!(
                        "hard link target {shown:?}: {} is not a directory",
                        at.display()
                    ),
                })
            }
        };
        match fs::symlink_metadata(&src) {
            Ok(m) if m.is_dir() => {
                return Err(UnpackError::Invalid {
                    entry: name.to_string(),
                    reason: format!("hard link target {shown:?} is a directory"),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(UnpackError::Invalid {
                    entry: name.to_string(),
                    reason: format!("hard link target {shown:?} does not exist"),
                })
            }
            Err(e) => return Err(io_err(&src)(e)),
        }
        if link_rel == rel {
            // A link to itself: the file is already there.
            return Ok(());
        }
        let path = self.prepare(name, rel)?;
        // linkat without AT_SYMLINK_FOLLOW: if src is a symlink, the new name
        // is another link to the symlink itself, not to what it points at.
        fs::hard_link(&src, &path).map_err(io_err(&path))?;
        self.created.insert(rel.to_path_buf());
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn whiteout(&mut self, name: &str, rel: &Path, hidden: &[u8]) -> Result<(), UnpackError> {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(UnpackError::Unsafe {
                entry: name.to_string(),
                reason: format!(
                    "whiteout names {:?}, which is not an entry of its directory",
                    String::from_utf8_lossy(hidden)
                ),
            });
        }
        let victim_rel = rel.with_file_name(OsStr::from_bytes(hidden));
        match self.mode {
            WhiteoutMode::Apply => {
                let parent = match self.walk(rel, false)? {
                    Walk::Dir(parent) => parent,
                    // Nothing below a missing directory to hide.
                    Walk::Missing | Walk::NotDir(_) => {
                        self.stats.whiteouts += 1;
                        return Ok(());
                    }
                    Walk::Symlink(at) => {
                        return Err(UnpackError::Unsafe {
                            entry: name.to_string(),
                            reason: format!(
                                "whiteout goes through the symbolic link {}",
                                at.display()
                            ),
                        })
                    }
                };
                // A whiteout hides lower layers only, never its own layer.
                if !self.created.contains(&victim_rel) {
                    self.clear(&parent.join(OsStr::from_bytes(hidden)), false)?;
                }
            }
            WhiteoutMode::Overlay => {
                let path = self.prepare(name, &victim_rel)?;
                rustix::fs::mknodat(
                    CWD,
                    &path,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(errno_err(&path))?;
                self.created.insert(victim_rel);
            }
        }
        self.stats.whiteouts += 1;
        Ok(())
    }

    fn opaque(&mut self, name: &str, rel: &Path) -> Result<(), UnpackError> {
        let dir_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        match self.mode {
            WhiteoutMode::Apply => {
                let dir = match self.walk(rel, false)? {
                    Walk::Dir(dir) => dir,
                    Walk::Missing | Walk::NotDir(_) => {
                        self.stats.whiteouts += 1;
                        return Ok(());
                    }
                    Walk::Symlink(at) => {
                        return Err(UnpackError::Unsafe {
                            entry: name.to_string(),
                            reason: format!(
                                "opaque marker goes through the symbolic link {}",
                                at.display()
                            ),
                        })
                    }
                };
                for child in fs::read_dir(&dir).map_err(io_err(&dir))? {
                    let child = child.map_err(io_err(&dir))?;
                    if !self.created.contains(&dir_rel.join(child.file_name())) {
                        self.clear(&child.path(), false)?;
                    }
                }
            }
            WhiteoutMode::Overlay => {
                let dir = self.parent(name, rel)?;
                rustix::fs::lsetxattr(&dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                    .map_err(errno_err(&dir))?;
            }
        }
        self.stats.whiteouts += 1;
        Ok(())
    }

    /// Applies deferred directory metadata, deepest first, re-checking each
    /// path: a later entry may have replaced the directory (or a parent)
    /// with something else, and then there is nothing to update.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
        for (rel, meta) in dirs {
            let Walk::Dir(parent) = self.walk(&rel, false)? else {
                continue;
            };
            let path = parent.join(file_name(&rel));
            let fd = match rustix::fs::open(
                &path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(errno_err(&path)(e)),
            };
            self.apply_meta(&File::from(fd), &path, &meta)?;
        }
        Ok(())
    }

    /// Sets owner (when root), mode and times through an open descriptor.
    fn apply_meta(&self, file: &File, path: &Path, meta: &Meta) -> Result<(), UnpackError> {
        if self.is_root {
            // Before chmod: chown clears setuid/setgid bits.
            ignore_eperm(std::os::unix::fs::fchown(
                file,
                Some(meta.uid),
                Some(meta.gid),
            ))
            .map_err(io_err(path))?;
        }
        file.set_permissions(Permissions::from_mode(meta.mode & 0o7777))
            .map_err(io_err(path))?;
        // After chown, which clears security.capability.
        for (name, value) in &meta.xattrs {
            match rustix::fs::fsetxattr(file, name.as_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                // A filesystem without xattrs, or an unprivileged unpacker
                // (file capabilities need CAP_SETFCAP): keep going, as for
                // ownership.
                Err(Errno::OPNOTSUPP | Errno::PERM) => {}
                Err(e) => return Err(errno_err(path)(e)),
            }
        }
        file.set_times(meta.times()).map_err(io_err(path))
    }

    /// Makes the parents of `rel` exist and removes whatever is at `rel`;
    /// returns the absolute path, ready for a new non-directory entry.
    fn prepare(&mut self, name: &str, rel: &Path) -> Result<PathBuf, UnpackError> {
        let path = self.parent(name, rel)?.join(file_name(rel));
        self.clear(&path, false)?;
        Ok(path)
    }

    /// The absolute parent directory of `rel`, created as needed; fails if
    /// any component is a symlink or not a directory.
    fn parent(&mut self, name: &str, rel: &Path) -> Result<PathBuf, UnpackError> {
        match self.walk(rel, true)? {
            Walk::Dir(parent) => Ok(parent),
            Walk::Symlink(at) => Err(UnpackError::Unsafe {
                entry: name.to_string(),
                reason: format!(
                    "path goes through the symbolic link {}; refusing to follow it",
                    at.display()
                ),
            }),
            Walk::NotDir(at) => Err(UnpackError::Invalid {
                entry: name.to_string(),
                reason: format!("{} is not a directory", at.display()),
            }),
            Walk::Missing => Err(UnpackError::Invalid {
                entry: name.to_string(),
                reason: "a parent directory is missing".to_string(),
            }),
        }
    }

    /// Walks the parent components of `rel` from the target down, with
    /// `lstat`, never following a symlink. Missing directories are created
    /// when `create` is set.
    fn walk(&mut self, rel: &Path, create: bool) -> Result<Walk, UnpackError> {
        let mut path = self.target.clone();
        let mut at = PathBuf::new();
        let Some(parent) = rel.parent() else {
            return Ok(Walk::Dir(path));
        };
        for component in parent.components() {
            path.push(component);
            at.push(component);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => return Ok(Walk::Symlink(at)),
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Ok(Walk::NotDir(at)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(Walk::Missing);
                    }
                    DirBuilder::new()
                        .mode(0o755)
                        .create(&path)
                        .map_err(io_err(&path))?;
                    self.created.insert(at.clone());
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(Walk::Dir(path))
    }

    /// Removes whatever is at `path` (never following a symlink), except a
    /// directory when `keep_dir` is set. Returns whether a directory was
    /// kept.
    fn clear(&self, path: &Path, keep_dir: bool) -> Result<bool, UnpackError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() && keep_dir => Ok(true),
            // remove_dir_all does not follow symlinks inside the tree.
            Ok(m) if m.is_dir() => fs::remove_dir_all(path)
                .map(|()| false)
                .map_err(io_err(path)),
            Ok(_) => fs::remove_file(path).map(|()| false).map_err(io_err(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(path)(e)),
        }
    }
}

/// The last component of a normalised, non-empty relative path.
fn file_name(rel: &Path) -> &OsStr {
    rel.file_name().unwrap_or(OsStr::new("."))
}

/// Turns a tar entry name into a path relative to the target: drops empty
/// and `.` components (so a leading `/` or `./` is stripped, as Docker does)
/// and refuses `..`.
fn normalize(raw: &[u8]) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for component in raw.split(|b| *b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err("contains a `..` component, which could climb out of the target"),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// Reads an entry's metadata, honouring pax overrides for ids and mtime.
fn meta<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta, UnpackError> {
    let invalid = |what: &str, e: io::Error| UnpackError::Invalid {
        entry: name.to_string(),
        reason: format!("bad {what} in header: {e}"),
    };
    let header = entry.header();
    let old = header.as_old();
    // Like Go's archive/tar, a blank numeric field reads as 0.
    let blank = |field: &[u8]| field.iter().all(|b| *b == 0 || *b == b' ');
    let mode = match header.mode() {
        Err(_) if blank(&old.mode) => 0,
        r => r.map_err(|e| invalid("mode", e))?,
    };
    let mut uid = match header.uid() {
        Err(_) if blank(&old.uid) => 0,
        r => r.map_err(|e| invalid("uid", e))?,
    };
    let mut gid = match header.gid() {
        Err(_) if blank(&old.gid) => 0,
        r => r.map_err(|e| invalid("gid", e))?,
    };
    let mut mtime = match header.mtime() {
        Err(_) if blank(&old.mtime) => 0,
        r => r.map_err(|e| invalid("mtime", e))?,
    };
    let mut xattrs = Vec::new();
    if let Some(pax) = entry
        .pax_extensions()
        .map_err(|source| UnpackError::Archive { source })?
    {
        for ext in pax.flatten() {
            if let Some(xattr) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                if xattr_allowed(xattr) {
                    xattrs.push((xattr.to_string(), ext.value_bytes().to_vec()));
                }
                continue;
            }
            let Ok(value) = ext.value() else { continue };
            let whole = value.split('.').next().unwrap_or("");
            match ext.key() {
                Ok("uid") => uid = whole.parse().unwrap_or(uid),
                Ok("gid") => gid = whole.parse().unwrap_or(gid),
                // Negative or unparsable times fall back to the header's.
                Ok("mtime") => mtime = whole.parse().unwrap_or(mtime),
                _ => {}
            }
        }
    }
    let id = |what: &str, v: u64| {
        u32::try_from(v).map_err(|_| UnpackError::Invalid {
            entry: name.to_string(),
            reason: format!("{what} {v} is out of range"),
        })
    };
    Ok(Meta {
        mode,
        uid: id("uid", uid)?,
        gid: id("gid", gid)?,
        mtime,
        xattrs,
    })
}

/// Which extended attributes a layer may set: user attributes and file
/// capabilities. Never `trusted.*` (a layer must not forge overlayfs
/// whiteouts, opaque markers or redirects) nor other `security.*` labels.
fn xattr_allowed(name: &str) -> bool {
    name.starts_with("user.") || name == "security.capability"
}

/// Treats EPERM and EINVAL from chown as success: an unprivileged or
/// user-namespaced unpacker cannot give files away, and keeps them.
fn ignore_eperm(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e)
            if e.raw_os_error() == Some(Errno::PERM.raw_os_error())
                || e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// A zstd decoder over a whole stream: every frame in turn, skipping
/// skippable frames, verifying content checksums where frames carry them.
struct ZstdReader<R: Read> {
    source: BufReader<R>,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: Read> ZstdReader<R> {
    fn new(source: R) -> Self {
        Self {
            source: BufReader::new(source),
            decoder: FrameDecoder::new(),
            in_frame: false,
        }
    }
}

fn invalid_data(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<R: Read> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.in_frame {
                if self.source.fill_buf()?.is_empty() {
                    return Ok(0);
                }
                match self.decoder.init(&mut self.source) {
                    Ok(()) => self.in_frame = true,
                    Err(FrameDecoderError::ReadFrameHeaderError(
                        ReadFrameHeaderError::SkipFrame { length, .. },
                    )) => {
                        let skipped = io::copy(
                            &mut (&mut self.source).take(u64::from(length)),
                            &mut io::sink(),
                        )?;
                        if skipped != u64::from(length) {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        continue;
                    }
                    Err(e) => return Err(invalid_data(e)),
                }
            }
            while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                let wanted = buf.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(wanted))
                    .map_err(invalid_data)?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() {
                if let (Some(stored), Some(computed)) = (
                    self.decoder.get_checksum_from_data(),
                    self.decoder.get_calculated_checksum(),
                ) {
                    if stored != computed {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "zstd frame checksum mismatch",
                        ));
                    }
                }
                self.in_frame = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::Header;

    fn mtime_of(path: &Path) -> u64 {
        fs::symlink_metadata(path)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// One tar entry for tests; names are written raw into the header so
    /// malicious names (`..`, absolute) survive.
    enum E<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str, u32),
        Sym(&'a str, &'a str),
        Link(&'a str, &'a str),
        Char(&'a str),
        Fifo(&'a str),
        Owned(&'a str, &'a [u8], u32, u32),
    }

    fn raw_header(name: &str, kind: EntryType, size: u64, mode: u32, link: &str) -> Header {
        let mut h = Header::new_gnu();
        assert!(name.len() <= 100 && link.len() <= 100);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        h
    }

    fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let (h, data): (Header, &[u8]) = match *e {
                E::File(n, d, m) => (raw_header(n, EntryType::Regular, d.len() as u64, m, ""), d),
                E::Dir(n, m) => (raw_header(n, EntryType::Directory, 0, m, ""), b""),
                E::Sym(n, l) => (raw_header(n, EntryType::Symlink, 0, 0o777, l), b""),
                E::Link(n, l) => (raw_header(n, EntryType::Link, 0, 0o644, l), b""),
                E::Char(n) => (raw_header(n, EntryType::Char, 0, 0o666, ""), b""),
                E::Fifo(n) => (raw_header(n, EntryType::Fifo, 0, 0o666, ""), b""),
                E::Owned(n, d, uid, gid) => {
                    let mut h = raw_header(n, EntryType::Regular, d.len() as u64, 0o4755, "");
                    h.set_uid(u64::from(uid));
                    h.set_gid(u64::from(gid));
                    h.set_cksum();
                    (h, d)
                }
            };
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn absurd_mtimes_do_not_panic() {
        let sb = sandbox();
        let mut h = raw_header("f", EntryType::Regular, 1, 0o644, "");
        // Base-256 encoded: the largest mtime a GNU header can carry.
        h.as_gnu_mut().unwrap().mtime = [0xff; 12];
        h.as_gnu_mut().unwrap().mtime[0] = 0x80;
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        unpack(&tar, &sb.target, WhiteoutMode::Apply).unwrap();
        assert_eq!(fs::read(sb.target.join("f")).unwrap(), b"x");
    }

    fn unpack(tar: &[u8], target: &Path, mode: WhiteoutMode) -> Result<UnpackStats, UnpackError> {
        unpack_layer(tar, Compression::None, target, mode)
    }

    /// A sandbox: `root/target` is where layers go; `root/outside` must
    /// stay untouched.
    struct Sandbox {
        _dir: tempfile::TempDir,
        target: PathBuf,
        outside: PathBuf,
    }

    fn sandbox() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a").join("b").join("target");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&target).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), b"do not touch").unwrap();
        Sandbox {
            _dir: dir,
            target,
            outside,
        }
    }

    impl Sandbox {
        /// Everything under the sandbox root outside the target, so tests
        /// can check nothing appeared or changed there.
        fn outside_listing(&self) -> Vec<(PathBuf, Vec<u8>)> {
            fn walk(dir: &Path, skip: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
                for e in fs::read_dir(dir).unwrap() {
                    let p = e.unwrap().path();
                    if p == skip {
                        continue;
                    }
                    let m = fs::symlink_metadata(&p).unwrap();
                    if m.is_dir() {
                        out.push((p.clone(), Vec::new()));
                        walk(&p, skip, out);
                    } else {
                        out.push((p.clone(), fs::read(&p).unwrap_or_default()));
                    }
                }
            }
            let mut out = Vec::new();
            walk(self._dir.path(), &self.target, &mut out);
            out.sort();
            out
        }
    }

    fn assert_unsafe(r: Result<UnpackStats, UnpackError>, entry: &str) {
        match r {
            Err(UnpackError::Unsafe { entry: e, reason }) => {
                assert_eq!(e, entry, "{reason}");
            }
            other => panic!("expected Unsafe for {entry:?}, got {other:?}"),
        }
    }

    #[test]
    fn normal_entries_with_modes() {
        let sb = sandbox();
        let tar = tar_of(&[
            E::Dir("./usr/", 0o755),
            E::Dir("usr/bin/", 0o555),
            E::File("usr/bin/tool", b"#!/bin/sh\necho hi\n", 0o755),
            E::File("etc/config", b"key=value\n", 0o640),
            E::Sym("usr/bin/alias", "tool"),
            E::Sym("abs", "/etc/config"),
            E::Link("etc/config-link", "etc/config"),
        ]);
        let stats = unpack(&tar, &sb.target, WhiteoutMode::Apply).unwrap();
        assert_eq!(
            stats,
            UnpackStats {
                files: 2,
                dirs: 2,
                symlinks: 2,
                hardlinks: 1,
                whiteouts: 0,
                skipped_devices: 0,
                bytes: 28,
            }
        );
        let t = &sb.target;
        assert_eq!(
            fs::read(t.join("usr/bin/tool")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        let mode = |p: &str| fs::symlink_metadata(t.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("usr/bin/tool"), 0o755);
        assert_eq!(mode("usr/bin"), 0o555);
        assert_eq!(mode("etc/config"), 0o640);
        assert_eq!(mode("etc"), 0o755, "implicit parent");
        assert_eq!(
            fs::read_link(t.join("usr/bin/alias")).unwrap(),
            Path::new("tool")
        );
        assert_eq!(
            fs::read_link(t.join("abs")).unwrap(),
            Path::new("/etc/config")
        );
        let a = fs::metadata(t.join("etc/config")).unwrap();
        let b = fs::metadata(t.join("etc/config-link")).unwrap();
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
        assert_eq!(mtime_of(&t.join("usr/bin/tool")), 1_600_000_000);
        assert_eq!(mtime_of(&t.join("usr/bin")), 1_600_000_000);
        assert_eq!(mtime_of(&t.join("abs")), 1_600_000_000);
    }

    #[test]
    fn ownership_and_setuid_are_kept_as_root() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test checks chown and must run as root"
        );
        let sb = sandbox();
        let tar = tar_of(&[E::Owned("bin/su", b"x", 1234, 5678)]);
        unpack(&tar, &sb.target, WhiteoutMode::Apply).unwrap();
        let m = fs::symlink_metadata(sb.target.join("bin/su")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        assert_eq!(m.mode() & 0o7777, 0o4755);
    }

    #[test]
    fn long_names_via_gnu_and_pax() {
        let sb = sandbox();
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(150));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &b"long"[..]).unwrap();
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "sym", &long).unwrap();
        let pax_path = "p".repeat(22);
        b.append_pax_extensions([("path", pax_path.as_bytes()), ("uid", b"7".as_slice())])
            .unwrap();
        let mut h = Header::new_ustar();
        h.set_path("short").unwrap();
        h.set_size(3);
        h.set_mode(0o600);
        h.set_cksum();
        b.append(&h, &b"pax"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let stats = unpack(&tar, &sb.target, WhiteoutMode::Apply).unwrap();
        assert_eq!(stats.files, 2);
        assert_eq!(fs::read(sb.target.join(&long)).unwrap(), b"long");
        assert_eq!(
            fs::read_link(sb.target.join("sym")).unwrap(),
            Path::new(&long)
        );
        assert_eq!(fs::read(sb.target.join("p".repeat(22))).unwrap(), b"pax");
        if rustix::process::geteuid().is_root() {
            let m = fs::metadata(sb.target.join("p".repeat(22))).unwrap();
            assert_eq!(m.uid(), 7, "pax uid wins over the header");
        }
        assert!(!sb.target.join("short").exists());
    }

    #[test]
    fn allowed_xattrs_only() {
        let sb = sandbox();
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.user.comment", b"hello".as_slice()),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y".as_slice()),
            (
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:etc_t:s0".as_slice(),
            ),
        ])
        .unwrap();
        let mut h = Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, "dir/file", &b"x"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        unpack(&tar, &sb.target, WhiteoutMode::Overlay).unwrap();
        let file = sb.target.join("dir/file");
        let mut value = [0u8; 64];
        let n = rustix::fs::lgetxattr(&file, "user.comment", &mut value).unwrap();
        assert_eq!(&value[..n], b"hello");
        assert!(rustix::fs::lgetxattr(&file, "trusted.overlay.opaque", &mut value).is_err());
        assert!(rustix::fs::lgetxattr(&file, "security.selinux", &mut value)
            .map(|n| &value[..n] != b"system_u:object_r:etc_t:s0")
            .unwrap_or(true));
    }

    #[test]
    fn gzip_layers() {
        let sb = sandbox();
        let tar = tar_of(&[E::File("hello", b"gzip world", 0o644)]);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&tar).unwrap();
        let gz = enc.finish().unwrap();
        let layer = sb.target.parent().unwrap().join("layer.tar.gz");
        fs::write(&layer, &gz).unwrap();
        let stats = unpack_layer_file(
            &layer,
            crate::manifest::OCI_LAYER_GZIP,
            &sb.target,
            WhiteoutMode::Apply,
        )
        .unwrap();
        assert_eq!(stats.files, 1);
        assert_eq!(fs::read(sb.target.join("hello")).unwrap(), b"gzip world");
    }

    #[test]
    fn zstd_layers_from_ruzstd() {
        let sb = sandbox();
        let tar = tar_of(&[E::File("hello", b"zstd world", 0o644)]);
        let zst = ruzstd::encoding::compress_to_vec(
            &tar[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        unpack_layer(&zst[..], Compression::Zstd, &sb.target, WhiteoutMode::Apply).unwrap();
        assert_eq!(fs::read(sb.target.join("hello")).unwrap(), b"zstd world");
    }

    /// Fixtures made with the reference `zstd` CLI (level 19, and a tar
    /// split into two separately compressed frames).
    #[test]
    fn zstd_layers_from_the_reference_encoder() {
        let single: &[u8] = include_bytes!("testdata/hello.tar.zst");
        let two_frames: &[u8] = include_bytes!("testdata/hello-two-frames.tar.zst");
        // A skippable frame (magic 0x184D2A50, 4 bytes of payload) first.
        let mut skippable = vec![0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
        skippable.extend_from_slice(single);
        for bytes in [single, two_frames, &skippable[..]] {
            let sb = sandbox();
            let stats =
                unpack_layer(bytes, Compression::Zstd, &sb.target, WhiteoutMode::Apply).unwrap();
            assert_eq!((stats.files, stats.dirs), (2, 1));
            assert_eq!(
                fs::read(sb.target.join("etc/motd")).unwrap(),
                b"welcome to berth\n"
            );
            assert_eq!(
                fs::read(sb.target.join("hello.txt")).unwrap(),
                b"hello from zstd\n".repeat(200)
            );
        }
        let mut corrupt = single.to_vec();
        let mid = corrupt.len() / 2;
        corrupt[mid] ^= 0xff;
        let sb = sandbox();
        assert!(unpack_layer(
            &corrupt[..],
            Compression::Zstd,
            &sb.target,
            WhiteoutMode::Apply
        )
        .is_err());
    }

    #[test]
    fn unknown_media_type_is_refused() {
        let sb = sandbox();
        let layer = sb.target.parent().unwrap().join("layer");
        fs::write(&layer, b"").unwrap();
        assert!(matches!(
            unpack_layer_file(&layer, "application/x-rar", &sb.target, WhiteoutMode::Apply),
            Err(UnpackError::UnsupportedMediaType(m)) if m == "application/x-rar"
        ));
    }

    #[test]
    fn whiteouts_applied_over_a_lower_layer() {
        let sb = sandbox();
        let lower = tar_of(&[
            E::File("keep", b"k", 0o644),
            E::File("gone", b"g", 0o644),
            E::Dir("gonedir/", 0o755),
            E::File("gonedir/inner", b"i", 0o644),
            E::Dir("opq/", 0o755),
            E::File("opq/old", b"o", 0o644),
            E::Dir("opq/olddir/", 0o755),
            E::File("opq/olddir/x", b"x", 0o644),
        ]);
        unpack(&lower, &sb.target, WhiteoutMode::Apply).unwrap();
        let upper = tar_of(&[
            E::File(".wh.gone", b"", 0o644),
            E::File(".wh.gonedir", b"", 0o644),
            E::Dir("opq/", 0o755),
            E::File("opq/new", b"n", 0o644),
            E::File("opq/.wh..wh..opq", b"", 0o644),
            E::File(".wh.never-existed", b"", 0o644),
            E::File("fresh", b"f", 0o644),
            // A whiteout never hides its own layer's files.
            E::File(".wh.fresh", b"", 0o644),
        ]);
        let stats = unpack(&upper, &sb.target, WhiteoutMode::Apply).unwrap();
        assert_eq!(stats.whiteouts, 5);
        let t = &sb.target;
        assert!(t.join("keep").exists());
        assert!(!t.join("gone").exists());
        assert!(!t.join("gonedir").exists());
        assert!(t.join("fresh").exists());
        let mut opq: Vec<_> = fs::read_dir(t.join("opq"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        opq.sort();
        assert_eq!(opq, vec![OsStr::new("new")]);
        assert!(!t.join(".wh.gone").exists());
    }

    #[test]
    fn overlay_whiteouts_are_char_devices_and_xattrs() {
        assert!(
            rustix::process::geteuid().is_root(),
            "overlay whiteouts need root (mknod, trusted.* xattrs); run this test as root"
        );
        let sb = sandbox();
        let tar = tar_of(&[
            E::File("sub/.wh.gone", b"", 0o644),
            E::Dir("opq/", 0o755),
            E::File("opq/.wh..wh..opq", b"", 0o644),
            E::File("opq/kept", b"k", 0o644),
        ]);
        let stats = unpack(&tar, &sb.target, WhiteoutMode::Overlay).unwrap();
        assert_eq!(stats.whiteouts, 2);
        let m = fs::symlink_metadata(sb.target.join("sub/gone")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), 0);
        assert!(!sb.target.join("sub/.wh.gone").exists());
        let mut value = [0u8; 8];
        let n = rustix::fs::lgetxattr(sb.target.join("opq"), "trusted.overlay.opaque", &mut value)
            .unwrap();
        assert_eq!(&value[..n], b"y");
        assert!(sb.target.join("opq/kept").exists());
        assert!(!sb.target.join("opq/.wh..wh..opq").exists());
    }

    #[test]
    fn dotdot_is_refused_and_nothing_written_outside() {
        for name in ["../evil", "../../outside/evil", "a/../../evil", "./.."] {
            let sb = sandbox();
            let before = sb.outside_listing();
            let tar = tar_of(&[E::File(name, b"pwned", 0o644)]);
            assert_unsafe(unpack(&tar, &sb.target, WhiteoutMode::Apply), name);
            assert_eq!(sb.outside_listing(), before, "{name}");
        }
    }

    #[test]
    fn absolute_names_stay_inside() {
        let sb = sandbox();
        let before = sb.outside_listing();
        let tar = tar_of(&[
            E::File("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644),
            E::File("//./etc//group", b"root:x:0:\n", 0o644),
        ]);
        unpack(&tar, &sb.target, WhiteoutMode::Apply).unwrap();
        assert_eq!(
            fs::read(sb.target.join("etc/passwd")).unwrap(),
            b"root:x:0:0::/root:/bin/sh\n"
        );
        assert!(sb.target.join("etc/group").exists());
        assert_eq!(sb.outside_listing(), before);
    }

    #[test]
    fn writing_through_a_symlink_is_refused() {
        for link in ["OUTSIDE", "../../../outside", "/"] {
            for (second, name) in [
                (E::File("link/file", b"pwned", 0o644), "link/file"),
                (E::Dir("link/d/", 0o755), "link/d/"),
                (E::Sym("link/s", "x"), "link/s"),
                (E::Link("link/l", "link"), "link/l"),
                (
                    E::File("link/deeper/file", b"pwned", 0o644),
                    "link/deeper/file",
                ),
            ] {
                let sb = sandbox();
                let link = if link == "OUTSIDE" {
                    sb.outside.to_str().unwrap().to_string()
                } else {
                    link.to_string()
                };
                let before = sb.outside_listing();
                let tar = tar_of(&[E::Sym("link", &link), second]);
                assert_unsafe(unpack(&tar, &sb.target, WhiteoutMode::Apply), name);
                assert_eq!(sb.outside_listing(), before, "{link} {name}");
            }
        }
    }

    #[test]
    fn a_file_replaces_a_symlink_instead_of_writing_through_it() {
        let sb = sandbox();
        let before = sb.outside_listing();
        let secret = sb.outside.join("secret");
        let tar = tar_of(&[
            E::Sym("victim", secret.to_str().unwrap()),
            E::File("victim", b"replaced", 0o777),
            E::Sym("dir", sb.outside.to_str().unwrap()),
            E::Dir("dir/", 0o777),
        ]);
        unpack(&tar, &sb.target, WhiteoutMode::Apply).unwrap();
        assert_eq!(fs::read(sb.target.join("victim")).unwrap(), b"replaced");
        assert!(fs::symlink_metadata(sb.target.join("dir"))
            .unwrap()
            .is_dir());
        assert_eq!(sb.outside_listing(), before);
        assert_eq!(
            fs::metadata(&sb.outside).unwrap().mode() & 0o777,
            0o755,
            "outside dir mode untouched"
        );
    }

    #[test]
    fn deferred_dir_metadata_never_follows_a_later_symlink() {
        let sb = sandbox();
        let outside_mode = fs::metadata(&sb.outside).unwrap().mode() & 0o7777;
        let tar = tar_of(&[
            E::Dir("d/", 0o700),
            // A later entry replaces the directory with a link to outside.
            E::Sym("d", sb.outside.to_str().unwrap()),
        ]);
        unpack(&tar, &sb.target, WhiteoutMode::Apply).unwrap();
        assert_eq!(
            fs::metadata(&sb.outside).unwrap().mode() & 0o7777,
            outside_mode
        );
        assert!(fs::symlink_metadata(sb.target.join("d"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn type_changes_replace_the_old_entry() {
        let sb = sandbox();
        let lower = tar_of(&[
            E::Dir("was-dir/", 0o755),
            E::File("was-dir/child", b"c", 0o644),
            E::File("was-file", b"f", 0o644),
        ]);
        unpack(&lower, &sb.target, WhiteoutMode::Apply).unwrap();
        let upper = tar_of(&[
            E::File("was-dir", b"now a file", 0o644),
            E::Dir("was-file/", 0o755),
            E::File("was-file/inside", b"i", 0o644),
        ]);
        unpack(&upper, &sb.target, WhiteoutMode::Apply).unwrap();
        assert_eq!(fs::read(sb.target.join("was-dir")).unwrap(), b"now a file");
        assert!(sb.target.join("was-file/inside").exists());
    }

    #[test]
    fn hardlinks_outside_are_refused() {
        let sb = sandbox();
        let before = sb.outside_listing();
        for (target, expect_unsafe) in [
            ("../../etc/passwd", true),
            ("../outside/secret", true),
            ("/etc/passwd", false), // means <target>/etc/passwd: missing
        ] {
            let tar = tar_of(&[E::Link("innocent", target)]);
            let r = unpack(&tar, &sb.target, WhiteoutMode::Apply);
            if expect_unsafe {
                assert_unsafe(r, "innocent");
            } else {
                assert!(matches!(r, Err(UnpackError::Invalid { .. })), "{r:?}");
            }
        }
        // Through a symlink inside the target.
        let tar = tar_of(&[
            E::Sym("etc", sb.outside.to_str().unwrap()),
            E::Link("stolen", "etc/secret"),
        ]);
        assert_unsafe(unpack(&tar, &sb.target, WhiteoutMode::Apply), "stolen");
        assert!(!sb.target.join("stolen").exists());
        assert!(!sb.target.join("innocent").exists());
        assert_eq!(fs::metadata(sb.outside.join("secret")).unwrap().nlink(), 1);
        assert_eq!(sb.outside_listing(), before);
    }

    #[test]
    fn escaping_whiteouts_are_refused() {
        for mode in [WhiteoutMode::Apply, WhiteoutMode::Overlay] {
            let sb = sandbox();
            let before = sb.outside_listing();
            for name in [".wh...", "sub/.wh...", ".wh..", "../.wh.outside", ".wh."] {
                let tar = tar_of(&[E::Dir("sub/", 0o755), E::File(name, b"", 0o644)]);
                assert_unsafe(unpack(&tar, &sb.target, mode), name);
            }
            // Through a symlink to outside.
            let tar = tar_of(&[
                E::Sym("link", sb.outside.to_str().unwrap()),
                E::File("link/.wh.secret", b"", 0o644),
            ]);
            assert_unsafe(unpack(&tar, &sb.target, mode), "link/.wh.secret");
            let tar = tar_of(&[
                E::Sym("link", sb.outside.to_str().unwrap()),
                E::File("link/.wh..wh..opq", b"", 0o644),
            ]);
            assert_unsafe(unpack(&tar, &sb.target, mode), "link/.wh..wh..opq");
            assert_eq!(sb.outside_listing(), before);
            assert!(sb.target.parent().unwrap().exists());
        }
    }

    #[test]
    fn devices_and_fifos_are_skipped() {
        let sb = sandbox();
        let tar = tar_of(&[
            E::Char("dev/null"),
            E::Fifo("run/fifo"),
            E::File("ok", b"ok", 0o644),
        ]);
        let stats = unpack(&tar, &sb.target, WhiteoutMode::Apply).unwrap();
        assert_eq!(stats.skipped_devices, 2);
        assert_eq!(stats.files, 1);
        assert!(!sb.target.join("dev/null").exists());
        assert!(!sb.target.join("run/fifo").exists());
    }
}
