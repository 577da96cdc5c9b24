//! What a run did, as plain data (STYLE habit 5): the binary renders it as text, and
//! [`Summary::to_json`] is the `--json` file. docs/batch.md describes every field.
//!
//! Counts are about this run: every request line of the input is exactly one of
//! `succeeded`, `failed`, `invalid`, `skipped_already_done` or `not_run`, so they add up to
//! `total`. `files` counts what the output and error files hold for the whole batch,
//! earlier runs included.

use serde::Serialize;

/// The version of the JSON form; bumped when a field changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;

/// The run's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The input file.
    pub input: String,
    /// The output file.
    pub output: String,
    /// The error file.
    pub errors: String,
    /// Whether every line of the input now has its result in a file.
    pub complete: bool,
    /// Whether the run was stopped (Ctrl-C) before the end.
    pub interrupted: bool,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Per-line counts of this run.
    pub counts: Counts,
    /// Lines in the files, all runs together.
    pub files: FileCounts,
    /// What resuming found.
    pub resume: Resume,
    /// Seconds from the first line sent to the last result written.
    pub wall_time_s: f64,
    /// The sum of the lines' own latencies (without waits for tier capacity): the time
    /// the same lines would take one after another.
    pub sequential_time_s: f64,
    /// `sequential_time_s / wall_time_s`: what parallelism gave; null without lines run.
    pub speedup: Option<f64>,
    /// Tokens of the succeeded lines (cache hits included).
    pub tokens: Tokens,
    /// The succeeded lines' cost three ways.
    pub cost_usd: Costs,
}

/// Per-line counts of this run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Request lines in the input (blank lines excluded).
    pub total: u64,
    /// Answered 2xx (from the upstream or the cache).
    pub succeeded: u64,
    /// Valid lines that ended as error lines.
    pub failed: u64,
    /// Of the succeeded, served from the response cache.
    pub cached: u64,
    /// Of the succeeded, answered by joining an identical request in flight.
    pub coalesced: u64,
    /// Lines whose result an earlier run had already written.
    pub skipped_already_done: u64,
    /// Lines that failed validation, written as error lines in this run.
    pub invalid: u64,
    /// Lines left for the next run (the run was interrupted or stopped by an error).
    pub not_run: u64,
}

/// Lines in the files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FileCounts {
    /// Lines in the output file.
    pub output_lines: u64,
    /// Lines in the error file.
    pub error_lines: u64,
}

/// What resuming found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Resume {
    /// Whether a state from an earlier run was found.
    pub resumed: bool,
    /// Lines found in the files but not yet marked done (a crash between write and commit).
    pub recovered_lines: u64,
    /// Lines marked done but missing from the files; they ran again.
    pub forgotten_lines: u64,
    /// Bytes of a torn last line cut off the files.
    pub truncated_bytes: u64,
}

/// Tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    /// Input (prompt) tokens.
    pub input: u64,
    /// Output (completion) tokens.
    pub output: u64,
}

/// Cost in US dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Costs {
    /// At the synchronous API's prices, every succeeded line as if sent.
    pub realtime: f64,
    /// At the provider's Batch API prices (50% off where the table has no batch rate).
    pub batch: f64,
    /// What was actually spent: lines served from the cache or by a coalesced request
    /// cost nothing.
    pub actual: f64,
    /// Succeeded lines whose model the price table does not know (counted as free).
    pub unpriced_lines: u64,
}

impl Summary {
    /// The JSON form (pretty-printed).
    pub fn to_json(&self) -> String {
        // A struct of numbers, strings and bools always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Whether the batch ended with every line answered 2xx.
    pub fn all_succeeded(&self) -> bool {
        self.complete && self.files.error_lines == 0
    }
}
