//! The processes a benchmark measures: ws-pods, a router and nginx.
//!
//! Pods and the router are children of this very binary started with
//! `wsring::process` (`wsring pod …`, `wsring router …`, i.e. the code the
//! images run); the ring is given to the router with `PUT /ring`, the way
//! the operator does it; nginx is [`super::nginx`]. Every child logs into
//! the temporary directory (quoted if it fails to start), is stopped with
//! SIGTERM by [`Bench::shutdown`] and, should that never run, on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use wsring::metrics::metric_value;
use wsring::process::{Logs, Role, ServerLaunch, ServerProcess};
use wsring::procfs::{children_of, cpu_time};
use wsring_core::harness::{free_addr, AdminClient};
use wsring_core::{Member, Ring, RingSpec};
use wsring_router::PodTransport;

use super::nginx::{self, Nginx};

/// How long a child may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a child may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Token for the children's admin APIs (loopback only, lives as long as the run).
pub(crate) const TOKEN: &str = "wsring-bench-token";
/// Cluster name the children are started with.
const CLUSTER: &str = "bench";

/// Which processes a benchmark needs.
pub struct Plan {
    /// Number of ws-pods.
    pub pods: usize,
    /// nginx binary, or None to leave nginx out.
    pub nginx: Option<PathBuf>,
    /// `worker_connections` for nginx (it counts both the client and the upstream side).
    pub nginx_worker_connections: usize,
    /// Keep the temporary directory (children's logs, nginx.conf) for inspection.
    pub keep_logs: bool,
    /// How the router reaches the pods.
    pub pod_transport: PodTransport,
    /// Extra arguments of every pod (Redis, history).
    pub pod_args: Vec<String>,
}

/// Everything started for one benchmark; stop it with [`Bench::shutdown`].
pub struct Bench {
    /// Temporary directory with logs and nginx prefix; removed on drop.
    pub dir: tempfile::TempDir,
    /// The pods (`bench-N`), in ring order of names.
    pub pods: Vec<ServerProcess>,
    /// The router.
    pub router: ServerProcess,
    /// nginx, unless left out.
    pub nginx: Option<Nginx>,
    /// The ring the router was given (used to send direct connections to the owner).
    pub ring: Ring,
    /// Admin HTTP client.
    pub http: AdminClient,
    keep_logs: bool,
}

