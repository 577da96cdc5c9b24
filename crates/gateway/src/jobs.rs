//! The batches `/v1/batches` runs inside the gateway: each is one task that validates its
//! input, runs it through [`batch::run`] (the same runner as `tokenpace batch run`: the
//! dispatcher at batch priority, as the input file's tenant, resumable from its checkpoint),
//! and finalizes it — its output and error files become file objects.
//!
//! A batch's life, as its status shows it:
//!
//! ```text
//! validating ──▶ in_progress ──▶ finalizing ──▶ completed
//!     │               │
//!     ▼               ├──cancel──▶ cancelling ──▶ cancelled (the lines that finished)
//!   failed            └──completion window over──▶ expired (the lines that finished)
//! (failed: invalid lines, with their line numbers)
//! ```
//!
//! The store is the truth: every transition is one conditional update, so a cancel that
//! races the end of a run is decided by whichever committed first. On start, the gateway
//! runs every batch that has not ended again: a validating one from the start, an
//! in-progress one from its checkpoint (lines already written are not sent again), a
//! cancelling or finalizing one only to finalize it (a run with its stop already given
//! repairs the files and sends nothing).
//!
//! Shutdown phases (STYLE habit 8), [`Batches::shutdown`]:
//! 1. every batch stops taking lines (their `Stop::graceful`); lines in flight finish and
//!    are written, up to the shutdown grace;
//! 2. past it, the rest are aborted (`Stop::now`; they run again on the next start);
//! 3. the store closes, releasing the data directory's lock.
//!
//! Batches stopped this way stay `in_progress` and resume on the next start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use batch::progress::Snapshot;
use batch::validate::{self, Limit, Validation};
use batch::{BatchError, Limits, Plan, Progress, Stop};
use dispatch::config::BatchesConfig;
use dispatch::{DispatchError, Dispatcher};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Counts, FileRow, Finish, Status, Store, StoreError, unix_now};

/// Validation problems listed in a failed batch's `errors` (the rest are counted).
const LISTED_ERRORS: usize = 100;

/// How long aborted lines get to be gone after the grace (phase 2).
const ABORT_WAIT: Duration = Duration::from_secs(10);

/// Why a batch could not go on.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("{0}")]
    Other(String),
}

/// A batch being run: how to stop it and how far it got.
#[derive(Debug, Clone)]
struct Live {
    /// Its `Stop::graceful`: a cancel, or the gateway shutting down (a child of
    /// [`Inner::stopping`]).
    stop: CancellationToken,
    progress: Arc<Progress>,
}

struct Inner {
    dispatcher: Dispatcher,
    data_dir: std::path::PathBuf,
    settings: BatchesConfig,
    /// How long lines in flight get to finish once a batch is told to stop.
    drain: Duration,
    store: OnceCell<Arc<Store>>,
    /// Phase 1 of shutdown: every batch stops taking lines.
    stopping: CancellationToken,
    /// Phase 2: lines in flight are aborted.
    now: CancellationToken,
    /// Owns every batch task.
    tracker: TaskTracker,
    running: Mutex<HashMap<String, Live>>,
}

/// The batches of one gateway (inside [`crate::AppState`]).
#[derive(Clone)]
pub(crate) struct Batches {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("data_dir", &self.inner.data_dir)
            .field("settings", &self.inner.settings)
            .field("running", &self.running().len())
            .finish_non_exhaustive()
    }
}

