//! Child processes of local mode and the ring membership they form.
//!
//! The supervisor plays the operator's part on one machine: a pod joins the
//! ring once its `/readyz` answers, leaves it before a graceful stop (so the
//! router resets exactly the moved connections) and right after a crash
//! (noticed by [`Supervisor::watch_children`]). Every change gets the next
//! ring version and is pushed to the router with `PUT /ring`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use hyper::{Method, StatusCode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use wsring_core::{Member, RingSpec};

use crate::http::{self, HttpClient};

/// How long a child may take to answer its health endpoint after start.
const START_TIMEOUT: Duration = Duration::from_secs(15);
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
    child: Child,
}

struct RouterProc {
    listen: SocketAddr,
    admin: SocketAddr,
    child: Child,
}

#[derive(Default)]
struct State {
    /// Last ring version published (grows only).
    version: u64,
    /// True when the router has not acknowledged the current version yet.
    unpublished: bool,
    router: Option<RouterProc>,
    pods: BTreeMap<String, PodProc>,
}

/// Owner of all child processes and of the ring membership.
pub struct Supervisor {
    launch: Launch,
    http: HttpClient,
    state: Mutex<State>,
}

impl Supervisor {
    /// A supervisor with no children yet.
    pub fn new(launch: Launch) -> Self {
        Supervisor {
            launch,
            http: http::client(),
            state: Mutex::new(State::default()),
        }
    }

    /// Start the router and wait until its admin listener answers.
    pub async fn start_router(&self, listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
        let child = self.spawn_router(listen, admin)?;
        let mut state = self.state.lock().await;
        state.router = Some(RouterProc {
            listen,
            admin,
            child,
        });
        drop(state);
        self.wait_healthy(admin, "/healthz").await
    }

