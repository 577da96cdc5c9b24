//! The pass over the whole input before anything is sent, and the input's fingerprint.
//!
//! The file is streamed line by line (one line in memory at a time). What has to be
//! remembered across lines is the map of `custom_id`s seen so far, to catch duplicates:
//! about 80 bytes per line plus the id itself (a `HashMap<String, u64>` entry), so a full
//! 50,000-line batch costs about 5 MB, and the problems found (one short message each).
//! Lines past the file's limits are remembered as a range, not one by one, so a huge file
//! costs no more than its first `max_lines` lines.
//!
//! It owns the file-level rules (unique ids, limits) and the report of every problem with
//! its line number; the rules of a single line are [`crate::input`]'s.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use dispatch::Kind;
use sha2::{Digest, Sha256};

use crate::error::BatchError;
use crate::input::{self, Limits};

/// Bytes of the input hashed into its fingerprint.
pub const FINGERPRINT_HEAD: u64 = 64 * 1024;

/// Problems listed in the error message; the rest are counted.
const LISTED: usize = 50;

/// What identifies an input file cheaply: its size and a hash of its first 64 KiB. A
/// checkpoint store belongs to one fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the first [`FINGERPRINT_HEAD`] bytes, lowercase hex.
    pub head_sha256: String,
}

impl Fingerprint {
    /// The fingerprint of the file at `path`.
    pub fn of(path: &Path) -> Result<Fingerprint, BatchError> {
        let file = File::open(path).map_err(|e| BatchError::io("reading", path, e))?;
        let size = file
            .metadata()
            .map_err(|e| BatchError::io("reading", path, e))?
            .len();
        let mut head = Vec::with_capacity(FINGERPRINT_HEAD as usize);
        file.take(FINGERPRINT_HEAD)
            .read_to_end(&mut head)
            .map_err(|e| BatchError::io("reading", path, e))?;
        let digest: [u8; 32] = Sha256::digest(&head).into();
        Ok(Fingerprint {
            size,
            head_sha256: hex(&digest),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// One line as read: its number, its bytes without the terminator, and where it ends.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    /// 1-based physical line number (as an editor shows it).
    pub(crate) number: u64,
    /// The bytes, without `\n` or `\r\n`.
    pub(crate) text: &'a [u8],
    /// The offset just past the line and its terminator.
    pub(crate) end: u64,
    /// Whether it ended with `\n` (only the file's last line may not).
    pub(crate) terminated: bool,
}

/// Reads lines of any length without holding more than one.
pub(crate) struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    number: u64,
    offset: u64,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        LineReader {
            reader,
            buf: Vec::new(),
            number: 0,
            offset: 0,
        }
    }

    /// The next line, `None` at the end.
    pub(crate) fn next_line(&mut self) -> std::io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let n = self.reader.read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        self.offset += n as u64;
        let mut text = self.buf.as_slice();
        let terminated = text.ends_with(b"\n");
        if let Some(t) = text.strip_suffix(b"\n") {
            text = t.strip_suffix(b"\r").unwrap_or(t);
        }
        Ok(Some(Line {
            number: self.number,
            text,
            end: self.offset,
            terminated,
        }))
    }
}

/// Opens `path` for streaming.
pub(crate) fn open_lines(path: &Path) -> Result<LineReader<BufReader<File>>, BatchError> {
    let file = File::open(path).map_err(|e| BatchError::io("reading", path, e))?;
    Ok(LineReader::new(BufReader::with_capacity(1 << 16, file)))
}

/// Which limit a line is past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// It is a request line past `max_lines`.
    Lines,
    /// It ends past `max_bytes`.
    Bytes,
}

impl Limit {
    /// The error code of its error line.
    pub fn code(self) -> &'static str {
        match self {
            Limit::Lines => "too_many_lines",
            Limit::Bytes => "file_too_large",
        }
    }

    /// The message of its error line.
    pub fn message(self, limits: &Limits) -> String {
        match self {
            Limit::Lines => format!(
                "the line is past the limit of {} request lines per batch",
                protocol::fmt::thousands(limits.max_lines)
            ),
            Limit::Bytes => format!(
                "the line ends past the limit of {} bytes per batch file",
                protocol::fmt::thousands(limits.max_bytes)
            ),
        }
    }
}