impl Batches {
    /// The batches of a gateway serving `dispatcher`'s configuration. Touches no disk: the
    /// data directory is opened by [`Batches::start`] when it holds a store, else on the
    /// first request that needs it.
    pub(crate) fn new(dispatcher: &Dispatcher) -> Batches {
        let config = dispatcher.config();
        Batches {
            inner: Arc::new(Inner {
                dispatcher: dispatcher.clone(),
                data_dir: config.data_dir.clone(),
                settings: config.batches,
                drain: config.shutdown_grace,
                store: OnceCell::new(),
                stopping: CancellationToken::new(),
                now: CancellationToken::new(),
                tracker: TaskTracker::new(),
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The largest upload, and batch input, accepted.
    /// The time a batch has to complete (`expires_at` = `created_at` + this).
    pub(crate) fn completion_window(&self) -> Duration {
        self.inner.settings.completion_window
    }

    pub(crate) fn max_file_bytes(&self) -> u64 {
        self.inner.settings.max_file_bytes
    }

    /// The store, opened on first use.
    pub(crate) async fn store(&self) -> Result<Arc<Store>, DispatchError> {
        if self.inner.stopping.is_cancelled() {
            return Err(StoreError::Closed.into());
        }
        let dir = self.inner.data_dir.clone();
        let store = self
            .inner
            .store
            .get_or_try_init(|| async move {
                let opened = tokio::task::spawn_blocking(move || Store::open(&dir))
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))??;
                let store = Arc::new(opened);
                if let Err(e) = store.run(Store::purge).await {
                    tracing::warn!("removing deleted files: {e}");
                }
                Ok::<_, StoreError>(store)
            })
            .await?;
        Ok(store.clone())
    }

    /// At start: when the data directory holds a store, opens it and resumes every batch
    /// that has not ended. Failures are logged; the routes report them.
    pub(crate) async fn start(&self) {
        if !Store::exists(&self.inner.data_dir) {
            return;
        }
        let store = match self.store().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("files and batches are unavailable: {}", e.message);
                return;
            }
        };
        match store.run(|s| s.unfinished()).await {
            Ok(ids) => {
                if !ids.is_empty() {
                    tracing::info!(batches = ids.len(), "resuming unfinished batches");
                }
                for id in ids {
                    self.spawn(&store, id);
                }
            }
            Err(e) => tracing::error!("reading unfinished batches: {e}"),
        }
    }

    /// Whether the gateway is shutting down (no new batches).
    pub(crate) fn stopping(&self) -> bool {
        self.inner.stopping.is_cancelled()
    }

    /// Starts running batch `id`.
    pub(crate) fn spawn(&self, store: &Arc<Store>, id: String) {
        let live = {
            let mut running = self.running();
            if running.contains_key(&id) {
                return;
            }
            let live = Live {
                stop: self.inner.stopping.child_token(),
                progress: Arc::new(Progress::new()),
            };
            running.insert(id.clone(), live.clone());
            live
        };
        let (inner, store) = (self.inner.clone(), store.clone());
        let this = self.clone();
        self.inner.tracker.spawn(async move {
            drive(&inner, &store, &id, &live).await;
            this.running().remove(&id);
            if let Err(e) = store.run(Store::purge).await {
                tracing::warn!("removing deleted files: {e}");
            }
        });
    }

    /// Tells batch `id`'s run to stop taking lines (its status is already `cancelling`).
    pub(crate) fn cancel(&self, id: &str) {
        if let Some(live) = self.running().get(id) {
            live.stop.cancel();
        }
    }

    /// The live counters of batch `id` while it runs.
    pub(crate) fn live(&self, id: &str) -> Option<Snapshot> {
        self.running().get(id).map(|l| l.progress.snapshot())
    }

    /// Stops every batch (see the module docs) and closes the store.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        // 1. No batch takes another line; lines in flight finish.
        inner.stopping.cancel();
        inner.tracker.close();
        if tokio::time::timeout(grace, inner.tracker.wait())
            .await
            .is_err()
        {
            // 2. Past the grace: abort; those lines run again on the next start.
            tracing::warn!(
                "shutdown: batches did not stop within {grace:?}; aborting their lines in flight"
            );
            inner.now.cancel();
            if tokio::time::timeout(ABORT_WAIT, inner.tracker.wait())
                .await
                .is_err()
            {
                tracing::error!("shutdown: batches still running after the abort");
            }
        }
        // 3. Release the data directory.
        if let Some(store) = inner.store.get() {
            store.close();
        }
    }
}

/// The `errors` of a batch whose input failed validation, or `None` when it is valid.
fn validation_errors(v: &Validation) -> Option<Value> {
    let entry = |code: &str, message: String, line: Option<u64>| json!({"code": code, "message": message, "param": null, "line": line});
    let mut data: Vec<Value> = Vec::new();
    if v.requests == 0 {
        data.push(entry(
            "empty_file",
            "the input file has no request lines".to_owned(),
            None,
        ));
    }
    for p in v.problems.iter().take(LISTED_ERRORS) {
        data.push(entry(
            p.code,
            format!("line {}: {}", p.line, p.message),
            Some(p.line),
        ));
    }
    let unlisted = v.problems.len().saturating_sub(LISTED_ERRORS);
    if unlisted > 0 {
        data.push(entry(
            "too_many_errors",
            format!("{unlisted} more invalid lines are not listed"),
            None,
        ));
    }
    for (over, limit) in [(v.over_lines, Limit::Lines), (v.over_bytes, Limit::Bytes)] {
        if let Some(o) = over {
            data.push(entry(
                limit.code(),
                format!(
                    "lines {} to {} ({} request lines): {}",
                    o.first_line,
                    o.last_line,
                    o.count,
                    limit.message(&v.limits)
                ),
                Some(o.first_line),
            ));
        }
    }
    (!data.is_empty()).then(|| json!({"object": "list", "data": data}))
}

