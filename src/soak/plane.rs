//! The data plane a soak runs against: a private Redis (one `redis-server`,
//! or with `--redis-failover` a Sentinel group of three) and a real
//! `wsring dev` child given that Redis with `--redis`, so the soak exercises
//! exactly the local mode users run (router and pods are the launcher's
//! children). Everything here talks to it from outside: the launcher's
//! control API for scale events, the router's admin API for the ring and the
//! reset counters, `/proc` for pids and memory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Deserialize;
use wsring::metrics::metric_value;
use wsring::process::{DevLaunch, DevProcess, Logs};
use wsring::procfs::rss_kib;
use wsring_core::harness::admin_http::Method;
use wsring_core::harness::{free_addr, AdminClient, RedisServer, SentinelGroup};
use wsring_core::{Ring, RingSpec};
use wsring_router::PodTransport;

/// How long `wsring dev` may take to report ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the launcher may take to stop its children after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Token for the admin and control APIs (loopback only, lives as long as the run).
const TOKEN: &str = "wsring-soak-token";

/// A pod as the launcher's `GET /pods` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct PodEntry {
    /// Ring member name (`pod-N`).
    pub name: String,
    /// Process id, for its RSS.
    pub pid: Option<u32>,
}

/// The router's reset counters (`/metrics`), read before and after every event.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counters {
    /// Connections scheduled for a reset (`…_connections_reset_total`).
    pub connections_reset: u64,
    /// Reset messages published, one per old owner (`…_resets_published_total`).
    pub resets_published: u64,
    /// Reset messages Redis did not take (`…_reset_publish_errors_total`).
    pub publish_errors: u64,
    /// Moved connections the router closed itself at the reset timeout.
    pub forced_closes: u64,
    /// Open tunnels right now.
    pub active: u64,
}

impl Counters {
    /// `self − before`, counter by counter (the gauge is taken as is).
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            connections_reset: self.connections_reset - before.connections_reset,
            resets_published: self.resets_published - before.resets_published,
            publish_errors: self.publish_errors - before.publish_errors,
            forced_closes: self.forced_closes - before.forced_closes,
            active: self.active,
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct PlaneConfig {
    /// Pods at start.
    pub pods: usize,
    /// The router's `--pod-transport`.
    pub transport: PodTransport,
    /// `--history-size` for the pods; `None`: history off.
    pub history_size: Option<usize>,
    /// A Sentinel group instead of one redis-server (the history then waits
    /// for one replica, `--history-replicas 1`).
    pub sentinel: bool,
    /// Keep the temporary directory with the log.
    pub keep_logs: bool,
}

/// The soak's Redis.
enum SoakRedis {
    Single(RedisServer),
    Sentinel(SentinelGroup),
}

/// A running `wsring dev` with its private Redis; stop it with [`Plane::shutdown`].
pub struct Plane {
    /// Router public listener (the one every client connects to).
    pub public: SocketAddr,
    /// Router admin listener (the push API).
    pub admin: SocketAddr,
    control: SocketAddr,
    // Before `redis`: dropped first, the launcher stops while its bus is up.
    dev: DevProcess,
    redis: tokio::sync::Mutex<SoakRedis>,
    http: AdminClient,
    dir: tempfile::TempDir,
    keep_logs: bool,
}

impl Plane {
    /// Start Redis, then `wsring dev --pods N --redis …`, and wait for its ready line.
    pub async fn start(config: &PlaneConfig) -> anyhow::Result<Plane> {
        let dir = tempfile::Builder::new()
            .prefix("wsring-soak-")
            .tempdir()
            .context("creating a temporary directory")?;
        let (redis, redis_url) = if config.sentinel {
            let group = SentinelGroup::start()
                .await
                .context("the soak needs redis-server on PATH (with --sentinel)")?;
            let url = group.url();
            (SoakRedis::Sentinel(group), url)
        } else {
            let server = RedisServer::start()
                .await
                .context("the soak needs redis-server on PATH")?;
            let url = server.url();
            (SoakRedis::Single(server), url)
        };
        let (public, admin, control) = (free_addr()?, free_addr()?, free_addr()?);
        let mut args = vec![format!(
            "--router-arg=--pod-transport={}",
            config.transport.as_str()
        )];
        if let Some(size) = config.history_size {
            args.push(format!("--history-size={size}"));
            args.push(format!("--history-replicas={}", u8::from(config.sentinel)));
        }
        let launch = DevLaunch {
            exe: std::env::current_exe().context("locating wsring")?,
            pods: config.pods,
            listen: public,
            admin,
            control,
            redis_url: Some(redis_url),
            token: Some(TOKEN.to_owned()),
            args,
            logs: Logs::File(dir.path().join("dev.log")),
        };
        let dev = DevProcess::start(launch, START_TIMEOUT).await?;
        Ok(Plane {
            public,
            admin,
            control,
            dev,
            redis: tokio::sync::Mutex::new(redis),
            http: AdminClient::new(),
            dir,
            keep_logs: config.keep_logs,
        })
    }

