//! Routing keys: how a raw value from a request becomes a key, in one place
//! for the router (which takes it from the client's request) and ws-pod
//! (which takes it from the router's `x-wsring-key` header), so both accept
//! and refuse exactly the same keys (docs/interfaces.md, "Routing keys").
//!
//! - Only `%XX` escapes are decoded (`+` stays `+`); a `%` not followed by two
//!   hex digits is refused, and so are bytes that do not decode to UTF-8.
//! - No Unicode normalisation: `café` written precomposed (NFC, `caf%C3%A9`)
//!   and decomposed (NFD, `cafe%CC%81`) are two keys, and so are fullwidth and
//!   ASCII letters. Clients that want one key per visible name normalise first.
//! - Refused: the empty key, keys over the byte limit, control characters, and
//!   invisible format characters (zero-width spaces and joiners, bidi
//!   controls, the byte order mark, tag characters), which make different keys
//!   look the same in logs and dashboards.
//! - A query parameter or header named twice, or written two ways (`key` and
//!   `k%65y`), is refused as ambiguous: the router would route by one
//!   occurrence while the app behind it may read the other.

use crate::protocol::decode_percent;

/// What is wrong with a routing key; [`KeyProblem::code`] is the stable form
/// used in error bodies and metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyProblem {
    /// The configured key source (query parameter, header, path segment, cookie) is absent.
    Missing,
    /// The source is present more than once, or under two spellings.
    Ambiguous,
    /// The source is present but empty.
    Empty,
    /// Longer than the limit (after decoding).
    TooLong,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
    /// Control characters (newline, NUL, ...) have no business in a key.
    ControlCharacters,
    /// Invisible format characters (zero-width, bidi controls, BOM, tags).
    InvisibleCharacters,
}

impl KeyProblem {
    /// Stable error code for the JSON body and metrics.
    pub fn code(self) -> &'static str {
        match self {
            KeyProblem::Missing => "missing_key",
            KeyProblem::Ambiguous => "ambiguous_key",
            KeyProblem::Empty => "empty_key",
            KeyProblem::TooLong => "key_too_long",
            KeyProblem::BadEscape => "bad_percent_escape",
            KeyProblem::NotUtf8 => "key_not_utf8",
            KeyProblem::ControlCharacters => "key_control_characters",
            KeyProblem::InvisibleCharacters => "key_invisible_characters",
        }
    }
}

/// A refused key: the problem and a sentence about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KeyError {
    /// What is wrong.
    pub problem: KeyProblem,
    /// Explanation for the client.
    pub message: String,
}

impl KeyError {
    /// A refusal for `problem`, explained by `message`.
    pub fn new(problem: KeyProblem, message: impl Into<String>) -> Self {
        KeyError {
            problem,
            message: message.into(),
        }
    }
}

/// Percent-decode a raw key and check it (see the module rules).
pub fn decode_key(raw: &str, max_bytes: usize) -> Result<String, KeyError> {
    if raw.is_empty() {
        return Err(KeyError::new(KeyProblem::Empty, "the routing key is empty"));
    }
    // Every decoded byte takes 1..=3 raw bytes: a raw value over 3× the
    // limit cannot decode to an acceptable key; don't bother decoding it.
    if raw.len() > max_bytes.saturating_mul(3) {
        return Err(too_long(raw.len(), max_bytes));
    }
    if let Some(at) = bad_escape(raw) {
        return Err(KeyError::new(
            KeyProblem::BadEscape,
            format!("the routing key has a bad percent escape at byte {at}"),
        ));
    }
    let key = decode_percent(raw).map_err(|_| {
        KeyError::new(
            KeyProblem::NotUtf8,
            "the routing key is not UTF-8 once percent-decoded",
        )
    })?;
    check_key(&key, max_bytes)?;
    Ok(key)
}

