//! The layer cache shared by all tasks on a host.
//!
//! Each layer is downloaded once, verified against its digest and size, kept
//! as a compressed blob and unpacked (with overlayfs whiteouts) into its own
//! directory, ready to be an overlayfs lowerdir:
//!
//! ```text
//! ROOT/blobs/...              a BlobStore holding the compressed layers
//! ROOT/layers/<hex>/          the unpacked layer
//! ROOT/layers/<hex>.partial/  an unpack in progress (removed on open)
//! ROOT/meta/<hex>             the unpacked size in bytes, for accounting
//! ```
//!
//! [`LayerCache::get_or_fetch`] is the entry point. Concurrent callers for
//! one digest share a single download (single flight). The handle it returns,
//! [`CachedLayer`], pins the layer: while any handle for a digest is alive
//! the layer is never evicted. Unpinned layers are evicted least recently
//! used first whenever usage exceeds the limit.
//!
//! The state (which layers exist, their sizes) is rebuilt from disk on open;
//! half-finished work from a crash is removed then.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::blobstore::{random_id, sync_dir, BlobError, BlobStore};
use crate::digest::Digest;
use crate::manifest::{layer_compression, Descriptor};
use crate::unpack::{unpack_layer_file, UnpackError, WhiteoutMode};

/// Why the layer cache could not provide a layer.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// a filesystem operation in the cache failed
    #[error("layer cache i/o error at {path}: {source}")]
    Io {
        /// the file or directory involved
        path: PathBuf,
        /// the underlying error
        source: io::Error,
    },
    /// the cache's blob store failed
    #[error("layer cache: {0}")]
    Blob(BlobError),
    /// the caller's fetch function failed
    #[error("fetching layer {digest}: {source}")]
    Fetch {
        /// the layer being fetched
        digest: Digest,
        /// what the fetch function returned
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// the fetched bytes do not hash to the layer's digest; nothing was cached
    #[error("fetched layer does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// the digest in the descriptor
        expected: Digest,
        /// the digest of the bytes fetched
        actual: Digest,
    },
    /// the fetched blob is not the size the descriptor says; nothing was cached
    #[error("fetched layer {digest} is {actual} bytes but its descriptor says {expected}")]
    SizeMismatch {
        /// the layer
        digest: Digest,
        /// the size in the descriptor
        expected: u64,
        /// the size fetched
        actual: u64,
    },
    /// the descriptor's media type is not a layer type Berth can unpack
    #[error("layer {digest} has unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// the layer
        digest: Digest,
        /// its media type
        media_type: String,
    },
    /// the layer was fetched and verified but could not be unpacked
    #[error("unpacking layer {digest}: {source}")]
    Unpack {
        /// the layer
        digest: Digest,
        /// why unpacking failed
        source: UnpackError,
    },
    /// the background task that stores and unpacks a layer died
    #[error("layer cache background task failed: {0}")]
    Background(String),
}

impl From<BlobError> for CacheError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::DigestMismatch { expected, actual } => {
                CacheError::DigestMismatch { expected, actual }
            }
            other => CacheError::Blob(other),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The host's layer cache. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct LayerCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for LayerCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerCache")
            .field("root", &self.inner.root)
            .field("limit_bytes", &self.inner.limit)
            .finish_non_exhaustive()
    }
}

struct Inner {
    root: PathBuf,
    blobs: BlobStore,
    layers: PathBuf,
    meta: PathBuf,
    limit: u64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<Digest, Entry>,
    /// One async lock per digest being fetched: the single flight.
    inflight: HashMap<Digest, Arc<tokio::sync::Mutex<()>>>,
    /// Logical clock for least-recently-used ordering.
    clock: u64,
}

struct Entry {
    blob_bytes: u64,
    unpacked_bytes: u64,
    last_used: u64,
    pins: usize,
}

impl Entry {
    fn bytes(&self) -> u64 {
        self.blob_bytes + self.unpacked_bytes
    }
}

/// An unpacked layer, pinned in the cache for as long as this handle (or a
/// clone of it) is alive.
#[derive(Clone)]
pub struct CachedLayer {
    /// The layer's (compressed blob) digest.
    pub digest: Digest,
    /// The unpacked layer directory, usable as an overlayfs lowerdir.
    pub dir: PathBuf,
    _pin: Arc<PinGuard>,
}

impl fmt::Debug for CachedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedLayer")
            .field("digest", &self.digest)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Unpins its layer when the last handle sharing it is dropped.
