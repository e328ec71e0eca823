//! Publishing control messages to Redis.
//!
//! One lazily connected [`PrimaryLink`]: the router starts (and keeps routing)
//! while Redis is down, the first publish after Redis comes back reconnects,
//! and after a Sentinel failover it reconnects to the promoted primary. On a
//! Redis Cluster it publishes with `SPUBLISH` (sharded pub/sub).
//! Publishing is best effort by design: Redis pub/sub is at-most-once anyway,
//! and every reset is backed by the router's own close after the reset timeout.
//!
//! The target comes from `wsring_core::redis_args` (URL, password, private
//! CA, Sentinel), shared with ws-pod.

use std::time::Duration;

use wsring_core::redis_target::{PrimaryLink, RedisTarget};

use crate::Error;

/// How long one connection attempt or one command may take before it counts as failed.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// A Redis publisher; clones share the connection.
#[derive(Clone, Debug)]
pub struct Publisher {
    link: std::sync::Arc<PrimaryLink>,
}

impl Publisher {
    /// A publisher to `target` (from `RedisArgs::target`). Does not connect yet.
    pub fn new(target: RedisTarget) -> Self {
        Publisher {
            link: std::sync::Arc::new(PrimaryLink::new(target, REDIS_TIMEOUT)),
        }
    }

    /// `PUBLISH channel payload` (`SPUBLISH` on a Redis Cluster); returns
    /// how many subscribers received it.
    /// A failure is retried once on a new connection: the first publish
    /// after a failover finds the old primary gone, the retry the new one.
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<u64, Error> {
        match self.publish_once(channel, payload).await {
            Ok(receivers) => Ok(receivers),
            Err(_) => Ok(self.publish_once(channel, payload).await?),
        }
    }

    async fn publish_once(&self, channel: &str, payload: &str) -> redis::RedisResult<u64> {
        let mut conn = self.link.connection().await?;
        let published = redis::cmd(conn.publish_command())
            .arg(channel)
            .arg(payload)
            .query_async(&mut conn)
            .await;
        if published.is_err() {
            self.link.failed().await;
        }
        published
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_publisher_starts_while_redis_is_down() {
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        let publisher = Publisher::new(RedisTarget::single(client));
        let err = publisher.publish("wsring:reset:p", "{}").await.unwrap_err();
        assert!(matches!(err, Error::Redis(_)), "{err}");
    }
}
