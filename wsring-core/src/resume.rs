//! The `wsring.v1` subprotocol: pushed messages with positions, and resume.
//!
//! With per-key history on (`spec.delivery.history`), every accepted push to
//! a key gets a [`Position`]: an offset in the key's stream plus the stream's
//! epoch, which changes whenever the stream was lost. A client that negotiates
//! `Sec-WebSocket-Protocol: wsring.v1` sees each frame prefixed by one header
//! line, so it can tell pushes from its app's own frames and remember where it
//! is; when it reconnects it offers its last position as a second protocol
//! token, `wsring.since.<epoch>.<offset>` (browsers can send protocol tokens,
//! not headers), and gets what it missed before anything live.
//!
//! Frames from the pod, each `<header line>\n<body>`, with the frame type
//! (text or binary) of the body:
//!
//! | header                        | body             | meaning |
//! |-------------------------------|------------------|---------|
//! | `m`                           | app message      | a frame of the app itself |
//! | `p <epoch> <offset>`          | pushed message   | the push at this position |
//! | `s <epoch> <offset>`          | empty            | fresh start: live pushes follow this position |
//! | `r <epoch> <offset>`          | empty            | resumed from this position: what was missed follows as `p` |
//! | `g <epoch> <offset>`          | reason           | history gone (`trimmed`, `epoch`): reload state; live pushes follow this position |
//!
//! Exactly one of `s`, `r`, `g` opens every connection. Clients that do not
//! offer `wsring.v1` see plain frames, exactly as without history; frames a
//! client sends are passed to the app unchanged. docs/interfaces.md shows the
//! exact bytes; `clients/js` implements the client side.

use std::fmt;

use crate::Error;

/// The subprotocol token a client offers to get positioned pushes.
pub const SUBPROTOCOL: &str = "wsring.v1";

/// Prefix of the second token that carries the resume position.
pub const SINCE_PREFIX: &str = "wsring.since.";

/// Longest epoch accepted from a client (the pods make 16 hex digits).
const MAX_EPOCH_CHARS: usize = 32;

/// Where a push sits in its key's stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// Changes whenever the key's stream was lost (expired, failed over
    /// without the last writes, flushed): offsets of two epochs never compare.
    pub epoch: String,
    /// 1 for the first push of an epoch, then +1 per push; 0 before the first.
    pub offset: u64,
}

impl Position {
    /// The `wsring.since.<epoch>.<offset>` token that resumes after this position.
    pub fn since_token(&self) -> String {
        format!("{SINCE_PREFIX}{}.{}", self.epoch, self.offset)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.epoch, self.offset)
    }
}

/// Why the history no longer reaches back to the client's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoneReason {
    /// The stream still exists but no longer holds the next push (size or TTL).
    Trimmed,
    /// The stream's epoch differs from the client's: it was lost, or the
    /// client's position was ahead of it (writes lost on a Redis failover).
    Epoch,
}

impl GoneReason {
    /// The reason as it appears in a `g` frame and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            GoneReason::Trimmed => "trimmed",
            GoneReason::Epoch => "epoch",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "trimmed" => Some(GoneReason::Trimmed),
            "epoch" => Some(GoneReason::Epoch),
            _ => None,
        }
    }
}

/// What a client asked for in `Sec-WebSocket-Protocol`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// `wsring.v1` was offered.
    pub v1: bool,
    /// The position to resume after, if a `wsring.since.` token was offered.
    pub since: Option<Position>,
}

/// Read every `Sec-WebSocket-Protocol` value of an upgrade request; a
/// malformed `wsring.since.` token is an error (the client meant to resume).
/// Tokens that are not ours are ignored.
pub fn parse_offer<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Offer, Error> {
    let mut offer = Offer::default();
    for token in values.into_iter().flat_map(|v| v.split(',')).map(str::trim) {
        if token == SUBPROTOCOL {
            offer.v1 = true;
        } else if let Some(rest) = token.strip_prefix(SINCE_PREFIX) {
            if offer.since.is_some() {
                return Err(Error::InvalidResume(
                    "more than one wsring.since token".into(),
                ));
            }
            offer.since = Some(parse_since(rest)?);
        }
    }
    if offer.since.is_some() && !offer.v1 {
        return Err(Error::InvalidResume(format!(
            "a wsring.since token needs {SUBPROTOCOL} offered too"
        )));
    }
    Ok(offer)
}

fn parse_since(rest: &str) -> Result<Position, Error> {
    let bad = || {
        Error::InvalidResume(format!(
            "{SINCE_PREFIX}{rest:?} is not {SINCE_PREFIX}<epoch>.<offset>"
        ))
    };
    let (epoch, offset) = rest.rsplit_once('.').ok_or_else(bad)?;
    let epoch_ok = !epoch.is_empty()
        && epoch.len() <= MAX_EPOCH_CHARS
        && epoch.bytes().all(|b| b.is_ascii_alphanumeric());
    if !epoch_ok || offset.is_empty() || !offset.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    Ok(Position {
        epoch: epoch.to_string(),
        offset: offset.parse().map_err(|_| bad())?,
    })
}

