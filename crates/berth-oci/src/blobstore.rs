//! A content-addressed blob store on local disk, used by the registry server
//! and by the agent's layer cache.
//!
//! Layout under the store's root:
//!
//! ```text
//! ROOT/blobs/sha256/<hex>         finished blobs, named by their digest
//! ROOT/uploads/<id>/data          bytes received so far for an upload session
//! ROOT/uploads/<id>/startedat     unix seconds when the session began
//! ROOT/tmp/                       scratch files; emptied on open
//! ```
//!
//! The invariant: a file appears under `blobs/` only after its bytes were
//! hashed and matched the digest that names it, and after it was fsynced.
//! Every blob is written somewhere else first (`tmp/` or an upload session),
//! verified, fsynced, renamed into place, and then the directory is fsynced.
//! A crash at any point leaves either no blob or a correct one.
//!
//! The API is synchronous `std::fs`; async callers wrap calls in
//! `tokio::task::spawn_blocking`. Upload sessions survive restarts, so a
//! client can resume a push after the registry restarts.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::digest::{Digest, Hasher};

/// Why a blob store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// a filesystem operation failed
    #[error("blob store i/o error at {path}: {source}")]
    Io {
        /// the file or directory involved
        path: PathBuf,
        /// the underlying error
        source: io::Error,
    },
    /// the bytes do not hash to the digest they were offered under
    #[error("content does not match digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// the digest the caller claimed
        expected: Digest,
        /// the digest of the bytes actually received
        actual: Digest,
    },
    /// no upload session with this id (or the id is not a valid session id)
    #[error("upload session {0:?} does not exist")]
    UploadUnknown(String),
    /// a chunk was offered at an offset other than the end of the upload
    #[error("upload chunk starts at offset {expected} but the session holds {actual} bytes")]
    RangeMismatch {
        /// the offset the client said the chunk starts at
        expected: u64,
        /// the number of bytes the session actually holds
        actual: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A content-addressed blob store rooted at one directory. Cheap to clone;
/// clones share the same directory and upload-session locks.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    blobs: PathBuf,
    uploads: PathBuf,
    tmp: PathBuf,
    /// Serialises operations on one upload session within this process, so
    /// that an append cannot race a finish or a cancel.
    session_locks: Arc<Mutex<HashMap<String, Arc<Mutex<()>>>>>,
}