/// A batch's output or error file as a file object (`None` without lines).
fn output_file(
    store: &Store,
    batch_id: &str,
    tenant: &str,
    path: &std::path::Path,
    lines: u64,
    name: &str,
) -> Result<Option<FileRow>, StoreError> {
    if lines == 0 {
        return Ok(None);
    }
    let bytes = std::fs::metadata(path)
        .map_err(|e| StoreError::io("reading", path, e))?
        .len();
    Ok(Some(FileRow {
        id: batch::record::new_id("file-"),
        tenant: tenant.to_owned(),
        filename: format!("{batch_id}_{name}.jsonl"),
        purpose: "batch_output".to_owned(),
        bytes,
        created_at: unix_now(),
        path: store.relative(path),
    }))
}

/// One batch, from wherever its status says it is to where it stops.
async fn drive(inner: &Arc<Inner>, store: &Arc<Store>, id: &str, live: &Live) {
    let result = run_batch(inner, store, id, live).await;
    let message = match result {
        Ok(()) | Err(JobError::Store(StoreError::Closed)) => return,
        Err(e) => e.to_string(),
    };
    tracing::error!(batch = id, "the batch failed: {message}");
    let errors = json!({"object": "list", "data": [
        {"code": "batch_failed", "message": message, "param": null, "line": null}
    ]});
    let owned = id.to_owned();
    if let Err(e) = store
        .run(move |s| s.fail(&owned, &errors, unix_now()))
        .await
    {
        tracing::error!(batch = id, "recording the failure: {e}");
    }
}