    fn spawn_router(&self, listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<Child> {
        let mut cmd = Command::new(&self.launch.exe);
        cmd.arg("router")
            .args(["--listen", &listen.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--router-id", "dev-router"])
            .args(["--cluster", &self.launch.cluster])
            .args(["--redis-url", &self.launch.redis_url])
            .args(["--dashboard-control-url", &self.launch.control_url])
            .args(&self.launch.router_args)
            .env("WSRING_TOKEN", &self.launch.token)
            .env(super::PARENT_PID_ENV, std::process::id().to_string())
            .kill_on_drop(true);
        cmd.spawn().context("spawning the router")
    }

    /// Start `pod-N` (lowest free ordinal, so a re-added pod takes back its own
    /// keys), wait for `/readyz`, then add it to the ring.
    pub async fn add_pod(&self) -> anyhow::Result<PodInfo> {
        let name = {
            let state = self.state.lock().await;
            (0..)
                .map(|i| format!("pod-{i}"))
                .find(|n| !state.pods.contains_key(n))
                .expect("some ordinal is free")
        };
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let child = Command::new(&self.launch.exe)
            .arg("pod")
            .args(["--listen", &addr.to_string()])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--pod-name", &name])
            .args(["--cluster", &self.launch.cluster])
            .args(["--redis-url", &self.launch.redis_url])
            .args(&self.launch.pod_args)
            .env("WSRING_TOKEN", &self.launch.token)
            .env(super::PARENT_PID_ENV, std::process::id().to_string())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        let info = PodInfo {
            name: name.clone(),
            addr,
            admin,
            pid: child.id(),
        };
        self.state.lock().await.pods.insert(
            name.clone(),
            PodProc {
                info: info.clone(),
                child,
            },
        );
        if let Err(e) = self.wait_healthy(admin, "/readyz").await {
            self.remove_pod(&name).await;
            return Err(e.context(format!("{name} did not become ready")));
        }
        self.publish_ring().await?;
        tracing::info!(pod = %name, %addr, "pod joined the ring");
        Ok(info)
    }

    /// Stop a pod gracefully or abruptly; the ring stops naming it either way.
    pub async fn stop_pod(&self, name: &str, mode: StopMode) -> anyhow::Result<()> {
        let pid = {
            let mut state = self.state.lock().await;
            let Some(pod) = state.pods.get_mut(name) else {
                bail!("no pod named {name:?}");
            };
            pod.child.id()
        };
        match mode {
            StopMode::Graceful => {
                let mut pod = self.take_pod(name).await.context("pod vanished")?;
                self.publish_ring().await?;
                // Like a preStop hook: give the router's resets time to move
                // the pod's clients (close 4001) before SIGTERM closes the
                // rest with 1001.
                self.wait_drained(pod.info.admin).await;
                signal(pid, Signal::SIGTERM);
                if tokio::time::timeout(STOP_TIMEOUT, pod.child.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(pod = name, "did not exit after SIGTERM; killing");
                    let _ = pod.child.kill().await;
                }
            }
            StopMode::Crash => {
                signal(pid, Signal::SIGKILL);
                let mut pod = self.take_pod(name).await.context("pod vanished")?;
                let _ = pod.child.wait().await;
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
                    .filter_map(|(name, p)| match p.child.try_wait() {
                        Ok(Some(status)) => {
                            tracing::warn!(pod = %name, %status, "pod exited; removing it from the ring");
                            Some(name.clone())
                        }
                        _ => None,
                    })
                    .collect();
                for name in &exited {
                    state.pods.remove(name);
                }
                let router_exited = match state.router.as_mut().map(|r| r.child.try_wait()) {
                    Some(Ok(Some(status))) => {
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
            signal(pod.child.id(), Signal::SIGTERM);
        }
        for pod in state.pods.values_mut() {
            if tokio::time::timeout(STOP_TIMEOUT, pod.child.wait())
                .await
                .is_err()
            {
                let _ = pod.child.kill().await;
            }
        }
        state.pods.clear();
        if let Some(mut router) = state.router.take() {
            signal(router.child.id(), Signal::SIGTERM);
            if tokio::time::timeout(STOP_TIMEOUT, router.child.wait())
                .await
                .is_err()
            {
                let _ = router.child.kill().await;
            }
        }
    }

    async fn take_pod(&self, name: &str) -> Option<PodProc> {
        self.state.lock().await.pods.remove(name)
    }

    async fn remove_pod(&self, name: &str) {
        if let Some(mut pod) = self.take_pod(name).await {
            let _ = pod.child.kill().await;
        }
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
        let url = format!("http://{admin}/ring");
        let (status, body) = http::call(
            &self.http,
            Method::PUT,
            &url,
            Some(&self.launch.token),
            Some(spec.to_json()),
        )
        .await?;
        // 409 means the router already holds this version or a newer one.
        if status.is_success() || status == StatusCode::CONFLICT {
            let mut state = self.state.lock().await;
            if state.version == spec.version {
                state.unpublished = false;
            }
            tracing::info!(version = spec.version, members = ?spec.member_names(), "ring published");
            Ok(())
        } else {
            bail!(
                "router refused ring v{}: {status} {}",
                spec.version,
                String::from_utf8_lossy(&body)
            )
        }
    }

    /// Wait until the pod reports no connections, at most [`DRAIN_WAIT`].
    async fn wait_drained(&self, admin: SocketAddr) {
        let url = format!("http://{admin}/v1/connections");
        let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
        while tokio::time::Instant::now() < deadline {
            let answer = http::call(
                &self.http,
                Method::GET,
                &url,
                Some(&self.launch.token),
                None,
            )
            .await;
            match answer {
                Ok((status, body)) if status.is_success() => {
                    let open = serde_json::from_slice::<Vec<serde_json::Value>>(&body)
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

    async fn wait_healthy(&self, admin: SocketAddr, path: &str) -> anyhow::Result<()> {
        let url = format!("http://{admin}{path}");
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok((status, _)) = http::call(&self.http, Method::GET, &url, None, None).await {
                if status.is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{url} did not answer 200 within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Send `sig` to a child by pid (no-op if it already exited).
fn signal(pid: Option<u32>, sig: Signal) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(StdListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Wait until something accepts TCP connections on `addr`.
pub async fn wait_for_port(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if tokio::time::Instant::now() > deadline {
            bail!("nothing listens on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
