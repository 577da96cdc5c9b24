//! A run: validate the input, open (or resume) the checkpoint, then stream the lines
//! through the dispatcher with a bounded number in flight, and hand every result to the
//! writer.
//!
//! Three owners, and what flows between them, all through bounded channels so memory stays
//! flat however long the file is:
//!
//! ```text
//! feeder thread ──jobs (concurrency)──▶ dispatch loop ──tasks (≤ concurrency)──▶ results ──▶ writer thread
//!  reads the input,                      one task per line,                                  appends, fsyncs,
//!  skips lines done                      a semaphore permit each                             marks done
//! ```
//!
//! Shutdown phases (STYLE habit 8):
//! 1. `Stop::graceful` (Ctrl-C): the loop stops taking lines; the feeder stops at its next
//!    send.
//! 2. In-flight lines get up to `Plan::drain_timeout` to finish and be written;
//!    `Stop::now` (a second Ctrl-C), the deadline, or a writer failure aborts the rest
//!    (their results are not recorded, so they run again on resume).
//! 3. The results channel closes; the writer commits what it has and returns the store.
//! 4. The feeder is joined; the summary is built from the store's counts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dispatch::Dispatcher;
use metrics::cost::PriceTable;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::answer::{self, Answered, CallSettings, Outcome, Status};
use crate::checkpoint::{self, Checkpoint, DoneCounts, Opened, StateMeta};
use crate::error::BatchError;
use crate::input::{self, Limits, Request};
use crate::progress::Progress;
use crate::record::{self, Dest, Key};
use crate::summary::{self, Costs, Counts, FileCounts, Resume, Summary, Tokens};
use crate::validate::{self, Fingerprint, Validation};
use crate::writer;

/// A resolved run: every path and setting decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The input JSONL.
    pub input: PathBuf,
    /// Where responses go.
    pub output: PathBuf,
    /// Where error lines go (created on the first error).
    pub errors: PathBuf,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Run the valid lines and write the invalid ones as error lines, instead of refusing.
    pub skip_invalid: bool,
    /// The input's limits.
    pub limits: Limits,
    /// The tenant the calls are made as (cache scope, admission fairness).
    pub tenant: String,
    /// How long a line may wait for tier capacity.
    pub queue_timeout: Duration,
    /// How long in-flight lines get to finish after a graceful stop.
    pub drain_timeout: Duration,
}

impl Plan {
    /// A plan with the defaults: errors beside the output ([`default_errors_path`]), 64 in
    /// flight, OpenAI's limits, tenant `default` (the gateway's tenant without keys, so a
    /// shared cache serves both), a day's queue deadline, 30 s to drain.
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Plan {
        let output = output.into();
        Plan {
            input: input.into(),
            errors: default_errors_path(&output),
            output,
            concurrency: 64,
            skip_invalid: false,
            limits: Limits::default(),
            tenant: "default".to_owned(),
            queue_timeout: Duration::from_secs(24 * 3600),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// The default error file: the output's name with `.errors` before its extension
/// (`out.jsonl` -> `out.errors.jsonl`).
pub fn default_errors_path(output: &Path) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "batch".to_owned());
    let name = match output.extension() {
        Some(ext) => format!("{stem}.errors.{}", ext.to_string_lossy()),
        None => format!("{stem}.errors"),
    };
    output.with_file_name(name)
}

/// How a caller stops a run.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    /// Stop sending; let lines in flight finish (bounded by `Plan::drain_timeout`).
    pub graceful: CancellationToken,
    /// Stop now: abort lines in flight (they run again on resume).
    pub now: CancellationToken,
}

/// What the feeder hands the dispatch loop.
enum Job {
    Run(Request),
    Invalid(Answered),
}

/// What the feeder did.
#[derive(Debug, Default)]
struct Fed {
    skipped: u64,
}

fn absolute(path: &Path) -> Result<PathBuf, BatchError> {
    std::path::absolute(path).map_err(|e| BatchError::io("resolving", path, e))
}

