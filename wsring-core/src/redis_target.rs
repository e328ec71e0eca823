//! Where the Redis primary is, and one connection to it that follows a
//! failover (feature `redis-client`).
//!
//! A [`RedisTarget`] is one server (`redis://`, `rediss://`) or a Sentinel
//! group (`redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/PRIMARY`):
//! every (re)connection asks the Sentinels for the current primary, so after a
//! failover the reset subscription, the reset publisher and the history all
//! reconnect to the promoted replica by themselves. A [`PrimaryLink`] is the
//! one multiplexed connection a process writes through: kept while it works,
//! dropped on any error (a dead primary, or `READONLY` from a demoted one) so
//! that the next command resolves the primary again.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionAddr, RedisResult};

use crate::Error;

/// URL scheme of a Sentinel group.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// Port of a Sentinel address given without one.
const SENTINEL_PORT: u16 = 26379;

/// One Redis server, or the primary a Sentinel group names.
#[derive(Clone)]
pub struct RedisTarget {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Single(Box<redis::Client>),
    /// Asked anew on every resolution: a long-lived Sentinel client was seen
    /// to keep answering "master not found" after a failover that a fresh
    /// one resolved at once.
    Sentinel {
        sentinels: Vec<ConnectionAddr>,
        primary: String,
        password: Option<String>,
    },
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Single(client) => {
                write!(f, "RedisTarget({:?})", client.get_connection_info().addr())
            }
            Kind::Sentinel { primary, .. } => write!(f, "RedisTarget(sentinel primary {primary})"),
        }
    }
}

impl RedisTarget {
    /// One server.
    pub fn single(client: redis::Client) -> Self {
        RedisTarget {
            kind: Kind::Single(Box::new(client)),
        }
    }

    /// The primary named `primary` by the Sentinels at `sentinels`; the
    /// data nodes are reached with `password`, if any.
    pub fn sentinel(
        sentinels: Vec<ConnectionAddr>,
        primary: &str,
        password: Option<&str>,
    ) -> Result<Self, Error> {
        // Checked now, so a bad setting stops the process at start-up.
        sentinel_client(&sentinels, primary, password)
            .map_err(|e| Error::RedisConfig(format!("Sentinel settings: {e}")))?;
        Ok(RedisTarget {
            kind: Kind::Sentinel {
                sentinels,
                primary: primary.to_string(),
                password: password.map(str::to_string),
            },
        })
    }

    /// Parse `redis+sentinel://[:PASSWORD@]HOST[:PORT][,HOST[:PORT]…]/PRIMARY`
    /// (`password` from `--redis-password` wins over the URL's).
    pub fn parse_sentinel_url(url: &str, password: Option<&str>) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::RedisConfig(format!(
                "--redis-url {:?}: {why} (expected {SENTINEL_SCHEME}[:PASSWORD@]HOST:PORT[,HOST:PORT...]/PRIMARY)",
                crate::redis_args::redact(url)
            ))
        };
        let rest = url
            .strip_prefix(SENTINEL_SCHEME)
            .ok_or_else(|| bad("not a Sentinel URL"))?;
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(userinfo), rest),
            None => (None, rest),
        };
        let url_password = userinfo
            .and_then(|u| u.split_once(':'))
            .map(|(_, p)| p)
            .filter(|p| !p.is_empty());
        let (hosts, primary) = rest
            .split_once('/')
            .ok_or_else(|| bad("no primary name after the hosts"))?;
        let primary = primary.trim_end_matches('/');
        if primary.is_empty() || primary.contains(['/', '?', '#']) {
            return Err(bad("the primary name must be one path segment"));
        }
        let sentinels = hosts
            .split(',')
            .map(|host| {
                let (name, port) = match host.rsplit_once(':') {
                    Some((name, port)) => (
                        name,
                        port.parse::<u16>()
                            .map_err(|_| bad("a port is not a number"))?,
                    ),
                    None => (host, SENTINEL_PORT),
                };
                if name.is_empty() {
                    return Err(bad("an empty host"));
                }
                Ok(ConnectionAddr::Tcp(name.to_string(), port))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::sentinel(sentinels, primary, password.or(url_password))
    }

    /// A client of the current primary (asking the Sentinels, if any).
    pub async fn primary(&self) -> RedisResult<redis::Client> {
        match &self.kind {
            Kind::Single(client) => Ok((**client).clone()),
            Kind::Sentinel {
                sentinels,
                primary,
                password,
            } => {
                sentinel_client(sentinels, primary, password.as_deref())?
                    .async_get_client()
                    .await
            }
        }
    }

    /// Whether the primary comes from Sentinels (it may change).
    pub fn is_sentinel(&self) -> bool {
        matches!(self.kind, Kind::Sentinel { .. })
    }
}

