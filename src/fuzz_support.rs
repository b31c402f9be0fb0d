//! Input generators for the no-panic property tests (issue 10), test builds only.
//!
//! cargo-fuzz needs a nightly toolchain, so the parsers are fuzzed with proptest instead, as
//! ordinary tests with a bounded number of cases. Inputs are either arbitrary bytes or, mostly,
//! a valid seed document with a few random edits (bit flips, byte overwrites, truncation,
//! insertion of random bytes or of a dictionary token, deletion, duplication of a slice), as a
//! mutation-based fuzzer does, so the mutated inputs still reach deep into the parsers.

use proptest::prelude::*;

/// One random edit of a byte string. Positions are taken modulo the current length.
#[derive(Debug, Clone)]
pub enum Edit {
    Flip(usize, u8),
    Overwrite(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Token(usize, usize),
    Delete(usize, u8),
    Duplicate(usize, u8, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<usize>(), 1u8..=255).prop_map(|(i, m)| Edit::Flip(i, m)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Overwrite(i, b)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        4 => (any::<usize>(), any::<usize>()).prop_map(|(i, t)| Edit::Token(i, t)),
        2 => (any::<usize>(), 1u8..16).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => (any::<usize>(), 1u8..32, any::<usize>()).prop_map(|(i, n, at)| Edit::Duplicate(i, n, at)),
    ]
}

/// Applies `edits` to `data`; `dict` supplies the tokens of [`Edit::Token`].
pub fn apply(mut data: Vec<u8>, edits: &[Edit], dict: &[&str]) -> Vec<u8> {
    // A position in 0..len, and an insertion point in 0..=len.
    let pos = |i: &usize, len: usize| i % len;
    let at = |i: &usize, len: usize| i % (len + 1);
    for e in edits {
        let len = data.len();
        match e {
            Edit::Flip(i, mask) if len > 0 => data[pos(i, len)] ^= mask,
            Edit::Overwrite(i, b) if len > 0 => data[pos(i, len)] = *b,
            Edit::Truncate(i) => data.truncate(at(i, len)),
            Edit::Insert(i, bytes) => {
                let p = at(i, len);
                data.splice(p..p, bytes.iter().copied());
            }
            Edit::Token(i, t) if !dict.is_empty() => {
                let p = at(i, len);
                let token = dict[t % dict.len()].as_bytes();
                data.splice(p..p, token.iter().copied());
            }
            Edit::Delete(i, n) if len > 0 => {
                let p = pos(i, len);
                let end = (p + *n as usize).min(len);
                data.drain(p..end);
            }
            Edit::Duplicate(i, n, to) if len > 0 => {
                let p = pos(i, len);
                let end = (p + *n as usize).min(len);
                let slice = data[p..end].to_vec();
                let q = at(to, len);
                data.splice(q..q, slice);
            }
            _ => {}
        }
    }
    data
}

/// Tokens that matter to YAML and JSON documents.
pub const YAML_TOKENS: &[&str] = &[
    "\n",
    "\n  ",
    "\n- ",
    "  ",
    ": ",
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "<<: ",
    "!!str ",
    "!!binary ",
    "!tag ",
    "|\n  ",
    ">\n  ",
    "~",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e999",
    "0x10",
    ".inf",
    ".nan",
    "\\u0000",
    "\t",
    "\r\n",
    "---\n",
    "...\n",
    "?",
    "%YAML 1.2\n",
    "\u{feff}",
    "é",
    "\u{10ffff}",
];

/// Bytes that are either arbitrary or a seed (unchanged or mutated with 1–8 edits, tokens from
/// `dict`).
pub fn mutated(
    seeds: &'static [&'static str],
    dict: &'static [&'static str],
) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => prop::sample::select(seeds).prop_map(|s| s.as_bytes().to_vec()),
        8 => (prop::sample::select(seeds), prop::collection::vec(edit(), 1..8))
            .prop_map(move |(s, edits)| apply(s.as_bytes().to_vec(), &edits, dict)),
    ]
}

/// [`mutated`] as text (invalid UTF-8 becomes U+FFFD, as a lossy reader would make it).
pub fn mutated_text(
    seeds: &'static [&'static str],
    dict: &'static [&'static str],
) -> impl Strategy<Value = String> {
    mutated(seeds, dict).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Seeds computed at run time (signed cookies, sealed values) as the `'static` slice
/// [`mutated`] takes; call it once per test (from a `OnceLock`).
pub fn leak_seeds(seeds: Vec<String>) -> &'static [&'static str] {
    let strs: Vec<&'static str> = seeds
        .into_iter()
        .map(|s| &*Box::leak(s.into_boxed_str()))
        .collect();
    Box::leak(strs.into_boxed_slice())
}

/// The case count for a no-panic test: `default` unless `RAMPART_FUZZ_CASES` is set (run
/// longer locally with e.g. `RAMPART_FUZZ_CASES=100000 cargo test --lib fuzz`).
pub fn cases(default: u32) -> u32 {
    std::env::var("RAMPART_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// proptest settings for a no-panic test: `cases(default)` cases, failures not persisted to a
/// file (a failing case is kept as a regular regression test instead).
pub fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_stay_in_bounds_on_empty_and_short_inputs() {
        let all = |i: usize| {
            vec![
                Edit::Flip(i, 1),
                Edit::Overwrite(i, 0),
                Edit::Delete(i, 9),
                Edit::Duplicate(i, 31, i),
                Edit::Token(i, i),
                Edit::Truncate(i),
                Edit::Insert(i, vec![b'x']),
            ]
        };
        for i in [0, 1, usize::MAX / 2, usize::MAX] {
            for seed in [&b""[..], b"a", b"ab: c"] {
                apply(seed.to_vec(), &all(i), YAML_TOKENS);
                apply(seed.to_vec(), &all(i), &[]);
            }
        }
        assert_eq!(apply(b"abc".to_vec(), &[Edit::Truncate(0)], &[]), b"");
        assert_eq!(apply(b"ab".to_vec(), &[Edit::Token(2, 0)], &["X"]), b"abX");
    }
}
