//! SSE framing with arrival stamps: which read brought the first byte of each event.
//!
//! [`protocol::sse::SseDecoder`] returns events when their blank line arrives but cannot
//! say when their first byte did. [`StampedFramer`] scans each read for blank lines (the
//! same WHATWG line rules: `\n`, `\r\n`, lone `\r`, a `\r\n` split across reads counting
//! once), feeds the decoder one event block at a time, and remembers the arrival of the
//! first non-terminator byte of the block being built.

use std::time::Instant;

use protocol::sse::{SseDecoder, SseError, SseEvent};

/// An event with the arrival of its first byte.
pub(crate) struct Framed {
    pub(crate) event: SseEvent,
    pub(crate) first_byte: Instant,
}

pub(crate) struct StampedFramer {
    decoder: SseDecoder,
    /// Arrival of the first byte of the block (event) being built.
    block_start: Option<Instant>,
    /// The current line has bytes other than line terminators.
    line_has_content: bool,
    /// The previous read ended in `\r`; a `\n` starting the next read belongs to it.
    pending_cr: bool,
    scratch: Vec<SseEvent>,
}

impl StampedFramer {
    pub(crate) fn new() -> Self {
        StampedFramer {
            decoder: SseDecoder::default(),
            block_start: None,
            line_has_content: false,
            pending_cr: false,
            scratch: Vec::new(),
        }
    }

    /// Feeds one read that arrived at `now`, appending the events it completes to `out`.
    pub(crate) fn push(
        &mut self,
        chunk: &[u8],
        now: Instant,
        out: &mut Vec<Framed>,
    ) -> Result<(), SseError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let n = chunk.len();
        let mut i = 0;
        if self.pending_cr {
            self.pending_cr = false;
            if chunk[0] == b'\n' {
                i = 1;
            }
        }
        let mut segment_start = 0;
        while i < n {
            let Some(offset) = memchr::memchr2(b'\n', b'\r', &chunk[i..]) else {
                self.content(now);
                break;
            };
            let eol = i + offset;
            if offset > 0 {
                self.content(now);
            }
            let mut next = eol + 1;
            if chunk[eol] == b'\r' {
                if next < n {
                    if chunk[next] == b'\n' {
                        next += 1;
                    }
                } else {
                    self.pending_cr = true;
                }
            }
            if self.line_has_content {
                self.line_has_content = false;
            } else {
                // A blank line: the block ends here. Feed it whole so the decoder
                // dispatches exactly this block's event.
                self.decoder
                    .push_into(&chunk[segment_start..next], &mut self.scratch)?;
                let first_byte = self.block_start.take().unwrap_or(now);
                out.extend(
                    self.scratch
                        .drain(..)
                        .map(|event| Framed { event, first_byte }),
                );
                segment_start = next;
            }
            i = next;
        }
        if segment_start < n {
            self.decoder
                .push_into(&chunk[segment_start..], &mut self.scratch)?;
            // Only a line the decoder reads differently (a byte order mark) could
            // dispatch here; stamp it like any other.
            if !self.scratch.is_empty() {
                let first_byte = self.block_start.take().unwrap_or(now);
                out.extend(
                    self.scratch
                        .drain(..)
                        .map(|event| Framed { event, first_byte }),
                );
            }
        }
        Ok(())
    }

    fn content(&mut self, now: Instant) {
        self.line_has_content = true;
        self.block_start.get_or_insert(now);
    }

    /// Ends the stream: the event whose blank line never came, if it has data.
    pub(crate) fn finish(self, now: Instant) -> Result<Option<Framed>, SseError> {
        let first_byte = self.block_start.unwrap_or(now);
        Ok(self
            .decoder
            .finish()?
            .map(|event| Framed { event, first_byte }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn feed(chunks: &[&[u8]]) -> Vec<(String, usize)> {
        // Read k arrives at base + k ms; report each event's data and first-byte read.
        let base = Instant::now();
        let mut framer = StampedFramer::new();
        let mut out = Vec::new();
        for (k, c) in chunks.iter().enumerate() {
            framer
                .push(c, base + Duration::from_millis(k as u64), &mut out)
                .unwrap();
        }
        let end = base + Duration::from_millis(chunks.len() as u64);
        out.extend(framer.finish(end).unwrap());
        out.into_iter()
            .map(|f| {
                let ms = (f.first_byte - base).as_millis() as usize;
                (f.event.data, ms)
            })
            .collect()
    }

    #[test]
    fn whole_events_in_one_read() {
        assert_eq!(
            feed(&[b"data: a\n\ndata: b\n\n"]),
            vec![("a".into(), 0), ("b".into(), 0)]
        );
    }

    #[test]
    fn first_byte_is_the_read_that_started_the_event() {
        assert_eq!(
            feed(&[b"data: a\n\nda", b"ta: b\n", b"\ndata: c\n\n"]),
            vec![("a".into(), 0), ("b".into(), 0), ("c".into(), 2)]
        );
    }

    #[test]
    fn event_starting_exactly_at_a_read_boundary() {
        assert_eq!(
            feed(&[b"data: a\n\n", b"event: x\ndata: b", b"\n\n"]),
            vec![("a".into(), 0), ("b".into(), 1)]
        );
    }

    #[test]
    fn crlf_split_across_reads_counts_once() {
        assert_eq!(
            feed(&[b"data: a\r\n\r", b"\ndata: b\r\n\r\n"]),
            vec![("a".into(), 0), ("b".into(), 1)]
        );
        assert_eq!(feed(&[b"data: a\r", b"\n", b"\r\n"]), vec![("a".into(), 0)]);
        assert_eq!(feed(&[b"data: a\r\rdata: b\r\r"]).len(), 2);
    }

    #[test]
    fn comments_and_stray_blank_lines_do_not_stamp_the_next_event() {
        assert_eq!(
            feed(&[b": keep-alive\n\n", b"\n", b"data: a\n\n"]),
            vec![("a".into(), 2)]
        );
    }

    #[test]
    fn unterminated_last_event_is_returned_by_finish() {
        assert_eq!(
            feed(&[b"data: a\n\n", b"data: [DONE]"]),
            vec![("a".into(), 0), ("[DONE]".into(), 1)]
        );
    }

    #[test]
    fn any_split_gives_the_same_events() {
        let stream: &[u8] =
            b"event: message_start\ndata: {\"x\":1}\n\n: ping\r\n\r\ndata: a\r\ndata: b\r\n\r\ndata: c\n\n";
        let whole: Vec<String> = feed(&[stream]).into_iter().map(|e| e.0).collect();
        for cut in 1..stream.len() {
            let (a, b) = stream.split_at(cut);
            let split: Vec<String> = feed(&[a, b]).into_iter().map(|e| e.0).collect();
            assert_eq!(split, whole, "cut at {cut}");
        }
        assert_eq!(whole, vec!["{\"x\":1}", "a\nb", "c"]);
    }
}
