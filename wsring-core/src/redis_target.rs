//! Where the Redis primary is, and one connection to it that follows a
//! failover (feature `redis-client`).
//!
//! A [`RedisTarget`] is one server (`redis://`, `rediss://`), a Sentinel
//! group (`redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/PRIMARY`) or a
//! Redis Cluster (`redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT…]`, seed
//! nodes). With Sentinels every (re)connection asks for the current primary;
//! a cluster connection follows the cluster's slot map and its failovers by
//! itself. Either way the reset subscription, the reset publisher and the
//! history reach the promoted replica without a restart. A [`PrimaryLink`]
//! is the one connection a process writes through ([`RedisConnection`]):
//! kept while it works, dropped on any error (a dead primary, or `READONLY`
//! from a demoted one) so that the next command resolves the primary again.
//! On a cluster, control messages use sharded pub/sub (`SPUBLISH` /
//! `SSUBSCRIBE`, Redis 7): each channel lives on the shard of its slot
//! instead of being broadcast to every node.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, FromRedisValue, Pipeline, ProtocolVersion,
    PushInfo, RedisFuture, RedisResult, Value,
};

use crate::Error;

/// URL scheme of a Sentinel group.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// URL scheme of a Redis Cluster (its seed nodes).
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Port of a Sentinel address given without one.
const SENTINEL_PORT: u16 = 26379;

/// Port of a cluster node given without one.
const CLUSTER_PORT: u16 = 6379;

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
    /// Seed nodes; the cluster tells the rest.
    Cluster {
        nodes: Vec<ConnectionAddr>,
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
            Kind::Cluster { nodes, .. } => write!(f, "RedisTarget(cluster {nodes:?})"),
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
        let form = "[:PASSWORD@]HOST:PORT[,HOST:PORT...]/PRIMARY";
        let (hosts, path, url_password) = split_url(url, SENTINEL_SCHEME, form)?;
        let bad = |why: &str| bad_url(url, SENTINEL_SCHEME, form, why);
        let primary = path
            .ok_or_else(|| bad("no primary name after the hosts"))?
            .trim_end_matches('/');
        if primary.is_empty() || primary.contains(['/', '?', '#']) {
            return Err(bad("the primary name must be one path segment"));
        }
        let sentinels = parse_hosts(hosts, SENTINEL_PORT, &bad)?;
        Self::sentinel(sentinels, primary, password.or(url_password))
    }

    /// Parse `redis+cluster://[:PASSWORD@]HOST[:PORT][,HOST[:PORT]…]`: seed
    /// nodes of a Redis Cluster (`password` from `--redis-password` wins).
    pub fn parse_cluster_url(url: &str, password: Option<&str>) -> Result<Self, Error> {
        let form = "[:PASSWORD@]HOST:PORT[,HOST:PORT...]";
        let (hosts, path, url_password) = split_url(url, CLUSTER_SCHEME, form)?;
        let bad = |why: &str| bad_url(url, CLUSTER_SCHEME, form, why);
        if path.is_some_and(|p| !p.is_empty()) {
            return Err(bad("a cluster has no database or primary name: no path"));
        }
        let nodes = parse_hosts(hosts, CLUSTER_PORT, &bad)?;
        let password = password.or(url_password).map(str::to_string);
        let target = RedisTarget {
            kind: Kind::Cluster { nodes, password },
        };
        // Checked now, so a bad setting stops the process at start-up.
        target
            .cluster_client(None)
            .map_err(|e| Error::RedisConfig(format!("cluster settings: {e}")))?;
        Ok(target)
    }

    /// A client of the current primary (asking the Sentinels, if any); a
    /// cluster has no single primary: use [`RedisTarget::cluster_client`].
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
            Kind::Cluster { .. } => Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a Redis Cluster has no single primary",
            ))),
        }
    }

    /// A client of the cluster, RESP3 and with `push` receiving what its
    /// subscriptions hear (the pod's reset channel), if given.
    pub fn cluster_client(
        &self,
        push: Option<tokio::sync::mpsc::UnboundedSender<PushInfo>>,
    ) -> RedisResult<ClusterClient> {
        let Kind::Cluster { nodes, password } = &self.kind else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "not a Redis Cluster",
            )));
        };
        let mut builder = ClusterClientBuilder::new(nodes.clone());
        if let Some(password) = password {
            builder = builder.password(password);
        }
        if let Some(push) = push {
            builder = builder
                .use_protocol(ProtocolVersion::RESP3)
                .push_sender(push);
        }
        builder.build()
    }

    /// Whether the primary comes from Sentinels (it may change).
    pub fn is_sentinel(&self) -> bool {
        matches!(self.kind, Kind::Sentinel { .. })
    }

    /// Whether this is a Redis Cluster (sharded pub/sub, slot routing).
    pub fn is_cluster(&self) -> bool {
        matches!(self.kind, Kind::Cluster { .. })
    }
}

