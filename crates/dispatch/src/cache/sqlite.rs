//! The persistent embedded tier: one SQLite file of encoded entries, bounded in bytes and
//! evicted least-recently-used, so a restarted gateway keeps its cache without running
//! anything else.
//!
//! It owns the file (schema, pragmas, the byte bound and the recency order) and hands out
//! decoded entries; expiry is the caller's decision (from [`Entry::created_unix_ms`]),
//! apart from the bulk [`SqliteTier::purge_older_than`]. One process per file: the byte
//! total is kept in memory, initialised from the file at open.
//!
//! Threading: one dedicated thread owns the `rusqlite::Connection` and serves requests
//! from a channel, each answered on a oneshot. Chosen over `spawn_blocking` with a
//! `Mutex<Connection>` because SQLite serialises writers anyway, so a mutex would only
//! park blocking-pool threads in a queue on a loaded machine; a single owner needs no
//! lock, and it can batch the `last_used_ms` updates of hits into one transaction when
//! its queue runs dry (or before an eviction needs them), so a hit costs no write of its
//! own under load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use super::entry::Entry;
use super::key::CacheKey;
use super::tiered::StoreError;

/// `PRAGMA user_version` of the layout below; a file with a higher one was written by a
/// newer build and is refused rather than misread.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    key          BLOB PRIMARY KEY,
    value        BLOB NOT NULL,
    created_ms   INTEGER NOT NULL,
    last_used_ms INTEGER NOT NULL,
    size         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_last_used ON entries (last_used_ms);
PRAGMA user_version = 1;
";

/// Pending recency updates flushed in one transaction once this many accumulate, even
/// when the queue never runs dry.
const MAX_PENDING_TOUCHES: usize = 256;

/// Rows fetched per eviction round.
const EVICTION_BATCH: i64 = 64;

