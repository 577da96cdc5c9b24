//! The `tokenpace` binary as a user runs it: first stdout line, exit codes, error messages.
//! One test binary for the crate.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail the test loudly on any error"
)]

mod batch;
mod bench;
#[cfg(unix)]
mod model;
mod serve;
mod serve_local;
mod sim;

use std::process::{Command, Output};

/// The built binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tokenpace"))
}

/// Whether SmolLM2 is installed; panics when TOKENPACE_REQUIRE_MODEL=1 (scripts/test.sh) and
/// it is not, so that CI never silently skips the real-model tests.
pub fn smollm2_installed() -> bool {
    match local::catalog::resolve("smollm2", None) {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var("TOKENPACE_REQUIRE_MODEL").as_deref() != Ok("1"),
                "TOKENPACE_REQUIRE_MODEL=1 but the model is missing: {e}"
            );
            eprintln!("skipped: {e}");
            false
        }
    }
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
