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
/// The local model of the default run, when it is installed.
const DEFAULT_LOCAL: &str = "smollm2";
/// The larger local model the default run compares it with, when that is installed too.
const DEFAULT_LOCAL_LARGER: &str = "gemma3-270m";
/// The lesson's output-length experiment: one question, asked as is and capped to one sentence.
const LENGTH_QUESTION: &str = "What is machine learning and how is it used?";
const ONE_SENTENCE: &str = "Answer in ONE sentence.";
/// Room for the uncapped answer, so that the cap is the prompt's, not max_tokens'.
const LENGTH_MAX_TOKENS: u32 = 300;
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

/// `local:NAME` or `local:PATH.gguf`: a model run in-process on the CPU.
fn local_spec(model: &str) -> Option<&str> {
    model.strip_prefix(local::catalog::LOCAL_PREFIX)
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

/// Where a group of models runs.
#[derive(Debug, Clone)]
enum Place {
    /// The in-process simulator.
    Sim,
    /// A local model served in-process (`local:SPEC`).
    Local(String),
    /// An endpoint.
    Remote(Target),
}

/// One group of series before the in-process servers have addresses.
#[derive(Debug, Clone)]
struct Entry {
    /// Label prefix (a --targets name).
    prefix: Option<String>,
    place: Place,
    models: Vec<String>,
    /// Label instead of the model name (the default run's experiment series).
    label: Option<String>,
    /// The series' own workload.
    workload: Option<Workload>,
}

impl Entry {
    fn new(prefix: Option<String>, place: Place, models: Vec<String>) -> Self {
        Entry {
            prefix,
            place,
            models,
            label: None,
            workload: None,
        }
    }
}

/// Endpoints and models, before the simulator (if needed) has an address.
struct ResolvedTargets {
    entries: Vec<Entry>,
    /// True for the no-flag run (the lesson's Part 1).
    embedded_default: bool,
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
            entries.push(Entry::new(Some(t.name), Place::Remote(target), models));
        }
        return Ok(ResolvedTargets {
            entries,
            embedded_default: false,
        });
    }

    let explicit = args.base_url.clone();
    let from_env = std::env::var("OPENAI_BASE_URL")
        .ok()
        .filter(|v| !v.is_empty());
    if args.models.is_empty() {
        if explicit.is_some() || from_env.is_some() {
            bail!("--model: name the model to measure (repeat --model to compare several)");
        }
        return Ok(ResolvedTargets {
            entries: default_entries(args),
            embedded_default: true,
        });
    }
    let mut sim_models = Vec::new();
    let mut remote_models = Vec::new();
    let mut entries = Vec::new();
    for m in args.models.clone() {
        if m.trim().is_empty() {
            bail!("--model: an empty model name");
        }
        if let Some(spec) = local_spec(&m) {
            if spec.is_empty() {
                bail!("--model local: name the model, e.g. local:smollm2 or local:PATH.gguf");
            }
            entries.push(Entry::new(
                None,
                Place::Local(spec.to_owned()),
                vec![m.clone()],
            ));
            continue;
        }
        // Simulator models run in-process unless an endpoint was named on the command line
        // (OPENAI_BASE_URL does not count, so `--model sim-mini` always works offline).
        if is_sim_model(&m) && explicit.is_none() {
            sim_models.push(m);
        } else {
            remote_models.push(m);
        }
    }
    if !sim_models.is_empty() {
        entries.insert(0, Entry::new(None, Place::Sim, sim_models));
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
        entries.push(Entry::new(None, Place::Remote(target), remote_models));
    }
    Ok(ResolvedTargets {
        entries,
        embedded_default: false,
    })
}