/// Whether the `request`-th request line (1-based), ending at offset `end`, is past a
/// limit. Both passes over the file use this, so they agree on every line.
pub(crate) fn past_limit(limits: &Limits, request: u64, end: u64) -> Option<Limit> {
    if request > limits.max_lines {
        Some(Limit::Lines)
    } else if end > limits.max_bytes {
        Some(Limit::Bytes)
    } else {
        None
    }
}

/// One invalid line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Its line number.
    pub line: u64,
    /// Its `custom_id`, when it has a usable one.
    pub custom_id: Option<String>,
    /// The code of its error line: `invalid_request` or `duplicate_custom_id`.
    pub code: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// A run of lines past one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    /// The first such line's number.
    pub first_line: u64,
    /// The last such line's number.
    pub last_line: u64,
    /// How many request lines.
    pub count: u64,
}

/// The outcome of the pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// Request lines (blank lines excluded).
    pub requests: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines with a problem of their own (not counting those past a limit), in order.
    pub problems: Vec<Problem>,
    /// Lines past `max_lines`.
    pub over_lines: Option<Overflow>,
    /// Lines within `max_lines` that end past `max_bytes`.
    pub over_bytes: Option<Overflow>,
    /// The limits applied.
    pub limits: Limits,
}

impl Validation {
    /// Invalid lines of every kind.
    pub fn invalid(&self) -> u64 {
        self.problems.len() as u64
            + self.over_lines.map_or(0, |o| o.count)
            + self.over_bytes.map_or(0, |o| o.count)
    }

    /// The error describing every invalid line of `path`, for a run that refuses them.
    pub fn invalid_input(&self, path: &Path) -> InvalidInput {
        let mut lines: Vec<String> = self
            .problems
            .iter()
            .take(LISTED)
            .map(|p| format!("line {}: {}", p.line, p.message))
            .collect();
        let unlisted = self.problems.len().saturating_sub(LISTED) as u64;
        for (over, limit) in [
            (self.over_lines, Limit::Lines),
            (self.over_bytes, Limit::Bytes),
        ] {
            if let Some(o) = over {
                let what = match limit {
                    Limit::Lines => format!(
                        "past the limit of {} request lines",
                        protocol::fmt::thousands(self.limits.max_lines)
                    ),
                    Limit::Bytes => format!(
                        "ending past the limit of {} bytes (the file has {})",
                        protocol::fmt::thousands(self.limits.max_bytes),
                        protocol::fmt::thousands(self.bytes)
                    ),
                };
                lines.push(format!(
                    "lines {} to {} ({} request lines): {what}",
                    o.first_line,
                    o.last_line,
                    protocol::fmt::thousands(o.count)
                ));
            }
        }
        InvalidInput {
            path: path.to_owned(),
            invalid: self.invalid(),
            requests: self.requests,
            lines,
            unlisted,
        }
    }
}

/// Every problem of an input file in one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidInput {
    /// The input.
    pub path: PathBuf,
    /// Invalid request lines.
    pub invalid: u64,
    /// All request lines.
    pub requests: u64,
    /// One line per problem (`line 7: ...`), the first ones.
    pub lines: Vec<String>,
    /// Problems not listed.
    pub unlisted: u64,
}

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' has {} invalid line{} (of {}); nothing was sent:",
            self.path.display(),
            protocol::fmt::thousands(self.invalid),
            if self.invalid == 1 { "" } else { "s" },
            protocol::fmt::thousands(self.requests)
        )?;
        for line in &self.lines {
            write!(f, "\n  {line}")?;
        }
        if self.unlisted > 0 {
            write!(
                f,
                "\n  ... and {} more",
                protocol::fmt::thousands(self.unlisted)
            )?;
        }
        Ok(())
    }
}

