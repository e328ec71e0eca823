//! The reset channel: Redis `SUBSCRIBE wsring:{namespace}:{cluster}:pod:{pod}`
//! (`SSUBSCRIBE` on a Redis Cluster) and what a message on it does; with
//! history on, the same subscription also hears the cluster's history
//! channel, where every stored push is announced ([`announce`]).
//!
//! The subscription lives in its own task, in a loop that reconnects with capped
//! exponential backoff: a Redis outage only delays resets (routers close moved
//! connections themselves after their reset timeout), it never touches open
//! connections. A periodic `PING` on the subscribed connection notices a silently
//! dead link. [`apply`] is the whole meaning of a message, separate from the
//! transport, so the local launcher's in-process bus can reuse it.
//!
//! [`ResetChannel`] tells readiness whether the first subscription is up: a
//! fresh pod that joined the ring before it could hear resets would have its
//! moved connections closed by the router instead of with 4001 (found on the
//! test cluster: scaling 3 → 5, clients moved to chat-3 at one ring version
//! lost their reset when the next version moved them on to chat-4).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use wsring_core::protocol::{ControlMessage, CLOSE_RING_MOVED, CLOSE_RING_MOVED_REASON};
use wsring_core::redis_target::RedisTarget;
use wsring_core::resume::Position;

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
/// How long after start readiness waits for the first subscription: long
/// enough for a new pod's DNS lookup and connect, short enough that a Redis
/// outage never keeps a pod out of service (its moved connections then fall
/// back to the routers' own close, as during any outage).
pub const RESET_CHANNEL_GRACE: Duration = Duration::from_secs(5);

/// Whether the reset channel has been subscribed at least once, for
/// readiness; clones share it.
#[derive(Clone, Debug)]
pub struct ResetChannel {
    subscribed: CancellationToken,
    /// Until then an unsubscribed pod is not ready; `None`: no Redis, nothing
    /// to wait for.
    wait_until: Option<tokio::time::Instant>,
}

impl ResetChannel {
    /// A pod without Redis: ready at once (resets are the routers' close).
    pub fn none() -> Self {
        ResetChannel {
            subscribed: CancellationToken::new(),
            wait_until: None,
        }
    }

    /// A pod with Redis: not ready until its first subscription, or `grace`
    /// from now, whichever comes first.
    pub fn awaiting(grace: Duration) -> Self {
        ResetChannel {
            subscribed: CancellationToken::new(),
            wait_until: Some(tokio::time::Instant::now() + grace),
        }
    }

    /// The subscription is up (called on every successful subscribe).
    pub fn mark_subscribed(&self) {
        self.subscribed.cancel();
    }

    /// True while readiness should wait for the first subscription.
    pub fn waiting(&self) -> bool {
        match self.wait_until {
            None => false,
            Some(until) => !self.subscribed.is_cancelled() && tokio::time::Instant::now() < until,
        }
    }
}

/// What a control message did (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A reset: how many connections it listed and how many it newly closed.
    Reset {
        /// Ids in the message that belong to its router (others are ignored).
        listed: usize,
        /// Connections of this pod that got the 4001 close order.
        closed: usize,
    },
    /// The message did not parse; nothing was done.
    Malformed,
    /// The message was over the size limit and was not read.
    TooLarge,
}