fn sentinel_client(
    sentinels: &[ConnectionAddr],
    primary: &str,
    password: Option<&str>,
) -> RedisResult<SentinelClient> {
    let mut builder =
        SentinelClientBuilder::new(sentinels.to_vec(), primary, SentinelServerType::Master)?;
    if let Some(password) = password {
        builder = builder.set_client_to_redis_password(password);
    }
    builder.build()
}

/// One multiplexed connection to the current primary, re-made after an error.
pub struct PrimaryLink {
    target: RedisTarget,
    config: AsyncConnectionConfig,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl std::fmt::Debug for PrimaryLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimaryLink")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PrimaryLink {
    /// A link to `target` whose connecting and every command are bounded by
    /// `timeout`. Does not connect yet: a process starts while Redis is down.
    pub fn new(target: RedisTarget, timeout: Duration) -> Self {
        PrimaryLink {
            target,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout)),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection (made now if there is none); cheap to clone and use
    /// concurrently. Call [`PrimaryLink::failed`] when a command on it fails.
    pub async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let mut conn = self.conn.lock().await;
        if let Some(conn) = conn.as_ref() {
            return Ok(conn.clone());
        }
        let client = self.target.primary().await?;
        let fresh = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *conn = Some(fresh.clone());
        Ok(fresh)
    }

    /// A command failed: the next one reconnects (to whichever server is the
    /// primary by then). Script errors need no new connection but cost only one.
    pub async fn failed(&self) {
        self.conn.lock().await.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_are_parsed_or_refused_with_the_reason() {
        for ok in [
            "redis+sentinel://s1:26379,s2:26380/mymaster",
            "redis+sentinel://s1/mymaster",
            "redis+sentinel://:pw@s1:26379/mymaster",
        ] {
            let target = RedisTarget::parse_sentinel_url(ok, None).unwrap();
            assert!(target.is_sentinel(), "{ok}");
        }
        for (bad, why) in [
            ("redis+sentinel://s1:26379", "no primary name"),
            ("redis+sentinel://s1:26379/", "one path segment"),
            ("redis+sentinel://s1:x/m", "not a number"),
            ("redis+sentinel://,s2/m", "empty host"),
            ("redis+sentinel://:secret@s1:x/m", "not a number"),
        ] {
            let err = RedisTarget::parse_sentinel_url(bad, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[cfg(feature = "harness")]
    #[tokio::test]
    async fn a_link_reconnects_after_a_failure() {
        let redis = crate::harness::RedisServer::start().await.unwrap();
        let client = redis::Client::open(redis.url()).unwrap();
        let link = PrimaryLink::new(RedisTarget::single(client), Duration::from_secs(1));
        let mut conn = link.connection().await.unwrap();
        let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
        assert_eq!(pong, "PONG");
        link.failed().await;
        let mut again = link.connection().await.unwrap();
        let pong: String = redis::cmd("PING").query_async(&mut again).await.unwrap();
        assert_eq!(pong, "PONG");
        let down = PrimaryLink::new(
            RedisTarget::single(redis::Client::open("redis://127.0.0.1:1").unwrap()),
            Duration::from_millis(200),
        );
        assert!(down.connection().await.is_err(), "an error, not a hang");
    }
}