fn extend(over: &mut Option<Overflow>, line: u64) {
    match over {
        Some(o) => {
            o.last_line = line;
            o.count += 1;
        }
        None => {
            *over = Some(Overflow {
                first_line: line,
                last_line: line,
                count: 1,
            });
        }
    }
}

/// Streams `path` and checks every line.
pub fn validate(path: &Path, limits: Limits) -> Result<Validation, BatchError> {
    validate_for(path, limits, None)
}

/// [`validate`], and with `endpoint` also requires every line's `url` to be that
/// operation's route: an OpenAI batch has one endpoint (`POST /v1/batches`' `endpoint`),
/// and a line for another one is invalid.
pub fn validate_for(
    path: &Path,
    limits: Limits,
    endpoint: Option<Kind>,
) -> Result<Validation, BatchError> {
    let mut lines = open_lines(path)?;
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut v = Validation {
        requests: 0,
        bytes: 0,
        problems: Vec::new(),
        over_lines: None,
        over_bytes: None,
        limits,
    };
    while let Some(line) = lines
        .next_line()
        .map_err(|e| BatchError::io("reading", path, e))?
    {
        v.bytes = line.end;
        if input::is_blank(line.text) {
            continue;
        }
        v.requests += 1;
        match past_limit(&limits, v.requests, line.end) {
            Some(Limit::Lines) => {
                extend(&mut v.over_lines, line.number);
                continue;
            }
            Some(Limit::Bytes) => {
                extend(&mut v.over_bytes, line.number);
                continue;
            }
            None => {}
        }
        let mut checked = input::check(line.text);
        if let (Some(want), Ok(req)) = (endpoint, &checked.result)
            && req.kind != want
        {
            checked.result = Err(format!(
                "url '{}' is not the batch's endpoint '{}' (every line of a batch uses its endpoint)",
                req.kind.route(),
                want.route()
            ));
        }
        let duplicate_of = match &checked.custom_id {
            Some(id) => match seen.get(id) {
                Some(first) => Some(*first),
                None => {
                    seen.insert(id.clone(), line.number);
                    None
                }
            },
            None => None,
        };
        let problem = match (duplicate_of, checked.result) {
            (Some(first), Ok(_)) => Some((
                "duplicate_custom_id",
                format!(
                    "custom_id '{}' is also on line {first} (ids must be unique)",
                    checked.custom_id.as_deref().unwrap_or_default()
                ),
            )),
            (Some(first), Err(msg)) => Some((
                "invalid_request",
                format!(
                    "{msg}; custom_id '{}' is also on line {first}",
                    checked.custom_id.as_deref().unwrap_or_default()
                ),
            )),
            (None, Err(msg)) => Some(("invalid_request", msg)),
            (None, Ok(_)) => None,
        };
        if let Some((code, message)) = problem {
            v.problems.push(Problem {
                line: line.number,
                custom_id: checked.custom_id,
                code,
                message,
            });
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_numbers_and_ends() {
        let data = b"a\r\n\nbc\nlast";
        let mut r = LineReader::new(&data[..]);
        let mut got = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            got.push((l.number, l.text.to_vec(), l.end));
        }
        assert_eq!(
            got,
            vec![
                (1, b"a".to_vec(), 3),
                (2, b"".to_vec(), 4),
                (3, b"bc".to_vec(), 7),
                (4, b"last".to_vec(), 11),
            ]
        );
    }

    #[test]
    fn limits_apply_by_request_line_and_byte() {
        let limits = Limits {
            max_lines: 2,
            max_bytes: 100,
        };
        assert_eq!(past_limit(&limits, 2, 100), None);
        assert_eq!(past_limit(&limits, 3, 10), Some(Limit::Lines));
        assert_eq!(past_limit(&limits, 1, 101), Some(Limit::Bytes));
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0, 0xab, 0x1f]), "00ab1f");
    }
}
