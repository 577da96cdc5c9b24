//! Subcommands: each resolves its arguments, calls the engines and renders the result.

mod batch;
mod bench;
mod progress;
mod serve;
mod sim;

use crate::Outcome;
use crate::cli::{Cli, Command};

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Bench(args) => bench::run(*args),
        Command::Sim(args) => sim::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Batch(args) => batch::run(args),
    }
}