fn non_empty(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// Reads the input a second time and sends every line that is not done yet.
fn feed(
    plan: &Plan,
    validation: &Validation,
    state: &Path,
    jobs: mpsc::Sender<Job>,
) -> Result<Fed, BatchError> {
    let store = Checkpoint::open_reader(state)?;
    let mut lines = validate::open_lines(&plan.input)?;
    let mut problems = validation.problems.iter().peekable();
    let mut fed = Fed::default();
    let mut request = 0u64;
    while let Some(line) = lines
        .next_line()
        .map_err(|e| BatchError::io("reading", &plan.input, e))?
    {
        if input::is_blank(line.text) {
            continue;
        }
        request += 1;
        let n = line.number;
        let invalid = if let Some(limit) = validate::past_limit(&plan.limits, request, line.end) {
            let custom_id = input::check(line.text).custom_id;
            Some((custom_id, limit.code(), limit.message(&plan.limits)))
        } else if problems.peek().is_some_and(|p| p.line == n) {
            problems
                .next()
                .map(|p| (p.custom_id.clone(), p.code, p.message.clone()))
        } else {
            let checked = input::check(line.text);
            match checked.result {
                Ok(req) => {
                    if store.is_done(&Key::Id(req.custom_id.clone()))? {
                        fed.skipped += 1;
                        continue;
                    }
                    if jobs.blocking_send(Job::Run(req)).is_err() {
                        return Ok(fed);
                    }
                    continue;
                }
                // The file changed since it was validated: still an error line, not a loss.
                Err(msg) => Some((checked.custom_id, "invalid_request", msg)),
            }
        };
        if let Some((custom_id, code, message)) = invalid {
            let key = Key::Line(n);
            if store.is_done(&key)? {
                fed.skipped += 1;
                continue;
            }
            let answered = Answered {
                key,
                dest: Dest::Errors,
                line: record::error(
                    custom_id.as_deref(),
                    code,
                    &format!("line {n}: {message}"),
                    Some(n),
                ),
                outcome: Outcome::failed(Status::Invalid, Duration::ZERO),
            };
            if jobs.blocking_send(Job::Invalid(answered)).is_err() {
                return Ok(fed);
            }
        }
    }
    Ok(fed)
}

/// What opening the state found.
struct Opening {
    store: Checkpoint,
    resume: Resume,
    done_before: DoneCounts,
}

fn open_state(plan: &Plan, state: &Path, input: Fingerprint) -> Result<Opening, BatchError> {
    let fresh = !state.exists();
    if fresh {
        for file in [&plan.output, &plan.errors] {
            if non_empty(file) {
                return Err(BatchError::State(format!(
                    "'{}' already exists and has no state beside it ('{}'), so it is not from an interrupted run of this batch: move it away or choose another output file",
                    file.display(),
                    state.display()
                )));
            }
        }
    }
    let meta = StateMeta {
        input,
        errors: absolute(&plan.errors)?,
    };
    let (mut store, opened) = Checkpoint::open(state, &meta)?;
    let reconciled = store.reconcile(&plan.output, &plan.errors)?;
    let done_before = store.counts()?;
    Ok(Opening {
        store,
        resume: Resume {
            resumed: opened == Opened::Resumed,
            recovered_lines: reconciled.recovered,
            forgotten_lines: reconciled.forgotten,
            truncated_bytes: reconciled.truncated_bytes,
        },
        done_before,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BatchError> + Send + 'static,
) -> Result<T, BatchError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BatchError::State(format!("an internal task failed: {e}")))?
}

/// Runs `plan` through `dispatcher`. Returns the summary of a run that completed or was
/// stopped; an error when the run could not start (invalid input, a foreign state) or a
/// file could not be written.
pub async fn run(
    plan: &Plan,
    dispatcher: &Dispatcher,
    progress: Arc<Progress>,
    stop: &Stop,
) -> Result<Summary, BatchError> {
    if absolute(&plan.output)? == absolute(&plan.errors)? {
        return Err(BatchError::State(
            "the output and the error file are the same file: give the errors their own file"
                .to_owned(),
        ));
    }
    if absolute(&plan.output)? == absolute(&plan.input)? {
        return Err(BatchError::State(
            "the output file is the input file: write the output elsewhere".to_owned(),
        ));
    }
    for (what, file) in [("output", &plan.output), ("error", &plan.errors)] {
        if let Some(dir) = file.parent()
            && !dir.as_os_str().is_empty()
            && !dir.is_dir()
        {
            return Err(BatchError::State(format!(
                "the {what} file's directory '{}' does not exist: create it first",
                dir.display()
            )));
        }
    }
    // 0. Validate before anything is sent.
    let (fingerprint, validation) = {
        let input = plan.input.clone();
        let limits = plan.limits;
        blocking(move || {
            Ok((
                Fingerprint::of(&input)?,
                validate::validate(&input, limits)?,
            ))
        })
        .await?
    };
    if validation.invalid() > 0 && !plan.skip_invalid {
        return Err(BatchError::Invalid(Box::new(
            validation.invalid_input(&plan.input),
        )));
    }
    let state = checkpoint::state_path(&plan.output);
    let opening = {
        let (plan, state) = (plan.clone(), state.clone());
        blocking(move || open_state(&plan, &state, fingerprint)).await?
    };
    let resume = opening.resume;
    if resume.recovered_lines + resume.forgotten_lines + resume.truncated_bytes > 0 {
        tracing::info!(?resume, "reconciled the state with the output files");
    }
    progress.start(validation.requests, opening.done_before);
    let started = Instant::now();

    let concurrency = plan.concurrency.max(1);
    let failed = CancellationToken::new();
    let (results_tx, results_rx) = mpsc::channel::<Answered>(concurrency * 2 + 16);
    let writer = writer::spawn(
        opening.store,
        plan.output.clone(),
        plan.errors.clone(),
        results_rx,
        progress.clone(),
        failed.clone(),
    )?;
    let (jobs_tx, mut jobs) = mpsc::channel::<Job>(concurrency);
    let validation = Arc::new(validation);
    let feeder = {
        let (owned, validation, state) = (plan.clone(), validation.clone(), state.clone());
        std::thread::Builder::new()
            .name("batch-feeder".into())
            .spawn(move || feed(&owned, &validation, &state, jobs_tx))
            .map_err(|e| BatchError::io("starting the reader thread for", &plan.input, e))?
    };

    let prices = Arc::new(PriceTable::builtin());
    let settings = Arc::new(CallSettings {
        tenant: plan.tenant.clone(),
        queue_timeout: plan.queue_timeout,
    });
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut interrupted = false;
    loop {
        // Finished tasks are collected as we go, so the set never outgrows `concurrency`.
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            biased;
            () = stop.graceful.cancelled() => { interrupted = true; break; }
            () = failed.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let job = tokio::select! {
            biased;
            () = stop.graceful.cancelled() => { interrupted = true; break; }
            () = failed.cancelled() => break,
            j = jobs.recv() => match j {
                Some(j) => j,
                None => break,
            },
        };
        match job {
            Job::Invalid(answered) => {
                drop(permit);
                if results_tx.send(answered).await.is_err() {
                    break;
                }
            }
            Job::Run(req) => {
                let (dispatcher, prices, settings) =
                    (dispatcher.clone(), prices.clone(), settings.clone());
                let (results, progress) = (results_tx.clone(), progress.clone());
                progress.sent();
                tasks.spawn(async move {
                    let answered = answer::answer(&dispatcher, &prices, &settings, req).await;
                    progress.answered();
                    let _ = results.send(answered).await;
                    drop(permit);
                });
            }
        }
    }
    // 1. No more lines are taken; the feeder ends at its next send.
    drop(jobs);
    // 2. Lines in flight finish, within the drain deadline once stopped.
    let mut deadline = interrupted.then(|| tokio::time::Instant::now() + plan.drain_timeout);
    loop {
        let far = tokio::time::Instant::now() + Duration::from_secs(3600 * 24 * 365);
        tokio::select! {
            biased;
            () = stop.now.cancelled() => { interrupted = true; tasks.abort_all(); }
            () = failed.cancelled() => tasks.abort_all(),
            () = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                tasks.abort_all();
            }
            () = stop.graceful.cancelled(), if deadline.is_none() => {
                interrupted = true;
                deadline = Some(tokio::time::Instant::now() + plan.drain_timeout);
                continue;
            }
            next = tasks.join_next() => {
                if next.is_none() {
                    break;
                }
                continue;
            }
        }
        // Aborted: wait for the aborted tasks to be gone.
        while tasks.join_next().await.is_some() {}
        break;
    }
    // 3. The writer commits what it has and hands back the store.
    drop(results_tx);
    let (store, tally) = blocking(move || {
        writer
            .join()
            .map_err(|_| BatchError::State("the writer thread panicked".to_owned()))?
    })
    .await?;
    let wall = started.elapsed();
    // 4. The feeder.
    let fed = blocking(move || {
        feeder
            .join()
            .map_err(|_| BatchError::State("the reader thread panicked".to_owned()))?
    })
    .await?;
    let files = store.counts()?;
    drop(store);

    let total = validation.requests;
    let accounted = fed.skipped + tally.succeeded + tally.failed + tally.invalid;
    let ran = tally.succeeded + tally.failed;
    let sequential = tally.sequential.as_secs_f64();
    Ok(Summary {
        schema_version: summary::SCHEMA_VERSION,
        input: plan.input.display().to_string(),
        output: plan.output.display().to_string(),
        errors: plan.errors.display().to_string(),
        complete: files.total() == total,
        interrupted,
        concurrency,
        counts: Counts {
            total,
            succeeded: tally.succeeded,
            failed: tally.failed,
            cached: tally.cached,
            coalesced: tally.coalesced,
            skipped_already_done: fed.skipped,
            invalid: tally.invalid,
            not_run: total.saturating_sub(accounted),
        },
        files: FileCounts {
            output_lines: files.output,
            error_lines: files.errors,
        },
        resume,
        wall_time_s: wall.as_secs_f64(),
        sequential_time_s: sequential,
        speedup: (ran > 0 && wall > Duration::ZERO).then(|| sequential / wall.as_secs_f64()),
        tokens: Tokens {
            input: tally.input_tokens,
            output: tally.output_tokens,
        },
        cost_usd: Costs {
            realtime: tally.realtime.usd(),
            batch: tally.batch.usd(),
            actual: tally.actual.usd(),
            unpriced_lines: tally.unpriced,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_go_beside_the_output() {
        assert_eq!(
            default_errors_path(Path::new("dir/out.jsonl")),
            PathBuf::from("dir/out.errors.jsonl")
        );
        assert_eq!(
            default_errors_path(Path::new("out")),
            PathBuf::from("out.errors")
        );
    }
}