/// One frame from the pod under `wsring.v1`, its body borrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `m`: a frame of the app.
    App(&'a [u8]),
    /// `p`: the push at this position.
    Push(Position, &'a [u8]),
    /// `s`: a fresh start at this position.
    Start(Position),
    /// `r`: resumed after this position.
    Resumed(Position),
    /// `g`: history gone; live pushes follow this position.
    Gone(Position, GoneReason),
}

/// The bytes of a frame whose body is `body`.
pub fn encode(frame: &Frame<'_>) -> Vec<u8> {
    let (header, body): (String, &[u8]) = match frame {
        Frame::App(body) => ("m".to_string(), body),
        Frame::Push(at, body) => (format!("p {at}"), body),
        Frame::Start(at) => (format!("s {at}"), b""),
        Frame::Resumed(at) => (format!("r {at}"), b""),
        Frame::Gone(at, reason) => (format!("g {at}"), reason.as_str().as_bytes()),
    };
    let mut bytes = Vec::with_capacity(header.len() + 1 + body.len());
    bytes.extend_from_slice(header.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(body);
    bytes
}

/// Read a frame from the pod (clients, tests and the soak's checker).
pub fn decode(bytes: &[u8]) -> Result<Frame<'_>, Error> {
    let bad = |why: &str| Error::InvalidResume(format!("not a {SUBPROTOCOL} frame: {why}"));
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| bad("no header line"))?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| bad("header not UTF-8"))?;
    let body = &bytes[newline + 1..];
    if header == "m" {
        return Ok(Frame::App(body));
    }
    let mut parts = header.splitn(3, ' ');
    let (kind, epoch, offset) = (parts.next(), parts.next(), parts.next());
    let (Some(kind), Some(epoch), Some(offset)) = (kind, epoch, offset) else {
        return Err(bad("header is not `<kind> <epoch> <offset>`"));
    };
    let at = Position {
        epoch: epoch.to_string(),
        offset: offset.parse().map_err(|_| bad("offset is not a number"))?,
    };
    match kind {
        "p" => Ok(Frame::Push(at, body)),
        "s" if body.is_empty() => Ok(Frame::Start(at)),
        "r" if body.is_empty() => Ok(Frame::Resumed(at)),
        "g" => {
            let reason = std::str::from_utf8(body)
                .ok()
                .and_then(GoneReason::parse)
                .ok_or_else(|| bad("unknown gone reason"))?;
            Ok(Frame::Gone(at, reason))
        }
        _ => Err(bad("unknown kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: &str, offset: u64) -> Position {
        Position {
            epoch: epoch.into(),
            offset,
        }
    }

    #[test]
    fn offers_are_read_from_every_header_value() {
        assert_eq!(parse_offer(["chat, other"]).unwrap(), Offer::default());
        assert_eq!(
            parse_offer(["chat", "wsring.v1"]).unwrap(),
            Offer {
                v1: true,
                since: None
            }
        );
        assert_eq!(
            parse_offer(["wsring.v1, wsring.since.9f3a0c11d2e4b5a6.42"]).unwrap(),
            Offer {
                v1: true,
                since: Some(at("9f3a0c11d2e4b5a6", 42))
            }
        );
        let token = at("ab12", 7).since_token();
        assert_eq!(
            parse_offer(["wsring.v1", token.as_str()]).unwrap().since,
            Some(at("ab12", 7))
        );
    }

    #[test]
    fn malformed_resume_tokens_are_refused_with_the_reason() {
        for bad in [
            "wsring.v1, wsring.since.",
            "wsring.v1, wsring.since.abc",
            "wsring.v1, wsring.since.abc.",
            "wsring.v1, wsring.since..5",
            "wsring.v1, wsring.since.ab-c.5",
            "wsring.v1, wsring.since.abc.-5",
            "wsring.v1, wsring.since.abc.99999999999999999999999",
            "wsring.v1, wsring.since.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.1",
            "wsring.v1, wsring.since.a.1, wsring.since.a.2",
            "wsring.since.a.1",
        ] {
            let error = parse_offer([bad]).unwrap_err();
            assert!(matches!(error, Error::InvalidResume(_)), "{bad}: {error:?}");
        }
    }

    #[test]
    fn frames_round_trip_with_their_exact_bytes() {
        let cases: Vec<(Frame<'_>, &[u8])> = vec![
            (Frame::App(b"hello"), b"m\nhello"),
            (
                Frame::Push(at("9f3a0c11d2e4b5a6", 42), b"{\"n\":1}"),
                b"p 9f3a0c11d2e4b5a6 42\n{\"n\":1}",
            ),
            (Frame::Start(at("e1", 0)), b"s e1 0\n"),
            (Frame::Resumed(at("e1", 3)), b"r e1 3\n"),
            (
                Frame::Gone(at("e2", 9), GoneReason::Trimmed),
                b"g e2 9\ntrimmed",
            ),
            (Frame::Push(at("e1", 1), b"a\nb"), b"p e1 1\na\nb"),
        ];
        for (frame, bytes) in cases {
            assert_eq!(encode(&frame), bytes, "{frame:?}");
            assert_eq!(decode(bytes).unwrap(), frame);
        }
    }

    #[test]
    fn malformed_frames_are_errors() {
        for bad in [
            &b"no newline"[..],
            b"x e1 1\n",
            b"p e1\n",
            b"p e1 x\n",
            b"g e1 1\nwhy",
            b"s e1 1\nbody",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
