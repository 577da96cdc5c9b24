//! `tokenpace serve`: merge the config file and the flags, validate, bind, announce the
//! address as the first line on stdout, serve until Ctrl-C or SIGTERM, then shut down
//! gracefully.

use std::io::Write;

use anyhow::Context;
use dispatch::Dispatcher;
use dispatch::config::{RawConfig, RawUpstream};
use tokio_util::sync::CancellationToken;

use crate::Outcome;
use crate::cli::ServeArgs;
use crate::commands::sim::wait_for_signal;

/// The raw config: the file, then the flags over it.
fn raw_config(args: &ServeArgs) -> anyhow::Result<RawConfig> {
    let mut raw = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --config '{}'", path.display()))?;
            RawConfig::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("--config '{}': {e}", path.display()))?
        }
        None => RawConfig::default(),
    };
    for spec in &args.upstreams {
        let Some((name, url)) = spec.split_once('=') else {
            anyhow::bail!(
                "--upstream '{spec}': write it as NAME=URL, e.g. sim=http://127.0.0.1:8090"
            );
        };
        let entry = raw
            .upstreams
            .entry(name.trim().to_owned())
            .or_insert_with(RawUpstream::default);
        entry.url = url.trim().to_owned();
    }
    if let Some(listen) = &args.listen {
        raw.listen = Some(listen.clone());
    }
    if let Some(n) = args.threads {
        raw.threads = Some(n);
    }
    if args.allow_unauthenticated {
        raw.allow_unauthenticated = Some(true);
    }
    match args.cache.as_deref() {
        None => {}
        Some("off") => raw.cache.enabled = Some(false),
        Some(store @ ("sqlite" | "memory" | "redis")) => {
            raw.cache.enabled = Some(true);
            raw.cache.store = Some(store.to_owned());
        }
        Some(other) => anyhow::bail!("--cache '{other}': use sqlite, memory, redis or off"),
    }
    if let Some(path) = &args.cache_path {
        raw.cache.path = Some(path.display().to_string());
    }
    if let Some(url) = &args.redis_url {
        raw.cache.redis_url = Some(url.clone());
        if raw.cache.store.is_none() {
            raw.cache.store = Some("redis".to_owned());
        }
    }
    Ok(raw)
}

/// Runs the gateway.
pub fn run(args: ServeArgs) -> anyhow::Result<Outcome> {
    let raw = raw_config(&args)?;
    let config = raw
        .resolve(&|var| std::env::var(var).ok())
        .map_err(|e| anyhow::anyhow!("invalid gateway configuration: {e}"))?;
    // One thread: every task wake stays on that thread (no cross-thread unparking), which
    // is what the gateway's added latency is made of on a small machine.
    let runtime = if config.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads)
            .enable_all()
            .build()
    }
    .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listen = config.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let upstreams: Vec<String> = config
            .upstreams
            .iter()
            .map(|u| format!("{}={}", u.name, u.openai.as_ref().or(u.anthropic.as_ref()).map(|e| e.url()).unwrap_or_default()))
            .collect();
        let cache = if config.cache.enabled {
            match &config.cache.store {
                dispatch::config::CacheStore::Memory => "memory".to_owned(),
                dispatch::config::CacheStore::Sqlite(p) => format!("sqlite ({})", p.display()),
                dispatch::config::CacheStore::Redis { .. } => "redis".to_owned(),
            }
        } else {
            "off".to_owned()
        };
        let data_dir = config.data_dir.display().to_string();
        let (dispatcher, warnings) = Dispatcher::new(config)?;
        for w in warnings {
            eprintln!("tokenpace serve: warning: {w}");
        }
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on http://{addr}")?;
            out.flush()?;
        }
        eprintln!(
            "tokenpace serve: upstreams {}; cache {cache}; files and batches in {data_dir}. Point clients' base URL at http://{addr}/v1. Ctrl-C stops.",
            upstreams.join(", ")
        );
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        let state = gateway::AppState::new(dispatcher);
        gateway::serve(listener, state, shutdown).await.context("serving")?;
        anyhow::Ok(())
    })?;
    Ok(Outcome::Success)
}
