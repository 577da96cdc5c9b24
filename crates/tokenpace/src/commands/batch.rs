//! `tokenpace batch run`: resolve the flags into a `batch::Plan` and a dispatcher
//! configuration, run the batch with a progress line and Ctrl-C handling, then render the
//! summary (text on stderr, JSON with `--json`) and choose the exit code.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use batch::{BatchError, Plan, Progress, Stop, Summary};
use dispatch::Dispatcher;
use dispatch::config::{RawConfig, RawUpstream, parse_size};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use protocol::fmt::thousands;
use tokio::sync::oneshot;

use crate::Outcome;
use crate::cli::batch::{BatchArgs, BatchCommand, RunArgs};
use crate::commands::sim::wait_for_signal;

/// Runs a `batch` subcommand.
pub fn run(args: BatchArgs) -> anyhow::Result<Outcome> {
    match args.command {
        BatchCommand::Run(args) => run_file(args),
    }
}

/// The dispatcher's raw configuration: the file, or one upstream named `upstream` with an
/// in-memory cache (identical lines are answered once, and nothing is left on disk).
fn raw_config(args: &RunArgs) -> anyhow::Result<RawConfig> {
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --config '{}'", path.display()))?;
        return RawConfig::from_toml(&text)
            .map_err(|e| anyhow::anyhow!("--config '{}': {e}", path.display()));
    }
    let Some(url) = &args.base_url else {
        anyhow::bail!("give --base-url URL or --config FILE");
    };
    let mut raw = RawConfig::default();
    raw.upstreams.insert(
        "upstream".to_owned(),
        RawUpstream {
            url: url.trim().to_owned(),
            ..RawUpstream::default()
        },
    );
    raw.cache.store = Some("memory".to_owned());
    Ok(raw)
}

/// The resolved plan.
fn plan(args: &RunArgs) -> anyhow::Result<Plan> {
    let mut plan = Plan::new(&args.input, &args.output);
    if let Some(errors) = &args.errors {
        plan.errors = errors.clone();
    }
    plan.concurrency = args.concurrency as usize;
    plan.skip_invalid = args.skip_invalid;
    plan.limits.max_lines = args.max_lines;
    plan.limits.max_bytes =
        parse_size(&args.max_bytes).map_err(|e| anyhow::anyhow!("--max-bytes: {e}"))?;
    Ok(plan)
}

