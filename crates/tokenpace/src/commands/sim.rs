//! `tokenpace sim`: resolve the flags and the profiles file, bind, announce the address as
//! the first line on stdout, serve until Ctrl-C or SIGTERM.

use std::io::Write;

use anyhow::Context;
use sim::CancellationToken;
use sim::config::{RawSimArgs, SimConfig};

use crate::Outcome;
use crate::cli::SimArgs;

/// Runs the simulator.
pub fn run(args: SimArgs) -> anyhow::Result<Outcome> {
    let window = protocol::ratelimit::parse_go_duration(&args.window).map_err(|e| {
        anyhow::anyhow!(
            "--window {}: {e}; write a duration such as 60s or 2s",
            args.window
        )
    })?;
    let file_text = match &args.profiles {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading --profiles '{}'", path.display()))?,
        ),
        None => None,
    };
    let path_string = args.profiles.as_ref().map(|p| p.display().to_string());
    let file = match (&path_string, &file_text) {
        (Some(p), Some(t)) => Some((p.as_str(), t.as_str())),
        _ => None,
    };
    let raw = RawSimArgs {
        window: Some(window),
        tier: args.tier.clone(),
        rpm: args.rpm,
        tpm: args.tpm,
        max_body_bytes: Some(args.max_body_bytes),
    };
    let config = SimConfig::resolve(raw, file)?;
    let models = config.profiles.names().join(", ");
    let tier = args
        .tier
        .clone()
        .or_else(|| (args.rpm.is_some() || args.tpm.is_some()).then(|| "custom".to_string()))
        .unwrap_or_else(|| "unlimited".into());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding --listen {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let simulator = sim::Simulator::new(config)?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on http://{addr}")?;
            out.flush()?;
        }
        eprintln!(
            "tokenpace sim: a SIMULATED provider (no real model). models: {models} (or PROFILE:key=value); \
tier: {tier}; window: {}. Ctrl-C stops.",
            args.window
        );
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        simulator.serve(listener, shutdown).await.context("serving")?;
        anyhow::Ok(())
    })?;
    Ok(Outcome::Success)
}

pub(crate) async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}