    /// The token of the admin (push) and control APIs.
    pub fn token(&self) -> &'static str {
        TOKEN
    }

    /// SIGKILL the Redis primary and wait until the Sentinel has promoted a
    /// replica (and the killed node is back as a replica); returns how long
    /// there was no writable primary.
    pub async fn fail_over_redis(&self) -> anyhow::Result<Duration> {
        match &mut *self.redis.lock().await {
            SoakRedis::Sentinel(group) => Ok(group.kill_primary_and_fail_over().await?),
            SoakRedis::Single(server) => bail!(
                "a Redis failover needs the Sentinel group, not the single server at {}",
                server.url()
            ),
        }
    }

    async fn call(&self, method: Method, url: &str) -> anyhow::Result<bytes::Bytes> {
        let answer = self
            .http
            .request(method.clone(), url)
            .bearer(TOKEN)
            .send()
            .await?;
        if !answer.status().is_success() {
            bail!("{method} {url}: {} {}", answer.status(), answer.text());
        }
        Ok(answer.body().clone())
    }

    /// The router's ring (`GET /ring`).
    pub async fn ring(&self) -> anyhow::Result<Ring> {
        let body = self
            .call(Method::GET, &format!("http://{}/ring", self.admin))
            .await?;
        Ok(Ring::build(RingSpec::parse(&body)?)?)
    }

    /// The router's reset counters and open-tunnel gauge.
    pub async fn counters(&self) -> anyhow::Result<Counters> {
        let body = self
            .call(Method::GET, &format!("http://{}/metrics", self.admin))
            .await?;
        let text = String::from_utf8_lossy(&body);
        let read = |suffix: &str| {
            metric_value(&text, suffix)
                .map(|v| v as u64)
                .with_context(|| format!("router /metrics has no *{suffix}"))
        };
        Ok(Counters {
            connections_reset: read("_connections_reset_total")?,
            resets_published: read("_resets_published_total")?,
            publish_errors: read("_reset_publish_errors_total")?,
            forced_closes: read("_forced_closes_total")?,
            active: read("_active_connections")?,
        })
    }

    /// The launcher's pods (`GET /pods`).
    pub async fn pods(&self) -> anyhow::Result<Vec<PodEntry>> {
        #[derive(Deserialize)]
        struct Answer {
            pods: Vec<PodEntry>,
        }
        let body = self
            .call(Method::GET, &format!("http://{}/pods", self.control))
            .await?;
        Ok(serde_json::from_slice::<Answer>(&body)?.pods)
    }

    /// `POST /pods`: start the next pod; returns its name once it is in the ring.
    pub async fn add_pod(&self) -> anyhow::Result<String> {
        let body = self
            .call(Method::POST, &format!("http://{}/pods", self.control))
            .await?;
        Ok(serde_json::from_slice::<PodEntry>(&body)?.name)
    }

    /// `DELETE /pods/{name}?mode=…` (`graceful` or `crash`).
    pub async fn stop_pod(&self, name: &str, mode: &str) -> anyhow::Result<()> {
        let url = format!("http://{}/pods/{name}?mode={mode}", self.control);
        self.call(Method::DELETE, &url).await.map(drop)
    }

    /// RSS (KiB) of the router and of every live pod, by name.
    pub async fn rss(&self) -> (Option<u64>, Vec<(String, u64)>) {
        let router = self.dev.router_pid().and_then(|pid| rss_kib(pid).ok());
        let pods = self
            .pods()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| Some((p.name, rss_kib(p.pid?).ok()?)))
            .collect();
        (router, pods)
    }

    /// SIGTERM the launcher (it stops router and pods), then stop Redis.
    pub async fn shutdown(mut self) {
        self.dev.stop(STOP_TIMEOUT).await;
        drop(self.redis);
        if self.keep_logs {
            let kept: PathBuf = self.dir.keep();
            eprintln!("soak logs kept in {}", kept.display());
        }
    }
}
