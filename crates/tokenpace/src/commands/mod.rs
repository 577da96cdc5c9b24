//! Subcommands: each resolves its arguments, calls the engines and renders the result.

mod sim;

use crate::Outcome;
use crate::cli::{Cli, Command};

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    match cli.command {
        Command::Bench => {
            anyhow::bail!(
                "`tokenpace bench` is not yet built; run `tokenpace sim` to start the provider simulator"
            )
        }
        Command::Sim(args) => sim::run(args),
    }
}