impl BlobStore {
    /// Opens (creating if needed) the store at `root`. Leftovers in
    /// `ROOT/tmp` are removed; upload sessions are kept so they can be
    /// resumed.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        let store = Self {
            root: root.to_path_buf(),
            blobs: root.join("blobs").join("sha256"),
            uploads: root.join("uploads"),
            tmp: root.join("tmp"),
            session_locks: Arc::default(),
        };
        for dir in [&store.blobs, &store.uploads, &store.tmp] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        for entry in fs::read_dir(&store.tmp).map_err(io_err(&store.tmp))? {
            let entry = entry.map_err(io_err(&store.tmp))?;
            let path = entry.path();
            let is_dir = entry.file_type().map_err(io_err(&path))?.is_dir();
            let removed = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(store)
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob named `d` lives (whether or not it exists).
    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    /// A fresh, not yet existing path inside `ROOT/tmp`, on the same
    /// filesystem as the blobs: write a download there and hand it to
    /// [`BlobStore::put_file_verified`] to have it moved in without a copy.
    /// Anything left there is removed the next time the store is opened.
    pub fn temp_path(&self) -> PathBuf {
        self.tmp.join(random_id())
    }

    /// The size of blob `d`, or `None` if the store does not hold it.
    pub fn size(&self, d: &Digest) -> Result<Option<u64>, BlobError> {
        let path = self.path(d);
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Whether the store holds blob `d`.
    pub fn contains(&self, d: &Digest) -> Result<bool, BlobError> {
        Ok(self.size(d)?.is_some())
    }

    /// Opens blob `d` for reading, or `None` if the store does not hold it.
    pub fn open_blob(&self, d: &Digest) -> Result<Option<File>, BlobError> {
        let path = self.path(d);
        match File::open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Reads all of blob `d` into memory (meant for small blobs: manifests,
    /// configs), or `None` if the store does not hold it.
    pub fn read(&self, d: &Digest) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path(d);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Stores `data` and returns its digest. Storing a blob the store
    /// already holds is a no-op.
    pub fn put(&self, data: &[u8]) -> Result<Digest, BlobError> {
        let digest = Digest::of(data);
        self.write_new(&digest, data)?;
        Ok(digest)
    }

    /// Stores `data` under `expected` if it hashes to it; otherwise returns
    /// [`BlobError::DigestMismatch`] and stores nothing.
    pub fn put_verified(&self, expected: &Digest, data: &[u8]) -> Result<(), BlobError> {
        let actual = Digest::of(data);
        if &actual != expected {
            return Err(BlobError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        self.write_new(expected, data)
    }

    /// Moves the file at `src` into the store as blob `expected`, after
    /// checking that its bytes hash to `expected`; returns its size.
    ///
    /// The file is first moved into the store's private `tmp/` directory (or
    /// copied there when `src` is on another filesystem) and hashed there, so
    /// the bytes that are checked are the bytes that are stored. On success
    /// `src` no longer exists. On [`BlobError::DigestMismatch`] nothing is
    /// stored and `src` is left where it was.
    pub fn put_file_verified(&self, expected: &Digest, src: &Path) -> Result<u64, BlobError> {
        let staged = self.temp_path();
        let moved = match fs::rename(src, &staged) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                let mut from = File::open(src).map_err(io_err(src))?;
                let mut to = File::create_new(&staged).map_err(io_err(&staged))?;
                io::copy(&mut from, &mut to).map_err(io_err(&staged))?;
                false
            }
            Err(e) => return Err(io_err(src)(e)),
        };
        let result = (|| {
            let mut file = File::open(&staged).map_err(io_err(&staged))?;
            let (actual, size) = hash_reader(&mut file).map_err(io_err(&staged))?;
            if &actual != expected {
                return Err(BlobError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
            file.sync_all().map_err(io_err(&staged))?;
            self.install(&staged, expected)?;
            Ok(size)
        })();
        match &result {
            Ok(_) if !moved => {
                fs::remove_file(src).map_err(io_err(src))?;
            }
            Ok(_) => {}
            Err(_) => {
                // Put the caller's file back (or drop our copy); the error
                // that matters is the one already in hand.
                let _ = if moved {
                    fs::rename(&staged, src)
                } else {
                    fs::remove_file(&staged)
                };
            }
        }
        result
    }

    /// Deletes blob `d`; returns whether it existed.
    pub fn delete(&self, d: &Digest) -> Result<bool, BlobError> {
        let path = self.path(d);
        match fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(&self.blobs)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Every blob the store holds, with its size, sorted by digest.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>, BlobError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs).map_err(io_err(&self.blobs))? {
            let entry = entry.map_err(io_err(&self.blobs))?;
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
            else {
                continue;
            };
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_file() => out.push((digest, m.len())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        out.sort();
        Ok(out)
    }

    /// Starts a resumable upload session and returns its id (32 lowercase
    /// hex characters).
    pub fn start_upload(&self) -> Result<String, BlobError> {
        let id = random_id();
        let dir = self.uploads.join(&id);
        fs::create_dir(&dir).map_err(io_err(&dir))?;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let startedat = dir.join("startedat");
        fs::write(&startedat, started.to_string()).map_err(io_err(&startedat))?;
        let data = dir.join("data");
        File::create_new(&data)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&data))?;
        sync_dir(&dir)?;
        sync_dir(&self.uploads)?;
        Ok(id)
    }

    /// The number of bytes upload `id` holds so far.
    pub fn upload_size(&self, id: &str) -> Result<u64, BlobError> {
        let data = self.session_data(id)?;
        let lock = self.session_lock(id);
        let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);
        data_len(id, &data)
    }

    /// When upload `id` was started.
    pub fn upload_started_at(&self, id: &str) -> Result<SystemTime, BlobError> {
        self.session_data(id)?;
        let path = self.uploads.join(id).join("startedat");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::UploadUnknown(id.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let secs = text.trim().parse::<u64>().unwrap_or(0);
        Ok(UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// The ids of all upload sessions on disk, sorted.
    pub fn uploads(&self) -> Result<Vec<String>, BlobError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.uploads).map_err(io_err(&self.uploads))? {
            let entry = entry.map_err(io_err(&self.uploads))?;
            if let Some(id) = entry.file_name().to_str() {
                if valid_upload_id(id) {
                    out.push(id.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Appends `data` to upload `id` and returns the new size. When
    /// `expected_offset` is given it must equal the current size, otherwise
    /// [`BlobError::RangeMismatch`] is returned and nothing is written. The
    /// chunk is fsynced before this returns; a failed write is rolled back so
    /// the session keeps its previous size.
    pub fn upload_append(
        &self,
        id: &str,
        expected_offset: Option<u64>,
        data: &[u8],
    ) -> Result<u64, BlobError> {
        let path = self.session_data(id)?;
        let lock = self.session_lock(id);
        let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut file = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::UploadUnknown(id.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let current = file.metadata().map_err(io_err(&path))?.len();
        if let Some(offset) = expected_offset {
            if offset != current {
                return Err(BlobError::RangeMismatch {
                    expected: offset,
                    actual: current,
                });
            }
        }
        let written = file
            .seek(SeekFrom::Start(current))
            .and_then(|_| file.write_all(data))
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            let _ = file.set_len(current);
            return Err(io_err(&path)(e));
        }
        Ok(current + data.len() as u64)
    }

    /// Finishes upload `id`: hashes what it holds and, if that matches
    /// `expected`, moves it into place as a blob and returns its size. On a
    /// mismatch the session is removed (the client must start over) and
    /// [`BlobError::DigestMismatch`] is returned.
    pub fn finish_upload(&self, id: &str, expected: &Digest) -> Result<u64, BlobError> {
        let path = self.session_data(id)?;
        let lock = self.session_lock(id);
        let held = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::UploadUnknown(id.to_string()))
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let (actual, size) = hash_reader(&mut file).map_err(io_err(&path))?;
        let result = if &actual == expected {
            file.sync_all()
                .map_err(io_err(&path))
                .and_then(|()| self.install(&path, expected))
        } else {
            Err(BlobError::DigestMismatch {
                expected: expected.clone(),
                actual,
            })
        };
        drop(file);
        if let Err(e @ BlobError::Io { .. }) = result {
            // The session is intact; let the client retry the finish.
            return Err(e);
        }
        self.remove_session(id)?;
        drop(held);
        self.forget_session_lock(id);
        result.map(|()| size)
    }

    /// Abandons upload `id`; returns whether it existed.
    pub fn cancel_upload(&self, id: &str) -> Result<bool, BlobError> {
        if !valid_upload_id(id) {
            return Ok(false);
        }
        let lock = self.session_lock(id);
        let held = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let existed = self.remove_session(id)?;
        drop(held);
        self.forget_session_lock(id);
        Ok(existed)
    }

    /// Writes `data` (already known to hash to `digest`) as a new blob.
    fn write_new(&self, digest: &Digest, data: &[u8]) -> Result<(), BlobError> {
        if self.contains(digest)? {
            return Ok(());
        }
        let staged = self.temp_path();
        let written = File::create_new(&staged)
            .and_then(|mut f| f.write_all(data).and_then(|()| f.sync_all()))
            .map_err(io_err(&staged))
            .and_then(|()| self.install(&staged, digest));
        if written.is_err() {
            let _ = fs::remove_file(&staged);
        }
        written
    }

    /// Renames a verified, fsynced file into place and makes the rename
    /// durable.
    fn install(&self, verified: &Path, digest: &Digest) -> Result<(), BlobError> {
        let dest = self.path(digest);
        fs::rename(verified, &dest).map_err(io_err(&dest))?;
        sync_dir(&self.blobs)
    }

    /// The data file of session `id`, after checking that `id` is a
    /// well-formed id and the session exists.
    fn session_data(&self, id: &str) -> Result<PathBuf, BlobError> {
        if !valid_upload_id(id) {
            return Err(BlobError::UploadUnknown(id.to_string()));
        }
        let dir = self.uploads.join(id);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => Ok(dir.join("data")),
            Ok(_) => Err(BlobError::UploadUnknown(id.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(BlobError::UploadUnknown(id.to_string()))
            }
            Err(e) => Err(io_err(&dir)(e)),
        }
    }

    fn remove_session(&self, id: &str) -> Result<bool, BlobError> {
        let dir = self.uploads.join(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {
                sync_dir(&self.uploads)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&dir)(e)),
        }
    }

    fn session_lock(&self, id: &str) -> Arc<Mutex<()>> {
        let mut locks = self
            .session_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        locks.entry(id.to_string()).or_default().clone()
    }

    fn forget_session_lock(&self, id: &str) {
        let mut locks = self
            .session_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if locks.get(id).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(id);
        }
    }
}

/// Whether `id` could be a session id: non-empty ASCII letters, digits and
/// `-`, so it can never name a path outside `ROOT/uploads`.
fn valid_upload_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn data_len(id: &str, data: &Path) -> Result<u64, BlobError> {
    match fs::metadata(data) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(BlobError::UploadUnknown(id.to_string()))
        }
        Err(e) => Err(io_err(data)(e)),
    }
}

/// 32 random lowercase hex characters.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: fall back to something unique within this
        // host (ids need to be unique, not secret).
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_nanos();
        bytes = (nanos ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    hex::encode(bytes)
}

/// Hashes everything `r` yields; returns the digest and the byte count.
pub(crate) fn hash_reader(r: &mut impl Read) -> io::Result<(Digest, u64)> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = hasher.len();
    Ok((hasher.finish(), len))
}

/// Fsyncs a directory so that renames and unlinks in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn put_read_delete() {
        let (_dir, s) = store();
        let d = s.put(b"hello").unwrap();
        assert_eq!(d, Digest::of(b"hello"));
        assert_eq!(s.read(&d).unwrap().unwrap(), b"hello");
        assert_eq!(s.size(&d).unwrap(), Some(5));
        let mut content = String::new();
        s.open_blob(&d)
            .unwrap()
            .unwrap()
            .read_to_string(&mut content)
            .unwrap();
        assert_eq!(content, "hello");
        assert_eq!(s.list().unwrap(), vec![(d.clone(), 5)]);
        // Idempotent.
        assert_eq!(s.put(b"hello").unwrap(), d);
        assert!(s.delete(&d).unwrap());
        assert!(!s.delete(&d).unwrap());
        assert_eq!(s.read(&d).unwrap(), None);
        assert_eq!(s.size(&d).unwrap(), None);
        assert!(s.open_blob(&d).unwrap().is_none());
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn mismatched_put_stores_nothing() {
        let (dir, s) = store();
        let claimed = Digest::of(b"what the client said");
        let err = s.put_verified(&claimed, b"other bytes").unwrap_err();
        match err {
            BlobError::DigestMismatch { expected, actual } => {
                assert_eq!(expected, claimed);
                assert_eq!(actual, Digest::of(b"other bytes"));
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(s.size(&claimed).unwrap(), None);
        assert_eq!(s.size(&Digest::of(b"other bytes")).unwrap(), None);
        assert!(s.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        s.put_verified(&Digest::of(b"ok"), b"ok").unwrap();
        assert_eq!(s.read(&Digest::of(b"ok")).unwrap().unwrap(), b"ok");
    }

    #[test]
    fn put_file_verified_moves_or_refuses() {
        let (dir, s) = store();
        let src = dir.path().join("download");
        fs::write(&src, b"layer bytes").unwrap();
        let wrong = Digest::of(b"nope");
        assert!(matches!(
            s.put_file_verified(&wrong, &src),
            Err(BlobError::DigestMismatch { .. })
        ));
        assert_eq!(fs::read(&src).unwrap(), b"layer bytes", "source kept");
        assert!(s.list().unwrap().is_empty());
        let right = Digest::of(b"layer bytes");
        assert_eq!(s.put_file_verified(&right, &src).unwrap(), 11);
        assert!(!src.exists());
        assert_eq!(s.read(&right).unwrap().unwrap(), b"layer bytes");

        let staged = s.temp_path();
        fs::write(&staged, b"via tmp").unwrap();
        s.put_file_verified(&Digest::of(b"via tmp"), &staged)
            .unwrap();
        assert!(!staged.exists());
    }

    #[test]
    fn upload_in_three_chunks() {
        let (_dir, s) = store();
        let id = s.start_upload().unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(s.upload_size(&id).unwrap(), 0);
        assert!(s.upload_started_at(&id).unwrap() > UNIX_EPOCH);
        assert_eq!(s.uploads().unwrap(), vec![id.clone()]);
        assert_eq!(s.upload_append(&id, Some(0), b"abc").unwrap(), 3);
        assert_eq!(s.upload_append(&id, None, b"def").unwrap(), 6);
        assert_eq!(s.upload_append(&id, Some(6), b"gh").unwrap(), 8);
        assert_eq!(s.upload_size(&id).unwrap(), 8);
        let d = Digest::of(b"abcdefgh");
        assert_eq!(s.finish_upload(&id, &d).unwrap(), 8);
        assert_eq!(s.read(&d).unwrap().unwrap(), b"abcdefgh");
        assert!(matches!(
            s.upload_size(&id),
            Err(BlobError::UploadUnknown(_))
        ));
        assert!(s.uploads().unwrap().is_empty());
    }

    #[test]
    fn wrong_offset_is_a_range_mismatch() {
        let (_dir, s) = store();
        let id = s.start_upload().unwrap();
        s.upload_append(&id, Some(0), b"abc").unwrap();
        match s.upload_append(&id, Some(2), b"zzz").unwrap_err() {
            BlobError::RangeMismatch { expected, actual } => {
                assert_eq!((expected, actual), (2, 3));
            }
            other => panic!("unexpected {other}"),
        }
        assert!(matches!(
            s.upload_append(&id, Some(10), b"zzz"),
            Err(BlobError::RangeMismatch { .. })
        ));
        assert_eq!(s.upload_size(&id).unwrap(), 3, "nothing written");
    }

    #[test]
    fn finish_with_wrong_digest_leaves_nothing() {
        let (dir, s) = store();
        let id = s.start_upload().unwrap();
        s.upload_append(&id, Some(0), b"actual").unwrap();
        let claimed = Digest::of(b"claimed");
        assert!(matches!(
            s.finish_upload(&id, &claimed),
            Err(BlobError::DigestMismatch { .. })
        ));
        assert_eq!(s.size(&claimed).unwrap(), None);
        assert_eq!(s.size(&Digest::of(b"actual")).unwrap(), None);
        assert!(s.list().unwrap().is_empty());
        assert!(matches!(
            s.upload_size(&id),
            Err(BlobError::UploadUnknown(_))
        ));
        assert!(!dir.path().join("uploads").join(&id).exists());
    }

    #[test]
    fn restart_mid_upload_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let id = s.start_upload().unwrap();
        s.upload_append(&id, Some(0), b"first half, ").unwrap();
        drop(s);

        let s = BlobStore::open(dir.path()).unwrap();
        assert!(s.list().unwrap().is_empty(), "no partial blob");
        assert_eq!(s.upload_size(&id).unwrap(), 12);
        s.upload_append(&id, Some(12), b"second half").unwrap();
        let d = Digest::of(b"first half, second half");
        assert_eq!(s.finish_upload(&id, &d).unwrap(), 23);
        assert_eq!(s.list().unwrap(), vec![(d, 23)]);
    }

    #[test]
    fn open_clears_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        fs::write(s.temp_path(), b"half a blob").unwrap();
        fs::create_dir(dir.path().join("tmp").join("stray-dir")).unwrap();
        fs::write(dir.path().join("tmp").join("stray-dir").join("f"), b"x").unwrap();
        drop(s);
        let _s = BlobStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn bad_upload_ids_are_unknown() {
        let (dir, s) = store();
        fs::create_dir_all(dir.path().join("x")).unwrap();
        fs::write(dir.path().join("x").join("data"), b"").unwrap();
        for id in ["../x", "..", "", "a/b", "/etc", "nope"] {
            assert!(
                matches!(s.upload_size(id), Err(BlobError::UploadUnknown(_))),
                "{id:?}"
            );
            assert!(
                matches!(
                    s.upload_append(id, None, b"evil"),
                    Err(BlobError::UploadUnknown(_))
                ),
                "{id:?}"
            );
            assert!(matches!(
                s.finish_upload(id, &Digest::of(b"")),
                Err(BlobError::UploadUnknown(_))
            ));
            assert!(!s.cancel_upload(id).unwrap());
        }
        assert_eq!(fs::read(dir.path().join("x").join("data")).unwrap(), b"");
    }

    #[test]
    fn cancel_removes_session() {
        let (_dir, s) = store();
        let id = s.start_upload().unwrap();
        s.upload_append(&id, None, b"abc").unwrap();
        assert!(s.cancel_upload(&id).unwrap());
        assert!(!s.cancel_upload(&id).unwrap());
        assert!(matches!(
            s.upload_append(&id, None, b"more"),
            Err(BlobError::UploadUnknown(_))
        ));
    }
}
