//! Child processes of local mode and the ring membership they form.
//!
//! The supervisor plays the operator's part on one machine: a pod joins the
//! ring once its `/readyz` answers, leaves it before a graceful stop (so the
//! router resets exactly the moved connections) and right after a crash
//! (noticed by [`Supervisor::watch_children`]). Every change gets the next
//! ring version and is pushed to the router with `PUT /ring`. The children
//! are started and stopped with `wsring::process`, as the benchmarks and the
//! tests start theirs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use nix::sys::signal::Signal;
use serde::Serialize;
use tokio::sync::Mutex;
use wsring::process::lifecycle::PARENT_PID_ENV;
use wsring::process::server::wait_answering;
use wsring::process::{Logs, Role, ServerLaunch, ServerProcess};
use wsring::Error as WsringError;
use wsring_core::harness::admin_http::StatusCode;
use wsring_core::harness::{free_addr, AdminClient};
use wsring_core::{Member, RingSpec};

/// How long a child may take to answer its health endpoint after start.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Starts of one pod before local mode gives up (see `Supervisor::start_pod`).
const START_ATTEMPTS: u32 = 3;
/// How long a gracefully stopped child may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a leaving pod's clients get to move before SIGTERM: the
/// router's reset timeout (2 s) plus a margin.
const DRAIN_WAIT: Duration = Duration::from_secs(3);
/// How often children are checked for unexpected exits.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// What every child needs to know: the binary to run and shared settings.
#[derive(Debug, Clone)]
pub struct Launch {
    /// This very binary (`wsring`), run as `wsring router` / `wsring pod`.
    pub exe: PathBuf,
    /// Cluster name (Redis channel prefix).
    pub cluster: String,
    /// Bearer token for admin and push APIs (passed by environment, not argv).
    pub token: String,
    /// Bus URL for router and pods.
    pub redis_url: String,
    /// Virtual nodes per pod.
    pub vnodes: u32,
    /// Extra pod arguments.
    pub pod_args: Vec<String>,
    /// Extra router arguments.
    pub router_args: Vec<String>,
    /// The control API's base URL, shown to the router's dashboard for its buttons.
    pub control_url: String,
}

/// How a pod is stopped through the control API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Leave the ring first, then SIGTERM: the pod drains with close 1001.
    Graceful,
    /// SIGKILL now, like a node failure; the ring follows once the exit is seen.
    Crash,
}

/// A pod as the control API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PodInfo {
    /// Ring member name (`pod-N`).
    pub name: String,
    /// WebSocket listener.
    pub addr: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Process id.
    pub pid: Option<u32>,
}

struct PodProc {
    info: PodInfo,
    server: ServerProcess,
}

#[derive(Default)]
struct State {
    /// Last ring version published (grows only).
    version: u64,
    /// True when the router has not acknowledged the current version yet.
    unpublished: bool,
    router: Option<ServerProcess>,
    /// Pods in the ring.
    pods: BTreeMap<String, PodProc>,
    /// Names of pods still starting: taken, so a concurrent add picks
    /// another, and not in the ring until they answer `/readyz`.
    starting: BTreeSet<String>,
}

/// Owner of all child processes and of the ring membership.
pub struct Supervisor {
    launch: Launch,
    http: AdminClient,
    state: Mutex<State>,
}

impl Supervisor {
    /// A supervisor with no children yet.
    pub fn new(launch: Launch) -> Self {
        Supervisor {
            launch,
            http: AdminClient::new(),
            state: Mutex::new(State::default()),
        }
    }

    /// Start the router and wait until its admin listener answers.
    pub async fn start_router(&self, listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
        let mut args = vec!["--router-id".to_owned(), "dev-router".to_owned()];
        args.extend(["--redis-url".to_owned(), self.launch.redis_url.clone()]);
        args.extend([
            "--dashboard-control-url".to_owned(),
            self.launch.control_url.clone(),
        ]);
        args.extend(self.launch.router_args.iter().cloned());
        let router = self.server_launch(Role::Router, "router", (listen, admin), args);
        self.state.lock().await.router = Some(ServerProcess::spawn(router)?);
        // Watched from here on: one that never answers is restarted.
        let ready_url = Role::Router.ready_url(admin);
        wait_answering(&self.http, "router", &ready_url, START_TIMEOUT, || Ok(())).await?;
        Ok(())
    }

