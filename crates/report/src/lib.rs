//! Renderers of a `bench` run: they turn a [`RunReport`] (plain data, computed by `bench`
//! and `metrics`) into something to read or to load elsewhere, and compute nothing new
//! (STYLE.md habit 5). One file per format, as hyperfine's `export/`:
//!
//! - [`text`]: the terminal summary (tables, cost, SLO, warnings last);
//! - [`json`]: the report as JSON, shape pinned by `docs/report-schema.json`;
//! - [`csv`]: one row per (series, metric), RFC 4180 quoting;
//! - [`markdown`]: tables and lists for pull requests and issues.
//!
//! [`metric`] holds what they share: metric names and order, the token-vs-chunk wording,
//! number formats. Adding a format is adding one file and one [`Format`] variant. Writing
//! the result to a terminal or file is the binary's job.

pub mod csv;
pub mod json;
pub mod markdown;
pub mod metric;
pub mod text;

#[cfg(test)]
mod fixture;

pub use bench::report::RunReport;
pub use csv::render_csv;
pub use json::render_json;
pub use markdown::render_markdown;
pub use text::render_text;

use serde::{Deserialize, Serialize};

/// An output format of a run report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// The terminal summary ([`render_text`]).
    Text,
    /// Pretty JSON ([`render_json`]).
    Json,
    /// CSV, one row per series and metric ([`render_csv`]).
    Csv,
    /// Markdown ([`render_markdown`]).
    Markdown,
}

impl Format {
    /// Every format, in the order help texts list them.
    pub const ALL: [Format; 4] = [Format::Text, Format::Json, Format::Csv, Format::Markdown];

    /// Renders `report` in this format.
    pub fn render(&self, report: &RunReport) -> String {
        match self {
            Format::Text => render_text(report),
            Format::Json => render_json(report),
            Format::Csv => render_csv(report),
            Format::Markdown => render_markdown(report),
        }
    }

    /// The name a flag or config uses: `text`, `json`, `csv`, `markdown`.
    pub const fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Markdown => "markdown",
        }
    }

    /// The usual file extension, without the dot: `txt`, `json`, `csv`, `md`.
    pub const fn extension(self) -> &'static str {
        match self {
            Format::Text => "txt",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Markdown => "md",
        }
    }

    /// Parses a [`name`](Self::name) (or `md` for Markdown), ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<Format> {
        if name.eq_ignore_ascii_case("md") {
            return Some(Format::Markdown);
        }
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// Guesses the format from a file path's extension (`out.md` -> Markdown), as
    /// `--export out.csv` would want; `None` for an unknown or missing extension.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?;
        Self::ALL
            .into_iter()
            .find(|f| f.extension().eq_ignore_ascii_case(ext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_extensions_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::from_name(f.name()), Some(f));
            let path = format!("out.{}", f.extension());
            assert_eq!(Format::from_path(std::path::Path::new(&path)), Some(f));
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(json, format!("\"{}\"", f.name()));
        }
        assert_eq!(Format::from_name("MD"), Some(Format::Markdown));
        assert_eq!(Format::from_name("html"), None);
        assert_eq!(Format::from_path(std::path::Path::new("out")), None);
    }

    #[test]
    fn render_dispatches() {
        let r = fixture::full();
        assert_eq!(Format::Text.render(&r), render_text(&r));
        assert_eq!(Format::Json.render(&r), render_json(&r));
        assert_eq!(Format::Csv.render(&r), render_csv(&r));
        assert_eq!(Format::Markdown.render(&r), render_markdown(&r));
    }
}
