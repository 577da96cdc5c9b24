//! SSE encoder: turns [`SseEvent`]s, data payloads and comments into wire bytes.
//!
//! Output always uses `\n` line endings and ends each event with a blank line, so any
//! WHATWG-conformant decoder (ours included) gives back the same event.

use bytes::{BufMut, Bytes, BytesMut};

use super::SseEvent;

/// The payload that ends an OpenAI-style stream (`data: [DONE]`).
pub const DONE: &str = "[DONE]";

impl SseEvent {
    /// An unnamed event carrying `data` (the OpenAI style).
    pub fn data(data: impl Into<String>) -> Self {
        Self {
            data: data.into(),
            ..Self::default()
        }
    }

    /// A named event (the Anthropic style: `event: message_start`).
    pub fn named(event: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            event: Some(event.into()),
            data: data.into(),
            ..Self::default()
        }
    }

    /// Sets the `id:` field.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the `retry:` field (milliseconds).
    pub fn with_retry(mut self, retry_ms: u64) -> Self {
        self.retry = Some(retry_ms);
        self
    }

    /// The wire form: `event:`, `id:` and `retry:` lines when set, one `data:` line per
    /// line of `data`, then a blank line.
    ///
    /// SSE cannot carry a line break inside a field: a `\r`, `\n` or `\r\n` in `data` splits
    /// it into several `data:` lines (decoded back as `\n`), and line breaks in `event` or
    /// `id` are removed.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(
            self.data.len()
                + self.event.as_ref().map_or(0, String::len)
                + self.id.as_ref().map_or(0, String::len)
                + 32,
        );
        if let Some(event) = &self.event {
            put_field(&mut out, "event", event);
        }
        if let Some(id) = &self.id {
            put_field(&mut out, "id", id);
        }
        if let Some(retry) = self.retry {
            put_field(&mut out, "retry", &retry.to_string());
        }
        put_data(&mut out, &self.data);
        out.put_u8(b'\n');
        out.freeze()
    }
}

/// `data: <data>\n\n` (several `data:` lines if `data` has line breaks).
pub fn encode_data(data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 8);
    put_data(&mut out, data);
    out.put_u8(b'\n');
    out.freeze()
}

/// `event: <event>\ndata: <data>\n\n`.
pub fn encode_named(event: &str, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(event.len() + data.len() + 16);
    put_field(&mut out, "event", event);
    put_data(&mut out, data);
    out.put_u8(b'\n');
    out.freeze()
}

/// A comment (`: <text>` per line, then a blank line), for keep-alives. Decoders ignore it.
pub fn encode_comment(text: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(text.len() + 4);
    for_each_line(text, |line| {
        out.put_u8(b':');
        if !line.is_empty() {
            out.put_u8(b' ');
            out.put_slice(line.as_bytes());
        }
        out.put_u8(b'\n');
    });
    out.put_u8(b'\n');
    out.freeze()
}

/// `data: [DONE]\n\n`, the end of an OpenAI-style stream.
pub fn encode_done() -> Bytes {
    encode_data(DONE)
}

fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    if value.contains(['\r', '\n']) {
        for part in value.split(['\r', '\n']) {
            out.put_slice(part.as_bytes());
        }
    } else {
        out.put_slice(value.as_bytes());
    }
    out.put_u8(b'\n');
}

fn put_data(out: &mut BytesMut, data: &str) {
    for_each_line(data, |line| {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    });
}

/// Calls `f` for each line of `text`, splitting at `\r\n`, `\r` or `\n` like a decoder does.
/// An empty text is one empty line.
fn for_each_line(text: &str, mut f: impl FnMut(&str)) {
    let mut rest = text;
    loop {
        match rest.find(['\r', '\n']) {
            None => {
                f(rest);
                return;
            }
            Some(i) => {
                let (line, tail) = rest.split_at(i);
                f(line);
                rest = tail
                    .strip_prefix("\r\n")
                    .or_else(|| tail.strip_prefix('\r'))
                    .or_else(|| tail.strip_prefix('\n'))
                    .unwrap_or(tail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_event_is_one_line_and_blank_line() {
        assert_eq!(&encode_data("{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
    }

    #[test]
    fn multi_line_data_becomes_several_data_lines() {
        assert_eq!(
            &SseEvent::data("a\nb\r\nc\rd").encode()[..],
            b"data: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn named_event_with_id_and_retry() {
        let ev = SseEvent::named("ping", "{}").with_id("4").with_retry(1500);
        assert_eq!(
            &ev.encode()[..],
            b"event: ping\nid: 4\nretry: 1500\ndata: {}\n\n"
        );
    }

    #[test]
    fn line_breaks_removed_from_event_name() {
        assert_eq!(&encode_named("a\nb", "x")[..], b"event: ab\ndata: x\n\n");
    }

    #[test]
    fn comment_and_done() {
        assert_eq!(&encode_comment("")[..], b":\n\n");
        assert_eq!(&encode_comment("keep\nalive")[..], b": keep\n: alive\n\n");
        assert_eq!(&encode_done()[..], b"data: [DONE]\n\n");
    }

    #[test]
    fn empty_data_encodes_one_empty_data_line() {
        assert_eq!(&encode_data("")[..], b"data: \n\n");
    }
}
