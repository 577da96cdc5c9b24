//! The gateway's data directory and the SQLite store in it that records every uploaded file
//! and every batch of `/v1/files` and `/v1/batches`.
//!
//! Layout (`data_dir` in the config):
//!
//! ```text
//! gateway.sqlite            this store: the file and batch rows (WAL mode)
//! files/file-…              uploaded contents (written as file-….part, then renamed)
//! batches/batch_…/          one batch's output.jsonl, errors.jsonl and the batch crate's
//!                           checkpoint beside them while it runs
//! ```
//!
//! A row's `path` is relative to the directory, so the directory can be moved whole. Output
//! and error files of a batch become file rows (`purpose` `batch_output`) pointing into the
//! batch's directory, in the same transaction that marks the batch finished.
//!
//! One gateway process owns a data directory: the store is opened in SQLite's exclusive
//! locking mode, so a second process gets [`StoreError::InUse`] instead of resuming the same
//! batches and appending to the same files. The lock goes with the connection
//! ([`Store::close`], or the process ending).
//!
//! It owns the rows and their SQL; what the rows mean to a client is `files`' and
//! `batches`'; running batches is `jobs`'.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OptionalExtension, Row, params};
use serde_json::Value;

/// The schema version written into new stores.
const SCHEMA_VERSION: &str = "1";

/// The store's file in the data directory.
const DB_FILE: &str = "gateway.sqlite";

/// Statuses of a batch that has not ended.
const UNFINISHED: &str = "('validating', 'in_progress', 'finalizing', 'cancelling')";

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// Another process holds the data directory.
    #[error(
        "the data directory '{}' is in use by another gateway process: give each gateway its own data_dir",
        path.display()
    )]
    InUse {
        /// The data directory.
        path: PathBuf,
    },
    /// A file or directory could not be read or written.
    #[error("{action} '{}': {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("the store '{}': {source}", path.display())]
    Sqlite {
        /// The store's file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The store was written by another version.
    #[error("the store '{}' has format version {found}; this build reads version {SCHEMA_VERSION}", path.display())]
    Version {
        /// The store's file.
        path: PathBuf,
        /// Its version.
        found: String,
    },
    /// The gateway is shutting down and has closed the store.
    #[error("the gateway is shutting down")]
    Closed,
    /// A background task failed.
    #[error("an internal task failed: {0}")]
    Task(String),
}

impl StoreError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        StoreError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<StoreError> for dispatch::DispatchError {
    fn from(e: StoreError) -> Self {
        use dispatch::{DispatchError, ErrorKind};
        match e {
            StoreError::Closed => DispatchError::new(ErrorKind::Unavailable, e.to_string()),
            StoreError::InUse { .. } => DispatchError::new(ErrorKind::Unavailable, e.to_string()),
            other => DispatchError::new(
                ErrorKind::Internal,
                format!("the gateway's data directory failed: {other}"),
            ),
        }
    }
}

/// Now, in Unix seconds (the API's timestamps).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// An uploaded file, or a batch's output or error file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRow {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) filename: String,
    /// `batch` (uploaded) or `batch_output` (written by a batch).
    pub(crate) purpose: String,
    pub(crate) bytes: u64,
    pub(crate) created_at: i64,
    /// The content, relative to the data directory.
    pub(crate) path: String,
}

/// A batch's status, as the Batch API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Validating => "validating",
            Status::Failed => "failed",
            Status::InProgress => "in_progress",
            Status::Finalizing => "finalizing",
            Status::Completed => "completed",
            Status::Expired => "expired",
            Status::Cancelling => "cancelling",
            Status::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        [
            Status::Validating,
            Status::Failed,
            Status::InProgress,
            Status::Finalizing,
            Status::Completed,
            Status::Expired,
            Status::Cancelling,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// Request counts of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
}

