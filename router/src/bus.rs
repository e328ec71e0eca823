//! Publishing control messages to Redis.
//!
//! One lazily connected, self-reconnecting [`ConnectionManager`]: the router
//! starts (and keeps routing) while Redis is down, and the first publish after
//! Redis comes back reconnects. Publishing is best effort by design: Redis
//! pub/sub is at-most-once anyway, and every reset is backed by the router's
//! own close after the reset timeout.
//!
//! The client comes from `wsring_core::redis_args` (URL, password, private
//! CA), shared with ws-pod.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::Error;

/// How long one connection attempt or one command may take before it counts as failed.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// A Redis publisher.
#[derive(Clone)]
pub struct Publisher {
    conn: ConnectionManager,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher through `client` (from `RedisArgs::client`). Does not
    /// connect yet; must be called inside a Tokio runtime.
    pub fn new(client: redis::Client) -> Result<Self, Error> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(REDIS_TIMEOUT);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Publisher { conn })
    }

    /// `PUBLISH channel payload`; returns how many subscribers received it.
    pub async fn publish(&self, channel: &str, payload: &str) -> Result<u64, Error> {
        let mut conn = self.conn.clone();
        let receivers: u64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut conn)
            .await?;
        Ok(receivers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_publisher_starts_while_redis_is_down() {
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        let publisher = Publisher::new(client).expect("lazy: no connection yet");
        let err = publisher.publish("wsring:reset:p", "{}").await.unwrap_err();
        assert!(matches!(err, Error::Redis(_)), "{err}");
    }
}
