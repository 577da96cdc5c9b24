//! Incremental SSE decoder: bytes in, [`SseEvent`]s out, identical results for any way the
//! byte stream is split into chunks.
//!
//! Each byte is looked at a constant number of times: complete lines are parsed straight
//! from the caller's chunk, and only a line that straddles two chunks is copied into a
//! carry-over buffer. Memory is bounded by the event-size limit.

use super::SseEvent;

/// Default limit on one event (or one line): 16 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a byte stream could not be decoded as SSE.
///
/// After an error the decoder keeps returning it: the stream cannot be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A single line, or the fields of one event, exceeded the limit.
    #[error(
        "SSE event larger than the {limit}-byte limit (a line or event that never ends?); \
         raise the decoder limit if such events are expected"
    )]
    EventTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A field value that is kept (`data`, `event`, `id`) is not UTF-8.
    #[error("SSE `{field}` field is not valid UTF-8")]
    InvalidUtf8 {
        /// The field name.
        field: &'static str,
    },
}

/// Incremental `text/event-stream` decoder.
///
/// Follows the WHATWG parsing rules: lines end in `\n`, `\r\n` or a lone `\r` (a `\r\n`
/// split across chunks counts once); `field: value` with one optional space after the
/// colon; a line without colon is a field with an empty value; lines starting with `:` are
/// comments; unknown fields are ignored; `retry` is used only when it is all ASCII digits;
/// `id` is ignored when it contains NUL; several `data` lines join with `\n`; a blank line
/// dispatches the event only if it had at least one `data` line; a UTF-8 byte order mark
/// at the very start is skipped. Invalid UTF-8 in a kept field is an error rather than
/// being replaced, since every payload tokenpace reads is JSON that must be UTF-8.
#[derive(Debug, Clone)]
pub struct SseDecoder {
    max_event_bytes: usize,
    /// Bytes of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`; a `\n` starting the next chunk belongs to it.
    pending_cr: bool,
    /// No line has been completed yet, so a BOM may still need skipping.
    at_stream_start: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    retry: Option<u64>,
    /// Bytes of field lines in the event being built.
    event_bytes: usize,
    last_event_id: Option<String>,
    failed: Option<SseError>,
}

impl Default for SseDecoder {
    /// A decoder with the default 16 MiB limit.
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseDecoder {
    /// A decoder that rejects any line or event larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes,
            line: Vec::new(),
            pending_cr: false,
            at_stream_start: true,
            event: None,
            data: String::new(),
            has_data: false,
            id: None,
            retry: None,
            event_bytes: 0,
            last_event_id: None,
            failed: None,
        }
    }

    /// The limit given at construction.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// The last `id:` value seen, carried across events as the WHATWG "last event ID"
    /// (what a reconnecting client sends as `Last-Event-ID`).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Feeds one chunk and returns the events it completes (possibly none).
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        self.push_into(chunk, &mut out)?;
        Ok(out)
    }

    /// Like [`SseDecoder::push`], but appends the events to `out` so a hot loop can reuse
    /// one vector. On error, events completed earlier in the same chunk are still in `out`.
    pub fn push_into(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.feed(chunk, out);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
            self.line = Vec::new();
            self.data = String::new();
        }
        result
    }

    /// Ends the stream and returns the event still being built, if it has data: an event
    /// whose closing blank line never came. (Browsers drop such an event; a client that
    /// measures an API wants to see it.)
    pub fn finish(mut self) -> Result<Option<SseEvent>, SseError> {
        if let Some(err) = self.failed.take() {
            return Err(err);
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            let mut ignored = Vec::new();
            // A non-empty line never dispatches, so `ignored` stays empty.
            self.process_line(&line, &mut ignored)?;
        }
        Ok(self.has_data.then(|| self.take_event()))
    }

    fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = chunk;
        if self.pending_cr && !rest.is_empty() {
            self.pending_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while !rest.is_empty() {
            let Some(eol) = memchr::memchr2(b'\n', b'\r', rest) else {
                if self.line.len() + rest.len() > self.max_event_bytes {
                    return Err(self.too_large());
                }
                self.line.extend_from_slice(rest);
                break;
            };
            let (content, after) = rest.split_at(eol);
            let next = match after {
                [b'\r', b'\n', tail @ ..] => tail,
                [b'\r'] => {
                    self.pending_cr = true;
                    &[]
                }
                [_, tail @ ..] => tail,
                [] => &[],
            };
            if self.line.is_empty() {
                self.process_line(content, out)?;
            } else {
                if self.line.len() + content.len() > self.max_event_bytes {
                    return Err(self.too_large());
                }
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(content);
                let result = self.process_line(&line, out);
                line.clear();
                // Keep the allocation for the next straddling line.
                self.line = line;
                result?;
            }
            rest = next;
        }
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        // Checked before the BOM is stripped, like the carry-over buffer is, so the result
        // does not depend on where the chunks were split.
        if line.len() > self.max_event_bytes {
            return Err(self.too_large());
        }
        let line = if self.at_stream_start {
            self.at_stream_start = false;
            line.strip_prefix(BOM).unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            if self.has_data {
                out.push(self.take_event());
            } else {
                self.event = None;
                self.id = None;
                self.retry = None;
                self.event_bytes = 0;
            }
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        self.event_bytes += line.len();
        if self.event_bytes > self.max_event_bytes {
            return Err(self.too_large());
        }
        match name {
            b"data" => {
                let value = utf8(value, "data")?;
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            b"event" => {
                let value = utf8(value, "event")?;
                self.event = (!value.is_empty()).then(|| value.to_owned());
            }
            b"id" if !value.contains(&0) => {
                let value = utf8(value, "id")?.to_owned();
                self.last_event_id = Some(value.clone());
                self.id = Some(value);
            }
            // All digits, so only overflow can fail; an absurd value is ignored.
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Some(ms) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    self.retry = Some(ms);
                }
            }
            // Unknown fields, an `id` containing NUL and a non-numeric `retry` are ignored.
            _ => {}
        }
        Ok(())
    }

    fn take_event(&mut self) -> SseEvent {
        self.has_data = false;
        self.event_bytes = 0;
        SseEvent {
            event: self.event.take(),
            data: std::mem::take(&mut self.data),
            id: self.id.take(),
            retry: self.retry.take(),
        }
    }

    fn too_large(&self) -> SseError {
        SseError::EventTooLarge {
            limit: self.max_event_bytes,
        }
    }
}

