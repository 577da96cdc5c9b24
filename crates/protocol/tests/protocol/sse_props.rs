//! Property tests of the SSE framing: encode then decode gives the events back, whatever
//! the chunking, line-ending style, comments or BOM; arbitrary bytes never panic and decode
//! the same in any split.

use proptest::prelude::*;
use protocol::sse::{SseDecoder, SseError, SseEvent, encode_comment};

fn event_strategy() -> impl Strategy<Value = SseEvent> {
    (
        prop::option::of("[a-z_]{1,16}"),
        prop::collection::vec("[^\r\n]{0,20}", 1..4).prop_map(|lines| lines.join("\n")),
        prop::option::of("[A-Za-z0-9]{0,8}"),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(event, data, id, retry)| SseEvent {
            event,
            data,
            id,
            retry,
        })
}

/// Cut points (sorted, deduplicated, within `len`) from random fractions.
fn cuts(len: usize, fractions: &[f64]) -> Vec<usize> {
    let mut cuts: Vec<usize> = fractions
        .iter()
        .map(|f| ((len as f64) * f) as usize)
        .filter(|&c| c > 0 && c < len)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Decodes `bytes` split at `cuts`, keeping events emitted before an error.
fn decode_split(
    bytes: &[u8],
    cuts: &[usize],
    limit: usize,
) -> (Vec<SseEvent>, Result<Option<SseEvent>, SseError>) {
    let mut decoder = SseDecoder::new(limit);
    let mut events = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&bytes.len())) {
        if let Err(e) = decoder.push_into(&bytes[start..end], &mut events) {
            return (events, Err(e));
        }
        start = end;
    }
    (events, decoder.finish())
}

/// Re-joins `\n`-separated lines with a random terminator per line, never letting a lone
/// `\r` run into a following empty `\n`-terminated line (that pair would read as one
/// `\r\n`, an ambiguity of the format itself, not of the decoder).
fn restyle(text: &str, styles: &[u8]) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut previous_was_cr = false;
    for (i, line) in text.split_terminator('\n').enumerate() {
        out.push_str(line);
        let mut style = styles[i % styles.len()] % 3;
        if previous_was_cr && line.is_empty() && style == 0 {
            style = 1;
        }
        out.push_str(["\n", "\r\n", "\r"][style as usize]);
        previous_was_cr = style == 2;
    }
    out
}

proptest! {
    #[test]
    fn encode_then_decode_in_any_split(
        events in prop::collection::vec(event_strategy(), 0..8),
        fractions in prop::collection::vec(0.0f64..1.0, 0..12),
    ) {
        let bytes: Vec<u8> = events.iter().flat_map(|e| e.encode().to_vec()).collect();
        let cuts = cuts(bytes.len(), &fractions);
        let (decoded, last) = decode_split(&bytes, &cuts, usize::MAX);
        prop_assert_eq!(last, Ok(None));
        prop_assert_eq!(decoded, events);
    }

    #[test]
    fn any_line_endings_comments_and_bom(
        events in prop::collection::vec(event_strategy(), 1..6),
        styles in prop::collection::vec(any::<u8>(), 1..16),
        comment_before in prop::collection::vec(any::<bool>(), 6),
        bom in any::<bool>(),
        fractions in prop::collection::vec(0.0f64..1.0, 0..12),
    ) {
        let mut text = String::new();
        if bom {
            text.push('\u{feff}');
        }
        for (event, comment) in events.iter().zip(comment_before.iter().cycle()) {
            if *comment {
                text.push_str(std::str::from_utf8(&encode_comment("keep-alive")).unwrap());
            }
            text.push_str(std::str::from_utf8(&event.encode()).unwrap());
        }
        let bytes = restyle(&text, &styles).into_bytes();
        let cuts = cuts(bytes.len(), &fractions);
        let (decoded, last) = decode_split(&bytes, &cuts, usize::MAX);
        prop_assert_eq!(last, Ok(None));
        prop_assert_eq!(decoded, events);
    }

    #[test]
    fn final_event_without_blank_line_comes_from_finish(
        event in event_strategy(),
        fractions in prop::collection::vec(0.0f64..1.0, 0..6),
    ) {
        let mut bytes = event.encode().to_vec();
        bytes.truncate(bytes.len() - 2); // drop the closing blank line and the last `\n`
        let cuts = cuts(bytes.len(), &fractions);
        let (decoded, last) = decode_split(&bytes, &cuts, usize::MAX);
        prop_assert!(decoded.is_empty());
        prop_assert_eq!(last, Ok(Some(event)));
    }

    /// Arbitrary bytes built from SSE-ish pieces: no panic, and the same events and
    /// error whatever the split, even with a small size limit.
    #[test]
    fn arbitrary_bytes_decode_the_same_in_any_split(
        pieces in prop::collection::vec(
            prop::sample::select(vec![
                &b"data: "[..], b"data:", b"event: ", b"id: ", b"retry: ", b"12", b":",
                b" ", b"x", b"\n", b"\r", b"\r\n", b"\xEF\xBB\xBF", b"\xFF", b"\0", b"{\"a\":1}",
            ]),
            0..80,
        ),
        fractions in prop::collection::vec(0.0f64..1.0, 0..10),
        limit in 1usize..64,
    ) {
        let bytes: Vec<u8> = pieces.concat();
        let whole = decode_split(&bytes, &[], limit);
        let split = decode_split(&bytes, &cuts(bytes.len(), &fractions), limit);
        prop_assert_eq!(&split, &whole);
        let (events, _) = whole;
        for event in events {
            prop_assert!(event.data.len() <= limit);
        }
    }
}

#[test]
fn huge_unterminated_line_fails_fast_with_bounded_memory() {
    let limit = 1024;
    let mut decoder = SseDecoder::new(limit);
    let chunk = vec![b'x'; 300];
    let mut pushed = 0;
    let err = loop {
        match decoder.push(&chunk) {
            Ok(events) => assert!(events.is_empty()),
            Err(e) => break e,
        }
        pushed += chunk.len();
        assert!(pushed <= limit, "the decoder kept buffering past its limit");
    };
    assert_eq!(err, SseError::EventTooLarge { limit });
}

#[test]
fn many_events_decode_in_linear_time() {
    // 200k small events through one decoder in 4 KiB chunks; a quadratic rescan would
    // take minutes here.
    let one = protocol::sse::encode_data(r#"{"choices":[{"delta":{"content":"tok"}}]}"#);
    let stream: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * 200_000)
        .collect();
    let mut decoder = SseDecoder::default();
    let mut out = Vec::new();
    let mut count = 0;
    for chunk in stream.chunks(4096) {
        decoder.push_into(chunk, &mut out).unwrap();
        count += out.len();
        out.clear();
    }
    assert_eq!(count, 200_000);
}
