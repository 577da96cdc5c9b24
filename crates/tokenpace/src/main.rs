//! The `tokenpace` binary: parse the command line, run the subcommand, map the outcome to an
//! exit code (0 success, 1 some requests failed, 2 usage or fatal error; a closed stdout,
//! e.g. `| head`, exits 0). Everything else lives in the library crates; `cli` owns the
//! arguments and `commands` resolves them and calls the engines.

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

/// How a run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything succeeded.
    Success,
    /// The run completed but some requests failed.
    SomeFailed,
}

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_logging(args.verbose);
    match commands::run(args) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::SomeFailed) => ExitCode::from(1),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKENPACE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