/// A batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchRow {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) endpoint: String,
    pub(crate) input_file_id: String,
    pub(crate) completion_window: String,
    pub(crate) status: Status,
    pub(crate) output_file_id: Option<String>,
    pub(crate) error_file_id: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) in_progress_at: Option<i64>,
    pub(crate) finalizing_at: Option<i64>,
    pub(crate) completed_at: Option<i64>,
    pub(crate) failed_at: Option<i64>,
    pub(crate) expired_at: Option<i64>,
    pub(crate) cancelling_at: Option<i64>,
    pub(crate) cancelled_at: Option<i64>,
    pub(crate) counts: Counts,
    pub(crate) metadata: Option<Value>,
    /// `{"object": "list", "data": [...]}` when validation or the run failed.
    pub(crate) errors: Option<Value>,
}

/// One page of a list, and whether more follow.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    pub(crate) has_more: bool,
}

/// List order by creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

/// How a batch run ended, for [`Store::finish`].
#[derive(Debug, Clone)]
pub(crate) struct Finish {
    pub(crate) status: Status,
    pub(crate) counts: Counts,
    pub(crate) output: Option<FileRow>,
    pub(crate) errors: Option<FileRow>,
}

/// The store. Shared as `Arc<Store>`; every method blocks (call it through [`Store::run`]).
#[derive(Debug)]
pub(crate) struct Store {
    root: PathBuf,
    db: PathBuf,
    conn: Mutex<Option<Connection>>,
}

const FILE_COLS: &str = "id, tenant, filename, purpose, bytes, created_at, path";
const BATCH_COLS: &str = "id, tenant, endpoint, input_file_id, completion_window, status, \
     output_file_id, error_file_id, created_at, in_progress_at, finalizing_at, completed_at, \
     failed_at, expired_at, cancelling_at, cancelled_at, total, completed, failed, metadata, errors";

fn file_row(r: &Row<'_>) -> rusqlite::Result<FileRow> {
    Ok(FileRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        filename: r.get(2)?,
        purpose: r.get(3)?,
        bytes: r.get::<_, i64>(4)?.max(0) as u64,
        created_at: r.get(5)?,
        path: r.get(6)?,
    })
}

fn json_col(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<Value>> {
    Ok(r.get::<_, Option<String>>(i)?
        .and_then(|t| serde_json::from_str(&t).ok()))
}

fn batch_row(r: &Row<'_>) -> rusqlite::Result<BatchRow> {
    let status: String = r.get(5)?;
    let count = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
    Ok(BatchRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        endpoint: r.get(2)?,
        input_file_id: r.get(3)?,
        completion_window: r.get(4)?,
        // A status this build does not know is shown as failed rather than breaking reads.
        status: Status::parse(&status).unwrap_or(Status::Failed),
        output_file_id: r.get(6)?,
        error_file_id: r.get(7)?,
        created_at: r.get(8)?,
        in_progress_at: r.get(9)?,
        finalizing_at: r.get(10)?,
        completed_at: r.get(11)?,
        failed_at: r.get(12)?,
        expired_at: r.get(13)?,
        cancelling_at: r.get(14)?,
        cancelled_at: r.get(15)?,
        counts: Counts {
            total: count(16)?,
            completed: count(17)?,
            failed: count(18)?,
        },
        metadata: json_col(r, 19)?,
        errors: json_col(r, 20)?,
    })
}

fn insert_file(conn: &Connection, f: &FileRow) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO files (id, tenant, filename, purpose, bytes, created_at, path) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            f.id,
            f.tenant,
            f.filename,
            f.purpose,
            i64::try_from(f.bytes).unwrap_or(i64::MAX),
            f.created_at,
            f.path
        ],
    )
    .map(drop)
}

fn busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

impl Store {
    /// Whether `root` holds a store (so there may be batches to resume).
    pub(crate) fn exists(root: &Path) -> bool {
        root.join(DB_FILE).is_file()
    }

