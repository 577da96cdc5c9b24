//! `--requests-out FILE.jsonl`: one JSON line per measured request, streamed to the file as
//! requests finish (never held in memory). Lines are written whole under a lock, so a reader
//! never sees a torn line; the file is flushed when the run ends.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use client::{Ledger, RequestMetrics};
use serde_json::json;

/// The per-request writer.
#[derive(Debug)]
pub struct RequestsOut {
    file: Mutex<BufWriter<File>>,
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl RequestsOut {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> std::io::Result<RequestsOut> {
        Ok(RequestsOut {
            file: Mutex::new(BufWriter::new(File::create(path)?)),
        })
    }

    /// Writes one request's line.
    pub fn write(
        &self,
        label: &str,
        index: u64,
        start: Instant,
        ledger: &Ledger,
        m: &RequestMetrics,
    ) {
        let line = json!({
            "series": label,
            "index": index,
            "dispatched_s": ledger.dispatched.saturating_duration_since(start).as_secs_f64(),
            "status": ledger.status,
            "ok": ledger.outcome.is_ok(),
            "error": ledger.outcome.as_ref().err().map(|e| e.label()),
            "error_message": ledger.outcome.as_ref().err().map(|e| e.to_string()),
            "ttft_ms": m.ttft.map(ms),
            "ttfc_ms": m.ttfc.map(ms),
            "ttlt_ms": m.ttlt.map(ms),
            "e2e_ms": ms(m.e2e),
            "tpot_ms": m.tpot.map(ms),
            "schedule_lag_ms": ms(m.schedule_lag),
            "conn_setup_ms": m.conn_setup.map(ms),
            "time_to_headers_ms": m.time_to_headers.map(ms),
            "time_to_first_byte_ms": m.time_to_first_byte.map(ms),
            "new_connection": m.new_connection,
            "server_queue_ms": m.server_queue.map(ms),
            "output_tokens": m.output_tokens.0,
            "output_tokens_source": m.output_tokens.1.label(),
            "input_tokens": m.input_tokens.map(|t| t.0),
            "cache_hit": m.cache_hit,
        });
        if let Ok(mut f) = self.file.lock() {
            let mut text = line.to_string();
            text.push('\n');
            if let Err(e) = f.write_all(text.as_bytes()) {
                tracing::warn!("writing --requests-out: {e}");
            }
        }
    }

    /// Flushes buffered lines.
    pub fn flush(&self) -> std::io::Result<()> {
        match self.file.lock() {
            Ok(mut f) => f.flush(),
            Err(_) => Ok(()),
        }
    }
}