async fn run_batch(
    inner: &Arc<Inner>,
    store: &Arc<Store>,
    id: &str,
    live: &Live,
) -> Result<(), JobError> {
    let owned = id.to_owned();
    let Some(row) = store.run(move |s| s.batch(None, &owned)).await? else {
        return Ok(());
    };
    if !matches!(
        row.status,
        Status::Validating | Status::InProgress | Status::Finalizing | Status::Cancelling
    ) {
        return Ok(());
    }
    let input_id = row.input_file_id.clone();
    let Some(input) = store.run(move |s| s.input_file(&input_id)).await? else {
        return Err(JobError::Other(format!(
            "the input file {} is gone",
            row.input_file_id
        )));
    };
    let kind = batch::input::kind_of_url(&row.endpoint)
        .ok_or_else(|| JobError::Other(format!("endpoint '{}' is not supported", row.endpoint)))?;
    let owned = id.to_owned();
    let dir = store
        .run(move |s| {
            let dir = s.batch_dir(&owned);
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("creating", &dir, e))?;
            Ok(dir)
        })
        .await?;
    let mut plan = Plan::new(store.content_path(&input), dir.join("output.jsonl"));
    plan.errors = dir.join("errors.jsonl");
    plan.concurrency = inner.settings.concurrency;
    plan.tenant = row.tenant.clone();
    plan.limits = Limits {
        max_bytes: inner.settings.max_file_bytes,
        ..Limits::default()
    };
    plan.drain_timeout = inner.drain;

    if row.status == Status::Validating {
        let (path, limits) = (plan.input.clone(), plan.limits);
        let validation =
            tokio::task::spawn_blocking(move || validate::validate_for(&path, limits, Some(kind)))
                .await
                .map_err(|e| JobError::Other(format!("validation failed: {e}")))??;
        let owned = id.to_owned();
        match validation_errors(&validation) {
            Some(errors) => {
                store
                    .run(move |s| s.fail(&owned, &errors, unix_now()))
                    .await?;
                return Ok(());
            }
            None => {
                let total = validation.requests;
                store
                    .run(move |s| s.validated(&owned, total, unix_now()))
                    .await?;
            }
        }
    }
    let owned = id.to_owned();
    let status = store.run(move |s| s.status(&owned)).await?;
    if matches!(status, Some(Status::Cancelling | Status::Finalizing)) {
        // Nothing more is sent: the run only repairs the files and counts them.
        live.stop.cancel();
    }
    let stop = Stop {
        graceful: live.stop.clone(),
        now: inner.now.clone(),
    };
    // The completion window: at `created_at` + window the batch stops taking lines and
    // ends `expired` with what finished (OpenAI's 24 h; the gateway's own clock).
    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let window = i64::try_from(inner.settings.completion_window.as_secs()).unwrap_or(i64::MAX / 2);
    let left = (row.created_at + window).saturating_sub(unix_now());
    let timer = {
        let (expired, stop) = (expired.clone(), live.stop.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(u64::try_from(left).unwrap_or(0))).await;
            expired.store(true, std::sync::atomic::Ordering::SeqCst);
            stop.cancel();
        })
    };
    let summary = batch::run(&plan, &inner.dispatcher, live.progress.clone(), &stop).await;
    timer.abort();
    let summary = summary?;
    let expired = expired.load(std::sync::atomic::Ordering::SeqCst);
    let counts = Counts {
        total: summary.counts.total,
        completed: summary.files.output_lines,
        failed: summary.files.error_lines,
    };
    let owned = id.to_owned();
    let complete = summary.complete;
    let status = store
        .run(move |s| {
            if complete {
                s.finalizing(&owned, unix_now())
            } else {
                s.status(&owned)
            }
        })
        .await?;
    let end = match status {
        Some(Status::Finalizing) => Status::Completed,
        Some(Status::Cancelling) => Status::Cancelled,
        Some(Status::InProgress) if expired => Status::Expired,
        Some(Status::InProgress) if inner.stopping.is_cancelled() => {
            // The gateway is shutting down: the batch resumes on the next start.
            let owned = id.to_owned();
            store.run(move |s| s.save_counts(&owned, counts)).await?;
            return Ok(());
        }
        Some(Status::InProgress) => {
            return Err(JobError::Other(format!(
                "the run stopped with {} of {} lines done",
                counts.completed + counts.failed,
                counts.total
            )));
        }
        _ => return Ok(()),
    };
    let (owned, tenant) = (id.to_owned(), row.tenant.clone());
    let (output, errors) = (plan.output.clone(), plan.errors.clone());
    store
        .run(move |s| {
            let finish = Finish {
                status: end,
                counts,
                output: output_file(s, &owned, &tenant, &output, counts.completed, "output")?,
                errors: output_file(s, &owned, &tenant, &errors, counts.failed, "error")?,
            };
            s.finish(&owned, &finish, unix_now())
        })
        .await?;
    // The checkpoint served its purpose; the files are final.
    let state = batch::checkpoint::state_path(&plan.output);
    for suffix in ["", "-wal", "-shm"] {
        let mut name = state.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use batch::validate::{Overflow, Problem};

    #[test]
    fn validation_errors_carry_codes_and_lines() {
        let limits = Limits::default();
        let valid = Validation {
            requests: 3,
            bytes: 100,
            problems: Vec::new(),
            over_lines: None,
            over_bytes: None,
            limits,
        };
        assert_eq!(validation_errors(&valid), None);
        let empty = Validation {
            requests: 0,
            ..valid.clone()
        };
        assert_eq!(
            validation_errors(&empty).unwrap()["data"][0]["code"],
            "empty_file"
        );
        let bad = Validation {
            problems: (1..=LISTED_ERRORS as u64 + 2)
                .map(|n| Problem {
                    line: n,
                    custom_id: None,
                    code: "invalid_request",
                    message: "is not JSON".to_owned(),
                })
                .collect(),
            over_lines: Some(Overflow {
                first_line: 500,
                last_line: 600,
                count: 101,
            }),
            ..valid
        };
        let e = validation_errors(&bad).unwrap();
        assert_eq!(e["object"], "list");
        let data = e["data"].as_array().unwrap();
        assert_eq!(data.len(), LISTED_ERRORS + 2);
        assert_eq!(data[0]["line"], 1);
        assert_eq!(data[0]["message"], "line 1: is not JSON");
        assert!(data[0]["param"].is_null());
        assert_eq!(data[LISTED_ERRORS]["code"], "too_many_errors");
        assert_eq!(data[LISTED_ERRORS + 1]["code"], "too_many_lines");
        assert_eq!(data[LISTED_ERRORS + 1]["line"], 500);
    }
}