    /// Opens (creating when needed) the data directory `root` and its store, takes the
    /// directory's lock, and removes uploads a crash left half-written.
    pub(crate) fn open(root: &Path) -> Result<Store, StoreError> {
        let files = root.join("files");
        std::fs::create_dir_all(&files).map_err(|e| StoreError::io("creating", &files, e))?;
        let db = root.join(DB_FILE);
        let sql = |e| StoreError::Sqlite {
            path: db.clone(),
            source: e,
        };
        let in_use = |e: rusqlite::Error| {
            if busy(&e) {
                StoreError::InUse {
                    path: root.to_owned(),
                }
            } else {
                sql(e)
            }
        };
        let mut conn = Connection::open(&db).map_err(sql)?;
        conn.busy_timeout(Duration::from_millis(500)).map_err(sql)?;
        // EXCLUSIVE: the first write takes the lock and keeps it while the connection lives
        // (see the module docs); in WAL mode it also means no shared-memory file. FULL: a
        // batch's state changes are few, and losing one to a power cut would re-run or
        // orphan its files.
        conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE;")
            .map_err(sql)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(in_use)?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(in_use)?;
        let tx = conn.transaction().map_err(in_use)?;
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS files (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 id TEXT NOT NULL UNIQUE,
                 tenant TEXT NOT NULL,
                 filename TEXT NOT NULL,
                 purpose TEXT NOT NULL,
                 bytes INTEGER NOT NULL,
                 created_at INTEGER NOT NULL,
                 path TEXT NOT NULL,
                 deleted INTEGER NOT NULL DEFAULT 0);
             CREATE INDEX IF NOT EXISTS files_by_tenant ON files (tenant, seq);
             CREATE TABLE IF NOT EXISTS batches (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 id TEXT NOT NULL UNIQUE,
                 tenant TEXT NOT NULL,
                 endpoint TEXT NOT NULL,
                 input_file_id TEXT NOT NULL,
                 completion_window TEXT NOT NULL,
                 status TEXT NOT NULL,
                 output_file_id TEXT,
                 error_file_id TEXT,
                 created_at INTEGER NOT NULL,
                 in_progress_at INTEGER,
                 finalizing_at INTEGER,
                 completed_at INTEGER,
                 failed_at INTEGER,
                 expired_at INTEGER,
                 cancelling_at INTEGER,
                 cancelled_at INTEGER,
                 total INTEGER NOT NULL DEFAULT 0,
                 completed INTEGER NOT NULL DEFAULT 0,
                 failed INTEGER NOT NULL DEFAULT 0,
                 metadata TEXT,
                 errors TEXT);
             CREATE INDEX IF NOT EXISTS batches_by_tenant ON batches (tenant, seq);
             CREATE INDEX IF NOT EXISTS batches_unfinished ON batches (status) WHERE status IN {UNFINISHED};
             INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');"
        ))
        .map_err(in_use)?;
        let version: String = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Version {
                path: db.clone(),
                found: version,
            });
        }
        tx.commit().map_err(in_use)?;
        // Uploads cut off by a crash: nobody else writes here (the lock is ours).
        let entries =
            std::fs::read_dir(&files).map_err(|e| StoreError::io("reading", &files, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "part") {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(Store {
            root: root.to_owned(),
            db,
            conn: Mutex::new(Some(conn)),
        })
    }

    /// Closes the connection, releasing the directory's lock; later calls get
    /// [`StoreError::Closed`].
    pub(crate) fn close(&self) {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(conn);
    }

    /// `path` (inside the data directory) as a row stores it.
    pub(crate) fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// Where a file row's content is.
    pub(crate) fn content_path(&self, f: &FileRow) -> PathBuf {
        self.root.join(&f.path)
    }

    /// The relative path of an upload's content, and of its temporary file while it is
    /// written.
    pub(crate) fn upload_paths(&self, id: &str) -> (String, PathBuf) {
        let rel = format!("files/{id}");
        let part = self.root.join(format!("{rel}.part"));
        (rel, part)
    }

    /// A batch's directory.
    pub(crate) fn batch_dir(&self, id: &str) -> PathBuf {
        self.root.join("batches").join(id)
    }

    /// Runs `f` on a blocking thread (every store call does disk I/O).
    pub(crate) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let conn = guard.as_mut().ok_or(StoreError::Closed)?;
        f(conn).map_err(|e| StoreError::Sqlite {
            path: self.db.clone(),
            source: e,
        })
    }

    /// Records an uploaded file.
    pub(crate) fn add_file(&self, f: &FileRow) -> Result<(), StoreError> {
        self.with(|c| insert_file(c, f))
    }

    /// A file of `tenant` (any tenant with `None`) that is not deleted.
    pub(crate) fn file(
        &self,
        tenant: Option<&str>,
        id: &str,
    ) -> Result<Option<FileRow>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!(
                    "SELECT {FILE_COLS} FROM files WHERE id = ?1 AND deleted = 0 AND (?2 IS NULL OR tenant = ?2)"
                ),
                params![id, tenant],
                file_row,
            )
            .optional()
        })
    }

    /// A batch's input file, deleted or not (a deleted input keeps its content until the
    /// batch ends).
    pub(crate) fn input_file(&self, id: &str) -> Result<Option<FileRow>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {FILE_COLS} FROM files WHERE id = ?1"),
                [id],
                file_row,
            )
            .optional()
        })
    }

    /// `tenant`'s files, optionally of one purpose, after the file `after` in `order`;
    /// `None` when `after` is not one of its files.
    pub(crate) fn files(
        &self,
        tenant: &str,
        purpose: Option<&str>,
        order: Order,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Page<FileRow>>, StoreError> {
        self.with(|c| {
            let cursor = match after {
                None => None,
                Some(id) => match c
                    .query_row(
                        "SELECT seq FROM files WHERE id = ?1 AND tenant = ?2 AND deleted = 0",
                        params![id, tenant],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()?
                {
                    Some(seq) => Some(seq),
                    None => return Ok(None),
                },
            };
            let (cmp, dir) = match order {
                Order::Asc => (">", "ASC"),
                Order::Desc => ("<", "DESC"),
            };
            let mut stmt = c.prepare(&format!(
                "SELECT {FILE_COLS} FROM files WHERE tenant = ?1 AND deleted = 0 \
                 AND (?2 IS NULL OR purpose = ?2) AND (?3 IS NULL OR seq {cmp} ?3) \
                 ORDER BY seq {dir} LIMIT ?4"
            ))?;
            let mut items = stmt
                .query_map(
                    params![tenant, purpose, cursor, limit.saturating_add(1) as i64],
                    file_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let has_more = items.len() > limit;
            items.truncate(limit);
            Ok(Some(Page { items, has_more }))
        })
    }

    /// Deletes `tenant`'s file `id`: it is gone for clients at once; its content is removed
    /// by [`Store::purge`] once no unfinished batch reads it. `None` when there is no such
    /// file.
    pub(crate) fn delete_file(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<FileRow>, StoreError> {
        self.with(|c| {
            let row = c
                .query_row(
                    &format!(
                        "SELECT {FILE_COLS} FROM files WHERE id = ?1 AND tenant = ?2 AND deleted = 0"
                    ),
                    params![id, tenant],
                    file_row,
                )
                .optional()?;
            if row.is_some() {
                c.execute("UPDATE files SET deleted = 1 WHERE id = ?1", [id])?;
            }
            Ok(row)
        })
    }

    /// Removes the content and the row of every deleted file no unfinished batch reads.
    /// Returns how many.
    pub(crate) fn purge(&self) -> Result<usize, StoreError> {
        let gone: Vec<FileRow> = self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {FILE_COLS} FROM files f WHERE deleted = 1 AND NOT EXISTS \
                 (SELECT 1 FROM batches b WHERE b.input_file_id = f.id AND b.status IN {UNFINISHED})"
            ))?;
            stmt.query_map([], file_row)?.collect()
        })?;
        for f in &gone {
            let path = self.content_path(f);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("removing", path, e)),
            }
            self.with(|c| c.execute("DELETE FROM files WHERE id = ?1 AND deleted = 1", [&f.id]))?;
        }
        Ok(gone.len())
    }

    /// Records a new batch.
    pub(crate) fn add_batch(&self, b: &BatchRow) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO batches (id, tenant, endpoint, input_file_id, completion_window, status, created_at, metadata) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    b.id,
                    b.tenant,
                    b.endpoint,
                    b.input_file_id,
                    b.completion_window,
                    b.status.as_str(),
                    b.created_at,
                    b.metadata.as_ref().map(Value::to_string),
                ],
            )
            .map(drop)
        })
    }

    /// A batch of `tenant` (any tenant with `None`).
    pub(crate) fn batch(
        &self,
        tenant: Option<&str>,
        id: &str,
    ) -> Result<Option<BatchRow>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!(
                    "SELECT {BATCH_COLS} FROM batches WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)"
                ),
                params![id, tenant],
                batch_row,
            )
            .optional()
        })
    }

    /// `tenant`'s batches, newest first, after the batch `after`; `None` when `after` is
    /// not one of its batches.
    pub(crate) fn batches(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Option<Page<BatchRow>>, StoreError> {
        self.with(|c| {
            let cursor = match after {
                None => None,
                Some(id) => match c
                    .query_row(
                        "SELECT seq FROM batches WHERE id = ?1 AND tenant = ?2",
                        params![id, tenant],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()?
                {
                    Some(seq) => Some(seq),
                    None => return Ok(None),
                },
            };
            let mut stmt = c.prepare(&format!(
                "SELECT {BATCH_COLS} FROM batches WHERE tenant = ?1 AND (?2 IS NULL OR seq < ?2) \
                 ORDER BY seq DESC LIMIT ?3"
            ))?;
            let mut items = stmt
                .query_map(
                    params![tenant, cursor, limit.saturating_add(1) as i64],
                    batch_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let has_more = items.len() > limit;
            items.truncate(limit);
            Ok(Some(Page { items, has_more }))
        })
    }

    /// Ids of the batches that have not ended, oldest first (to resume at start).
    pub(crate) fn unfinished(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT id FROM batches WHERE status IN {UNFINISHED} ORDER BY seq"
            ))?;
            stmt.query_map([], |r| r.get(0))?.collect()
        })
    }

    /// A batch's status now.
    pub(crate) fn status(&self, id: &str) -> Result<Option<Status>, StoreError> {
        let s: Option<String> = self.with(|c| {
            c.query_row("SELECT status FROM batches WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
        })?;
        Ok(s.as_deref().and_then(Status::parse))
    }

    /// Validation passed with `total` request lines: `validating` becomes `in_progress`
    /// (a batch cancelled meanwhile stays `cancelling`).
    pub(crate) fn validated(&self, id: &str, total: u64, now: i64) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE batches SET total = ?2 WHERE id = ?1",
                params![id, i64::try_from(total).unwrap_or(i64::MAX)],
            )?;
            tx.execute(
                "UPDATE batches SET status = 'in_progress', in_progress_at = ?2 WHERE id = ?1 AND status = 'validating'",
                params![id, now],
            )?;
            tx.commit()
        })
    }

    /// The batch failed (validation, or the run could not go on), with `errors`.
    pub(crate) fn fail(&self, id: &str, errors: &Value, now: i64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                &format!(
                    "UPDATE batches SET status = 'failed', failed_at = ?2, errors = ?3 WHERE id = ?1 AND status IN {UNFINISHED}"
                ),
                params![id, now, errors.to_string()],
            )
            .map(drop)
        })
    }

    /// Asks to cancel `tenant`'s batch `id`: `validating` or `in_progress` becomes
    /// `cancelling`. Returns whether it changed, and the batch (`None`: no such batch).
    pub(crate) fn request_cancel(
        &self,
        tenant: &str,
        id: &str,
        now: i64,
    ) -> Result<(bool, Option<BatchRow>), StoreError> {
        let changed = self.with(|c| {
            c.execute(
                "UPDATE batches SET status = 'cancelling', cancelling_at = ?3 \
                 WHERE id = ?1 AND tenant = ?2 AND status IN ('validating', 'in_progress')",
                params![id, tenant, now],
            )
        })? > 0;
        Ok((changed, self.batch(Some(tenant), id)?))
    }

    /// Every line of the batch is done: `in_progress` becomes `finalizing`. Returns the
    /// status after (a batch cancelled meanwhile stays `cancelling`).
    pub(crate) fn finalizing(&self, id: &str, now: i64) -> Result<Option<Status>, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE batches SET status = 'finalizing', finalizing_at = ?2 WHERE id = ?1 AND status = 'in_progress'",
                params![id, now],
            )
        })?;
        self.status(id)
    }

    /// Records the counts of a batch that stopped before its end (the gateway shut down).
    pub(crate) fn save_counts(&self, id: &str, counts: Counts) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE batches SET total = ?2, completed = ?3, failed = ?4 WHERE id = ?1",
                params![
                    id,
                    i64::try_from(counts.total).unwrap_or(i64::MAX),
                    i64::try_from(counts.completed).unwrap_or(i64::MAX),
                    i64::try_from(counts.failed).unwrap_or(i64::MAX)
                ],
            )
            .map(drop)
        })
    }

    /// Ends a `finalizing` or `cancelling` batch in one transaction: its output and error
    /// files become file rows, and its status `completed` or `cancelled`.
    pub(crate) fn finish(&self, id: &str, end: &Finish, now: i64) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            for f in [&end.output, &end.errors].into_iter().flatten() {
                insert_file(&tx, f)?;
            }
            let (at, from) = match end.status {
                Status::Cancelled => ("cancelled_at", "'finalizing', 'cancelling'"),
                // Expiry ends a batch still in progress.
                Status::Expired => ("expired_at", "'in_progress'"),
                _ => ("completed_at", "'finalizing', 'cancelling'"),
            };
            tx.execute(
                &format!(
                    "UPDATE batches SET status = ?2, {at} = ?3, total = ?4, completed = ?5, failed = ?6, \
                     output_file_id = ?7, error_file_id = ?8 \
                     WHERE id = ?1 AND status IN ({from})"
                ),
                params![
                    id,
                    end.status.as_str(),
                    now,
                    i64::try_from(end.counts.total).unwrap_or(i64::MAX),
                    i64::try_from(end.counts.completed).unwrap_or(i64::MAX),
                    i64::try_from(end.counts.failed).unwrap_or(i64::MAX),
                    end.output.as_ref().map(|f| f.id.as_str()),
                    end.errors.as_ref().map(|f| f.id.as_str()),
                ],
            )?;
            tx.commit()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: &str, tenant: &str) -> FileRow {
        FileRow {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            filename: "in.jsonl".to_owned(),
            purpose: "batch".to_owned(),
            bytes: 10,
            created_at: 1,
            path: format!("files/{id}"),
        }
    }

    fn batch(id: &str, tenant: &str, input: &str) -> BatchRow {
        BatchRow {
            id: id.to_owned(),
            tenant: tenant.to_owned(),
            endpoint: "/v1/chat/completions".to_owned(),
            input_file_id: input.to_owned(),
            completion_window: "24h".to_owned(),
            status: Status::Validating,
            output_file_id: None,
            error_file_id: None,
            created_at: 1,
            in_progress_at: None,
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            counts: Counts::default(),
            metadata: Some(serde_json::json!({"k": "v"})),
            errors: None,
        }
    }

    #[test]
    fn a_second_opener_of_the_directory_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap();
        let second = Store::open(dir.path()).unwrap_err();
        assert!(matches!(second, StoreError::InUse { .. }), "{second}");
        first.close();
        assert!(matches!(first.file(None, "x"), Err(StoreError::Closed)));
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.file(None, "x").unwrap(), None);
    }

    #[test]
    fn lists_page_by_tenant_and_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for i in 0..5 {
            s.add_file(&file(&format!("file-{i}"), "a")).unwrap();
        }
        s.add_file(&file("file-b", "b")).unwrap();
        let page = s.files("a", None, Order::Desc, None, 2).unwrap().unwrap();
        let ids: Vec<&str> = page.items.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["file-4", "file-3"]);
        assert!(page.has_more);
        let page = s
            .files("a", None, Order::Desc, Some("file-1"), 10)
            .unwrap()
            .unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].id, "file-0");
        assert!(!page.has_more);
        let page = s
            .files("a", None, Order::Asc, Some("file-3"), 10)
            .unwrap()
            .unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].id, "file-4");
        // Another tenant's id is no cursor, and its files are not listed.
        assert_eq!(
            s.files("a", None, Order::Desc, Some("file-b"), 10).unwrap(),
            None
        );
        assert_eq!(
            s.files("b", None, Order::Desc, None, 10)
                .unwrap()
                .unwrap()
                .items
                .len(),
            1
        );
        assert_eq!(
            s.files("a", Some("batch_output"), Order::Desc, None, 10)
                .unwrap()
                .unwrap()
                .items
                .len(),
            0
        );
    }

    #[test]
    fn a_deleted_input_keeps_its_content_until_its_batch_ends() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let f = file("file-1", "a");
        std::fs::write(s.content_path(&f), b"x\n").unwrap();
        s.add_file(&f).unwrap();
        s.add_batch(&batch("batch_1", "a", "file-1")).unwrap();
        assert_eq!(
            s.delete_file("b", "file-1").unwrap(),
            None,
            "another tenant's"
        );
        assert!(s.delete_file("a", "file-1").unwrap().is_some());
        assert_eq!(s.file(Some("a"), "file-1").unwrap(), None);
        assert_eq!(s.purge().unwrap(), 0);
        assert!(s.content_path(&f).exists());
        assert!(s.input_file("file-1").unwrap().is_some());
        s.fail(
            "batch_1",
            &serde_json::json!({"object": "list", "data": []}),
            2,
        )
        .unwrap();
        assert_eq!(s.purge().unwrap(), 1);
        assert!(!s.content_path(&f).exists());
        assert_eq!(s.input_file("file-1").unwrap(), None);
    }

    #[test]
    fn batch_states_move_only_forward() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.add_batch(&batch("batch_1", "a", "file-1")).unwrap();
        assert_eq!(s.unfinished().unwrap(), ["batch_1"]);
        s.validated("batch_1", 3, 5).unwrap();
        let b = s.batch(Some("a"), "batch_1").unwrap().unwrap();
        assert_eq!(
            (b.status, b.counts.total, b.in_progress_at),
            (Status::InProgress, 3, Some(5))
        );
        assert_eq!(b.metadata, Some(serde_json::json!({"k": "v"})));
        assert_eq!(s.batch(Some("b"), "batch_1").unwrap(), None);
        let (changed, b) = s.request_cancel("a", "batch_1", 6).unwrap();
        assert!(changed);
        assert_eq!(b.unwrap().status, Status::Cancelling);
        // A run that ends now does not take it back to finalizing.
        assert_eq!(
            s.finalizing("batch_1", 7).unwrap(),
            Some(Status::Cancelling)
        );
        let end = Finish {
            status: Status::Cancelled,
            counts: Counts {
                total: 3,
                completed: 1,
                failed: 0,
            },
            output: Some(FileRow {
                purpose: "batch_output".to_owned(),
                ..file("file-out", "a")
            }),
            errors: None,
        };
        s.finish("batch_1", &end, 8).unwrap();
        let b = s.batch(None, "batch_1").unwrap().unwrap();
        assert_eq!(b.status, Status::Cancelled);
        assert_eq!(b.cancelled_at, Some(8));
        assert_eq!(b.output_file_id.as_deref(), Some("file-out"));
        assert_eq!(b.counts.completed, 1);
        assert!(s.unfinished().unwrap().is_empty());
        let (changed, _) = s.request_cancel("a", "batch_1", 9).unwrap();
        assert!(!changed, "a cancelled batch is not cancelled again");
        assert_eq!(
            s.file(Some("a"), "file-out").unwrap().unwrap().purpose,
            "batch_output"
        );
    }
}