struct PinGuard {
    cache: Arc<Inner>,
    digest: Digest,
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        let mut state = self.cache.lock();
        if let Some(entry) = state.entries.get_mut(&self.digest) {
            entry.pins = entry.pins.saturating_sub(1);
        }
    }
}

impl LayerCache {
    /// Opens (creating if needed) the cache at `root`, keeping at most
    /// `limit_bytes` of unpinned layers. Layers already on disk are found
    /// again; unfinished unpacks and blobs without a layer are removed.
    pub fn open(root: &Path, limit_bytes: u64) -> Result<Self, CacheError> {
        let layers = root.join("layers");
        let meta = root.join("meta");
        for dir in [&layers, &meta] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let blobs = BlobStore::open(&root.join("blobs"))?;

        let mut found = Vec::new();
        for entry in fs::read_dir(&layers).map_err(io_err(&layers))? {
            let entry = entry.map_err(io_err(&layers))?;
            let path = entry.path();
            let is_dir = entry.file_type().map_err(io_err(&path))?.is_dir();
            let digest = entry
                .file_name()
                .to_str()
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
            match digest {
                Some(d) if is_dir => found.push(d),
                // `.partial`, `.evicting-*` or anything else: leftovers.
                _ => remove_if_exists(&path)?,
            }
        }

        let mut entries = Vec::new();
        for digest in found {
            let meta_path = meta.join(digest.hex());
            let recorded = fs::read_to_string(&meta_path)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            let unpacked_bytes = match recorded {
                Some(n) => n,
                None => {
                    let n = tree_bytes(&layers.join(digest.hex()))?;
                    write_meta(&meta, &digest, n)?;
                    n
                }
            };
            let used = fs::metadata(&meta_path).and_then(|m| m.modified()).ok();
            let blob_bytes = blobs.size(&digest)?.unwrap_or(0);
            entries.push((used, digest, blob_bytes, unpacked_bytes));
        }
        // Most recently installed last, so they count as most recently used.
        entries.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));

        let mut state = State::default();
        for (_, digest, blob_bytes, unpacked_bytes) in entries {
            state.clock += 1;
            state.entries.insert(
                digest,
                Entry {
                    blob_bytes,
                    unpacked_bytes,
                    last_used: state.clock,
                    pins: 0,
                },
            );
        }
        for (digest, _) in blobs.list()? {
            if !state.entries.contains_key(&digest) {
                blobs.delete(&digest)?;
            }
        }
        for entry in fs::read_dir(&meta).map_err(io_err(&meta))? {
            let entry = entry.map_err(io_err(&meta))?;
            let known = entry
                .file_name()
                .to_str()
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok())
                .is_some_and(|d| state.entries.contains_key(&d));
            if !known {
                remove_if_exists(&entry.path())?;
            }
        }

        let cache = Self {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                blobs,
                layers,
                meta,
                limit: limit_bytes,
                state: Mutex::new(state),
            }),
        };
        cache.evict()?;
        Ok(cache)
    }

    /// The directory the cache lives in.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The configured limit in bytes.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// The cached layer `digest`, pinned, if it is already unpacked; never
    /// fetches.
    pub fn get(&self, digest: &Digest) -> Option<CachedLayer> {
        self.inner.lookup(digest)
    }

    /// Returns the unpacked layer directory for `desc`, fetching it at most
    /// once even when many callers ask concurrently (single flight per
    /// digest).
    ///
    /// `fetch(dest)` must write the compressed blob to `dest` (a fresh path
    /// inside the cache). The cache then checks its size and digest, stores
    /// it, unpacks it with overlayfs whiteouts into `ROOT/layers/<hex>` via a
    /// temporary directory and a rename, and returns a pinned handle. If the
    /// fetch fails or writes the wrong bytes nothing is cached, and the next
    /// caller fetches again. Evicts unpinned layers afterwards if the cache is
    /// over its limit.
    pub async fn get_or_fetch<F, Fut>(
        &self,
        desc: &Descriptor,
        fetch: F,
    ) -> Result<CachedLayer, CacheError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        let digest = &desc.digest;
        if let Some(layer) = self.inner.lookup(digest) {
            return Ok(layer);
        }
        if layer_compression(&desc.media_type).is_none() {
            return Err(CacheError::UnsupportedMediaType {
                digest: digest.clone(),
                media_type: desc.media_type.clone(),
            });
        }

        let mut flight = Flight::join(&self.inner, digest);
        flight.guard = Some(flight.mutex.clone().lock_owned().await);
        // Whoever held the flight before us may have installed it.
        if let Some(layer) = self.inner.lookup(digest) {
            return Ok(layer);
        }

        let dest = RemoveOnDrop(self.inner.blobs.temp_path());
        fetch(dest.0.clone())
            .await
            .map_err(|source| CacheError::Fetch {
                digest: digest.clone(),
                source,
            })?;

        let inner = Arc::clone(&self.inner);
        let desc = desc.clone();
        // The flight and the fetched file move into the blocking task: if
        // our caller goes away, the install still finishes (or cleans up)
        // before anyone else may start on this digest.
        tokio::task::spawn_blocking(move || {
            let result = inner.install(&desc, &dest.0);
            drop(dest);
            drop(flight);
            result
        })
        .await
        .map_err(|e| CacheError::Background(e.to_string()))?
    }

    /// Bytes used by the cached layers: compressed blobs plus unpacked file
    /// contents (directory and metadata overhead is not counted).
    pub fn usage(&self) -> u64 {
        self.inner.lock().entries.values().map(Entry::bytes).sum()
    }

    /// Evicts least recently used unpinned layers until usage is at most the
    /// limit; returns the bytes freed. Pinned layers are never evicted, so
    /// usage may stay above the limit. Blocking: call from
    /// `spawn_blocking` in async code.
    pub fn evict(&self) -> Result<u64, CacheError> {
        self.inner.evict()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn layer_dir(&self, digest: &Digest) -> PathBuf {
        self.layers.join(digest.hex())
    }

    /// Pins and touches `digest` if it is cached.
    fn lookup(self: &Arc<Self>, digest: &Digest) -> Option<CachedLayer> {
        let mut state = self.lock();
        state.clock += 1;
        let now = state.clock;
        let entry = state.entries.get_mut(digest)?;
        entry.pins += 1;
        entry.last_used = now;
        Some(self.handle(digest))
    }

    /// A handle for an entry whose pin count was already raised.
    fn handle(self: &Arc<Self>, digest: &Digest) -> CachedLayer {
        CachedLayer {
            digest: digest.clone(),
            dir: self.layer_dir(digest),
            _pin: Arc::new(PinGuard {
                cache: Arc::clone(self),
                digest: digest.clone(),
            }),
        }
    }

    /// Verifies, stores and unpacks a fetched blob; runs on a blocking
    /// thread while holding the digest's flight.
    fn install(
        self: &Arc<Self>,
        desc: &Descriptor,
        fetched: &Path,
    ) -> Result<CachedLayer, CacheError> {
        let digest = &desc.digest;
        let actual_size = match fs::metadata(fetched) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CacheError::Fetch {
                    digest: digest.clone(),
                    source: format!("fetch returned without writing {}", fetched.display()).into(),
                })
            }
            Err(e) => return Err(io_err(fetched)(e)),
        };
        if actual_size != desc.size {
            return Err(CacheError::SizeMismatch {
                digest: digest.clone(),
                expected: desc.size,
                actual: actual_size,
            });
        }
        let blob_bytes = self.blobs.put_file_verified(digest, fetched)?;

        let hex = digest.hex();
        let partial = self.layers.join(format!("{hex}.partial"));
        let unpacked = remove_if_exists(&partial).and_then(|()| {
            unpack_layer_file(
                &self.blobs.path(digest),
                &desc.media_type,
                &partial,
                WhiteoutMode::Overlay,
            )
            .map_err(|source| CacheError::Unpack {
                digest: digest.clone(),
                source,
            })
        });
        let stats = match unpacked {
            Ok(stats) => stats,
            Err(e) => {
                // Cache nothing for a layer that cannot be unpacked.
                let _ = remove_if_exists(&partial);
                let _ = self.blobs.delete(digest);
                return Err(e);
            }
        };
        // Make the unpacked files durable before the rename publishes them.
        let dir = fs::File::open(&partial).map_err(io_err(&partial))?;
        rustix::fs::syncfs(&dir).map_err(|e| io_err(&partial)(e.into()))?;
        drop(dir);
        write_meta(&self.meta, digest, stats.bytes)?;

        let layer = {
            let mut state = self.lock();
            let dest = self.layer_dir(digest);
            // Nothing tracked lives there (we hold the flight and the entry
            // is absent), so anything found is a stale leftover.
            remove_if_exists(&dest)?;
            fs::rename(&partial, &dest).map_err(io_err(&dest))?;
            sync_dir(&self.layers)?;
            state.clock += 1;
            let now = state.clock;
            state.entries.insert(
                digest.clone(),
                Entry {
                    blob_bytes,
                    unpacked_bytes: stats.bytes,
                    last_used: now,
                    pins: 1,
                },
            );
            self.handle(digest)
        };
        // Best effort: the layer is installed and pinned either way, and a
        // persistent failure shows up in the next explicit evict().
        let _ = self.evict();
        Ok(layer)
    }

    fn evict(&self) -> Result<u64, CacheError> {
        let mut freed = 0;
        let mut doomed = Vec::new();
        let result = (|| {
            let mut state = self.lock();
            let mut usage: u64 = state.entries.values().map(Entry::bytes).sum();
            while usage > self.limit {
                let Some(victim) = state
                    .entries
                    .iter()
                    .filter(|(_, e)| e.pins == 0)
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(d, _)| d.clone())
                else {
                    break;
                };
                // Under the lock, take the layer out of sight (a rename) and
                // drop its blob and accounting, so a new fetch of the same
                // digest never races the slow recursive delete below.
                let dir = self.layer_dir(&victim);
                let trash = self
                    .layers
                    .join(format!("{}.evicting-{}", victim.hex(), random_id()));
                match fs::rename(&dir, &trash) {
                    Ok(()) => doomed.push(trash),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&dir)(e)),
                }
                self.blobs.delete(&victim)?;
                remove_if_exists(&self.meta.join(victim.hex()))?;
                if let Some(entry) = state.entries.remove(&victim) {
                    usage -= entry.bytes();
                    freed += entry.bytes();
                }
            }
            Ok(())
        })();
        for trash in doomed {
            remove_if_exists(&trash)?;
        }
        result?;
        if freed > 0 {
            sync_dir(&self.layers)?;
        }
        Ok(freed)
    }
}