/// The no-flag run. With SmolLM2 installed: SmolLM2 measured for real against a larger model —
/// Gemma 3 270M when it is installed too (two real sizes), else the simulated large model
/// (labelled simulated) — then the lesson's output-length experiment on SmolLM2.
/// Without it: the simulator's small and large models, and a note on how to make it real.
fn default_entries(args: &BenchArgs) -> Vec<Entry> {
    let installed = local::catalog::resolve(DEFAULT_LOCAL, args.model_dir.as_deref()).is_ok();
    if !installed {
        eprintln!(
            "note: measuring simulated models; `tokenpace model pull {DEFAULT_LOCAL}` installs SmolLM2-135M \
             (98 MB) and makes this run measure a real model on this machine's CPU"
        );
        return vec![Entry::new(
            None,
            Place::Sim,
            DEFAULT_MODELS.iter().map(|m| m.to_string()).collect(),
        )];
    }
    let local = Place::Local(DEFAULT_LOCAL.to_owned());
    let model = format!("local:{DEFAULT_LOCAL}");
    let experiment = |label: &str, prompt: String| Entry {
        prefix: None,
        place: local.clone(),
        models: vec![model.clone()],
        label: Some(format!("{model} {label}")),
        workload: Some(Workload {
            source: Source::Text(prompt),
            max_tokens: Some(args.max_tokens.unwrap_or(LENGTH_MAX_TOKENS)),
            system: args.system.clone(),
        }),
    };
    let larger = if local::catalog::resolve(DEFAULT_LOCAL_LARGER, args.model_dir.as_deref()).is_ok()
    {
        Entry::new(
            None,
            Place::Local(DEFAULT_LOCAL_LARGER.to_owned()),
            vec![format!("local:{DEFAULT_LOCAL_LARGER}")],
        )
    } else {
        Entry::new(None, Place::Sim, vec!["sim-large".to_owned()])
    };
    vec![
        Entry::new(None, local.clone(), vec![model.clone()]),
        larger,
        experiment("(as asked)", LENGTH_QUESTION.to_owned()),
        experiment(
            "(ONE sentence)",
            format!("{LENGTH_QUESTION} {ONE_SENTENCE}"),
        ),
    ]
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
    let needs_sim = targets
        .entries
        .iter()
        .any(|e| matches!(e.place, Place::Sim));
    let embedded_default = targets.embedded_default
        || targets
            .entries
            .iter()
            .all(|e| !matches!(e.place, Place::Remote(_)));
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
        let local = LocalModels::start(&targets.entries, &args).await;
        let mut local = match local {
            Ok(l) => l,
            Err(e) => {
                if let Some(sim) = simulator {
                    sim.stop().await;
                }
                return Err(e);
            }
        };
        let several = targets
            .entries
            .iter()
            .filter(|e| matches!(e.place, Place::Remote(_)))
            .count()
            > 1;
        let mut series = Vec::new();
        // Series served by a model inside this process: its CPU is the model's, not the
        // client's, so the "client saturated" warning would mislead.
        let mut in_process = Vec::new();
        for entry in &targets.entries {
            let (target, simulated, served) = match (&entry.place, &simulator) {
                (Place::Remote(t), _) => (t.clone(), false, None),
                (Place::Sim, Some(sim)) => (
                    Target::new("sim", format!("{}/v1", sim.url()), Api::OpenAi),
                    true,
                    None,
                ),
                (Place::Sim, None) => bail!("internal: no simulator for simulated models"),
                (Place::Local(spec), _) => {
                    let (url, name) = local.address(spec)?;
                    (Target::new("local", url, Api::OpenAi), false, Some(name))
                }
            };
            let endpoint = target.endpoint()?;
            for model in &entry.models {
                let label = match (&entry.label, &entry.prefix) {
                    (Some(l), _) => l.clone(),
                    (None, Some(n)) if several => format!("{n}/{model}"),
                    _ => model.clone(),
                };
                if matches!(entry.place, Place::Local(_)) {
                    in_process.push(label.clone());
                }
                series.push(Series {
                    label,
                    endpoint: endpoint.clone(),
                    model: served.clone().unwrap_or_else(|| model.clone()),
                    simulated,
                    workload: entry.workload.clone(),
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
        local.stop().await;
        let mut report = result?;
        for s in &mut report.series {
            if in_process.contains(&s.label) {
                s.warnings.retain(|w| w.code != "client_saturated");
            }
        }

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

/// The local models of a run, each loaded once and served in-process on a loopback port.
struct LocalModels {
    /// (spec, base URL with /v1, served model name, server).
    running: Vec<(String, String, String, local::server::RunningLocal)>,
}

impl LocalModels {
    async fn start(entries: &[Entry], args: &BenchArgs) -> anyhow::Result<LocalModels> {
        let mut models = LocalModels {
            running: Vec::new(),
        };
        for entry in entries {
            let Place::Local(spec) = &entry.place else {
                continue;
            };
            if models.running.iter().any(|(s, ..)| s == spec) {
                continue;
            }
            match Self::start_one(spec, args).await {
                Ok(r) => models.running.push(r),
                Err(e) => {
                    models.stop().await;
                    return Err(e);
                }
            }
        }
        Ok(models)
    }

    async fn start_one(
        spec: &str,
        args: &BenchArgs,
    ) -> anyhow::Result<(String, String, String, local::server::RunningLocal)> {
        let resolved = local::catalog::resolve(spec, args.model_dir.as_deref())
            .with_context(|| format!("--model local:{spec}"))?;
        let options = local::engine::LoadOptions {
            engine: args
                .local_engine
                .unwrap_or_else(local::engine::Engine::default_for_build),
            threads: args
                .local_threads
                .map_or_else(local::engine::default_threads, |n| n as usize),
            expected_sha256: resolved.expected_sha256.clone(),
            prefix_reuse: false,
        };
        let name = resolved.name.clone();
        let path = resolved.engine_path.clone();
        let started = std::time::Instant::now();
        let model =
            tokio::task::spawn_blocking(move || local::engine::Model::load(&path, &name, &options))
                .await
                .context("loading the local model")?
                .with_context(|| format!("--model local:{spec}"))?;
        if !args.quiet {
            eprintln!(
                "local model {} loaded from {} in {:.2} s ({} engine, {} threads)",
                resolved.name,
                resolved.engine_path.display(),
                started.elapsed().as_secs_f64(),
                model.engine(),
                model.threads()
            );
        }
        let served = resolved.name.clone();
        let running = local::server::LocalServer::spawn(
            model,
            local::server::ServeOptions {
                listen: "127.0.0.1:0".parse().context("loopback address")?,
                ..local::server::ServeOptions::default()
            },
        )
        .await
        .with_context(|| format!("serving local:{spec}"))?;
        let url = format!("{}/v1", running.url());
        Ok((spec.to_owned(), url, served, running))
    }

    /// The base URL and served name of `spec`'s server.
    fn address(&self, spec: &str) -> anyhow::Result<(String, String)> {
        self.running
            .iter()
            .find(|(s, ..)| s == spec)
            .map(|(_, url, name, _)| (url.clone(), name.clone()))
            .ok_or_else(|| anyhow::anyhow!("internal: local model {spec} was not started"))
    }

    async fn stop(&mut self) {
        for (_, _, _, server) in self.running.drain(..) {
            server.stop().await;
        }
    }
}