    /// How a child of local mode starts: this binary, the shared cluster,
    /// token and bus, logging to the launcher's terminal, and told the
    /// launcher's pid so it stops should the launcher vanish.
    fn server_launch(
        &self,
        role: Role,
        name: &str,
        (listen, admin): (SocketAddr, SocketAddr),
        args: Vec<String>,
    ) -> ServerLaunch {
        ServerLaunch {
            exe: self.launch.exe.clone(),
            role,
            name: name.to_owned(),
            listen,
            admin,
            cluster: self.launch.cluster.clone(),
            token: self.launch.token.clone(),
            args,
            env: vec![(PARENT_PID_ENV.to_owned(), std::process::id().to_string())],
            logs: Logs::Inherit,
        }
    }

    /// Start `pod-N` (lowest free ordinal, so a re-added pod takes back its own
    /// keys), wait for `/readyz`, then add it to the ring.
    pub async fn add_pod(&self) -> anyhow::Result<PodInfo> {
        let name = {
            let mut state = self.state.lock().await;
            let name = (0..)
                .map(|i| format!("pod-{i}"))
                .find(|n| !state.pods.contains_key(n) && !state.starting.contains(n))
                .expect("some ordinal is free");
            state.starting.insert(name.clone());
            name
        };
        let started = self.start_pod(&name).await;
        let info = {
            let mut state = self.state.lock().await;
            state.starting.remove(&name);
            let (info, server) = started?;
            let pod = PodProc {
                info: info.clone(),
                server,
            };
            state.pods.insert(name.clone(), pod);
            info
        };
        self.publish_ring().await?;
        tracing::info!(pod = %name, addr = %info.addr, "pod joined the ring");
        Ok(info)
    }

    /// Spawn pod `name` on free ports and wait until it answers `/readyz`.
    /// The ports are free when picked and bound by the child a moment later,
    /// so another process can take one in between: a child that exits while
    /// starting is started again on new ports, at most [`START_ATTEMPTS`] times.
    async fn start_pod(&self, name: &str) -> anyhow::Result<(PodInfo, ServerProcess)> {
        let mut attempt = 1;
        loop {
            let (addr, admin) = (free_addr()?, free_addr()?);
            let mut args = vec!["--pod-name".to_owned(), name.to_owned()];
            args.extend(["--redis-url".to_owned(), self.launch.redis_url.clone()]);
            args.extend(self.launch.pod_args.iter().cloned());
            let launch = self.server_launch(Role::Pod, name, (addr, admin), args);
            let mut server = ServerProcess::spawn(launch)?;
            match server.wait_ready(&self.http, START_TIMEOUT).await {
                Ok(()) => {
                    let pid = server.process.pid();
                    let info = PodInfo {
                        name: name.to_owned(),
                        addr,
                        admin,
                        pid,
                    };
                    return Ok((info, server));
                }
                Err(e @ WsringError::Exited { .. }) if attempt < START_ATTEMPTS => {
                    tracing::warn!(pod = %name, error = %e, "pod exited while starting; again on new ports");
                    attempt += 1;
                }
                Err(e) => {
                    server.process.kill().await;
                    return Err(
                        anyhow::Error::new(e).context(format!("{name} did not become ready"))
                    );
                }
            }
        }
    }

    /// Stop a pod gracefully or abruptly; the ring stops naming it either way.
    pub async fn stop_pod(&self, name: &str, mode: StopMode) -> anyhow::Result<()> {
        if !self.state.lock().await.pods.contains_key(name) {
            bail!("no pod named {name:?}");
        }
        match mode {
            StopMode::Graceful => {
                let mut pod = self.take_pod(name).await.context("pod vanished")?;
                self.publish_ring().await?;
                // Like a preStop hook: give the router's resets time to move
                // the pod's clients (close 4001) before SIGTERM closes the
                // rest with 1001.
                self.wait_drained(pod.info.admin).await;
                pod.server.process.stop(STOP_TIMEOUT).await;
            }
            StopMode::Crash => {
                let mut pod = self.take_pod(name).await.context("pod vanished")?;
                pod.server.process.kill().await;
                self.publish_ring().await?;
            }
        }
        tracing::info!(pod = name, ?mode, "pod stopped and left the ring");
        Ok(())
    }

    /// Current pods.
    pub async fn pods(&self) -> (u64, Vec<PodInfo>) {
        let state = self.state.lock().await;
        let pods = state.pods.values().map(|p| p.info.clone()).collect();
        (state.version, pods)
    }

