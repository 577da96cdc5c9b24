//! The checkpoint store: an SQLite file beside the output (`OUT.tokenpace-state`, in WAL
//! mode) that records which input lines have their result written, and to which file.
//!
//! The output and error files are the truth; the store is an index of them that makes
//! "is this line done?" one lookup. The write protocol keeps the two in step:
//!
//! 1. a result line is appended to its file with a single write, then the file is fsynced;
//! 2. only then is the line marked done, in one transaction.
//!
//! So the store never claims a line that is not in a file. A crash between 1 and 2 leaves a
//! line in a file that the store lacks, and a crash inside 1 leaves a torn last line (no
//! `\n`). [`Checkpoint::reconcile`], run before every resumed run, repairs both: it cuts a
//! torn tail off each file, marks done every line found in the files, and forgets marks
//! whose line is not in the files (a file removed or replaced by hand) so those lines run
//! again. Because the files are fsynced before the store commits, the store can run with
//! `synchronous = NORMAL`: a commit lost to a power failure is recovered from the files.
//!
//! A store belongs to one input (its size and a hash of its first 64 KiB) and one error
//! file; opening it for anything else is refused with a message that says what to do.

use std::fs::OpenOptions;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::error::BatchError;
use crate::record::{self, Dest, Key};
use crate::validate::{Fingerprint, LineReader};

/// The schema version written into new stores.
const SCHEMA_VERSION: &str = "1";

/// What a store belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateMeta {
    /// The input's fingerprint.
    pub input: Fingerprint,
    /// The error file (absolute).
    pub errors: PathBuf,
}

/// Whether [`Checkpoint::open`] made a new store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// There was none.
    Created,
    /// An existing store for the same input.
    Resumed,
}

/// Lines marked done, per file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DoneCounts {
    /// Lines in the output file.
    pub output: u64,
    /// Lines in the error file.
    pub errors: u64,
}

impl DoneCounts {
    /// Both.
    pub fn total(&self) -> u64 {
        self.output + self.errors
    }
}

/// What reconciliation changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Lines found in the files that the store did not have (a crash between the write
    /// and the commit).
    pub recovered: u64,
    /// Marks dropped because their line is not in the files; those lines run again.
    pub forgotten: u64,
    /// Bytes cut off the files' ends (a torn last line).
    pub truncated_bytes: u64,
    /// Lines found more than once in the files (kept; reported).
    pub duplicates: u64,
}

/// The store.
#[derive(Debug)]
pub struct Checkpoint {
    conn: Connection,
    path: PathBuf,
}

/// The store's path for an output file: `OUT` with `.tokenpace-state` appended.
pub fn state_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".tokenpace-state");
    PathBuf::from(name)
}

impl Checkpoint {
    fn err(&self, e: rusqlite::Error) -> BatchError {
        BatchError::store(&self.path, e)
    }

