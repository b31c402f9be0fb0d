//! No-panic property tests (issue 10) for the upstream response parsers: the h1 response-head
//! parser and the chunked body decoder. Besides never panicking on any bytes, reading the input
//! in pieces (as it arrives from a socket) must give exactly what reading it at once gives, and
//! any body chunked any way decodes to itself.

use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::fuzz_support::{config, mutated};

const HEADS: &[&str] = &[
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nok",
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nDate: x\r\n\r\n",
    "HTTP/1.0 302 Found\r\nLocation: /a\r\nConnection: keep-alive\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nTrailer: x\r\nUpgrade: h2c\r\nProxy-Connection: x\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "HTTP/1.1 404 \r\ncontent-length:  7 \r\nx-empty:\r\n\r\nmissing",
];

const HEAD_TOKENS: &[&str] = &[
    "\r\n",
    "\r\n\r\n",
    "\n",
    ": ",
    ":",
    " ",
    "\t",
    "HTTP/1.1 ",
    "HTTP/1.0 ",
    "HTTP/2 ",
    "999",
    "000",
    "Content-Length: ",
    "-1",
    "18446744073709551616",
    "Transfer-Encoding: chunked",
    "Connection: ",
    "close",
    "keep-alive",
    "\0",
    "\x7f",
    "\u{80}",
    "é",
];

const CHUNKED: &[&str] = &[
    "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
    "3\r\nabc\r\n0\r\n\r\nleftover",
    "A\r\n0123456789\r\n1;a=\"b\"\r\nx\r\n0\r\n\r\n",
];

const CHUNK_TOKENS: &[&str] = &[
    "\r\n",
    "\r",
    "\n",
    ";",
    "0",
    "ffffffffffffffff",
    "10000000000000000",
    "FFFF",
    " ",
    "\t",
    "0\r\n\r\n",
    "x:y\r\n",
];

/// What a parsed head means, comparable.
fn head_summary(r: Result<Option<ParsedHead>, SendError>) -> Result<Option<String>, String> {
    match r {
        Ok(None) => Ok(None),
        Ok(Some(h)) => {
            // Names sorted (a HeaderMap's iteration order is not fixed), values in order.
            let mut headers: Vec<(String, Vec<HeaderValue>)> = h
                .headers
                .keys()
                .map(|k| (k.to_string(), h.headers.get_all(k).cloned().collect()))
                .collect();
            headers.sort();
            Ok(Some(format!(
                "{} http11={} len={:?} chunked={} close={} {:?}",
                h.status, h.http11, h.length, h.chunked, h.close, headers
            )))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Parses `input` as the client does: heads in a loop until a final (non-1xx) one.
fn parse_all(buf: &mut BytesMut) -> Result<Option<String>, String> {
    loop {
        match parse_head(buf) {
            Ok(Some(h)) if h.status.is_informational() => continue,
            other => return head_summary(other),
        }
    }
}

fn chunked_body(input: &[u8]) -> UpstreamBody {
    UpstreamBody {
        conn: None,
        buf: BytesMut::from(input),
        framing: Framing::Chunked(ChunkState::Size),
        lease: None,
        sized: true,
    }
}

/// Decodes `input` fed in pieces cut at `cuts`: the body bytes, whether the body ended, the
/// bytes left after it, or the error.
fn decode_in_pieces(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool, Vec<u8>), String> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    let mut b = chunked_body(b"");
    let mut out = Vec::new();
    let mut fed = 0;
    for p in points {
        b.buf.extend_from_slice(&input[fed..p]);
        fed = p;
        while let Some(chunk) = b.next_from_buffer().map_err(|e| e.to_string())? {
            out.extend_from_slice(&chunk);
        }
    }
    Ok((out, matches!(b.framing, Framing::Done), b.buf.to_vec()))
}

/// `body` chunked in pieces of `sizes` (cycled), with a chunk extension on some and trailers.
fn encode_chunked(body: &[u8], sizes: &[usize], ext: bool, trailers: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = (sizes[i % sizes.len()]).clamp(1, rest.len());
        out.extend_from_slice(format!("{n:x}").as_bytes());
        if ext && i % 2 == 0 {
            out.extend_from_slice(b";name=\"v\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        i += 1;
    }
    out.extend_from_slice(b"0\r\n");
    if trailers {
        out.extend_from_slice(b"x-checksum: 1\r\nx-other: 2\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn response_heads_never_panic_and_parse_the_same_in_pieces(
        input in mutated(HEADS, HEAD_TOKENS),
        cut in any::<usize>(),
    ) {
        let mut whole = BytesMut::from(&input[..]);
        let at_once = parse_all(&mut whole);
        // The client reads until a head is complete: the first piece may end mid-head.
        let cut = cut % (input.len() + 1);
        let mut piece = BytesMut::from(&input[..cut]);
        let first = parse_all(&mut piece);
        let in_pieces = match first {
            Ok(None) => {
                piece.extend_from_slice(&input[cut..]);
                parse_all(&mut piece)
            }
            other => {
                piece.extend_from_slice(&input[cut..]);
                other
            }
        };
        prop_assert_eq!(&at_once, &in_pieces, "{:?} cut at {}", String::from_utf8_lossy(&input), cut);
        if at_once.as_ref().is_ok_and(Option::is_some) {
            prop_assert_eq!(&whole[..], &piece[..], "bytes left after the head");
        }
    }

    #[test]
    fn chunked_bodies_decode_to_themselves_at_any_cuts(
        body in prop::collection::vec(any::<u8>(), 0..300),
        sizes in prop::collection::vec(1usize..70, 1..5),
        ext in any::<bool>(),
        trailers in any::<bool>(),
        after in prop::collection::vec(any::<u8>(), 0..4),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut input = encode_chunked(&body, &sizes, ext, trailers);
        input.extend_from_slice(&after);
        let (out, done, left) = decode_in_pieces(&input, &cuts).unwrap();
        prop_assert_eq!(out, body);
        prop_assert!(done);
        prop_assert_eq!(left, after);
    }

    #[test]
    fn chunked_decoder_never_panics_and_decodes_the_same_in_pieces(
        input in mutated(CHUNKED, CHUNK_TOKENS),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let at_once = decode_in_pieces(&input, &[]);
        let in_pieces = decode_in_pieces(&input, &cuts);
        if let Ok((out, _, _)) = &at_once {
            prop_assert!(out.len() <= input.len());
        }
        prop_assert_eq!(at_once, in_pieces, "{:?}", String::from_utf8_lossy(&input));
    }
}