/// A caller's place in the single flight for one digest. Dropping it
/// releases the lock and forgets the flight once nobody else shares it.
struct Flight {
    cache: Arc<Inner>,
    digest: Digest,
    mutex: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Flight {
    fn join(cache: &Arc<Inner>, digest: &Digest) -> Self {
        let mutex = cache
            .lock()
            .inflight
            .entry(digest.clone())
            .or_default()
            .clone();
        Self {
            cache: Arc::clone(cache),
            digest: digest.clone(),
            mutex,
            guard: None,
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut state = self.cache.lock();
        // Clones are only made under the state lock: two references (the
        // map's and ours) mean no one else is waiting on this flight.
        if Arc::strong_count(&self.mutex) == 2 {
            state.inflight.remove(&self.digest);
        }
    }
}

/// Removes a scratch file when dropped (it is gone already on success).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Removes a file or directory tree (never following symlinks); missing is
/// fine.
fn remove_if_exists(path: &Path) -> Result<(), CacheError> {
    let removed = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Records a layer's unpacked size (write to a temp name, then rename).
fn write_meta(meta: &Path, digest: &Digest, bytes: u64) -> Result<(), CacheError> {
    let dest = meta.join(digest.hex());
    let tmp = meta.join(format!("{}.tmp", digest.hex()));
    fs::write(&tmp, bytes.to_string()).map_err(io_err(&tmp))?;
    fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    Ok(())
}

/// Total size of the regular files under `dir`, not following symlinks.
fn tree_bytes(dir: &Path) -> Result<u64, CacheError> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(io_err(&d))? {
            let entry = entry.map_err(io_err(&d))?;
            let path = entry.path();
            let m = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            if m.is_dir() {
                stack.push(path);
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::OCI_LAYER_TAR;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    /// A one-file uncompressed layer; returns its bytes and descriptor.
    fn layer(name: &str, content: &[u8]) -> (Vec<u8>, Descriptor) {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, content).unwrap();
        let bytes = b.into_inner().unwrap();
        let desc = Descriptor {
            media_type: OCI_LAYER_TAR.to_string(),
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            platform: None,
            annotations: None,
        };
        (bytes, desc)
    }

    /// A fetch function writing `bytes` and counting its calls.
    fn fetcher(
        bytes: Vec<u8>,
        calls: Arc<AtomicUsize>,
        delay: Duration,
    ) -> impl FnOnce(PathBuf) -> std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>
    {
        move |dest| {
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                tokio::fs::write(&dest, &bytes).await?;
                Ok(())
            })
        }
    }

    fn never_fetch(
        _dest: PathBuf,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>> {
        Box::pin(async { panic!("the layer should have been cached") })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_one_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path(), u64::MAX).unwrap();
        let (bytes, desc) = layer("hello.txt", b"hello, layer");
        let calls = Arc::new(AtomicUsize::new(0));
        let slow = Duration::from_millis(200);
        let (a, b, c) = tokio::join!(
            cache.get_or_fetch(&desc, fetcher(bytes.clone(), calls.clone(), slow)),
            cache.get_or_fetch(&desc, fetcher(bytes.clone(), calls.clone(), slow)),
            cache.get_or_fetch(&desc, fetcher(bytes.clone(), calls.clone(), slow)),
        );
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(a.dir, b.dir);
        assert_eq!(b.dir, c.dir);
        assert_eq!(a.dir, dir.path().join("layers").join(desc.digest.hex()));
        assert_eq!(fs::read(a.dir.join("hello.txt")).unwrap(), b"hello, layer");
        assert_eq!(cache.usage(), desc.size + 12);
        assert!(cache.inner.lock().inflight.is_empty(), "flights forgotten");
        // Cached now: no fetch at all.
        let d = cache.get_or_fetch(&desc, never_fetch).await.unwrap();
        assert_eq!(d.dir, a.dir);
        assert_eq!(cache.inner.lock().entries[&desc.digest].pins, 4);
        drop((a, b, c, d));
        assert_eq!(cache.inner.lock().entries[&desc.digest].pins, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_waiter_fetches_again_when_the_leader_fails() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path(), u64::MAX).unwrap();
        let (bytes, desc) = layer("f", b"content");
        let mut wrong = bytes.clone();
        wrong[0] ^= 1;
        let calls = Arc::new(AtomicUsize::new(0));
        let slow = Duration::from_millis(200);
        let leader = cache.get_or_fetch(&desc, fetcher(wrong, calls.clone(), slow));
        let waiter = async {
            // Let the leader take the flight first.
            tokio::time::sleep(Duration::from_millis(50)).await;
            cache
                .get_or_fetch(&desc, fetcher(bytes.clone(), calls.clone(), slow))
                .await
        };
        let (leader, waiter) = tokio::join!(leader, waiter);
        assert!(matches!(leader, Err(CacheError::DigestMismatch { .. })));
        let layer = waiter.unwrap();
        assert_eq!(fs::read(layer.dir.join("f")).unwrap(), b"content");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn wrong_bytes_cache_nothing_and_a_retry_works() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path(), u64::MAX).unwrap();
        let (bytes, desc) = layer("f", b"the real content");
        let calls = Arc::new(AtomicUsize::new(0));

        let mut wrong = bytes.clone();
        wrong[0] ^= 1;
        let err = cache
            .get_or_fetch(&desc, fetcher(wrong, calls.clone(), Duration::ZERO))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CacheError::DigestMismatch { expected, .. } if expected == &desc.digest),
            "{err}"
        );
        let err = cache
            .get_or_fetch(
                &desc,
                fetcher(b"short".to_vec(), calls.clone(), Duration::ZERO),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, CacheError::SizeMismatch { actual: 5, .. }),
            "{err}"
        );
        let err = cache
            .get_or_fetch(&desc, |_dest| async {
                Err::<(), BoxError>("registry said 503".into())
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("registry said 503"), "{err}");

        assert_eq!(cache.usage(), 0);
        assert!(cache.get(&desc.digest).is_none());
        assert!(cache.inner.blobs.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(dir.path().join("layers")).unwrap().count(), 0);
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/tmp")).unwrap().count(),
            0
        );

        let ok = cache
            .get_or_fetch(&desc, fetcher(bytes, calls.clone(), Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(fs::read(ok.dir.join("f")).unwrap(), b"the real content");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn unsupported_media_type_is_refused_before_fetching() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path(), u64::MAX).unwrap();
        let (_, mut desc) = layer("f", b"x");
        desc.media_type = "application/x-rar".to_string();
        let err = cache.get_or_fetch(&desc, never_fetch).await.unwrap_err();
        assert!(
            matches!(err, CacheError::UnsupportedMediaType { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn eviction_takes_unpinned_lru_layers_only() {
        let dir = tempfile::tempdir().unwrap();
        let (a_bytes, a) = layer("a", &[b'a'; 100]);
        let (b_bytes, b) = layer("b", &[b'b'; 100]);
        let (c_bytes, c) = layer("c", &[b'c'; 100]);
        let (d_bytes, d) = layer("d", &[b'd'; 100]);
        let one = a.size + 100;
        // Room for two layers.
        let cache = LayerCache::open(dir.path(), 2 * one + 10).unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let get = |bytes: &Vec<u8>, desc: &Descriptor| {
            let cache = cache.clone();
            let desc = desc.clone();
            let f = fetcher(bytes.clone(), calls.clone(), Duration::ZERO);
            async move { cache.get_or_fetch(&desc, f).await.unwrap() }
        };

        let pinned_a = get(&a_bytes, &a).await;
        drop(get(&b_bytes, &b).await);
        drop(get(&c_bytes, &c).await);
        // Three layers exceed the limit: b is the least recently used
        // unpinned one; a is older but pinned.
        assert!(pinned_a.dir.exists());
        assert!(cache.get(&b.digest).is_none());
        assert!(!dir.path().join("layers").join(b.digest.hex()).exists());
        assert!(cache.inner.blobs.size(&b.digest).unwrap().is_none());
        assert!(cache.get(&c.digest).is_some());
        assert_eq!(cache.usage(), 2 * one);

        // Everything pinned: nothing can go even when over the limit.
        let pinned_c = cache.get(&c.digest).unwrap();
        let pinned_d = get(&d_bytes, &d).await;
        assert_eq!(cache.usage(), 3 * one);
        assert_eq!(cache.evict().unwrap(), 0);
        assert!(pinned_a.dir.exists() && pinned_c.dir.exists() && pinned_d.dir.exists());

        // Unpin a and c: a was used before c, so a goes first and that is
        // enough.
        drop(pinned_a);
        drop(pinned_c);
        assert_eq!(cache.evict().unwrap(), one);
        assert!(cache.get(&a.digest).is_none());
        assert!(cache.get(&c.digest).is_some());
        assert!(cache.get(&d.digest).is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("layers"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn reopen_finds_layers_without_fetching() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, desc) = layer("etc/hostname", b"berth\n");
        let usage = {
            let cache = LayerCache::open(dir.path(), u64::MAX).unwrap();
            let calls = Arc::new(AtomicUsize::new(0));
            cache
                .get_or_fetch(&desc, fetcher(bytes, calls, Duration::ZERO))
                .await
                .unwrap();
            cache.usage()
        };
        // Crash leftovers: a half-unpacked layer, an evicting one, a stray
        // blob and a download in progress.
        let layers = dir.path().join("layers");
        fs::create_dir_all(layers.join(format!("{}.partial/x", "ab".repeat(32)))).unwrap();
        fs::create_dir_all(layers.join(format!("{}.evicting-1", "cd".repeat(32)))).unwrap();
        let stray = BlobStore::open(&dir.path().join("blobs")).unwrap();
        let stray_digest = stray.put(b"orphan").unwrap();
        fs::write(stray.temp_path(), b"half a download").unwrap();
        // Lost accounting is recomputed.
        fs::remove_file(dir.path().join("meta").join(desc.digest.hex())).unwrap();

        let cache = LayerCache::open(dir.path(), u64::MAX).unwrap();
        let layer = cache.get_or_fetch(&desc, never_fetch).await.unwrap();
        assert_eq!(
            fs::read(layer.dir.join("etc/hostname")).unwrap(),
            b"berth\n"
        );
        assert_eq!(cache.usage(), usage);
        let mut names: Vec<_> = fs::read_dir(&layers)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec![desc.digest.hex().to_string()]);
        assert!(cache.inner.blobs.size(&stray_digest).unwrap().is_none());
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn overlay_whiteouts_in_cached_layers() {
        assert!(
            rustix::process::geteuid().is_root(),
            "the cache unpacks with overlay whiteouts (mknod); run this test as root"
        );
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(dir.path(), u64::MAX).unwrap();
        let (bytes, desc) = layer("etc/.wh.motd", b"");
        let calls = Arc::new(AtomicUsize::new(0));
        let l = cache
            .get_or_fetch(&desc, fetcher(bytes, calls, Duration::ZERO))
            .await
            .unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::symlink_metadata(l.dir.join("etc/motd"))
            .unwrap()
            .file_type()
            .is_char_device());
    }
}