/// Split `SCHEME[USERINFO@]HOSTS[/PATH]` into hosts, path and the password
/// of the user info.
fn split_url<'a>(
    url: &'a str,
    scheme: &str,
    form: &str,
) -> Result<(&'a str, Option<&'a str>, Option<&'a str>), Error> {
    let rest = url
        .strip_prefix(scheme)
        .ok_or_else(|| bad_url(url, scheme, form, "wrong scheme"))?;
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, rest),
    };
    let password = userinfo
        .and_then(|u| u.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty());
    let (hosts, path) = match rest.split_once('/') {
        Some((hosts, path)) => (hosts, Some(path)),
        None => (rest, None),
    };
    Ok((hosts, path, password))
}

/// `HOST[:PORT][,HOST[:PORT]…]`, `default_port` where none is given.
fn parse_hosts(
    hosts: &str,
    default_port: u16,
    bad: &dyn Fn(&str) -> Error,
) -> Result<Vec<ConnectionAddr>, Error> {
    hosts
        .split(',')
        .map(|host| {
            let (name, port) = match host.rsplit_once(':') {
                Some((name, port)) => (
                    name,
                    port.parse::<u16>()
                        .map_err(|_| bad("a port is not a number"))?,
                ),
                None => (host, default_port),
            };
            if name.is_empty() {
                return Err(bad("an empty host"));
            }
            Ok(ConnectionAddr::Tcp(name.to_string(), port))
        })
        .collect()
}

/// A refused URL, its password redacted, with the form it should have.
fn bad_url(url: &str, scheme: &str, form: &str, why: &str) -> Error {
    Error::RedisConfig(format!(
        "--redis-url {:?}: {why} (expected {scheme}{form})",
        crate::redis_args::redact(url)
    ))
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

/// A connection commands go through: one server's (or the Sentinels'
/// primary's) multiplexed connection, or a cluster connection that sends
/// each command to the shard of its key. Cheap to clone.
#[derive(Clone)]
pub enum RedisConnection {
    /// One server: every command goes there.
    Single(MultiplexedConnection),
    /// A Redis Cluster: commands are routed by their keys' slots.
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// `PUBLISH`, or on a cluster `SPUBLISH` (the channel lives on its shard).
    pub fn publish_command(&self) -> &'static str {
        match self {
            RedisConnection::Single(_) => "PUBLISH",
            RedisConnection::Cluster(_) => "SPUBLISH",
        }
    }

    /// Run `cmd` where `key` lives: on a cluster, the primary of `key`'s
    /// slot (how a `WAIT` reaches the shard that took the writes); on one
    /// server, there.
    pub async fn query_where<T: FromRedisValue>(&mut self, cmd: Cmd, key: &str) -> RedisResult<T> {
        match self {
            RedisConnection::Single(conn) => cmd.query_async(conn).await,
            RedisConnection::Cluster(conn) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let value = conn.route_command(cmd, routing).await?;
                T::from_redis_value(value).map_err(Into::into)
            }
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_command(cmd),
            RedisConnection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(conn) => conn.get_db(),
            RedisConnection::Cluster(conn) => conn.get_db(),
        }
    }
}

/// One connection to the current primary (or the cluster), re-made after an error.
pub struct PrimaryLink {
    target: RedisTarget,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<RedisConnection>>,
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
            timeout,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection (made now if there is none); cheap to clone and use
    /// concurrently. Call [`PrimaryLink::failed`] when a command on it fails.
    pub async fn connection(&self) -> RedisResult<RedisConnection> {
        let mut conn = self.conn.lock().await;
        if let Some(conn) = conn.as_ref() {
            return Ok(conn.clone());
        }
        let fresh = if self.target.is_cluster() {
            let client = self.target.cluster_client(None)?;
            let config = redis::cluster::ClusterConfig::new()
                .set_connection_timeout(self.timeout)
                .set_response_timeout(self.timeout);
            RedisConnection::Cluster(client.get_async_connection_with_config(config).await?)
        } else {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout));
            let client = self.target.primary().await?;
            RedisConnection::Single(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            )
        };
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

    #[test]
    fn cluster_urls_are_parsed_or_refused_with_the_reason() {
        for ok in [
            "redis+cluster://n1:7000,n2:7001,n3:7002",
            "redis+cluster://n1",
            "redis+cluster://n1:7000/",
            "redis+cluster://:pw@n1:7000",
        ] {
            let target = RedisTarget::parse_cluster_url(ok, None).unwrap();
            assert!(target.is_cluster() && !target.is_sentinel(), "{ok}");
        }
        for (bad, why) in [
            ("redis+cluster://n1:7000/0", "no path"),
            ("redis+cluster://n1:x", "not a number"),
            ("redis+cluster://n1,,n2", "empty host"),
            ("redis+cluster://:secret@n1:x", "not a number"),
            ("redis://n1", "wrong scheme"),
        ] {
            let err = RedisTarget::parse_cluster_url(bad, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("redis+cluster://"), "{err}");
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
