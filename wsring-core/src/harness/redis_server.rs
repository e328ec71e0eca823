//! A private `redis-server` on a loopback port: the bus `wsring dev` starts
//! when none is given, the soak's Redis, and the Redis of every test that
//! needs one. No persistence; stopped (SIGKILL by pid) when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::ports::{free_port, wait_for_port};
use crate::Error;

/// How long a fresh redis-server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process owned by its creator.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Start `redis-server` (from PATH; `.ci/run` installs it) on a free
    /// port and wait until it accepts connections.
    pub async fn start() -> Result<Self, Error> {
        Self::start_on(free_port()?, &[]).await
    }

    /// Start on a given port with extra arguments (e.g. `["--requirepass",
    /// "s3cret"]`); restarting on the same port is how outage tests bring
    /// Redis back. [`Error::Spawn`] means redis-server could not be run at
    /// all (not installed): local mode then falls back to its own bus.
    pub async fn start_on(port: u16, extra: &[&str]) -> Result<Self, Error> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            // A replica writes the data it synced to `dbfilename` in `dir`:
            // never into the caller's working directory.
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .args(["--dbfilename", &format!("wsring-redis-{port}.rdb")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Spawn {
                program: "redis-server".into(),
                reason: e.to_string(),
            })?;
        // Owned from here on: if it never listens, dropping it stops it.
        let server = RedisServer { child, port };
        wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), START_TIMEOUT).await?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `used_memory` from `INFO memory`, bytes (benchmarks: what stored data costs).
    pub async fn used_memory(&self) -> Result<u64, Error> {
        let unreadable = |reason: String| Error::AdminCall {
            call: format!("INFO memory at {}", self.url()),
            reason,
        };
        let text = info(&self.url(), "memory")
            .await
            .ok_or_else(|| unreadable("no answer".into()))?;
        text.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| unreadable("no used_memory line".into()))
    }

    /// Stop it now (SIGKILL by pid) and wait for the process, so its port is
    /// free again when this returns.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(
            std::env::temp_dir().join(format!("wsring-redis-{}.rdb", self.port)),
        );
    }
}

/// Poll `check` (every 50 ms) until it holds; after `within`, the error of
/// `program` (a Redis setup of several processes) that says what never
/// happened.
pub(crate) async fn wait_until<F, Fut>(
    program: &str,
    what: &str,
    within: Duration,
    mut check: F,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Spawn {
                program: program.into(),
                reason: format!("timed out after {within:?} waiting until {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// `INFO section` of the server at `url`, if it answers.
pub(crate) async fn info(url: &str, section: &str) -> Option<String> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn)
        .await
        .ok()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