/// Act on one control message: a reset closes exactly the listed connections of
/// its router with 4001 (unknown ids and ids of another router are ignored,
/// repeated resets change nothing); anything that does not parse, or is over
/// [`wsring_core::protocol::MAX_CONTROL_MESSAGE_BYTES`], is logged and
/// counted, never acted upon.
pub fn apply(payload: &[u8], registry: &Registry, metrics: &Metrics) -> Applied {
    match ControlMessage::parse(payload) {
        Ok(ControlMessage::Reset(reset)) => {
            metrics.resets_received.inc();
            let own: Vec<&str> = reset.own_connections().collect();
            let foreign = reset.connections.len() - own.len();
            if foreign > 0 {
                tracing::warn!(router = %reset.router, foreign, "reset lists ids of other routers; ignored");
            }
            let closed = registry.close_ids(&own, CLOSE_RING_MOVED, CLOSE_RING_MOVED_REASON);
            metrics.connections_reset.inc_by(closed as u64);
            tracing::info!(
                ring_version = reset.ring_version,
                router = %reset.router,
                listed = own.len(),
                closed,
                "reset: closing moved connections with {CLOSE_RING_MOVED}"
            );
            Applied::Reset {
                listed: own.len(),
                closed,
            }
        }
        Err(error @ wsring_core::Error::MessageTooLarge { .. }) => {
            metrics.oversize_control_messages.inc();
            tracing::warn!(%error, "ignoring oversize control message");
            Applied::TooLarge
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

/// Act on one announcement of the history channel (`<epoch> <offset> <key>`):
/// the `wsring.v1` connections of the key catch up to it. Returns how many
/// connections were told; a malformed announcement is counted and ignored.
pub fn announce(payload: &[u8], registry: &Registry, metrics: &Metrics) -> usize {
    let parsed = std::str::from_utf8(payload).ok().and_then(|text| {
        let mut parts = text.splitn(3, ' ');
        let epoch = parts.next()?;
        let offset = parts.next()?.parse().ok()?;
        let key = parts.next()?;
        Some((
            Position {
                epoch: epoch.to_string(),
                offset,
            },
            key,
        ))
    });
    match parsed {
        Some((at, key)) => registry.catch_up(key, &at),
        None => {
            metrics.malformed_control_messages.inc();
            let shown = &payload[..payload.len().min(LOGGED_PAYLOAD_BYTES)];
            tracing::warn!(payload = %String::from_utf8_lossy(shown), "ignoring malformed history announcement");
            0
        }
    }
}

/// The channels one pod listens on.
#[derive(Clone, Debug)]
pub struct Channels {
    /// This pod's reset channel.
    pub reset: String,
    /// The cluster's history channel, when history is on.
    pub history: Option<String>,
}

/// Keep a subscription to the channels until `stop` fires, acting on every message.
pub async fn subscribe(
    target: RedisTarget,
    channels: Channels,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    reset_channel: ResetChannel,
    stop: CancellationToken,
) {
    let mut backoff = BACKOFF_START;
    let channel = &channels.reset;
    loop {
        let session = session(
            &target,
            &channels,
            &registry,
            &metrics,
            &reset_channel,
            &mut backoff,
        );
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
    target: &RedisTarget,
    channels: &Channels,
    registry: &Registry,
    metrics: &Metrics,
    reset_channel: &ResetChannel,
    backoff: &mut Duration,
) -> redis::RedisResult<()> {
    let mut subscription =
        tokio::time::timeout(CONNECT_TIMEOUT, Subscription::open(target, channels))
            .await
            .map_err(|_| timeout_error("connecting and subscribing"))??;
    metrics.redis_connected.set(1);
    metrics.redis_subscriptions.inc();
    reset_channel.mark_subscribed();
    *backoff = BACKOFF_START;
    tracing::info!(channel = %channels.reset, history = ?channels.history, "subscribed to the reset channel");
    if channels.history.is_some() {
        // Announcements sent while unsubscribed are gone: every wsring.v1
        // connection checks its history once.
        registry.catch_up_all();
    }

    let mut health = tokio::time::interval(HEALTH_CHECK_INTERVAL);
    health.tick().await;
    loop {
        tokio::select! {
            event = subscription.next() => match event {
                Event::Message { channel, payload } => {
                    if channels.history.as_deref() == Some(channel.as_str()) {
                        announce(&payload, registry, metrics);
                    } else {
                        apply(&payload, registry, metrics);
                    }
                }
                Event::Resubscribed => {
                    metrics.redis_subscriptions.inc();
                    tracing::info!(channel = %channels.reset, "resubscribed after a cluster change");
                    if channels.history.is_some() {
                        registry.catch_up_all();
                    }
                }
                Event::Ended => return Ok(()),
            },
            _ = health.tick() => {
                tokio::time::timeout(HEALTH_CHECK_TIMEOUT, subscription.ping())
                    .await
                    .map_err(|_| timeout_error("PING"))??;
            }
        }
    }
}

/// What a subscription heard.
enum Event {
    /// A message on one of the channels.
    Message { channel: String, payload: Vec<u8> },
    /// A cluster connection subscribed again by itself (after a failover
    /// moved a channel's slot): announcements in between are gone.
    Resubscribed,
    /// The connection is gone.
    Ended,
}

/// One live subscription: `SUBSCRIBE` on the primary's pub/sub connection,
/// or on a Redis Cluster `SSUBSCRIBE` (sharded pub/sub) through a cluster
/// connection that follows the channels' slots.
enum Subscription {
    Plain {
        sink: redis::aio::PubSubSink,
        stream: redis::aio::PubSubStream,
    },
    Sharded {
        conn: redis::cluster_async::ClusterConnection,
        pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
    },
}

impl Subscription {
    async fn open(target: &RedisTarget, channels: &Channels) -> redis::RedisResult<Self> {
        let names = std::iter::once(&channels.reset).chain(channels.history.as_ref());
        if target.is_cluster() {
            let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
            let mut conn = target
                .cluster_client(Some(tx))?
                .get_async_connection()
                .await?;
            for name in names {
                conn.ssubscribe(name).await?;
            }
            // The confirmations of these subscriptions are no resubscription.
            while pushes.try_recv().is_ok() {}
            return Ok(Subscription::Sharded { conn, pushes });
        }
        // Asked anew on every attempt: after a Sentinel failover, the new primary.
        let client = target.primary().await?;
        let (mut sink, stream) = client.get_async_pubsub().await?.split();
        for name in names {
            sink.subscribe(name).await?;
        }
        Ok(Subscription::Plain { sink, stream })
    }

    async fn next(&mut self) -> Event {
        match self {
            Subscription::Plain { stream, .. } => match stream.next().await {
                Some(message) => Event::Message {
                    channel: message.get_channel_name().to_string(),
                    payload: message.get_payload_bytes().to_vec(),
                },
                None => Event::Ended,
            },
            Subscription::Sharded { pushes, .. } => loop {
                let Some(push) = pushes.recv().await else {
                    return Event::Ended;
                };
                match (push.kind, push.data.as_slice()) {
                    (redis::PushKind::SMessage, [channel, payload]) => {
                        let text = |v: &redis::Value| match v {
                            redis::Value::BulkString(bytes) => Some(bytes.clone()),
                            _ => None,
                        };
                        if let (Some(channel), Some(payload)) = (text(channel), text(payload)) {
                            return Event::Message {
                                channel: String::from_utf8_lossy(&channel).into_owned(),
                                payload,
                            };
                        }
                    }
                    (redis::PushKind::SSubscribe, _) => return Event::Resubscribed,
                    _ => {}
                }
            },
        }
    }

    async fn ping(&mut self) -> redis::RedisResult<()> {
        match self {
            Subscription::Plain { sink, .. } => sink.ping::<redis::Value>().await.map(drop),
            Subscription::Sharded { conn, .. } => redis::cmd("PING")
                .query_async::<redis::Value>(conn)
                .await
                .map(drop),
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
        let msg = ControlMessage::reset(8, "r", vec!["r-1".into(), "r-gone".into()]).to_json();
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

    /// Found in the security review: a reset naming router `r` closed
    /// connections of router `q`, and a 25 MB reset made the pod grow to
    /// 165 MB. Ids of another router are ignored; an oversize message is
    /// refused before it is parsed.
    #[test]
    fn foreign_ids_and_oversize_messages_close_nothing() {
        let registry = Registry::new();
        let metrics = Metrics::new();
        let other_routers = registry.register("q-1", "a");
        let msg = ControlMessage::reset(8, "r", vec!["q-1".into()]).to_json();
        assert_eq!(
            apply(msg.as_bytes(), &registry, &metrics),
            Applied::Reset {
                listed: 0,
                closed: 0
            }
        );
        assert!(!other_routers.mailbox().is_closing());
        let own = registry.register("r-1", "a");
        let mut ids = vec!["r-1".to_string()];
        ids.extend((0..20_000).map(|i| format!("r-padding-{i}")));
        let huge = ControlMessage::reset(8, "r", ids).to_json();
        assert!(huge.len() > wsring_core::protocol::MAX_CONTROL_MESSAGE_BYTES);
        assert_eq!(
            apply(huge.as_bytes(), &registry, &metrics),
            Applied::TooLarge
        );
        assert!(!own.mailbox().is_closing());
        assert_eq!(metrics.oversize_control_messages.get(), 1);
    }

    #[test]
    fn announcements_make_the_keys_v1_connections_catch_up() {
        let registry = Registry::new();
        let metrics = Metrics::new();
        let v1 = registry.register_positioned("r-1", "room 7");
        let _plain = registry.register("r-2", "room 7");
        assert_eq!(announce(b"e1 5 room 7", &registry, &metrics), 1);
        assert!(matches!(
            futures_util::FutureExt::now_or_never(v1.mailbox().recv()),
            Some(crate::mailbox::Command::CatchUp(crate::mailbox::CatchUp::UpTo(at)))
                if at == Position { epoch: "e1".into(), offset: 5 }
        ));
        assert_eq!(announce(b"e1 5 nobody", &registry, &metrics), 0);
        for bad in [&b"e1 x room"[..], b"e1", b"\xff 1 k"] {
            assert_eq!(announce(bad, &registry, &metrics), 0);
        }
        assert_eq!(metrics.malformed_control_messages.get(), 3);
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
