//! The live progress line on stderr (indicatif): requests done, rate, in flight, failures
//! and the rolling median TTFT. It polls `bench::progress::Progress` ten times a second and
//! never touches the request path.

use std::sync::Arc;
use std::time::Duration;

use bench::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running display; [`Display::finish`] clears it.
pub struct Display {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Display {
    /// Stops and clears the display.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts the display.
pub fn spawn(progress: Arc<Progress>) -> Display {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
        let style = ProgressStyle::with_template("{spinner} {prefix} {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            let s = progress.snapshot();
            bar.set_prefix(s.label.clone());
            match s.total {
                Some(t) => bar.set_length(t),
                None => bar.unset_length(),
            }
            bar.set_position(s.done);
            let rate = if s.elapsed.as_secs_f64() > 0.0 {
                s.done as f64 / s.elapsed.as_secs_f64()
            } else {
                0.0
            };
            let ttft = s
                .ttft_p50
                .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| "-".into());
            bar.set_message(format!(
                "{rate:.1} req/s, {} in flight, {} failed, TTFT p50 {ttft}",
                s.in_flight.max(0),
                s.failed
            ));
        }
        bar.finish_and_clear();
    });
    Display { stop, task }
}
