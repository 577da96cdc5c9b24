//! The `tokenpace` binary as a user runs it: first stdout line, exit codes, error messages.
//! One test binary for the crate.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test loudly on any error"
)]

mod batch;
mod bench;
mod serve;
mod sim;

use std::process::{Command, Output};

/// The built binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tokenpace"))
}

/// Runs the binary to completion.
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

#[test]
fn help_lists_the_subcommands() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("sim"), "{text}");
    assert!(text.contains("bench"), "{text}");
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let out = run(&["sim", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--no-such-flag"), "{err}");
}
