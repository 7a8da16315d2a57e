//! The embedded backend: one redb file in the data directory.
//!
//! Layout (three tables):
//! * `kv`: key → `[create_revision u64][mod_revision u64][version u64][value]`
//! * `log`: revision → the events of that revision (the watch history)
//! * `meta`: `"revision"` → the current revision
//!
//! Every transaction commits with redb's default durability (fsync before
//! `commit` returns), so an acknowledged write survives `kill -9`. Writes are
//! serialised by one mutex that also covers publishing their events, so
//! watchers see revisions strictly in order.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{broadcast, mpsc};

use crate::{
    Compare, Event, EventKind, KeyValue, ListResult, Op, Store, StoreError, Txn, TxnResult, Watch,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// How many revisions of history are kept for watches.
pub const HISTORY: u64 = 10_000;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

struct Inner {
    db: Database,
    /// Serialises writers and the publication of their events.
    write_lock: Mutex<()>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
}

/// The default, single-machine backend. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)
            .map_err(|e| StoreError::Backend(format!("{}: {e}", path.display())))?;
        Self::from_db(db)
    }

    /// A store held in memory only (for tests of code above the store).
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(backend)?;
        Self::from_db(db)
    }

    fn from_db(db: Database) -> Result<Self, StoreError> {
        // Create the tables so that readers never meet a missing table.
        let w = db.begin_write().map_err(backend)?;
        {
            w.open_table(KV).map_err(backend)?;
            w.open_table(LOG).map_err(backend)?;
            w.open_table(META).map_err(backend)?;
        }
        w.commit().map_err(backend)?;
        let (events, _) = broadcast::channel(4096);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                write_lock: Mutex::new(()),
                events,
            }),
        })
    }

    fn get_blocking(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let r = self.inner.db.begin_read().map_err(backend)?;
        let t = r.open_table(KV).map_err(backend)?;
        match t.get(key).map_err(backend)? {
            Some(v) => Ok(Some(decode_kv(key, v.value())?)),
            None => Ok(None),
        }
    }

    fn list_blocking(&self, prefix: &str) -> Result<ListResult, StoreError> {
        let r = self.inner.db.begin_read().map_err(backend)?;
        let revision = current_revision(&r.open_table(META).map_err(backend)?)?;
        let t = r.open_table(KV).map_err(backend)?;
        let mut items = Vec::new();
        for entry in t.range(prefix..).map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            items.push(decode_kv(key, v.value())?);
        }
        Ok(ListResult { items, revision })
    }

    fn txn_blocking(&self, txn: &Txn) -> Result<TxnResult, StoreError> {
        let _guard = self.inner.write_lock.lock().map_err(|_| {
            StoreError::Backend("a writer panicked while holding the store lock".into())
        })?;
        let w = self.inner.db.begin_write().map_err(backend)?;
        let (result, events) = {
            let mut kv = w.open_table(KV).map_err(backend)?;
            let mut meta = w.open_table(META).map_err(backend)?;
            let mut log = w.open_table(LOG).map_err(backend)?;
            let revision = current_revision(&meta)?;

            let mut ok = true;
            for c in &txn.compares {
                let holds = match c {
                    Compare::ModRevision(key, want) => {
                        let have = match kv.get(key.as_str()).map_err(backend)? {
                            Some(v) => decode_kv(key, v.value())?.mod_revision,
                            None => 0,
                        };
                        have == *want
                    }
                    Compare::Exists(key) => kv.get(key.as_str()).map_err(backend)?.is_some(),
                };
                if !holds {
                    ok = false;
                    break;
                }
            }
            let ops = if ok { &txn.success } else { &txn.failure };
            if ops.is_empty() {
                (
                    TxnResult {
                        succeeded: ok,
                        revision,
                    },
                    Vec::new(),
                )
            } else {
                let next = revision + 1;
                let mut events = Vec::with_capacity(ops.len());
                for op in ops {
                    match op {
                        Op::Put(key, value) => {
                            let (create, version) = match kv.get(key.as_str()).map_err(backend)? {
                                Some(v) => {
                                    let old = decode_kv(key, v.value())?;
                                    (old.create_revision, old.version + 1)
                                }
                                None => (next, 1),
                            };
                            let enc = encode_kv(create, next, version, value);
                            kv.insert(key.as_str(), enc.as_slice()).map_err(backend)?;
                            events.push(Event {
                                revision: next,
                                kind: EventKind::Put,
                                key: key.clone(),
                                value: Some(value.clone()),
                            });
                        }
                        Op::Delete(key) => {
                            if kv.remove(key.as_str()).map_err(backend)?.is_some() {
                                events.push(Event {
                                    revision: next,
                                    kind: EventKind::Delete,
                                    key: key.clone(),
                                    value: None,
                                });
                            }
                        }
                    }
                }
                meta.insert("revision", next).map_err(backend)?;
                log.insert(next, encode_events(&events).as_slice())
                    .map_err(backend)?;
                if next > HISTORY {
                    log.remove(next - HISTORY).map_err(backend)?;
                }
                (
                    TxnResult {
                        succeeded: ok,
                        revision: next,
                    },
                    events,
                )
            }
        };
        w.commit().map_err(backend)?;
        if !events.is_empty() {
            // No receivers is fine: nobody is watching.
            let _ = self.inner.events.send(Arc::new(events));
        }
        Ok(result)
    }

    fn history_blocking(&self, from: u64) -> Result<(Vec<Event>, u64), StoreError> {
        let r = self.inner.db.begin_read().map_err(backend)?;
        let revision = current_revision(&r.open_table(META).map_err(backend)?)?;
        let log = r.open_table(LOG).map_err(backend)?;
        let oldest = match log.first().map_err(backend)? {
            Some((k, _)) => k.value(),
            None => revision + 1,
        };
        if from < oldest && from <= revision && log.len().map_err(backend)? > 0 {
            return Err(StoreError::Compacted {
                requested: from,
                oldest,
            });
        }
        let mut out = Vec::new();
        for entry in log.range(from..).map_err(backend)? {
            let (_, v) = entry.map_err(backend)?;
            out.extend(decode_events(v.value())?);
        }
        Ok((out, revision))
    }
}