/// A persistent, byte-bounded LRU of entries in one SQLite file.
#[derive(Debug)]
pub struct SqliteTier {
    path: PathBuf,
    max_bytes: u64,
    ops: mpsc::Sender<Op>,
    /// The running total of `size`, maintained by the worker, read without a round trip.
    bytes: Arc<AtomicU64>,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Op {
    Get {
        key: CacheKey,
        reply: Reply<Option<Entry>>,
    },
    Put {
        key: CacheKey,
        value: Vec<u8>,
        created_ms: u64,
        reply: Reply<u64>,
    },
    Remove {
        key: CacheKey,
        reply: Reply<bool>,
    },
    Purge {
        before_ms: u64,
        reply: Reply<u64>,
    },
    Flush {
        reply: Reply<()>,
    },
}

impl SqliteTier {
    /// Opens (creating if missing, with its parent directory) the cache file at `path`,
    /// holding at most `max_bytes` of encoded entries. A file that is not a SQLite
    /// database, is corrupt or was written by a newer build is an error naming the file.
    pub fn open(path: &Path, max_bytes: u64) -> Result<SqliteTier, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        // Opening is lazy in SQLite: the first statement is what reads the header, so a
        // garbage file fails here ("file is not a database").
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Schema {
                path: path.to_path_buf(),
                found: version,
                expected: SCHEMA_VERSION,
            });
        }
        // WAL lets the checkpoint at shutdown be the only full sync; NORMAL may lose the
        // last writes on power loss, which for a cache is a few misses.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        // Another connection (a previous instance's worker finishing) may briefly hold
        // the write lock; wait for it rather than fail.
        conn.busy_timeout(Duration::from_secs(2))
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        let (total, last_used): (i64, i64) = conn
            .query_row(
                "SELECT COALESCE(SUM(size), 0), COALESCE(MAX(last_used_ms), 0) FROM entries",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(open_err)?;

        let bytes = Arc::new(AtomicU64::new(0));
        let mut worker = Worker {
            conn,
            path: path.to_path_buf(),
            max_bytes,
            total: to_u64(total),
            bytes: Arc::clone(&bytes),
            last_stamp: to_u64(last_used),
            touches: HashMap::new(),
        };
        // A bound lowered since the last run applies at once.
        worker.shrink_to_bound().map_err(open_err)?;
        bytes.store(worker.total, Ordering::Relaxed);

        let (ops, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("cache-sqlite".into())
            .spawn(move || worker.run(rx))
            .map_err(|source| StoreError::Thread {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(SqliteTier {
            path: path.to_path_buf(),
            max_bytes,
            ops,
            bytes,
        })
    }

    /// The entry under `key`, if any. A stored value that no longer decodes (corrupt, or
    /// an older format) is a miss and its row is deleted.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<Entry>, StoreError> {
        let key = *key;
        self.call(|reply| Op::Get { key, reply }).await
    }

    /// Stores `entry` under `key`, then evicts least recently used rows while the total
    /// exceeds the bound; returns how many rows were evicted. An entry whose encoding
    /// alone exceeds the bound is not stored.
    pub async fn put(&self, key: CacheKey, entry: &Entry) -> Result<u64, StoreError> {
        // Encoded here, on the caller's task, so the single worker thread only does I/O.
        let value = entry.encode();
        let created_ms = entry.created_unix_ms;
        self.call(|reply| Op::Put {
            key,
            value,
            created_ms,
            reply,
        })
        .await
    }

    /// Removes the entry under `key`; whether there was one.
    pub async fn remove(&self, key: &CacheKey) -> Result<bool, StoreError> {
        let key = *key;
        self.call(|reply| Op::Remove { key, reply }).await
    }

    /// Deletes every entry created before `unix_ms` (milliseconds since the epoch);
    /// returns how many.
    pub async fn purge_older_than(&self, unix_ms: u64) -> Result<u64, StoreError> {
        self.call(|reply| Op::Purge {
            before_ms: unix_ms,
            reply,
        })
        .await
    }

    /// Writes pending recency updates and checkpoints the WAL into the main file
    /// (shutdown: the file is then complete on its own).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.call(|reply| Op::Flush { reply }).await
    }

    /// The encoded bytes stored.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Closed {
            path: self.path.clone(),
        };
        self.ops.send(op(reply)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// The thread that owns the connection.
struct Worker {
    conn: Connection,
    path: PathBuf,
    max_bytes: u64,
    total: u64,
    bytes: Arc<AtomicU64>,
    /// The last `last_used_ms` written: stamps strictly increase so the LRU order is total
    /// even when several operations land in one millisecond (or the wall clock steps back).
    last_stamp: u64,
    /// Hits whose `last_used_ms` is not yet written.
    touches: HashMap<CacheKey, u64>,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Op>) {
        loop {
            let op = match rx.try_recv() {
                Ok(op) => op,
                Err(mpsc::TryRecvError::Empty) => {
                    // Idle: the moment to write batched recency updates.
                    self.flush_touches();
                    match rx.recv() {
                        Ok(op) => op,
                        Err(mpsc::RecvError) => break,
                    }
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
            };
            self.handle(op);
        }
        // The tier was dropped; its queued operations have all been served.
        self.flush_touches();
    }

    fn handle(&mut self, op: Op) {
        // The byte total is published before the reply, so a caller that awaited an
        // operation reads a total that includes it. A caller that stopped waiting (a
        // cancelled request) dropped its receiver; the work is done all the same, so a
        // failed reply is ignored.
        match op {
            Op::Get { key, reply } => {
                let result = self.get(key).map_err(|e| self.err(e));
                self.publish_bytes();
                let _ = reply.send(result);
            }
            Op::Put {
                key,
                value,
                created_ms,
                reply,
            } => {
                let result = self.put(key, &value, created_ms).map_err(|e| self.err(e));
                self.publish_bytes();
                let _ = reply.send(result);
            }
            Op::Remove { key, reply } => {
                let result = self.delete(key).map_err(|e| self.err(e));
                self.publish_bytes();
                let _ = reply.send(result);
            }
            Op::Purge { before_ms, reply } => {
                let result = self.purge(before_ms).map_err(|e| self.err(e));
                self.publish_bytes();
                let _ = reply.send(result);
            }
            Op::Flush { reply } => {
                let _ = reply.send(self.flush().map_err(|e| self.err(e)));
            }
        }
    }

    fn publish_bytes(&self) {
        self.bytes.store(self.total, Ordering::Relaxed);
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn stamp(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_stamp = now.max(self.last_stamp.saturating_add(1));
        self.last_stamp
    }

    fn get(&mut self, key: CacheKey) -> rusqlite::Result<Option<Entry>> {
        let value: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT value FROM entries WHERE key = ?1")?
            .query_row([&key.0[..]], |r| r.get(0))
            .optional()?;
        let Some(value) = value else {
            return Ok(None);
        };
        match Entry::decode(&value) {
            Ok(entry) => {
                let stamp = self.stamp();
                self.touches.insert(key, stamp);
                if self.touches.len() >= MAX_PENDING_TOUCHES {
                    self.flush_touches();
                }
                Ok(Some(entry))
            }
            Err(e) => {
                tracing::debug!(key = ?key, error = %e, "dropping an undecodable cache row");
                self.delete(key)?;
                Ok(None)
            }
        }
    }

    fn put(&mut self, key: CacheKey, value: &[u8], created_ms: u64) -> rusqlite::Result<u64> {
        let size = value.len() as u64;
        let stamp = self.stamp();
        // The new row's own stamp supersedes a pending touch.
        self.touches.remove(&key);
        let tx = self.conn.transaction()?;
        // Recency must be current before choosing victims.
        write_touches(&tx, &mut self.touches)?;
        let old: Option<i64> = tx
            .prepare_cached("SELECT size FROM entries WHERE key = ?1")?
            .query_row([&key.0[..]], |r| r.get(0))
            .optional()?;
        let mut total = self.total.saturating_sub(old.map_or(0, to_u64));
        let mut evicted = 0;
        if size > self.max_bytes {
            // Too large to keep; the caller meant to replace what was there.
            tx.prepare_cached("DELETE FROM entries WHERE key = ?1")?
                .execute([&key.0[..]])?;
        } else {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO entries (key, value, created_ms, last_used_ms, size)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                &key.0[..],
                value,
                to_i64(created_ms),
                to_i64(stamp),
                to_i64(size)
            ])?;
            total += size;
            evicted = evict(&tx, &mut total, self.max_bytes, &key.0)?;
        }
        tx.commit()?;
        // Only after the commit: a rolled-back transaction leaves the total as it was.
        self.total = total;
        Ok(evicted)
    }

    fn delete(&mut self, key: CacheKey) -> rusqlite::Result<bool> {
        let size: Option<i64> = self
            .conn
            .prepare_cached("SELECT size FROM entries WHERE key = ?1")?
            .query_row([&key.0[..]], |r| r.get(0))
            .optional()?;
        let Some(size) = size else {
            return Ok(false);
        };
        self.conn
            .prepare_cached("DELETE FROM entries WHERE key = ?1")?
            .execute([&key.0[..]])?;
        self.total = self.total.saturating_sub(to_u64(size));
        self.touches.remove(&key);
        Ok(true)
    }

    fn purge(&mut self, before_ms: u64) -> rusqlite::Result<u64> {
        let deleted = self.conn.execute(
            "DELETE FROM entries WHERE created_ms < ?1",
            [to_i64(before_ms)],
        )?;
        // Purges are rare and bulk: recounting is simpler than summing what went.
        let total: i64 =
            self.conn
                .query_row("SELECT COALESCE(SUM(size), 0) FROM entries", [], |r| {
                    r.get(0)
                })?;
        self.total = to_u64(total);
        Ok(deleted as u64)
    }

    fn flush(&mut self) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        write_touches(&tx, &mut self.touches)?;
        tx.commit()?;
        // TRUNCATE also empties the -wal file, so a copied cache file is self-contained.
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    }

    /// Writes batched recency updates; a failure only costs recency, so it is logged.
    fn flush_touches(&mut self) {
        if self.touches.is_empty() {
            return;
        }
        let result = self.conn.transaction().and_then(|tx| {
            write_touches(&tx, &mut self.touches)?;
            tx.commit()
        });
        if let Err(e) = result {
            self.touches.clear();
            tracing::debug!(path = %self.path.display(), error = %e, "updating cache recency");
        }
    }

    fn shrink_to_bound(&mut self) -> rusqlite::Result<()> {
        if self.total <= self.max_bytes {
            return Ok(());
        }
        let mut total = self.total;
        let tx = self.conn.transaction()?;
        evict(&tx, &mut total, self.max_bytes, &[])?;
        tx.commit()?;
        self.total = total;
        Ok(())
    }
}

