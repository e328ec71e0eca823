//! A Redis that survives a node, on loopback: a primary, two replicas and a
//! Sentinel watching them, as real `redis-server` processes. Tests and the
//! soak kill the primary ([`SentinelGroup::kill_primary_and_fail_over`]) and
//! wait until the Sentinel has promoted a replica and the other one follows
//! it (so a `WAIT 1` is satisfied again).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ports::{free_port, wait_for_port};
use super::redis_server::{info, RedisServer};
use crate::Error;

/// The primary's name in the Sentinel (`redis+sentinel://…/wsring`).
pub const PRIMARY_NAME: &str = "wsring";

/// How long the replica may take to sync, and the Sentinel to fail over.
const SETTLE: Duration = Duration::from_secs(20);

/// Primary, two replicas and one Sentinel (quorum 1), stopped when dropped.
pub struct SentinelGroup {
    /// The first primary (killed by [`SentinelGroup::kill_primary_and_fail_over`]).
    pub primary: RedisServer,
    /// The replicas; the Sentinel promotes one of them.
    pub replicas: Vec<RedisServer>,
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
        let group = SentinelGroup {
            primary,
            replicas,
            sentinel,
            sentinel_port,
            config,
        };
        wait_for_port(([127, 0, 0, 1], sentinel_port).into(), SETTLE).await?;
        group
            .wait_until("both replicas are in sync", || async {
                online_replicas(&group.primary.url()).await == 2
            })
            .await?;
        let port = group.primary.port();
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
        let client =
            redis::Client::open(format!("redis://127.0.0.1:{}", self.sentinel_port)).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let (_, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(PRIMARY_NAME)
            .query_async(&mut conn)
            .await
            .ok()?;
        Some(port)
    }

    /// SIGKILL the primary (no goodbye to anyone), then wait until the
    /// Sentinel has promoted a replica, it accepts writes, and the other
    /// replica is in sync with it.
    pub async fn kill_primary_and_fail_over(&mut self) -> Result<(), Error> {
        let old = self.primary.port();
        self.primary.stop();
        self.wait_until("the Sentinel promoted a replica", || async {
            let Some(port) = self.primary_port().await.filter(|p| *p != old) else {
                return false;
            };
            let url = format!("redis://127.0.0.1:{port}");
            info(&url, "replication")
                .await
                .is_some_and(|i| i.contains("role:master"))
                && online_replicas(&url).await == 1
        })
        .await
    }

    async fn wait_until<F, Fut>(&self, what: &str, mut check: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + SETTLE;
        while !check().await {
            if tokio::time::Instant::now() > deadline {
                return Err(Error::Spawn {
                    program: "redis sentinel group".into(),
                    reason: format!("timed out after {SETTLE:?} waiting until {what}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
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
