//! The push API's meaning, apart from HTTP: an HTTP body becomes one WebSocket
//! frame, queued on the chosen connections.
//!
//! "Delivered" counts the connections whose writer accepted the frame; the frame
//! then goes out after whatever that connection had queued before it, in order
//! with the app's own frames. A connection that is closing or whose queue is full
//! (a client that stopped reading) is skipped, not waited for.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use wsring_core::resume::Position;

use crate::metrics::Metrics;
use crate::registry::Registry;

/// Content type that makes a push a binary frame; anything else is text.
pub const BINARY_CONTENT_TYPE: &str = "application/octet-stream";

/// Which connections a push goes to.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// Every connection of this routing key on this pod.
    Key(&'a str),
    /// Every connection on this pod.
    All,
}

/// A text push whose body is not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a text push must be UTF-8 (send Content-Type: {BINARY_CONTENT_TYPE} for binary frames)")]
pub struct NotUtf8;

/// The frame for a push body: binary for `application/octet-stream`, text otherwise.
pub fn message_from_body(content_type: Option<&str>, body: Bytes) -> Result<Message, NotUtf8> {
    let media_type = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim);
    if media_type.is_some_and(|mt| mt.eq_ignore_ascii_case(BINARY_CONTENT_TYPE)) {
        Ok(Message::Binary(body))
    } else {
        Utf8Bytes::try_from(body)
            .map(Message::Text)
            .map_err(|_| NotUtf8)
    }
}

/// Queue `message` on the target's connections; returns how many accepted it.
pub fn deliver(
    registry: &Registry,
    metrics: &Metrics,
    target: Target<'_>,
    message: &Message,
) -> usize {
    let delivered = match target {
        Target::Key(key) => registry.push_to_key(key, message),
        Target::All => registry.push_to_all(message),
    };
    metrics.pushes_delivered.inc_by(delivered as u64);
    delivered
}

/// Queue a push stored at `at` on `key`'s connections (positioned for
/// `wsring.v1` clients); returns how many accepted it.
pub fn deliver_positioned(
    registry: &Registry,
    metrics: &Metrics,
    key: &str,
    at: &Position,
    message: &Message,
) -> usize {
    metrics.history_appends.inc();
    let delivered = registry.push_positioned(key, at, message);
    metrics.pushes_delivered.inc_by(delivered as u64);
    delivered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_chooses_the_frame_type() {
        let body = Bytes::from_static(b"\x00\xff");
        assert_eq!(
            message_from_body(Some("application/octet-stream; x=1"), body.clone()),
            Ok(Message::Binary(body.clone()))
        );
        assert_eq!(
            message_from_body(Some("text/plain"), body.clone()),
            Err(NotUtf8)
        );
        assert_eq!(
            message_from_body(None, Bytes::from_static(b"hi")),
            Ok(Message::text("hi"))
        );
        assert_eq!(
            message_from_body(Some("application/json"), Bytes::from_static(b"{}")),
            Ok(Message::text("{}"))
        );
    }

    #[test]
    fn deliver_counts_what_was_queued() {
        let registry = Registry::new();
        let metrics = Metrics::new();
        let _a = registry.register("1", "k");
        let _b = registry.register("2", "other");
        assert_eq!(
            deliver(&registry, &metrics, Target::Key("k"), &Message::text("x")),
            1
        );
        assert_eq!(
            deliver(
                &registry,
                &metrics,
                Target::Key("none"),
                &Message::text("x")
            ),
            0
        );
        assert_eq!(
            deliver(&registry, &metrics, Target::All, &Message::text("x")),
            2
        );
        assert_eq!(metrics.pushes_delivered.get(), 3);
    }
}
