//! The one writer of a run: a thread that owns the output and error files and the
//! checkpoint store's write connection, so lines never interleave and the write protocol
//! of [`crate::checkpoint`] holds in one place.
//!
//! Group commit: it takes every result waiting (up to [`MAX_GROUP`]), appends them to
//! their file with a single write per file, fsyncs each file written, then marks them all
//! done in one transaction. With one fsync per group instead of per line, a run is not
//! bound by the disk's sync latency, and the guarantee is the same: a line is marked done
//! only after it is on disk. It also keeps the run's tally (the summary's sums), since it
//! is the only place that knows a line is recorded.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use metrics::cost::Cost;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::answer::{Answered, Outcome, Status};
use crate::checkpoint::Checkpoint;
use crate::error::BatchError;
use crate::progress::{LineDone, Progress};
use crate::record::{Dest, Key};

/// Most results committed together.
const MAX_GROUP: usize = 512;

/// The run's sums over recorded lines.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) invalid: u64,
    pub(crate) cached: u64,
    pub(crate) coalesced: u64,
    pub(crate) sequential: Duration,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) realtime: Cost,
    pub(crate) batch: Cost,
    pub(crate) actual: Cost,
    pub(crate) unpriced: u64,
}

impl Tally {
    fn add(&mut self, o: &Outcome) {
        match o.status {
            Status::Succeeded => self.succeeded += 1,
            Status::Failed => self.failed += 1,
            Status::Invalid => self.invalid += 1,
        }
        if o.status != Status::Invalid {
            self.sequential += o.latency;
        }
        self.cached += u64::from(o.cached);
        self.coalesced += u64::from(o.coalesced);
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.realtime += o.realtime;
        self.batch += o.batch;
        self.actual += o.actual;
        self.unpriced += u64::from(!o.priced);
    }
}

struct Appender {
    path: PathBuf,
    file: Option<File>,
}

impl Appender {
    /// Appends `bytes` with one write and syncs. The file is created on first use (so a
    /// run without errors leaves no empty error file), and its directory entry synced.
    fn append(&mut self, bytes: &[u8]) -> Result<(), BatchError> {
        let path = &self.path;
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let existed = path.exists();
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| BatchError::io("opening", path, e))?;
                if !existed {
                    sync_dir(path)?;
                }
                self.file.insert(f)
            }
        };
        file.write_all(bytes)
            .map_err(|e| BatchError::io("appending to", path, e))?;
        file.sync_data()
            .map_err(|e| BatchError::io("syncing", path, e))
    }
}

/// Syncs the directory holding `path`, so a new file's name survives a power failure.
fn sync_dir(path: &Path) -> Result<(), BatchError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| BatchError::io("syncing the directory of", path, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

struct Writer {
    store: Checkpoint,
    output: Appender,
    errors: Appender,
    progress: Arc<Progress>,
    tally: Tally,
    out_buf: Vec<u8>,
    err_buf: Vec<u8>,
    keys: Vec<(Key, Dest)>,
}

impl Writer {
    fn commit(&mut self, group: &mut Vec<Answered>) -> Result<(), BatchError> {
        self.out_buf.clear();
        self.err_buf.clear();
        self.keys.clear();
        for a in group.iter() {
            match a.dest {
                Dest::Output => self.out_buf.extend_from_slice(&a.line),
                Dest::Errors => self.err_buf.extend_from_slice(&a.line),
            }
            self.keys.push((a.key.clone(), a.dest));
        }
        // 1. Append and sync.
        if !self.out_buf.is_empty() {
            self.output.append(&self.out_buf)?;
        }
        if !self.err_buf.is_empty() {
            self.errors.append(&self.err_buf)?;
        }
        // 2. Only then mark done.
        self.store.mark(&self.keys)?;
        for a in group.drain(..) {
            let o = &a.outcome;
            self.tally.add(o);
            self.progress.record(&LineDone {
                succeeded: o.status == Status::Succeeded,
                cached: o.cached,
                input_tokens: o.input_tokens,
                output_tokens: o.output_tokens,
                spent_pico_usd: o.actual.pico_usd(),
            });
        }
        Ok(())
    }
}

/// What the writer hands back at the end: its store connection and the tally.
pub(crate) type Finished = Result<(Checkpoint, Tally), BatchError>;

/// Starts the writer. It runs until every sender of `rx` is gone; on a failure it cancels
/// `failed` (so the run stops sending) and returns the error.
pub(crate) fn spawn(
    store: Checkpoint,
    output: PathBuf,
    errors: PathBuf,
    mut rx: mpsc::Receiver<Answered>,
    progress: Arc<Progress>,
    failed: CancellationToken,
) -> Result<JoinHandle<Finished>, BatchError> {
    let thread_path = output.clone();
    std::thread::Builder::new()
        .name("batch-writer".into())
        .spawn(move || {
            let mut w = Writer {
                store,
                output: Appender {
                    path: output,
                    file: None,
                },
                errors: Appender {
                    path: errors,
                    file: None,
                },
                progress,
                tally: Tally::default(),
                out_buf: Vec::new(),
                err_buf: Vec::new(),
                keys: Vec::new(),
            };
            let mut group = Vec::with_capacity(MAX_GROUP);
            while let Some(first) = rx.blocking_recv() {
                group.push(first);
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(a) => group.push(a),
                        Err(_) => break,
                    }
                }
                if let Err(e) = w.commit(&mut group) {
                    failed.cancel();
                    return Err(e);
                }
            }
            Ok((w.store, w.tally))
        })
        .map_err(|e| BatchError::io("starting the writer thread for", thread_path, e))
}
