//! The reset channel: Redis `SUBSCRIBE wsring:{cluster}:pod:{pod}` and what a
//! message on it does.
//!
//! The subscription lives in its own task, in a loop that reconnects with capped
//! exponential backoff: a Redis outage only delays resets (routers close moved
//! connections themselves after their reset timeout), it never touches open
//! connections. A periodic `PING` on the subscribed connection notices a silently
//! dead link. [`apply`] is the whole meaning of a message, separate from the
//! transport, so the local launcher's in-process bus can reuse it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use wsring_core::protocol::{ControlMessage, CLOSE_RING_MOVED, CLOSE_RING_MOVED_REASON};

use crate::metrics::Metrics;
use crate::registry::Registry;

/// First wait after a failed or lost subscription.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Connecting and subscribing must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the subscribed connection is checked with `PING`.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// How long a `PING` may take before the connection is considered dead.
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a malformed message is logged.
const LOGGED_PAYLOAD_BYTES: usize = 256;

/// What a control message did (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A reset: how many connections it listed and how many it newly closed.
    Reset {
        /// Ids in the message.
        listed: usize,
        /// Connections of this pod that got the 4001 close order.
        closed: usize,
    },
    /// The message did not parse; nothing was done.
    Malformed,
}

/// Act on one control message: a reset closes exactly the listed connections with
/// 4001 (unknown ids are ignored, repeated resets change nothing); anything that does
/// not parse is logged and counted, never acted upon.
pub fn apply(payload: &[u8], registry: &Registry, metrics: &Metrics) -> Applied {
    match ControlMessage::parse(payload) {
        Ok(ControlMessage::Reset(reset)) => {
            metrics.resets_received.inc();
            let closed = registry.close_ids(
                &reset.connections,
                CLOSE_RING_MOVED,
                CLOSE_RING_MOVED_REASON,
            );
            metrics.connections_reset.inc_by(closed as u64);
            tracing::info!(
                ring_version = reset.ring_version,
                router = %reset.router,
                listed = reset.connections.len(),
                closed,
                "reset: closing moved connections with {CLOSE_RING_MOVED}"
            );
            Applied::Reset {
                listed: reset.connections.len(),
                closed,
            }
        }
        Err(error) => {
            metrics.malformed_control_messages.inc();
            let shown = &payload[..payload.len().min(LOGGED_PAYLOAD_BYTES)];
            tracing::warn!(
                %error,
                payload = %String::from_utf8_lossy(shown),
                "ignoring malformed control message"
            );
            Applied::Malformed
        }
    }
}

/// Keep a subscription to `channel` until `stop` fires, applying every message.
pub async fn subscribe(
    client: redis::Client,
    channel: String,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut backoff = BACKOFF_START;
    loop {
        let session = session(&client, &channel, &registry, &metrics, &mut backoff);
        let result = tokio::select! {
            () = stop.cancelled() => return,
            result = session => result,
        };
        metrics.redis_connected.set(0);
        match result {
            Ok(()) => tracing::warn!(%channel, "redis subscription lost; resubscribing"),
            Err(error) => {
                tracing::warn!(%channel, %error, retry_in = ?backoff, "redis subscription failed")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's worth of subscription: returns when the connection ends.
async fn session(
    client: &redis::Client,
    channel: &str,
    registry: &Registry,
    metrics: &Metrics,
    backoff: &mut Duration,
) -> redis::RedisResult<()> {
    let connect = async {
        let (mut sink, stream) = client.get_async_pubsub().await?.split();
        sink.subscribe(channel).await?;
        Ok::<_, redis::RedisError>((sink, stream))
    };
    let (mut sink, mut stream) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| timeout_error("connecting and subscribing"))??;
    metrics.redis_connected.set(1);
    metrics.redis_subscriptions.inc();
    *backoff = BACKOFF_START;
    tracing::info!(%channel, "subscribed to the reset channel");

    let mut health = tokio::time::interval(HEALTH_CHECK_INTERVAL);
    health.tick().await;
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => {
                    apply(message.get_payload_bytes(), registry, metrics);
                }
                None => return Ok(()),
            },
            _ = health.tick() => {
                tokio::time::timeout(HEALTH_CHECK_TIMEOUT, sink.ping::<redis::Value>())
                    .await
                    .map_err(|_| timeout_error("PING"))??;
            }
        }
    }
}

fn timeout_error(what: &'static str) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("redis {what} timed out"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_closes_exactly_the_listed_connections() {
        let registry = Registry::new();
        let metrics = Metrics::new();
        let moved = registry.register("r-1", "a");
        let stays = registry.register("r-2", "b");
        let msg = ControlMessage::reset(8, "r", vec!["r-1".into(), "gone".into()]).to_json();
        assert_eq!(
            apply(msg.as_bytes(), &registry, &metrics),
            Applied::Reset {
                listed: 2,
                closed: 1
            }
        );
        assert!(moved.mailbox().is_closing());
        assert!(!stays.mailbox().is_closing());
        assert_eq!(
            apply(msg.as_bytes(), &registry, &metrics),
            Applied::Reset {
                listed: 2,
                closed: 0
            },
            "a duplicate reset changes nothing"
        );
        assert_eq!(metrics.resets_received.get(), 2);
        assert_eq!(metrics.connections_reset.get(), 1);
    }

    #[test]
    fn malformed_messages_are_counted_and_ignored() {
        let registry = Registry::new();
        let metrics = Metrics::new();
        let conn = registry.register("r-1", "a");
        for bad in [
            &b"not json"[..],
            br#"{"type":"reset","v":2,"ringVersion":1,"router":"r","connections":["r-1"]}"#,
        ] {
            assert_eq!(apply(bad, &registry, &metrics), Applied::Malformed);
        }
        assert!(!conn.mailbox().is_closing());
        assert_eq!(metrics.malformed_control_messages.get(), 2);
        assert_eq!(metrics.resets_received.get(), 0);
    }
}