    fn configure(conn: &Connection, path: &Path) -> Result<(), BatchError> {
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| BatchError::store(path, e))?;
        // WAL: the feeder reads while the writer commits. NORMAL: see the module docs.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(|e| BatchError::store(path, e))
    }

    /// Opens the store at `path`, creating it when there is none; refuses a store that
    /// belongs to another input or error file.
    pub fn open(path: &Path, meta: &StateMeta) -> Result<(Checkpoint, Opened), BatchError> {
        let conn = Connection::open(path).map_err(|e| BatchError::store(path, e))?;
        Self::configure(&conn, path)?;
        let mut cp = Checkpoint {
            conn,
            path: path.to_owned(),
        };
        let tx = cp
            .conn
            .transaction()
            .map_err(|e| BatchError::store(path, e))?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS done_id (custom_id TEXT PRIMARY KEY, dest INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS done_line (line INTEGER PRIMARY KEY, dest INTEGER NOT NULL);",
        )
        .map_err(|e| BatchError::store(path, e))?;
        let get = |key: &str| -> Result<Option<String>, BatchError> {
            tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(|e| BatchError::store(path, e))
        };
        let opened = match get("input_size")? {
            None => {
                // New, or created by a run that died before writing its meta (and so
                // before writing any line).
                let errors = meta.errors.display().to_string();
                for (k, v) in [
                    ("schema_version", SCHEMA_VERSION),
                    ("input_size", &meta.input.size.to_string()),
                    ("input_head_sha256", &meta.input.head_sha256),
                    ("errors_file", &errors),
                ] {
                    tx.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                        params![k, v],
                    )
                    .map_err(|e| BatchError::store(path, e))?;
                }
                Opened::Created
            }
            Some(size) => {
                let version = get("schema_version")?.unwrap_or_default();
                if version != SCHEMA_VERSION {
                    return Err(BatchError::State(format!(
                        "the state '{}' has format version {version}, this build reads version {SCHEMA_VERSION}: finish the batch with the tokenpace that started it, or delete the state and the output files to start over",
                        path.display()
                    )));
                }
                let hash = get("input_head_sha256")?.unwrap_or_default();
                if size != meta.input.size.to_string() || hash != meta.input.head_sha256 {
                    return Err(BatchError::State(format!(
                        "the state '{}' belongs to another input file (size {size} bytes, first 64 KiB hash {}…), not this one (size {} bytes, hash {}…): resume with the input that started it, or choose another --output, or delete the state and the output files to start over",
                        path.display(),
                        hash.get(..12).unwrap_or(&hash),
                        meta.input.size,
                        meta.input.head_sha256.get(..12).unwrap_or_default(),
                    )));
                }
                let errors = get("errors_file")?.unwrap_or_default();
                if errors != meta.errors.display().to_string() {
                    return Err(BatchError::State(format!(
                        "the state '{}' was started with the error file '{errors}', not '{}': resume with --errors {errors}",
                        path.display(),
                        meta.errors.display()
                    )));
                }
                Opened::Resumed
            }
        };
        tx.commit().map_err(|e| BatchError::store(path, e))?;
        Ok((cp, opened))
    }

    /// A second connection for reading while another writes (WAL allows it).
    pub fn open_reader(path: &Path) -> Result<Checkpoint, BatchError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| BatchError::store(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| BatchError::store(path, e))?;
        Ok(Checkpoint {
            conn,
            path: path.to_owned(),
        })
    }

    /// Whether `key`'s result is recorded.
    pub fn is_done(&self, key: &Key) -> Result<bool, BatchError> {
        let found = match key {
            Key::Id(id) => self
                .conn
                .prepare_cached("SELECT 1 FROM done_id WHERE custom_id = ?1")
                .and_then(|mut s| s.exists([id])),
            Key::Line(n) => self
                .conn
                .prepare_cached("SELECT 1 FROM done_line WHERE line = ?1")
                .and_then(|mut s| s.exists([*n as i64])),
        };
        found.map_err(|e| self.err(e))
    }

    /// Marks `done` in one transaction. Call only after their lines are written and synced.
    pub fn mark(&mut self, done: &[(Key, Dest)]) -> Result<(), BatchError> {
        let path = self.path.clone();
        let e = |e| BatchError::store(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut by_id = tx
                .prepare_cached("INSERT OR REPLACE INTO done_id (custom_id, dest) VALUES (?1, ?2)")
                .map_err(e)?;
            let mut by_line = tx
                .prepare_cached("INSERT OR REPLACE INTO done_line (line, dest) VALUES (?1, ?2)")
                .map_err(e)?;
            for (key, dest) in done {
                match key {
                    Key::Id(id) => by_id.execute(params![id, dest.code()]),
                    Key::Line(n) => by_line.execute(params![*n as i64, dest.code()]),
                }
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// Lines marked done, per file.
    pub fn counts(&self) -> Result<DoneCounts, BatchError> {
        let count = |sql: &str, dest: Dest| -> Result<u64, BatchError> {
            self.conn
                .query_row(sql, [dest.code()], |r| r.get::<_, i64>(0))
                .map(|n| n.max(0) as u64)
                .map_err(|e| self.err(e))
        };
        let ids = "SELECT COUNT(*) FROM done_id WHERE dest = ?1";
        let lines = "SELECT COUNT(*) FROM done_line WHERE dest = ?1";
        Ok(DoneCounts {
            output: count(ids, Dest::Output)? + count(lines, Dest::Output)?,
            errors: count(ids, Dest::Errors)? + count(lines, Dest::Errors)?,
        })
    }

    /// Brings the store in line with the files (see the module docs): cuts torn tails,
    /// marks what the files hold, forgets what they do not.
    pub fn reconcile(&mut self, output: &Path, errors: &Path) -> Result<Reconciled, BatchError> {
        let path = self.path.clone();
        let e = |e| BatchError::store(&path, e);
        let mut report = Reconciled::default();
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS found_id (custom_id TEXT PRIMARY KEY, dest INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TEMP TABLE IF NOT EXISTS found_line (line INTEGER PRIMARY KEY, dest INTEGER NOT NULL);
             DELETE FROM found_id; DELETE FROM found_line;",
        )
        .map_err(e)?;
        {
            let mut by_id = tx
                .prepare("INSERT OR IGNORE INTO found_id (custom_id, dest) VALUES (?1, ?2)")
                .map_err(e)?;
            let mut by_line = tx
                .prepare("INSERT OR IGNORE INTO found_line (line, dest) VALUES (?1, ?2)")
                .map_err(e)?;
            for (file, dest) in [(output, Dest::Output), (errors, Dest::Errors)] {
                report.truncated_bytes += scan(file, &mut |key| {
                    let inserted = match &key {
                        Key::Id(id) => by_id.execute(params![id, dest.code()]),
                        Key::Line(n) => by_line.execute(params![*n as i64, dest.code()]),
                    }
                    .map_err(e)?;
                    if inserted == 0 {
                        report.duplicates += 1;
                    }
                    Ok(())
                })?;
            }
        }
        report.recovered = (tx
            .execute(
                "INSERT OR IGNORE INTO done_id (custom_id, dest) SELECT custom_id, dest FROM found_id",
                [],
            )
            .map_err(e)?
            + tx
                .execute(
                    "INSERT OR IGNORE INTO done_line (line, dest) SELECT line, dest FROM found_line",
                    [],
                )
                .map_err(e)?) as u64;
        report.forgotten = (tx
            .execute(
                "DELETE FROM done_id WHERE custom_id NOT IN (SELECT custom_id FROM found_id)",
                [],
            )
            .map_err(e)?
            + tx.execute(
                "DELETE FROM done_line WHERE line NOT IN (SELECT line FROM found_line)",
                [],
            )
            .map_err(e)?) as u64;
        tx.execute_batch("DELETE FROM found_id; DELETE FROM found_line;")
            .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(report)
    }
}

/// Reads every result line of `path`, calling `found` with what each answers; cuts off a
/// torn tail (a last line without `\n`, or trailing lines that are not result lines, as
/// a power failure can leave) and returns the bytes cut. A non-result line followed by
/// result lines means something else wrote to the file: that is refused, not repaired.
fn scan(
    path: &Path,
    found: &mut dyn FnMut(Key) -> Result<(), BatchError>,
) -> Result<u64, BatchError> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(BatchError::io("opening", path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| BatchError::io("reading", path, e))?
        .len();
    let mut good_end = 0u64;
    let mut bad: Option<u64> = None;
    {
        let mut lines = LineReader::new(BufReader::with_capacity(1 << 16, &file));
        while let Some(line) = lines
            .next_line()
            .map_err(|e| BatchError::io("reading", path, e))?
        {
            if !line.terminated {
                break;
            }
            match record::key_of(line.text) {
                Some(key) => {
                    if let Some(b) = bad {
                        return Err(BatchError::State(format!(
                            "line {b} of '{}' is not a batch result line, and result lines follow it: the file was changed by something other than this run. Repair or remove that line, then rerun",
                            path.display()
                        )));
                    }
                    found(key)?;
                    good_end = line.end;
                }
                None => {
                    bad.get_or_insert(line.number);
                }
            }
        }
    }
    if good_end < len {
        file.set_len(good_end)
            .and_then(|()| file.sync_all())
            .map_err(|e| BatchError::io("truncating the torn end of", path, e))?;
        tracing::warn!(
            "cut {} bytes of an incomplete last line off '{}'",
            len - good_end,
            path.display()
        );
    }
    Ok(len - good_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> StateMeta {
        StateMeta {
            input: Fingerprint {
                size: 10,
                head_sha256: "ab".repeat(32),
            },
            errors: PathBuf::from("/tmp/err.jsonl"),
        }
    }

    #[test]
    fn marks_survive_reopening_and_other_inputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl.tokenpace-state");
        let (mut cp, opened) = Checkpoint::open(&path, &meta()).unwrap();
        assert_eq!(opened, Opened::Created);
        cp.mark(&[
            (Key::Id("a".into()), Dest::Output),
            (Key::Line(3), Dest::Errors),
        ])
        .unwrap();
        drop(cp);
        let (cp, opened) = Checkpoint::open(&path, &meta()).unwrap();
        assert_eq!(opened, Opened::Resumed);
        assert!(cp.is_done(&Key::Id("a".into())).unwrap());
        assert!(cp.is_done(&Key::Line(3)).unwrap());
        assert!(!cp.is_done(&Key::Line(4)).unwrap());
        assert_eq!(
            cp.counts().unwrap(),
            DoneCounts {
                output: 1,
                errors: 1
            }
        );
        let reader = Checkpoint::open_reader(&path).unwrap();
        assert!(reader.is_done(&Key::Id("a".into())).unwrap());
        drop(cp);

        let mut other = meta();
        other.input.size = 11;
        let msg = Checkpoint::open(&path, &other).unwrap_err().to_string();
        assert!(msg.contains("another input file"), "{msg}");
        let mut other = meta();
        other.errors = PathBuf::from("/tmp/else.jsonl");
        let msg = Checkpoint::open(&path, &other).unwrap_err().to_string();
        assert!(msg.contains("--errors /tmp/err.jsonl"), "{msg}");
    }

    #[test]
    fn reconcile_cuts_torn_tails_and_follows_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.jsonl");
        let err = dir.path().join("err.jsonl");
        let path = state_path(&out);
        let (mut cp, _) = Checkpoint::open(&path, &meta()).unwrap();
        let a = record::response("a", 200, "r", &serde_json::json!({}));
        let b = record::response("b", 200, "r", &serde_json::json!({}));
        let mut content = [a.clone(), b].concat();
        content.extend_from_slice(b"{\"id\":\"batch_req_x\",\"custom_id\":\"c\",\"resp");
        std::fs::write(&out, &content).unwrap();
        // The store knows `a` and a line that is in no file.
        cp.mark(&[
            (Key::Id("a".into()), Dest::Output),
            (Key::Id("gone".into()), Dest::Output),
        ])
        .unwrap();
        let r = cp.reconcile(&out, &err).unwrap();
        assert_eq!(r.recovered, 1, "b");
        assert_eq!(r.forgotten, 1, "gone");
        assert!(r.truncated_bytes > 0);
        let after = std::fs::read(&out).unwrap();
        assert!(after.ends_with(b"\n"));
        assert_eq!(after.len() as u64 + r.truncated_bytes, content.len() as u64);
        assert!(cp.is_done(&Key::Id("b".into())).unwrap());
        assert!(!cp.is_done(&Key::Id("gone".into())).unwrap());
        assert!(!cp.is_done(&Key::Id("c".into())).unwrap());

        // A stranger's line in the middle is refused.
        std::fs::write(&out, [b"garbage\n".to_vec(), a].concat()).unwrap();
        let msg = cp.reconcile(&out, &err).unwrap_err().to_string();
        assert!(msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn state_lives_beside_the_output() {
        assert_eq!(
            state_path(Path::new("dir/out.jsonl")),
            PathBuf::from("dir/out.jsonl.tokenpace-state")
        );
    }
}
