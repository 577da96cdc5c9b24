//! One cached response: what the upstream sent for a complete, successful call, in the
//! shape it came in (a JSON body or the recorded SSE events with their arrival offsets),
//! plus what is needed to serve it in the other shape, answer `age`, pace a replay and
//! count what a hit saves.
//!
//! Entries cross process boundaries (SQLite, Redis), so they have a versioned binary
//! encoding: [`Entry::encode`] and [`Entry::decode`]. Decoding never panics: a corrupt or
//! foreign value is an [`EntryError`], which the tiers treat as a miss.

use std::time::Duration;

use bytes::Bytes;

use crate::kind::Kind;

/// One SSE event as recorded from the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// When it arrived, after the upstream request was sent.
    pub at: Duration,
    /// The whole encoded event, ready to write to a client (`data: {...}\n\n`, or
    /// `event: X\ndata: {...}\n\n`).
    pub data: Bytes,
}

/// The response body in the shape it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A non-streamed JSON body.
    Json(Bytes),
    /// A streamed body: every event, terminal event included, in order.
    Sse(Vec<RecordedEvent>),
}

/// A complete successful response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The operation.
    pub kind: Kind,
    /// When it was written, in milliseconds since the Unix epoch (for `age` and TTL).
    pub created_unix_ms: u64,
    /// The upstream that produced it.
    pub upstream: String,
    /// The upstream model name it was produced by.
    pub model: String,
    /// Input tokens the upstream reported (0 when it reported none).
    pub input_tokens: u64,
    /// Output tokens the upstream reported (0 when it reported none).
    pub output_tokens: u64,
    /// Time to the first event (streams) after the request was sent.
    pub ttft: Option<Duration>,
    /// Time to the end of the response after the request was sent.
    pub e2e: Duration,
    /// The body.
    pub body: Body,
}