fn utf8<'a>(bytes: &'a [u8], field: &'static str) -> Result<&'a str, SseError> {
    std::str::from_utf8(bytes).map_err(|_| SseError::InvalidUtf8 { field })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Vec<SseEvent> {
        let mut decoder = SseDecoder::default();
        let mut events = decoder.push(input).unwrap();
        events.extend(decoder.finish().unwrap());
        events
    }

    #[test]
    fn lone_cr_split_from_lf_counts_once() {
        let mut decoder = SseDecoder::default();
        assert!(decoder.push(b"data: a\r").unwrap().is_empty());
        // This `\n` completes the `\r\n` above; only the next `\r\n` is the blank line.
        assert!(decoder.push(b"\n").unwrap().is_empty());
        let events = decoder.push(b"\r\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "a");
    }

    #[test]
    fn empty_chunk_keeps_pending_cr() {
        let mut decoder = SseDecoder::default();
        decoder.push(b"data: a\r").unwrap();
        decoder.push(b"").unwrap();
        decoder.push(b"\n").unwrap();
        assert_eq!(decoder.push(b"\n").unwrap().len(), 1);
    }

    #[test]
    fn event_without_data_is_not_dispatched_and_resets_name() {
        let events = decode_all(b"event: a\n\ndata: x\n\n");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event, None);
    }

    #[test]
    fn empty_data_line_dispatches_empty_string() {
        let events = decode_all(b"data\n\ndata:\n\n");
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.data.is_empty()));
    }

    #[test]
    fn retry_must_be_digits() {
        let events = decode_all(b"retry: 15x\ndata: a\n\nretry: 250\ndata: b\n\n");
        assert_eq!(events[0].retry, None);
        assert_eq!(events[1].retry, Some(250));
    }

    #[test]
    fn id_with_nul_is_ignored_and_last_id_persists() {
        let mut decoder = SseDecoder::default();
        let events = decoder
            .push(b"id: 7\ndata: a\n\nid: b\0ad\ndata: b\n\n")
            .unwrap();
        assert_eq!(events[0].id.as_deref(), Some("7"));
        assert_eq!(events[1].id, None);
        assert_eq!(decoder.last_event_id(), Some("7"));
    }

    #[test]
    fn bom_split_across_chunks_is_skipped_once() {
        let mut decoder = SseDecoder::default();
        assert!(decoder.push(b"\xEF").unwrap().is_empty());
        let events = decoder
            .push(b"\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n")
            .unwrap();
        // The second BOM is not at the stream start: it becomes part of a field name that
        // no longer reads `data`, so that line is ignored.
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "a");
    }

    #[test]
    fn oversized_line_fails_without_newline_and_stays_failed() {
        let mut decoder = SseDecoder::new(8);
        assert!(decoder.push(b"data: 12").is_ok());
        let err = decoder.push(b"3").unwrap_err();
        assert_eq!(err, SseError::EventTooLarge { limit: 8 });
        assert!(err.to_string().contains("8-byte limit"));
        assert_eq!(
            decoder.push(b"\n\n"),
            Err(SseError::EventTooLarge { limit: 8 })
        );
    }

    #[test]
    fn oversized_event_across_many_small_lines_fails() {
        let mut decoder = SseDecoder::new(20);
        let err = decoder
            .push(b"data: 12345\ndata: 12345\ndata: 12345\n")
            .unwrap_err();
        assert_eq!(err, SseError::EventTooLarge { limit: 20 });
    }

    #[test]
    fn comments_do_not_count_towards_event_size() {
        let mut decoder = SseDecoder::new(16);
        let events = decoder
            .push(b": keep-alive 1\n: keep-alive 2\n: keep-alive 3\ndata: ok\n\n")
            .unwrap();
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn invalid_utf8_in_data_is_an_error() {
        let mut decoder = SseDecoder::default();
        let err = decoder.push(b"data: \xFF\n\n").unwrap_err();
        assert_eq!(err, SseError::InvalidUtf8 { field: "data" });
    }

    #[test]
    fn invalid_utf8_in_unknown_field_is_ignored() {
        assert_eq!(decode_all(b"x\xFF: 1\ndata: a\n\n").len(), 1);
    }

    #[test]
    fn finish_returns_unterminated_event() {
        let mut decoder = SseDecoder::default();
        assert!(decoder.push(b"event: e\ndata: tail").unwrap().is_empty());
        let last = decoder.finish().unwrap().unwrap();
        assert_eq!(last.event.as_deref(), Some("e"));
        assert_eq!(last.data, "tail");
    }

    #[test]
    fn finish_without_data_returns_none() {
        let mut decoder = SseDecoder::default();
        decoder.push(b"data: a\n\nevent: x\n").unwrap();
        assert_eq!(decoder.finish().unwrap(), None);
    }
}
