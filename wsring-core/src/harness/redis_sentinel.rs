//! A Redis that survives a node, on loopback: a primary, two replicas and a
//! Sentinel watching them, as real `redis-server` processes. Tests and the
//! soak kill the primary ([`SentinelGroup::kill_primary_and_fail_over`]) and
//! wait until the Sentinel has promoted a replica and the other one follows
//! it (so a `WAIT 1` is satisfied again); the killed node then comes back
//! as a replica of the new primary, the way a restarted pod would, so the
//! group can fail over again.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ports::{free_port, wait_for_port};
use super::redis_server::{info, wait_until, RedisServer};
use crate::Error;

/// The primary's name in the Sentinel (`redis+sentinel://…/wsring`).
pub const PRIMARY_NAME: &str = "wsring";

/// How long the replica may take to sync, and the Sentinel to fail over.
const SETTLE: Duration = Duration::from_secs(20);
/// What errors of this setup name.
const PROGRAM: &str = "redis sentinel group";

/// Three servers (one primary, two replicas) and one Sentinel (quorum 1),
/// stopped when dropped.
pub struct SentinelGroup {
    /// Every data node; which one is primary is the Sentinel's to say.
    servers: Vec<RedisServer>,
    sentinel: Child,
    sentinel_port: u16,
    config: PathBuf,
}

impl SentinelGroup {
    /// Start the three processes and wait until the replica is in sync and
    /// the Sentinel names the primary.
    pub async fn start() -> Result<Self, Error> {
        let primary = RedisServer::start().await?;
        let primary_port = primary.port().to_string();
        let mut replicas = Vec::new();
        for _ in 0..2 {
            replicas.push(
                RedisServer::start_on(free_port()?, &["--replicaof", "127.0.0.1", &primary_port])
                    .await?,
            );
        }
        let sentinel_port = free_port()?;
        let config = std::env::temp_dir().join(format!("wsring-sentinel-{sentinel_port}.conf"));
        // Fast detection for tests: down after 500 ms, failover within 2 s.
        let text = format!(
            "port {sentinel_port}\nbind 127.0.0.1\nprotected-mode no\n\
             sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary_port} 1\n\
             sentinel down-after-milliseconds {PRIMARY_NAME} 500\n\
             sentinel failover-timeout {PRIMARY_NAME} 2000\n"
        );
        std::fs::write(&config, text).map_err(|e| Error::Spawn {
            program: "redis-server --sentinel".into(),
            reason: format!("writing {}: {e}", config.display()),
        })?;
        let sentinel = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Spawn {
                program: "redis-server --sentinel".into(),
                reason: e.to_string(),
            })?;
        let port = primary.port();
        let mut servers = vec![primary];
        servers.extend(replicas);
        let group = SentinelGroup {
            servers,
            sentinel,
            sentinel_port,
            config,
        };
        wait_for_port(([127, 0, 0, 1], sentinel_port).into(), SETTLE).await?;
        group
            .wait_until("both replicas are in sync", || async {
                online_replicas(&local_url(port)).await == 2
            })
            .await?;
        group
            .wait_until("the Sentinel names the primary", || async {
                group.primary_port().await == Some(port)
            })
            .await?;
        Ok(group)
    }

    /// `redis+sentinel://127.0.0.1:PORT/wsring`.
    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{PRIMARY_NAME}",
            self.sentinel_port
        )
    }

    /// The port of the server the Sentinel currently names as primary.
    pub async fn primary_port(&self) -> Option<u16> {
        named_primary(self.sentinel_port).await
    }

    /// SIGKILL the current primary (no goodbye to anyone), wait until the
    /// Sentinel has promoted a replica, it accepts writes and the other
    /// replica is in sync with it; then start the killed node again as a
    /// replica of the new primary and wait until it is in sync too. Returns
    /// how long the group had no writable primary with a synced replica.
    pub async fn kill_primary_and_fail_over(&mut self) -> Result<Duration, Error> {
        let old = self
            .primary_port()
            .await
            .ok_or_else(|| group_error("the Sentinel names no primary".into()))?;
        let index = self
            .servers
            .iter()
            .position(|s| s.port() == old)
            .ok_or_else(|| {
                group_error(format!(
                    "the Sentinel names port {old}, which is not in this group"
                ))
            })?;
        let started = tokio::time::Instant::now();
        self.servers[index].stop();
        let sentinel = self.sentinel_port;
        self.wait_until("the Sentinel promoted a replica", || async {
            writable_primary(sentinel, old, 1).await.is_some()
        })
        .await?;
        let unavailable = started.elapsed();
        let new = writable_primary(sentinel, old, 1)
            .await
            .ok_or_else(|| group_error("the promoted primary went away".into()))?;
        self.servers[index] =
            RedisServer::start_on(old, &["--replicaof", "127.0.0.1", &new.to_string()]).await?;
        self.wait_until("the killed node is back as a replica", || async {
            writable_primary(sentinel, old, 2).await.is_some()
        })
        .await?;
        Ok(unavailable)
    }

    async fn wait_until<F, Fut>(&self, what: &str, check: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        wait_until(PROGRAM, what, SETTLE, check).await
    }
}

/// What went wrong with the group as a whole.
fn group_error(reason: String) -> Error {
    Error::Spawn {
        program: PROGRAM.into(),
        reason,
    }
}

/// The primary the Sentinel on `sentinel_port` names.
async fn named_primary(sentinel_port: u16) -> Option<u16> {
    let client = redis::Client::open(local_url(sentinel_port)).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let (_, port): (String, u16) = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(PRIMARY_NAME)
        .query_async(&mut conn)
        .await
        .ok()?;
    Some(port)
}

/// The primary the Sentinel names, once it is not `old`, takes writes and
/// has at least `replicas` replicas in sync.
async fn writable_primary(sentinel_port: u16, old: u16, replicas: usize) -> Option<u16> {
    let port = named_primary(sentinel_port).await.filter(|p| *p != old)?;
    let url = local_url(port);
    let ready = info(&url, "replication")
        .await
        .is_some_and(|i| i.contains("role:master"))
        && online_replicas(&url).await >= replicas;
    ready.then_some(port)
}

/// `redis://127.0.0.1:PORT`.
fn local_url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// Replicas in sync with the server at `url` (`state=online` in its `INFO`).
async fn online_replicas(url: &str) -> usize {
    info(url, "replication")
        .await
        .map_or(0, |i| i.matches("state=online").count())
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        let _ = self.sentinel.kill();
        let _ = self.sentinel.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}