/// Check an already decoded key: non-empty, at most `max_bytes`, no control or
/// invisible format characters.
pub fn check_key(key: &str, max_bytes: usize) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::new(KeyProblem::Empty, "the routing key is empty"));
    }
    if key.len() > max_bytes {
        return Err(too_long(key.len(), max_bytes));
    }
    if key.chars().any(char::is_control) {
        return Err(KeyError::new(
            KeyProblem::ControlCharacters,
            "the routing key contains control characters",
        ));
    }
    if let Some(c) = key.chars().find(|c| is_format_character(*c)) {
        return Err(KeyError::new(
            KeyProblem::InvisibleCharacters,
            format!(
                "the routing key contains the invisible character U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

/// The raw value of query parameter `name`, `None` when absent. A parameter
/// named twice, or under a second spelling (`k%65y` for `key`), is ambiguous.
pub fn query_param<'a>(query: &'a str, name: &str) -> Result<Option<&'a str>, KeyError> {
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let same = k == name || (k.contains('%') && decode_percent(k).is_ok_and(|d| d == name));
        if !same {
            continue;
        }
        if found.is_some() {
            return Err(KeyError::new(
                KeyProblem::Ambiguous,
                format!("the query parameter `{name}` is given more than once"),
            ));
        }
        found = Some(v);
    }
    Ok(found)
}

fn too_long(len: usize, max_bytes: usize) -> KeyError {
    KeyError::new(
        KeyProblem::TooLong,
        format!("the routing key is {len} bytes, the limit is {max_bytes}"),
    )
}

/// Byte offset of the first `%` that is not followed by two hex digits.
fn bad_escape(raw: &str) -> Option<usize> {
    let bytes = raw.as_bytes();
    bytes.iter().enumerate().find_map(|(i, &b)| {
        let ok = b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit));
        (!ok).then_some(i)
    })
}

/// Unicode general category Cf (format characters), Unicode 15.1: invisible
/// characters that change how text around them is shown or joined.
fn is_format_character(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD
        | 0x0600..=0x0605
        | 0x061C
        | 0x06DD
        | 0x070F
        | 0x0890..=0x0891
        | 0x08E2
        | 0x180E
        | 0x200B..=0x200F
        | 0x202A..=0x202E
        | 0x2060..=0x2064
        | 0x2066..=0x206F
        | 0xFEFF
        | 0xFFF9..=0xFFFB
        | 0x110BD
        | 0x110CD
        | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        | 0xE0001
        | 0xE0020..=0xE007F)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(result: Result<String, KeyError>) -> KeyProblem {
        result.expect_err("refused").problem
    }

    #[test]
    fn keys_are_percent_decoded_and_kept_as_written() {
        assert_eq!(decode_key("a%20b%2Fc", 16).unwrap(), "a b/c");
        assert_eq!(decode_key("a+b", 16).unwrap(), "a+b");
        assert_eq!(decode_key("caf%C3%A9", 16).unwrap(), "café");
        assert_eq!(decode_key("cafe%CC%81", 16).unwrap(), "cafe\u{301}");
        assert_ne!(
            decode_key("caf%C3%A9", 16).unwrap(),
            decode_key("cafe%CC%81", 16).unwrap(),
            "no Unicode normalisation: NFC and NFD are two keys"
        );
        assert_eq!(
            decode_key("%EF%BD%81", 16).unwrap(),
            "ａ",
            "fullwidth stays fullwidth"
        );
    }

    #[test]
    fn every_problem_is_named() {
        assert_eq!(problem(decode_key("", 16)), KeyProblem::Empty);
        assert_eq!(
            problem(decode_key(&"x".repeat(17), 16)),
            KeyProblem::TooLong
        );
        assert_eq!(
            problem(decode_key(&"%41".repeat(17), 16)),
            KeyProblem::TooLong
        );
        assert_eq!(problem(decode_key("a%zz", 16)), KeyProblem::BadEscape);
        assert_eq!(problem(decode_key("a%4", 16)), KeyProblem::BadEscape);
        assert_eq!(problem(decode_key("%FF", 16)), KeyProblem::NotUtf8);
        assert_eq!(
            problem(decode_key("a%0Ab", 16)),
            KeyProblem::ControlCharacters
        );
        assert_eq!(
            problem(decode_key("a%00", 16)),
            KeyProblem::ControlCharacters
        );
        for invisible in [
            "a%E2%80%8Bb",
            "%EF%BB%BFa",
            "a%E2%80%AEb",
            "a%C2%AD",
            "a%F3%A0%80%81",
        ] {
            assert_eq!(
                problem(decode_key(invisible, 16)),
                KeyProblem::InvisibleCharacters,
                "{invisible}"
            );
        }
    }

    #[test]
    fn a_repeated_or_respelled_parameter_is_ambiguous() {
        assert_eq!(query_param("a=1&key=x", "key").unwrap(), Some("x"));
        assert_eq!(query_param("k%65y=x", "key").unwrap(), Some("x"));
        assert_eq!(query_param("a=1", "key").unwrap(), None);
        assert_eq!(query_param("key", "key").unwrap(), Some(""));
        assert_eq!(query_param("keys=1&key=x", "key").unwrap(), Some("x"));
        for query in ["key=alice&key=bob", "key=alice&k%65y=bob", "key=a&key=a"] {
            assert_eq!(
                query_param(query, "key").unwrap_err().problem,
                KeyProblem::Ambiguous,
                "{query}"
            );
        }
    }
}