/// `n line` or `n lines`, with thousands separators.
fn lines(n: u64) -> String {
    format!("{} line{}", thousands(n), if n == 1 { "" } else { "s" })
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The progress line (stderr, ten times a second; hidden when stderr is not a terminal).
struct Display {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Display {
    fn spawn(progress: Arc<Progress>) -> Display {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
            let style = ProgressStyle::with_template("{spinner} {bar:24} {pos}/{len} lines {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let s = progress.snapshot();
                bar.set_length(s.total);
                bar.set_position(s.already_done + s.done);
                let eta = s.eta().map_or_else(|| "-".to_owned(), seconds);
                bar.set_message(format!(
                    "ETA {eta}, {:.1} req/s, {} tok/s, {} cache hits, ${:.6} spent, {} failed",
                    s.lines_per_s(),
                    thousands(s.tokens_per_s() as u64),
                    thousands(s.cached),
                    s.spent_usd,
                    thousands(s.failed),
                ));
            }
            bar.finish_and_clear();
        });
        Display { stop, task }
    }

    async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The summary as text.
fn render(s: &Summary) -> String {
    let c = &s.counts;
    let mut out = format!(
        "tokenpace batch: {} in '{}': {} succeeded ({} from the cache, {} coalesced), {} failed, {} invalid, {} already done",
        lines(c.total),
        s.input,
        thousands(c.succeeded),
        thousands(c.cached),
        thousands(c.coalesced),
        thousands(c.failed),
        thousands(c.invalid),
        thousands(c.skipped_already_done),
    );
    if c.not_run > 0 {
        out.push_str(&format!(", {} not run yet", thousands(c.not_run)));
    }
    let r = &s.resume;
    if r.recovered_lines + r.forgotten_lines + r.truncated_bytes > 0 {
        out.push_str(&format!(
            "\n  resumed: {} lines found written but not recorded, {} recorded lines missing from the files (run again), {} bytes of a torn last line cut",
            r.recovered_lines, r.forgotten_lines, r.truncated_bytes
        ));
    }
    let speedup = s
        .speedup
        .map_or_else(|| "-".to_owned(), |x| format!("{x:.1}x"));
    out.push_str(&format!(
        "\n  time: {} wall; {} if sent one after another; parallelism gave {speedup} ({} in flight at most)",
        seconds(Duration::from_secs_f64(s.wall_time_s)),
        seconds(Duration::from_secs_f64(s.sequential_time_s)),
        s.concurrency,
    ));
    out.push_str(&format!(
        "\n  tokens: {} in, {} out",
        thousands(s.tokens.input),
        thousands(s.tokens.output)
    ));
    let k = &s.cost_usd;
    out.push_str(&format!(
        "\n  cost: ${:.6} at realtime prices, ${:.6} at batch prices, ${:.6} actually spent (cache hits and coalesced lines cost nothing)",
        k.realtime, k.batch, k.actual
    ));
    if k.unpriced_lines > 0 {
        out.push_str(&format!(
            "; {} of models without a price counted as free",
            lines(k.unpriced_lines)
        ));
    }
    out.push_str(&format!(
        "\n  output: {} ({}); errors: {} ({})",
        s.output,
        lines(s.files.output_lines),
        s.errors,
        lines(s.files.error_lines)
    ));
    out
}

fn run_file(args: RunArgs) -> anyhow::Result<Outcome> {
    let raw = raw_config(&args)?;
    let config = raw
        .resolve(&|var| std::env::var(var).ok())
        .map_err(|e| anyhow::anyhow!("invalid upstream configuration: {e}"))?;
    let plan = plan(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(async {
        let (dispatcher, warnings) = Dispatcher::new(config)?;
        for w in warnings {
            eprintln!("tokenpace batch: warning: {w}");
        }
        let progress = Arc::new(Progress::new());
        let stop = Stop::default();
        // First Ctrl-C: stop sending and let lines in flight finish; second: stop now.
        let signals = {
            let (stop, progress) = (stop.clone(), progress.clone());
            let drain = plan.drain_timeout;
            tokio::spawn(async move {
                wait_for_signal().await;
                eprintln!(
                    "\ntokenpace batch: stopping: waiting up to {} for {} requests in flight (Ctrl-C again stops now)",
                    seconds(drain),
                    progress.snapshot().in_flight
                );
                stop.graceful.cancel();
                wait_for_signal().await;
                stop.now.cancel();
            })
        };
        let display = (!args.quiet).then(|| Display::spawn(progress.clone()));
        let result = batch::run(&plan, &dispatcher, progress, &stop).await;
        if let Some(d) = display {
            d.finish().await;
        }
        signals.abort();
        dispatcher.shutdown(Duration::from_secs(5)).await;
        result.map_err(|e| match e {
            BatchError::Invalid(report) => anyhow::anyhow!(
                "{report}\nFix these lines, or pass --skip-invalid to run the valid ones and write the invalid ones to the error file."
            ),
            other => anyhow::Error::new(other),
        })
    })?;
    if let Some(path) = &args.json {
        std::fs::write(path, summary.to_json() + "\n")
            .with_context(|| format!("writing --json '{}'", path.display()))?;
    }
    if !args.quiet {
        eprintln!("{}", render(&summary));
    }
    if !summary.complete {
        eprintln!(
            "tokenpace batch: stopped with {} of {} done; run the same command again to resume",
            thousands(summary.files.output_lines + summary.files.error_lines),
            lines(summary.counts.total)
        );
        return Ok(Outcome::SomeFailed);
    }
    Ok(if summary.all_succeeded() {
        Outcome::Success
    } else {
        Outcome::SomeFailed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
        assert_eq!(seconds(Duration::from_secs(125)), "2m05s");
        assert_eq!(seconds(Duration::from_secs(7260)), "2h01m");
        assert_eq!(lines(1), "1 line");
        assert_eq!(lines(12_000), "12,000 lines");
    }
}
