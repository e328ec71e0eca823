//! The data plane a soak runs against: a private `redis-server` and a real
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
use wsring_core::harness::{free_addr, AdminClient, RedisServer};
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

/// A running `wsring dev` with its private Redis; stop it with [`Plane::shutdown`].
pub struct Plane {
    /// Router public listener (the one every client connects to).
    pub public: SocketAddr,
    admin: SocketAddr,
    control: SocketAddr,
    // Before `redis`: dropped first, the launcher stops while its bus is up.
    dev: DevProcess,
    redis: RedisServer,
    http: AdminClient,
    dir: tempfile::TempDir,
    keep_logs: bool,
}

impl Plane {
    /// Start redis-server, then `wsring dev --pods N --redis …`, and wait for its ready line.
    pub async fn start(
        pods: usize,
        transport: PodTransport,
        keep_logs: bool,
    ) -> anyhow::Result<Plane> {
        let dir = tempfile::Builder::new()
            .prefix("wsring-soak-")
            .tempdir()
            .context("creating a temporary directory")?;
        let redis = RedisServer::start()
            .await
            .context("the soak needs redis-server on PATH")?;
        let (public, admin, control) = (free_addr()?, free_addr()?, free_addr()?);
        let launch = DevLaunch {
            exe: std::env::current_exe().context("locating wsring")?,
            pods,
            listen: public,
            admin,
            control,
            redis_url: redis.url(),
            token: TOKEN.to_owned(),
            args: vec![format!(
                "--router-arg=--pod-transport={}",
                transport.as_str()
            )],
            logs: Logs::File(dir.path().join("dev.log")),
        };
        let dev = DevProcess::start(launch, START_TIMEOUT).await?;
        Ok(Plane {
            public,
            admin,
            control,
            dev,
            redis,
            http: AdminClient::new(),
            dir,
            keep_logs,
        })
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
        self.redis.stop();
        if self.keep_logs {
            let kept: PathBuf = self.dir.keep();
            eprintln!("soak logs kept in {}", kept.display());
        }
    }
}