/// Why bytes could not be decoded as an [`Entry`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The value does not start with the entry magic: not written by this encoder.
    #[error("not a cache entry (bad magic)")]
    BadMagic,
    /// Written by an encoder with another format version.
    #[error("unsupported cache entry version {0} (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    /// The input ended inside a field, or a length points past the end of the input.
    #[error("cache entry truncated in field `{0}`")]
    Truncated(&'static str),
    /// A varint longer than any `u64` needs.
    #[error("cache entry has an overlong number in field `{0}`")]
    BadVarint(&'static str),
    /// The operation tag is not a known [`Kind`].
    #[error("cache entry has unknown kind tag {0}")]
    UnknownKind(u8),
    /// The body tag is neither JSON nor SSE.
    #[error("cache entry has unknown body tag {0}")]
    UnknownBody(u8),
    /// The `ttft` presence flag is neither 0 nor 1.
    #[error("cache entry has invalid ttft flag {0}")]
    BadFlag(u8),
    /// A text field is not UTF-8.
    #[error("cache entry field `{0}` is not UTF-8")]
    NotUtf8(&'static str),
    /// Bytes left over after the last field.
    #[error("cache entry has {0} trailing bytes")]
    TrailingBytes(usize),
}

/// The first bytes of every encoded entry ("TokenPace Cache Entry").
const MAGIC: [u8; 4] = *b"TPCE";
/// The format version written by [`Entry::encode`]. Bump it on any layout change: old
/// values then decode to [`EntryError::UnsupportedVersion`], which the tiers treat as a miss,
/// so a rolling upgrade costs cache hits, never wrong answers.
const VERSION: u8 = 1;
const BODY_JSON: u8 = 1;
const BODY_SSE: u8 = 2;
/// The fewest bytes one encoded SSE event can take (8-byte offset, 1-byte length): bounds
/// an event count read from untrusted input before anything is allocated for it.
const MIN_EVENT_BYTES: usize = 9;

impl Entry {
    /// Encodes the entry in the versioned binary format [`Entry::decode`] reads.
    ///
    /// Layout: magic `TPCE`, version byte, kind tag, `created_unix_ms` (u64 LE), upstream
    /// and model (varint length and UTF-8), input and output tokens (varints), ttft (a
    /// flag byte, then u64 LE nanoseconds when set), e2e (u64 LE nanoseconds), then the
    /// body: tag 1 with a length-prefixed JSON body, or tag 2 with a varint event count
    /// and per event its offset (u64 LE nanoseconds) and length-prefixed bytes. Lengths
    /// are varints so no field has a size limit and small values stay small.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind.tag());
        out.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        put_bytes(&mut out, self.upstream.as_bytes());
        put_bytes(&mut out, self.model.as_bytes());
        put_varint(&mut out, self.input_tokens);
        put_varint(&mut out, self.output_tokens);
        match self.ttft {
            Some(ttft) => {
                out.push(1);
                out.extend_from_slice(&nanos(ttft).to_le_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(&nanos(self.e2e).to_le_bytes());
        match &self.body {
            Body::Json(json) => {
                out.push(BODY_JSON);
                put_bytes(&mut out, json);
            }
            Body::Sse(events) => {
                out.push(BODY_SSE);
                put_varint(&mut out, events.len() as u64);
                for event in events {
                    out.extend_from_slice(&nanos(event.at).to_le_bytes());
                    put_bytes(&mut out, &event.data);
                }
            }
        }
        out
    }

    /// Decodes bytes written by [`Entry::encode`].
    ///
    /// The input is untrusted (another process, a corrupt disk): every length is checked
    /// against the bytes that remain before it is used, so no input panics or makes this
    /// allocate more than the input's own size.
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        let mut r = Reader { rest: bytes };
        if r.take(MAGIC.len(), "magic")
            .map_err(|_| EntryError::BadMagic)?
            != MAGIC
        {
            return Err(EntryError::BadMagic);
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(EntryError::UnsupportedVersion(version));
        }
        let tag = r.u8("kind")?;
        let kind = Kind::from_tag(tag).ok_or(EntryError::UnknownKind(tag))?;
        let created_unix_ms = r.u64("created_unix_ms")?;
        let upstream = r.string("upstream")?;
        let model = r.string("model")?;
        let input_tokens = r.varint("input_tokens")?;
        let output_tokens = r.varint("output_tokens")?;
        let ttft = match r.u8("ttft")? {
            0 => None,
            1 => Some(Duration::from_nanos(r.u64("ttft")?)),
            flag => return Err(EntryError::BadFlag(flag)),
        };
        let e2e = Duration::from_nanos(r.u64("e2e")?);
        let body = match r.u8("body")? {
            BODY_JSON => Body::Json(Bytes::copy_from_slice(r.bytes("body")?)),
            BODY_SSE => {
                let count = r.varint("events")?;
                // A corrupt count must not reserve memory: it can be no larger than the
                // number of smallest possible events the remaining input could hold.
                let count = usize::try_from(count)
                    .ok()
                    .filter(|&n| n <= r.rest.len() / MIN_EVENT_BYTES)
                    .ok_or(EntryError::Truncated("events"))?;
                let mut events = Vec::with_capacity(count);
                for _ in 0..count {
                    let at = Duration::from_nanos(r.u64("event offset")?);
                    let data = Bytes::copy_from_slice(r.bytes("event data")?);
                    events.push(RecordedEvent { at, data });
                }
                Body::Sse(events)
            }
            tag => return Err(EntryError::UnknownBody(tag)),
        };
        if !r.rest.is_empty() {
            return Err(EntryError::TrailingBytes(r.rest.len()));
        }
        Ok(Entry {
            kind,
            created_unix_ms,
            upstream,
            model,
            input_tokens,
            output_tokens,
            ttft,
            e2e,
            body,
        })
    }

    /// The approximate memory the entry holds: the struct itself plus its strings, body
    /// bytes and event vector. Byte-bounded tiers charge entries by this; it ignores
    /// allocator slack and `Bytes` sharing, which is close enough for a bound.
    pub fn size_bytes(&self) -> usize {
        let body = match &self.body {
            Body::Json(json) => json.len(),
            Body::Sse(events) => events
                .iter()
                .map(|e| std::mem::size_of::<RecordedEvent>() + e.data.len())
                .sum(),
        };
        std::mem::size_of::<Entry>() + self.upstream.len() + self.model.len() + body
    }

    /// The encoded size, within a few bytes per field (avoids regrowing the output).
    fn encoded_len_hint(&self) -> usize {
        let body = match &self.body {
            Body::Json(json) => json.len() + 10,
            Body::Sse(events) => events.iter().map(|e| e.data.len() + 13).sum::<usize>() + 10,
        };
        64 + self.upstream.len() + self.model.len() + body
    }
}

/// A duration as u64 nanoseconds, saturating (585 years is beyond any recorded response).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// LEB128: 7 bits per byte, low bits first, high bit set on all but the last byte.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A cursor over untrusted input; every read checks what remains.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EntryError> {
        if n > self.rest.len() {
            return Err(EntryError::Truncated(field));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, EntryError> {
        let (&b, tail) = self
            .rest
            .split_first()
            .ok_or(EntryError::Truncated(field))?;
        self.rest = tail;
        Ok(b)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, EntryError> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_le_bytes(buf))
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, EntryError> {
        let mut value = 0u64;
        // Ten 7-bit groups cover 64 bits; the tenth may carry only the top bit.
        for i in 0..10 {
            let b = self.u8(field)?;
            let low = u64::from(b & 0x7f);
            if i == 9 && low > 1 {
                return Err(EntryError::BadVarint(field));
            }
            value |= low << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(EntryError::BadVarint(field))
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], EntryError> {
        let len = self.varint(field)?;
        // Checked against the remaining input before use, so a corrupt length is an error,
        // never an allocation.
        let len = usize::try_from(len).map_err(|_| EntryError::Truncated(field))?;
        self.take(len, field)
    }

    fn string(&mut self, field: &'static str) -> Result<String, EntryError> {
        let bytes = self.bytes(field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| EntryError::NotUtf8(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json_entry() -> Entry {
        Entry {
            kind: Kind::Chat,
            created_unix_ms: 1_700_000_000_123,
            upstream: "openai".into(),
            model: "gpt-4o-mini".into(),
            input_tokens: 12,
            output_tokens: 300,
            ttft: None,
            e2e: Duration::from_millis(842),
            body: Body::Json(Bytes::from_static(br#"{"id":"x","choices":[]}"#)),
        }
    }

    fn sse_entry() -> Entry {
        Entry {
            kind: Kind::Messages,
            created_unix_ms: 1_700_000_000_456,
            upstream: "anthropic-eu".into(),
            model: "claude-sonnet".into(),
            input_tokens: 0,
            output_tokens: u64::MAX,
            ttft: Some(Duration::new(0, 123_456_789)),
            e2e: Duration::new(3, 7),
            body: Body::Sse(vec![
                RecordedEvent {
                    at: Duration::from_millis(120),
                    data: Bytes::from_static(b"event: message_start\ndata: {}\n\n"),
                },
                RecordedEvent {
                    at: Duration::from_millis(130),
                    data: Bytes::new(),
                },
                RecordedEvent {
                    at: Duration::from_secs(3),
                    data: Bytes::from_static(b"event: message_stop\ndata: {}\n\n"),
                },
            ]),
        }
    }

    #[test]
    fn json_body_round_trips() {
        let entry = json_entry();
        assert_eq!(Entry::decode(&entry.encode()), Ok(entry));
    }

    #[test]
    fn sse_body_round_trips() {
        let entry = sse_entry();
        assert_eq!(Entry::decode(&entry.encode()), Ok(entry));
    }

    #[test]
    fn foreign_and_future_values_are_errors() {
        assert_eq!(Entry::decode(b""), Err(EntryError::BadMagic));
        assert_eq!(Entry::decode(b"{\"json\":1}"), Err(EntryError::BadMagic));
        let mut future = json_entry().encode();
        future[4] = VERSION + 1;
        assert_eq!(
            Entry::decode(&future),
            Err(EntryError::UnsupportedVersion(VERSION + 1))
        );
        let mut trailing = json_entry().encode();
        trailing.push(0);
        assert_eq!(Entry::decode(&trailing), Err(EntryError::TrailingBytes(1)));
    }

    #[test]
    fn a_huge_event_count_is_rejected_without_allocating() {
        let mut bytes = json_entry().encode();
        // Replace the JSON body with an SSE body claiming u64::MAX events.
        let body_at = bytes.len() - (br#"{"id":"x","choices":[]}"#.len() + 2);
        bytes.truncate(body_at);
        bytes.push(BODY_SSE);
        put_varint(&mut bytes, u64::MAX);
        assert_eq!(Entry::decode(&bytes), Err(EntryError::Truncated("events")));
    }

    #[test]
    fn size_bytes_grows_with_the_body() {
        let small = json_entry();
        let mut big = json_entry();
        big.body = Body::Json(Bytes::from(vec![b'x'; 10_000]));
        assert!(big.size_bytes() >= small.size_bytes() + 9_000);
        assert!(sse_entry().size_bytes() > std::mem::size_of::<Entry>());
    }

    fn arb_entry() -> impl Strategy<Value = Entry> {
        let body = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200).prop_map(|b| Body::Json(Bytes::from(b))),
            proptest::collection::vec(
                (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..40)),
                0..8
            )
            .prop_map(|events| Body::Sse(
                events
                    .into_iter()
                    .map(|(at, data)| RecordedEvent {
                        at: Duration::from_nanos(at),
                        data: Bytes::from(data),
                    })
                    .collect()
            )),
        ];
        (
            1u8..=3,
            any::<u64>(),
            ".{0,12}",
            ".{0,12}",
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            any::<u64>(),
            body,
        )
            .prop_map(
                |(tag, created, upstream, model, input, output, ttft, e2e, body)| Entry {
                    kind: Kind::from_tag(tag).unwrap_or(Kind::Chat),
                    created_unix_ms: created,
                    upstream,
                    model,
                    input_tokens: input,
                    output_tokens: output,
                    ttft: ttft.map(Duration::from_nanos),
                    e2e: Duration::from_nanos(e2e),
                    body,
                },
            )
    }

    proptest! {
        #[test]
        fn any_entry_round_trips(entry in arb_entry()) {
            prop_assert_eq!(Entry::decode(&entry.encode()), Ok(entry));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Entry::decode(&bytes);
            // Also behind a valid header, so the fuzzing reaches the fields.
            let mut framed = MAGIC.to_vec();
            framed.push(VERSION);
            framed.extend_from_slice(&bytes);
            let _ = Entry::decode(&framed);
        }

        #[test]
        fn every_truncation_is_an_error(entry in arb_entry()) {
            let bytes = entry.encode();
            for len in 0..bytes.len() {
                prop_assert!(Entry::decode(&bytes[..len]).is_err(), "prefix of {} bytes", len);
            }
        }

        #[test]
        fn corrupted_bytes_never_panic(entry in arb_entry(), at in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = entry.encode();
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = Entry::decode(&bytes);
        }
    }
}
