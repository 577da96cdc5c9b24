//! Subcommands: each resolves its arguments, calls the engines and renders the result.

mod batch;
mod bench;
mod model;
mod progress;
mod serve;
mod serve_local;
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
        Command::Model(args) => model::run(args),
        Command::ServeLocal(args) => serve_local::run(args),
    }
}
