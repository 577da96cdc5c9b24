//! `tokenpace serve-local`: resolve the model, load it, bind, announce the address as the first
//! line on stdout, serve until Ctrl-C or SIGTERM. The server itself is `local::server`'s.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use local::engine::{Engine, LoadOptions, Model, default_threads};
use local::server::{LocalServer, ServeOptions};

use crate::Outcome;
use crate::cli::ServeLocalArgs;
use crate::commands::sim::wait_for_signal;

/// Runs the local model server.
pub fn run(args: ServeLocalArgs) -> anyhow::Result<Outcome> {
    let resolved = local::catalog::resolve(&args.model, args.model_dir.as_deref())
        .with_context(|| format!("--model {}", args.model))?;
    let options = LoadOptions {
        engine: args.engine.unwrap_or_else(Engine::default_for_build),
        threads: args.threads.map_or_else(default_threads, |n| n as usize),
        expected_sha256: resolved.expected_sha256.clone(),
        prefix_reuse: args.prefix_reuse,
    };
    let loading = Instant::now();
    let model = Model::load(&resolved.engine_path, &resolved.name, &options)
        .with_context(|| format!("loading --model {}", args.model))?;
    let load_time = loading.elapsed();
    let threads = model.threads();
    let engine = model.engine();
    let context = model.prompter().context_length();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        // HTTP handling is light next to the model's compute threads; two are plenty.
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = LocalServer::bind(
            model,
            ServeOptions {
                listen: args.listen,
                queue_limit: args.queue_limit,
            },
        )
        .await?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on {}", server.url())?;
            out.flush()?;
        }
        eprintln!(
            "tokenpace serve-local: model {} from {} ({} engine, {} threads, context {} tokens, loaded in {:.2} s); \
queue limit {}{}. Ctrl-C stops.",
            server.model_name(),
            resolved.engine_path.display(),
            engine,
            threads,
            context,
            load_time.as_secs_f64(),
            args.queue_limit,
            if args.prefix_reuse { "; prefix reuse on" } else { "" },
        );
        server.serve_until(wait_for_signal()).await.context("serving")?;
        anyhow::Ok(())
    })?;
    Ok(Outcome::Success)
}