impl Bench {
    /// Start pods, router (with the ring) and nginx, and wait until all are ready.
    pub async fn start(plan: &Plan) -> anyhow::Result<Bench> {
        let dir = tempfile::Builder::new()
            .prefix("wsring-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let exe = std::env::current_exe().context("locating the wsring binary")?;
        let mut pods = Vec::with_capacity(plan.pods);
        for i in 0..plan.pods {
            let name = format!("bench-{i}");
            // The "direct" and nginx targets reach pods without a router's
            // signed headers: the benchmark pods accept them.
            let mut args = vec!["--pod-name", &name, "--allow-direct"];
            args.extend(plan.pod_args.iter().map(String::as_str));
            pods.push(spawn(&exe, dir.path(), Role::Pod, &name, &args)?);
        }
        let router_args = [
            "--router-id",
            "bench-router",
            "--pod-transport",
            plan.pod_transport.as_str(),
        ];
        let router = spawn(&exe, dir.path(), Role::Router, "router", &router_args)?;
        let members = pods
            .iter()
            .map(|p| Member {
                name: p.name().to_owned(),
                addr: p.listen.to_string(),
                admin: p.admin.to_string(),
            })
            .collect();
        let spec = RingSpec::new(1, wsring_core::ring::DEFAULT_VNODES, None, members)?;
        // Children are owned from here on: an early return drops (stops) them.
        let mut bench = Bench {
            dir,
            pods,
            router,
            nginx: None,
            ring: Ring::build(spec)?,
            http: AdminClient::new(),
            keep_logs: plan.keep_logs,
        };
        for pod in &mut bench.pods {
            pod.wait_ready(&bench.http, START_TIMEOUT).await?;
        }
        bench.router.wait_ready(&bench.http, START_TIMEOUT).await?;
        bench.put_ring().await?;
        if let Some(binary) = &plan.nginx {
            let pods: Vec<SocketAddr> = bench.pods.iter().map(|p| p.listen).collect();
            let started = nginx::start(
                binary,
                bench.dir.path(),
                &pods,
                plan.nginx_worker_connections,
            );
            bench.nginx = Some(started.await?);
        }
        Ok(bench)
    }

    /// Give the router the ring over all pods (`PUT /ring`, as the operator does).
    async fn put_ring(&self) -> anyhow::Result<()> {
        let answer = self
            .http
            .put(format!("http://{}/ring", self.router.admin))
            .bearer(TOKEN)
            .json(self.ring.spec().to_json())
            .send()
            .await?;
        if !answer.status().is_success() {
            bail!(
                "router refused the ring: {} {}",
                answer.status(),
                answer.text()
            );
        }
        Ok(())
    }

    /// The pod owning `key` on the router's ring (where a direct client goes).
    pub fn owner_addr(&self, key: &str) -> anyhow::Result<SocketAddr> {
        let owner = self.ring.owner(key).context("empty ring")?;
        let pod = self
            .pods
            .iter()
            .find(|p| p.name() == owner.name)
            .context("ring names an unknown pod")?;
        Ok(pod.listen)
    }

    /// Fail if any child has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for pod in &mut self.pods {
            pod.process.check_alive()?;
        }
        self.router.process.check_alive()?;
        if let Some(nginx) = &mut self.nginx {
            nginx.process.check_alive()?;
        }
        Ok(())
    }

    /// Stop every child (nginx and router first, so pods see their clients leave).
    pub async fn shutdown(mut self) {
        if let Some(nginx) = &mut self.nginx {
            nginx.process.stop(STOP_TIMEOUT).await;
        }
        self.router.process.stop(STOP_TIMEOUT).await;
        for pod in &mut self.pods {
            pod.process.stop(STOP_TIMEOUT).await;
        }
        if self.keep_logs {
            eprintln!("logs and nginx.conf kept in {}", self.dir.keep().display());
        }
        // Otherwise `self.dir` is dropped here and the directory goes with it.
    }

    /// CPU time of router, nginx and pods so far (for CPU cost per message).
    pub fn cpu(&self) -> CpuSnapshot {
        let of = |pid: Option<u32>| pid.and_then(cpu_time).unwrap_or_default();
        let nginx = self
            .nginx
            .as_ref()
            .and_then(|n| n.process.pid())
            .map(|pid| {
                of(Some(pid))
                    + children_of(pid)
                        .into_iter()
                        .map(|c| of(Some(c)))
                        .sum::<Duration>()
            });
        CpuSnapshot {
            router: of(self.router.process.pid()),
            nginx: nginx.unwrap_or_default(),
            pods: self.pods.iter().map(|p| of(p.process.pid())).sum(),
        }
    }
}

/// Spawn `wsring ROLE` as `name` on free loopback ports with the bench
/// cluster and token, warnings only, logging to `name.log` in `dir`.
fn spawn(
    exe: &Path,
    dir: &Path,
    role: Role,
    name: &str,
    args: &[&str],
) -> anyhow::Result<ServerProcess> {
    Ok(ServerProcess::spawn(ServerLaunch {
        exe: exe.to_owned(),
        role,
        name: name.to_owned(),
        listen: free_addr()?,
        admin: free_addr()?,
        cluster: CLUSTER.to_owned(),
        token: TOKEN.to_owned(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![("RUST_LOG".to_owned(), "warn".to_owned())],
        logs: Logs::File(dir.join(format!("{name}.log"))),
    })?)
}

/// CPU time used so far by each kind of server process.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSnapshot {
    /// The router.
    pub router: Duration,
    /// nginx master and workers.
    pub nginx: Duration,
    /// All pods together.
    pub pods: Duration,
}

/// Open connections a router or pod reports on its admin `/metrics`.
pub async fn active_connections(http: &AdminClient, admin: SocketAddr) -> anyhow::Result<u64> {
    let url = format!("http://{admin}/metrics");
    let answer = http.get(url.as_str()).bearer(TOKEN).send().await?;
    if !answer.status().is_success() {
        bail!("{url}: {}", answer.status());
    }
    metric_value(&answer.text(), "active_connections")
        .map(|v| v as u64)
        .with_context(|| format!("{url}: no *_active_connections gauge"))
}