    /// Current pod names (for the start-up banner).
    pub fn pod_names(&self) -> Vec<String> {
        self.state
            .try_lock()
            .map(|s| s.pods.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Watch for children that exit on their own: a crashed pod leaves the
    /// ring, a crashed router is restarted and given the ring again.
    pub async fn watch_children(self: std::sync::Arc<Self>) {
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let (exited, router_exited, unpublished) = {
                let mut state = self.state.lock().await;
                let exited: Vec<String> = state
                    .pods
                    .iter_mut()
                    .filter_map(|(name, p)| {
                        let status = p.server.process.exited()?;
                        tracing::warn!(pod = %name, %status, "pod exited; removing it from the ring");
                        Some(name.clone())
                    })
                    .collect();
                for name in &exited {
                    state.pods.remove(name);
                }
                let router_exited = match state.router.as_mut().and_then(|r| r.process.exited()) {
                    Some(status) => {
                        tracing::warn!(%status, "router exited; restarting it");
                        state.router.take().map(|r| (r.listen, r.admin))
                    }
                    _ => None,
                };
                (exited, router_exited, state.unpublished)
            };
            if let Some((listen, admin)) = router_exited {
                if let Err(e) = self.start_router(listen, admin).await {
                    tracing::error!(error = %e, "router restart failed");
                    continue;
                }
                let _ = self.push_current_ring().await;
            } else if !exited.is_empty() {
                let _ = self.publish_ring().await;
            } else if unpublished {
                let _ = self.push_current_ring().await;
            }
        }
    }

    /// SIGTERM every child and wait for them (router last, so pods drain through it).
    pub async fn stop_all(&self) {
        let mut state = self.state.lock().await;
        for pod in state.pods.values() {
            pod.server.process.signal(Signal::SIGTERM);
        }
        for pod in state.pods.values_mut() {
            pod.server.process.wait_or_kill(STOP_TIMEOUT).await;
        }
        state.pods.clear();
        if let Some(mut router) = state.router.take() {
            router.process.stop(STOP_TIMEOUT).await;
        }
    }

    async fn take_pod(&self, name: &str) -> Option<PodProc> {
        self.state.lock().await.pods.remove(name)
    }

    /// Bump the version for the current pod set and push it to the router.
    async fn publish_ring(&self) -> anyhow::Result<()> {
        self.state.lock().await.version += 1;
        self.push_current_ring().await
    }

    /// Push the current version (again) to the router: `PUT /ring`.
    async fn push_current_ring(&self) -> anyhow::Result<()> {
        let (spec, admin) = {
            let mut state = self.state.lock().await;
            let members = state
                .pods
                .values()
                .map(|p| Member {
                    name: p.info.name.clone(),
                    addr: p.info.addr.to_string(),
                    admin: p.info.admin.to_string(),
                })
                .collect();
            let spec = RingSpec::new(state.version, self.launch.vnodes, None, members)?;
            state.unpublished = true;
            let admin = state
                .router
                .as_ref()
                .map(|r| r.admin)
                .context("no router")?;
            (spec, admin)
        };
        let answer = self
            .http
            .put(format!("http://{admin}/ring"))
            .bearer(&self.launch.token)
            .json(spec.to_json())
            .send()
            .await?;
        let status = answer.status();
        // 409 means the router already holds this version or a newer one.
        if status.is_success() || status == StatusCode::CONFLICT {
            let mut state = self.state.lock().await;
            if state.version == spec.version {
                state.unpublished = false;
            }
            drop(state);
            // A repeated push (the watcher retrying while a push was in
            // flight) answers `applied: false` or 409: only a ring the router
            // took is "published", so a crash logs it once.
            let applied =
                status.is_success() && answer.json_or_text()["applied"].as_bool() == Some(true);
            if applied {
                tracing::info!(version = spec.version, members = ?spec.member_names(), "ring published");
            } else {
                tracing::debug!(version = spec.version, "the router already holds this ring");
            }
            Ok(())
        } else {
            bail!(
                "router refused ring v{}: {status} {}",
                spec.version,
                answer.text()
            )
        }
    }

    /// Wait until the pod reports no connections, at most [`DRAIN_WAIT`].
    async fn wait_drained(&self, admin: SocketAddr) {
        let url = format!("http://{admin}/v1/connections");
        let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
        while tokio::time::Instant::now() < deadline {
            let answer = self
                .http
                .get(url.as_str())
                .bearer(&self.launch.token)
                .send()
                .await;
            match answer {
                Ok(answer) if answer.status().is_success() => {
                    let open = answer
                        .json::<Vec<serde_json::Value>>()
                        .map(|c| c.len())
                        .unwrap_or(usize::MAX);
                    if open == 0 {
                        return;
                    }
                }
                _ => return,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