fn write_touches(conn: &Connection, touches: &mut HashMap<CacheKey, u64>) -> rusqlite::Result<()> {
    if touches.is_empty() {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached("UPDATE entries SET last_used_ms = ?2 WHERE key = ?1")?;
    for (key, stamp) in touches.drain() {
        stmt.execute(params![&key.0[..], to_i64(stamp)])?;
    }
    Ok(())
}

/// Deletes least recently used rows other than `keep` until `total` is within `max`;
/// returns how many went.
fn evict(conn: &Connection, total: &mut u64, max: u64, keep: &[u8]) -> rusqlite::Result<u64> {
    let mut evicted = 0;
    let mut select = conn.prepare_cached(
        "SELECT key, size FROM entries WHERE key != ?1 ORDER BY last_used_ms LIMIT ?2",
    )?;
    let mut delete = conn.prepare_cached("DELETE FROM entries WHERE key = ?1")?;
    while *total > max {
        let victims = select
            .query_map(params![keep, EVICTION_BATCH], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if victims.is_empty() {
            break;
        }
        for (key, size) in victims {
            delete.execute([&key])?;
            *total = total.saturating_sub(to_u64(size));
            evicted += 1;
            if *total <= max {
                break;
            }
        }
    }
    Ok(evicted)
}

/// SQLite integers are signed; sizes and times never reach 2^63, and saturating keeps a
/// corrupt value from wrapping.
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::cache::entry::Body;
    use crate::kind::Kind;

    fn key(n: u8) -> CacheKey {
        CacheKey([n; 32])
    }

    fn entry(body_len: usize, created_unix_ms: u64) -> Entry {
        Entry {
            kind: Kind::Completions,
            created_unix_ms,
            upstream: "sim".into(),
            model: "m".into(),
            input_tokens: 3,
            output_tokens: 4,
            ttft: Some(Duration::from_millis(5)),
            e2e: Duration::from_millis(6),
            body: Body::Json(Bytes::from(vec![b'x'; body_len])),
        }
    }

    fn encoded(body_len: usize) -> u64 {
        entry(body_len, 1).encode().len() as u64
    }

    #[tokio::test]
    async fn entries_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/cache.db");
        let tier = SqliteTier::open(&path, 1 << 20).unwrap();
        assert_eq!(tier.get(&key(1)).await.unwrap(), None);
        tier.put(key(1), &entry(100, 7)).await.unwrap();
        assert_eq!(tier.bytes(), encoded(100));
        tier.flush().await.unwrap();
        drop(tier);

        let tier = SqliteTier::open(&path, 1 << 20).unwrap();
        assert_eq!(tier.bytes(), encoded(100), "total read back from the file");
        assert_eq!(tier.get(&key(1)).await.unwrap(), Some(entry(100, 7)));
        assert!(tier.remove(&key(1)).await.unwrap());
        assert!(!tier.remove(&key(1)).await.unwrap());
        assert_eq!(tier.bytes(), 0);
    }

    #[tokio::test]
    async fn evicts_least_recently_used_rows_by_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let tier = SqliteTier::open(&dir.path().join("c.db"), 3 * encoded(100)).unwrap();
        for n in 1..=3 {
            assert_eq!(tier.put(key(n), &entry(100, 1)).await.unwrap(), 0);
        }
        // A hit on 1 makes 2 the least recently used.
        assert!(tier.get(&key(1)).await.unwrap().is_some());
        assert_eq!(tier.put(key(4), &entry(100, 1)).await.unwrap(), 1);
        assert_eq!(tier.get(&key(2)).await.unwrap(), None);
        for n in [1, 3, 4] {
            assert!(tier.get(&key(n)).await.unwrap().is_some(), "{n} kept");
        }
        assert_eq!(tier.bytes(), 3 * encoded(100));

        // Too large for the whole tier: not stored, nothing evicted for it.
        assert_eq!(tier.put(key(5), &entry(1_000, 1)).await.unwrap(), 0);
        assert_eq!(tier.get(&key(5)).await.unwrap(), None);
        assert_eq!(tier.bytes(), 3 * encoded(100));
    }

    #[tokio::test]
    async fn a_lowered_bound_applies_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let tier = SqliteTier::open(&path, 1 << 20).unwrap();
        for n in 1..=4 {
            tier.put(key(n), &entry(100, 1)).await.unwrap();
        }
        tier.flush().await.unwrap();
        drop(tier);
        let tier = SqliteTier::open(&path, 2 * encoded(100)).unwrap();
        assert_eq!(tier.bytes(), 2 * encoded(100));
        assert!(tier.get(&key(1)).await.unwrap().is_none());
        assert!(tier.get(&key(4)).await.unwrap().is_some());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = SqliteTier::open(&path, 1 << 20).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn an_undecodable_row_is_a_miss_and_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(SqliteTier::open(&path, 1 << 20).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute(
                "INSERT INTO entries (key, value, created_ms, last_used_ms, size)
                 VALUES (?1, x'00010203', 0, 0, 4)",
                [&key(9).0[..]],
            )
            .unwrap();
        }
        let tier = SqliteTier::open(&path, 1 << 20).unwrap();
        assert_eq!(tier.bytes(), 4);
        assert_eq!(tier.get(&key(9)).await.unwrap(), None);
        assert_eq!(tier.bytes(), 0, "the row was deleted");
        assert!(!tier.remove(&key(9)).await.unwrap());
    }

    #[tokio::test]
    async fn purge_removes_entries_created_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let tier = SqliteTier::open(&dir.path().join("c.db"), 1 << 20).unwrap();
        tier.put(key(1), &entry(10, 1_000)).await.unwrap();
        tier.put(key(2), &entry(10, 2_000)).await.unwrap();
        tier.put(key(3), &entry(10, 3_000)).await.unwrap();
        assert_eq!(tier.purge_older_than(2_500).await.unwrap(), 2);
        assert_eq!(tier.bytes(), encoded(10));
        assert!(tier.get(&key(1)).await.unwrap().is_none());
        assert!(tier.get(&key(3)).await.unwrap().is_some());
    }
}