fn current_revision<T: ReadableTable<&'static str, u64>>(meta: &T) -> Result<u64, StoreError> {
    Ok(meta
        .get("revision")
        .map_err(backend)?
        .map(|v| v.value())
        .unwrap_or(0))
}

fn encode_kv(create: u64, modr: u64, version: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + value.len());
    out.extend_from_slice(&create.to_be_bytes());
    out.extend_from_slice(&modr.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(s))
}

fn decode_kv(key: &str, b: &[u8]) -> Result<KeyValue, StoreError> {
    let bad = || StoreError::Corrupt(format!("record of key {key} is truncated"));
    Ok(KeyValue {
        key: key.to_string(),
        create_revision: read_u64(b, 0).ok_or_else(bad)?,
        mod_revision: read_u64(b, 8).ok_or_else(bad)?,
        version: read_u64(b, 16).ok_or_else(bad)?,
        value: b[24..].to_vec(),
    })
}

fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        out.extend_from_slice(&e.revision.to_be_bytes());
        out.push(match e.kind {
            EventKind::Put => 1,
            EventKind::Delete => 2,
        });
        let k = e.key.as_bytes();
        out.extend_from_slice(&(k.len() as u64).to_be_bytes());
        out.extend_from_slice(k);
        let v = e.value.as_deref().unwrap_or(&[]);
        out.extend_from_slice(&(v.len() as u64).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn decode_events(mut b: &[u8]) -> Result<Vec<Event>, StoreError> {
    let bad = || StoreError::Corrupt("watch history entry is truncated".into());
    let mut out = Vec::new();
    while !b.is_empty() {
        let revision = read_u64(b, 0).ok_or_else(bad)?;
        let kind = match b.get(8) {
            Some(1) => EventKind::Put,
            Some(2) => EventKind::Delete,
            _ => return Err(bad()),
        };
        let klen = usize::try_from(read_u64(b, 9).ok_or_else(bad)?).map_err(|_| bad())?;
        let key = b.get(17..17 + klen).ok_or_else(bad)?;
        let key = String::from_utf8(key.to_vec()).map_err(|_| bad())?;
        let at = 17 + klen;
        let vlen = usize::try_from(read_u64(b, at).ok_or_else(bad)?).map_err(|_| bad())?;
        let value = b.get(at + 8..at + 8 + vlen).ok_or_else(bad)?.to_vec();
        out.push(Event {
            revision,
            kind,
            key,
            value: (kind == EventKind::Put).then_some(value),
        });
        b = &b[at + 8 + vlen..];
    }
    Ok(out)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let s = self.clone();
        let key = key.to_string();
        blocking(move || s.get_blocking(&key)).await
    }

    async fn list(&self, prefix: &str) -> Result<ListResult, StoreError> {
        let s = self.clone();
        let prefix = prefix.to_string();
        blocking(move || s.list_blocking(&prefix)).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let s = self.clone();
        blocking(move || s.txn_blocking(&txn)).await
    }

    async fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError> {
        // Subscribe before reading history so that nothing falls in between;
        // duplicates are dropped by revision below.
        let mut live = self.inner.events.subscribe();
        let (history, mut last) = if from_revision == 0 {
            (Vec::new(), self.revision().await?)
        } else {
            let s = self.clone();
            let (h, rev) = blocking(move || s.history_blocking(from_revision)).await?;
            (h, rev)
        };
        let (tx, rx) = mpsc::channel(256);
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            for e in history {
                if e.key.starts_with(&prefix) && tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            loop {
                // A dropped Watch ends the task at once, even when no event
                // of its prefix ever comes (long polls drop theirs often).
                let next = tokio::select! {
                    () = tx.closed() => return,
                    next = live.recv() => next,
                };
                match next {
                    Ok(batch) => {
                        let Some(first) = batch.first() else { continue };
                        if first.revision <= last {
                            continue;
                        }
                        last = first.revision;
                        for e in batch.iter().filter(|e| e.key.starts_with(&prefix)) {
                            if tx.send(Ok(e.clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx
                            .send(Err(StoreError::Compacted {
                                requested: last + 1,
                                oldest: last + 2,
                            }))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Watch::from_channel(rx))
    }

    async fn revision(&self) -> Result<u64, StoreError> {
        let s = self.clone();
        blocking(move || {
            let r = s.inner.db.begin_read().map_err(backend)?;
            current_revision(&r.open_table(META).map_err(backend)?)
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Op {
        Op::Put(k.into(), v.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn revisions_and_versions() {
        let s = EmbeddedStore::in_memory().unwrap();
        assert_eq!(s.revision().await.unwrap(), 0);
        let r = s.txn(Txn::new().then(put("/a", "1"))).await.unwrap();
        assert_eq!(
            r,
            TxnResult {
                succeeded: true,
                revision: 1
            }
        );
        s.txn(Txn::new().then(put("/a", "2"))).await.unwrap();
        let kv = s.get("/a").await.unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 2, 2));
        assert_eq!(kv.value, b"2");
    }

    #[tokio::test]
    async fn compare_and_swap() {
        let s = EmbeddedStore::in_memory().unwrap();
        // Create only if absent.
        let create = Txn::new()
            .when(Compare::ModRevision("/k".into(), 0))
            .then(put("/k", "x"));
        assert!(s.txn(create.clone()).await.unwrap().succeeded);
        assert!(!s.txn(create).await.unwrap().succeeded);
        let kv = s.get("/k").await.unwrap().unwrap();
        let stale = Txn::new()
            .when(Compare::ModRevision("/k".into(), kv.mod_revision + 7))
            .then(put("/k", "y"));
        assert!(!s.txn(stale).await.unwrap().succeeded);
        let fresh = Txn::new()
            .when(Compare::ModRevision("/k".into(), kv.mod_revision))
            .then(put("/k", "y"));
        assert!(s.txn(fresh).await.unwrap().succeeded);
        assert_eq!(s.get("/k").await.unwrap().unwrap().value, b"y");
        // Failed guards do not bump the revision.
        let rev = s.revision().await.unwrap();
        assert!(
            !s.txn(
                Txn::new()
                    .when(Compare::Exists("/nope".into()))
                    .then(put("/z", "z"))
            )
            .await
            .unwrap()
            .succeeded
        );
        assert_eq!(s.revision().await.unwrap(), rev);
    }

    #[tokio::test]
    async fn list_by_prefix() {
        let s = EmbeddedStore::in_memory().unwrap();
        s.txn(
            Txn::new()
                .then(put("/a/1", "x"))
                .then(put("/a/2", "y"))
                .then(put("/b/1", "z")),
        )
        .await
        .unwrap();
        let l = s.list("/a/").await.unwrap();
        assert_eq!(l.revision, 1);
        let keys: Vec<_> = l.items.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["/a/1", "/a/2"]);
    }

    #[tokio::test]
    async fn watch_replays_history_then_follows() {
        let s = EmbeddedStore::in_memory().unwrap();
        s.txn(Txn::new().then(put("/w/1", "a"))).await.unwrap();
        s.txn(Txn::new().then(put("/other", "a"))).await.unwrap();
        s.txn(Txn::new().then(Op::Delete("/w/1".into())))
            .await
            .unwrap();
        let mut w = s.watch("/w/", 1).await.unwrap();
        let e = w.next().await.unwrap().unwrap();
        assert_eq!(
            (e.revision, e.kind, e.key.as_str()),
            (1, EventKind::Put, "/w/1")
        );
        let e = w.next().await.unwrap().unwrap();
        assert_eq!((e.revision, e.kind), (3, EventKind::Delete));
        s.txn(Txn::new().then(put("/w/2", "b"))).await.unwrap();
        let e = w.next().await.unwrap().unwrap();
        assert_eq!(
            (e.revision, e.key.as_str(), e.value.as_deref()),
            (4, "/w/2", Some(&b"b"[..]))
        );
    }

    #[tokio::test]
    async fn dropped_watches_stop_following() {
        let s = EmbeddedStore::in_memory().unwrap();
        let w = s.watch("/quiet/", 0).await.unwrap();
        assert_eq!(s.inner.events.receiver_count(), 1);
        drop(w);
        s.txn(Txn::new().then(put("/loud", "x"))).await.unwrap();
        for _ in 0..100 {
            if s.inner.events.receiver_count() == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("the watch task outlived its Watch");
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let s = EmbeddedStore::open(&path).unwrap();
            s.txn(Txn::new().then(put("/p", "durable"))).await.unwrap();
        }
        let s = EmbeddedStore::open(&path).unwrap();
        assert_eq!(s.get("/p").await.unwrap().unwrap().value, b"durable");
        assert_eq!(s.revision().await.unwrap(), 1);
        let mut w = s.watch("/", 1).await.unwrap();
        assert_eq!(w.next().await.unwrap().unwrap().key, "/p");
    }
}
