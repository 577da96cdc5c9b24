//! `tokenpace bench`: resolve flags and files into a `BenchPlan` (every usage error names
//! the flag and the fix), start the simulator in-process when no endpoint is given, run the
//! engine with a live progress display, render the report to stdout and to the requested
//! files, and map the outcome to the exit code.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use bench::arrival::ArrivalKind;
use bench::plan::{BenchPlan, Load, Series, Stop};
use bench::progress::Progress;
use bench::workload::{DEFAULT_PROMPT, Source, Synthetic, Workload};
use client::{Api, Client, ClientOptions, Target};
use metrics::cost::PriceTable;
use metrics::slo::Slo;
use serde::Deserialize;
use sim::CancellationToken;

use crate::Outcome;
use crate::cli::bench::{ApiArg, ArrivalArg, BenchArgs};

/// The lesson's Part 1: small-fast vs large-slow, 5 runs, 100 output tokens.
const DEFAULT_MODELS: [&str; 2] = ["sim-mini", "sim-large"];
const DEFAULT_RUNS: u64 = 5;
const DEFAULT_MAX_TOKENS: u32 = 100;

/// A `--targets` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsFile {
    #[serde(rename = "target", default)]
    targets: Vec<RawTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    base_url: String,
    #[serde(default)]
    api: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    api_key_env: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

fn parse_duration(flag: &str, value: &str) -> anyhow::Result<Duration> {
    protocol::ratelimit::parse_go_duration(value)
        .map_err(|e| anyhow::anyhow!("{flag} {value}: {e}; write a duration such as 30s or 500ms"))
}

fn mean_stddev(flag: &str, value: &str) -> anyhow::Result<(u32, u32)> {
    let bad = || {
        anyhow::anyhow!(
            "{flag} {value}: expected MEAN or MEAN,STDDEV in tokens, e.g. 200 or 200,50"
        )
    };
    let mut parts = value.split(',');
    let mean: u32 = parts
        .next()
        .and_then(|m| m.trim().parse().ok())
        .ok_or_else(bad)?;
    let stddev: u32 = match parts.next() {
        Some(s) => s.trim().parse().map_err(|_| bad())?,
        None => 0,
    };
    if parts.next().is_some() || mean == 0 {
        return Err(bad());
    }
    Ok((mean, stddev))
}

fn api_of(arg: ApiArg) -> Api {
    match arg {
        ApiArg::Openai => Api::OpenAi,
        ApiArg::Anthropic => Api::Anthropic,
    }
}

fn key_from_env(var: Option<&str>, api: Api) -> anyhow::Result<Option<String>> {
    match var {
        Some(name) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Some(v)),
            _ => bail!(
                "the API key variable {name} is not set; export it or pick another with --api-key-env"
            ),
        },
        None => {
            let default = match api {
                Api::OpenAi => "OPENAI_API_KEY",
                Api::Anthropic => "ANTHROPIC_API_KEY",
            };
            Ok(std::env::var(default).ok().filter(|v| !v.is_empty()))
        }
    }
}

fn is_sim_model(model: &str) -> bool {
    model == "sim" || model.starts_with("sim-") || model.starts_with("sim:")
}

/// Writes `text` to `path` through a temporary file and a rename, so a reader never sees a
/// half-written report.
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("writing '{}'", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing '{}'", path.display()))?;
    Ok(())
}

/// Endpoints and models, before the simulator (if needed) has an address.
struct ResolvedTargets {
    /// (label prefix, target, models); a `None` target means "the embedded simulator".
    entries: Vec<(Option<String>, Option<Target>, Vec<String>)>,
}

fn resolve_targets(args: &BenchArgs) -> anyhow::Result<ResolvedTargets> {
    let api = api_of(args.api);
    if let Some(path) = &args.targets {
        if !args.models.is_empty() {
            bail!(
                "--model and --targets: give the models in the targets file (model = \"...\" per [[target]])"
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --targets '{}'", path.display()))?;
        let file: TargetsFile = toml::from_str(&text)
            .with_context(|| format!("reading --targets '{}'", path.display()))?;
        if file.targets.is_empty() {
            bail!(
                "--targets '{}': no [[target]] tables; see `tokenpace bench --help`",
                path.display()
            );
        }
        let mut entries = Vec::new();
        for t in file.targets {
            let api = match t.api.as_deref() {
                None | Some("openai") => Api::OpenAi,
                Some("anthropic") => Api::Anthropic,
                Some(other) => bail!(
                    "--targets: target '{}': api = \"{other}\" is not openai or anthropic",
                    t.name
                ),
            };
            let mut models = t.models.clone();
            models.extend(t.model.clone());
            if models.is_empty() {
                bail!(
                    "--targets: target '{}' has no model; add model = \"...\"",
                    t.name
                );
            }
            let mut target = Target::new(t.name.clone(), t.base_url.clone(), api);
            if let Some(key) = key_from_env(t.api_key_env.as_deref(), api)? {
                target = target.with_api_key(key);
            }
            for (k, v) in t.headers {
                target = target.with_header(k, v);
            }
            target
                .endpoint()
                .with_context(|| format!("--targets: target '{}'", t.name))?;
            entries.push((Some(t.name), Some(target), models));
        }
        return Ok(ResolvedTargets { entries });
    }

    let explicit = args.base_url.clone();
    let from_env = std::env::var("OPENAI_BASE_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let models: Vec<String> = if args.models.is_empty() {
        if explicit.is_some() || from_env.is_some() {
            bail!("--model: name the model to measure (repeat --model to compare several)");
        }
        DEFAULT_MODELS.iter().map(|m| m.to_string()).collect()
    } else {
        args.models.clone()
    };
    let mut sim_models = Vec::new();
    let mut remote_models = Vec::new();
    for m in models {
        if m.trim().is_empty() {
            bail!("--model: an empty model name");
        }
        // Simulator models run in-process unless an endpoint was named on the command line
        // (OPENAI_BASE_URL does not count, so `--model sim-mini` always works offline).
        if is_sim_model(&m) && explicit.is_none() {
            sim_models.push(m);
        } else {
            remote_models.push(m);
        }
    }
    let mut entries = Vec::new();
    if !sim_models.is_empty() {
        entries.push((None, None, sim_models));
    }
    if !remote_models.is_empty() {
        let Some(base) = explicit.or(from_env) else {
            bail!(
                "model '{}' needs an endpoint: give --base-url URL (or set OPENAI_BASE_URL); models named sim... run on the built-in simulator",
                remote_models[0]
            );
        };
        let mut target = Target::new("endpoint", base, api);
        if let Some(key) = key_from_env(args.api_key_env.as_deref(), api)? {
            target = target.with_api_key(key);
        }
        for h in &args.headers {
            let Some((name, value)) = h.split_once(':') else {
                bail!("--header '{h}': write it as 'NAME: VALUE', e.g. 'cache-control: no-store'");
            };
            target = target.with_header(name.trim(), value.trim());
        }
        target.endpoint().context("--base-url")?;
        entries.push((None, Some(target), remote_models));
    }
    Ok(ResolvedTargets { entries })
}

/// Load shape, stop condition, sweep levels and speedup from the mode flags.
fn resolve_load(args: &BenchArgs) -> anyhow::Result<(Load, Stop, Vec<u32>, Option<u32>)> {
    let levels: Vec<u32> = match &args.concurrency {
        Some(list) => {
            let mut v = Vec::new();
            for part in list.split(',') {
                let c: u32 = part.trim().parse().ok().filter(|c| *c > 0).ok_or_else(|| {
                    anyhow::anyhow!("--concurrency {list}: '{part}' is not a positive whole number; e.g. 8 or 1,4,16,64")
                })?;
                v.push(c);
            }
            v
        }
        None => Vec::new(),
    };
    let duration = args
        .duration
        .as_deref()
        .map(|d| parse_duration("--duration", d))
        .transpose()?;
    if args.requests == Some(0) || args.runs == Some(0) {
        bail!("--requests/--runs: must be at least 1");
    }
    let stop_for = |default: u64| match (args.requests, duration) {
        (Some(n), _) => Stop::Requests(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Requests(default),
    };
    if args.parallel_speedup {
        if levels.len() > 1 || args.rate.is_some() {
            bail!(
                "--parallel-speedup: give one --concurrency C (the parallel run), not a sweep or --rate"
            );
        }
        let c = levels.first().copied().unwrap_or(4);
        let n = args.runs.or(args.requests).unwrap_or(20);
        return Ok((
            Load::Closed { concurrency: c },
            Stop::Requests(n),
            Vec::new(),
            Some(c),
        ));
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate {rate}: give a positive number of requests per second");
        }
        let arrival = match args.arrival {
            ArrivalArg::Constant => ArrivalKind::Constant,
            ArrivalArg::Poisson => ArrivalKind::Poisson,
        };
        let default = (rate * 10.0).ceil().max(50.0) as u64;
        return Ok((
            Load::Open {
                rate,
                arrival,
                seed: args.seed,
            },
            stop_for(default),
            Vec::new(),
            None,
        ));
    }
    if let Some(n) = args.runs {
        return Ok((
            Load::Closed { concurrency: 1 },
            Stop::Requests(n),
            Vec::new(),
            None,
        ));
    }
    match levels.as_slice() {
        [] => Ok((
            Load::Closed { concurrency: 1 },
            stop_for(DEFAULT_RUNS),
            Vec::new(),
            None,
        )),
        [c] => Ok((
            Load::Closed { concurrency: *c },
            stop_for(u64::from(*c) * 10),
            Vec::new(),
            None,
        )),
        many => {
            let top = many.iter().copied().max().unwrap_or(1);
            Ok((
                Load::Closed {
                    concurrency: many[0],
                },
                stop_for(u64::from(top) * 10),
                many.to_vec(),
                None,
            ))
        }
    }
}

fn resolve_workload(args: &BenchArgs, embedded_default: bool) -> anyhow::Result<Workload> {
    let source = if let Some(path) = &args.prompts {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --prompts '{}'", path.display()))?;
        let lines = Workload::parse_lines(&text)
            .with_context(|| format!("reading --prompts '{}'", path.display()))?;
        Source::Lines(lines)
    } else if args.input_tokens.is_some() || args.output_tokens.is_some() {
        let (input_mean, input_stddev) = match &args.input_tokens {
            Some(v) => mean_stddev("--input-tokens", v)?,
            None => (100, 0),
        };
        let (output_mean, output_stddev) = match &args.output_tokens {
            Some(v) => mean_stddev("--output-tokens", v)?,
            None => (args.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS), 0),
        };
        Source::Synthetic(Synthetic {
            input_mean,
            input_stddev,
            output_mean,
            output_stddev,
            seed: args.seed,
        })
    } else {
        Source::Text(
            args.prompt
                .clone()
                .unwrap_or_else(|| DEFAULT_PROMPT.to_string()),
        )
    };
    if args.max_tokens == Some(0) {
        bail!("--max-tokens 0: ask for at least one output token");
    }
    let max_tokens = args
        .max_tokens
        .or(embedded_default.then_some(DEFAULT_MAX_TOKENS));
    Ok(Workload {
        source,
        max_tokens,
        system: args.system.clone(),
    })
}

/// Runs `tokenpace bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    let targets = resolve_targets(&args)?;
    let needs_sim = targets.entries.iter().any(|(_, t, _)| t.is_none());
    let embedded_default = targets.entries.iter().all(|(_, t, _)| t.is_none());
    let (load, stop, sweep, speedup) = resolve_load(&args)?;
    let workload = resolve_workload(&args, embedded_default)?;
    let slo = args
        .slo
        .as_deref()
        .map(|s| Slo::parse(s).map_err(|e| anyhow::anyhow!("--slo {s}: {e}")))
        .transpose()?;
    let prices = match &args.prices {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --prices '{}'", path.display()))?;
            PriceTable::from_toml_str(&text)
                .with_context(|| format!("reading --prices '{}'", path.display()))?
        }
        None => PriceTable::builtin(),
    };
    let timeout = parse_duration("--timeout", &args.timeout)?;
    let ramp_up = parse_duration("--ramp-up", &args.ramp_up)?;
    if timeout.is_zero() {
        bail!("--timeout 0s: give the per-request time limit, e.g. 60s");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let simulator = if needs_sim {
            let sim = sim::Simulator::new(sim::SimConfig::default())?
                .spawn("127.0.0.1:0".parse().context("loopback address")?)
                .await?;
            Some(sim)
        } else {
            None
        };
        let several = targets
            .entries
            .iter()
            .filter(|(_, t, _)| t.is_some())
            .count()
            > 1;
        let mut series = Vec::new();
        for (name, target, models) in &targets.entries {
            let (target, simulated) = match (target, &simulator) {
                (Some(t), _) => (t.clone(), false),
                (None, Some(sim)) => (
                    Target::new("sim", format!("{}/v1", sim.url()), Api::OpenAi),
                    true,
                ),
                (None, None) => bail!("internal: no simulator for simulated models"),
            };
            let endpoint = target.endpoint()?;
            for model in models {
                let label = match name {
                    Some(n) if several => format!("{n}/{model}"),
                    _ => model.clone(),
                };
                series.push(Series {
                    label,
                    endpoint: endpoint.clone(),
                    model: model.clone(),
                    simulated,
                });
            }
        }
        let plan = BenchPlan {
            series,
            load,
            stop,
            warmup: args.warmup,
            workload,
            stream: !args.no_stream,
            include_usage: !args.no_usage,
            slo,
            prices,
            timeout,
            requests_out: args.requests_out.clone(),
            max_in_flight: 10_000,
            ramp_up,
            sweep,
            speedup,
        };
        let client = Client::new(ClientOptions {
            timeout,
            ..ClientOptions::default()
        })?;
        let progress = Arc::new(Progress::new());
        let cancel = CancellationToken::new();
        {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!(
                        "\ninterrupted: finishing with the partial results (ctrl-c again to abort)"
                    );
                    cancel.cancel();
                    if tokio::signal::ctrl_c().await.is_ok() {
                        std::process::exit(130);
                    }
                }
            });
        }
        let display = (!args.quiet && std::io::stderr().is_terminal())
            .then(|| crate::commands::progress::spawn(progress.clone()));
        let started_at = protocol::ratelimit::format_rfc3339(SystemTime::now());
        let result = bench::run::run(&plan, &client, &progress, &cancel, started_at).await;
        if let Some(d) = display {
            d.finish().await;
        }
        if let Some(sim) = simulator {
            sim.stop().await;
        }
        let report = result?;

        let text = report::render_text(&report);
        {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        if let Some(path) = &args.json {
            write_atomic(path, &report::render_json(&report))?;
        }
        if let Some(path) = &args.csv {
            write_atomic(path, &report::render_csv(&report))?;
        }
        if let Some(path) = &args.markdown {
            write_atomic(path, &report::render_markdown(&report))?;
        }
        let failed: u64 = report.series.iter().map(|s| s.requests.failed).sum();
        Ok(if failed > 0 {
            Outcome::SomeFailed
        } else {
            Outcome::Success
        })
    })
}
