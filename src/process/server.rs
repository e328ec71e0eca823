//! `wsring router` and `wsring pod` children: the one way local mode, the
//! benchmarks and the tests run a router or a ws-pod as a process (this
//! very binary's subcommands, i.e. the code the images run), on given
//! loopback ports, with the token in the environment (never in argv).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;
use wsring_core::harness::AdminClient;

use super::child::{ChildProcess, Logs, Stdout};
use crate::error::Error;

/// How often a health endpoint is polled while a child starts.
const POLL: Duration = Duration::from_millis(50);

/// Which data-plane process a child is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `wsring router`.
    Router,
    /// `wsring pod`.
    Pod,
}

impl Role {
    /// The `wsring` subcommand.
    pub fn subcommand(self) -> &'static str {
        match self {
            Role::Router => "router",
            Role::Pod => "pod",
        }
    }

    /// The admin endpoint answering 200 once the child can take traffic: a
    /// router is live as soon as it serves, a pod once it is ready.
    pub fn ready_url(self, admin: SocketAddr) -> String {
        match self {
            Role::Router => format!("http://{admin}/healthz"),
            Role::Pod => format!("http://{admin}/readyz"),
        }
    }
}

/// Everything needed to start one router or pod child.
#[derive(Debug, Clone)]
pub struct ServerLaunch {
    /// The `wsring` binary.
    pub exe: PathBuf,
    /// Router or pod.
    pub role: Role,
    /// Name for messages and log files (the pod's ring member name).
    pub name: String,
    /// Public (router) or WebSocket (pod) listener, `--listen`.
    pub listen: SocketAddr,
    /// Admin listener, `--admin-listen`.
    pub admin: SocketAddr,
    /// `--cluster` (the Redis channel prefix).
    pub cluster: String,
    /// Bearer token of the admin and push APIs, passed as `WSRING_TOKEN`.
    pub token: String,
    /// Further arguments (`--pod-name`, `--router-id`, `--redis-url`, …).
    pub args: Vec<String>,
    /// Further environment, set after the token (so it may override it).
    pub env: Vec<(String, String)>,
    /// Where its log goes.
    pub logs: Logs,
}

/// A running router or pod child and its addresses.
pub struct ServerProcess {
    /// Router or pod.
    pub role: Role,
    /// Public (router) or WebSocket (pod) listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// The process.
    pub process: ChildProcess,
}

impl ServerProcess {
    /// Spawn it; it is not ready yet ([`ServerProcess::wait_ready`]).
    pub fn spawn(launch: ServerLaunch) -> Result<Self, Error> {
        let mut command = Command::new(&launch.exe);
        command
            .arg(launch.role.subcommand())
            .args(["--listen", &launch.listen.to_string()])
            .args(["--admin-listen", &launch.admin.to_string()])
            .args(["--cluster", &launch.cluster])
            .args(&launch.args)
            .env("WSRING_TOKEN", &launch.token)
            .envs(launch.env);
        let process = ChildProcess::spawn(&launch.name, command, launch.logs, Stdout::WithLogs)?;
        Ok(ServerProcess {
            role: launch.role,
            listen: launch.listen,
            admin: launch.admin,
            process,
        })
    }

    /// Its name (see [`ServerLaunch::name`]).
    pub fn name(&self) -> &str {
        self.process.name()
    }

    /// Wait until its health endpoint answers 200, at most `within`;
    /// fails at once, quoting its log, if it exits meanwhile.
    pub async fn wait_ready(&mut self, http: &AdminClient, within: Duration) -> Result<(), Error> {
        let name = self.name().to_owned();
        let url = self.role.ready_url(self.admin);
        let process = &mut self.process;
        let result = wait_answering(http, &name, &url, within, || process.check_alive()).await;
        result.map_err(|e| match e {
            Error::NotReady {
                name, url, waited, ..
            } => Error::NotReady {
                name,
                url,
                waited,
                log_tail: self.process.log_tail(),
            },
            other => other,
        })
    }
}

/// Poll `url` until it answers 200, at most `within`; `alive` is asked
/// before every try so a child that died ends the wait at once. For owners
/// that keep the process elsewhere while it starts (local mode's router, in
/// its shared state, where a watcher restarts one that never answers).
pub async fn wait_answering(
    http: &AdminClient,
    name: &str,
    url: &str,
    within: Duration,
    mut alive: impl FnMut() -> Result<(), Error>,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        alive()?;
        if let Ok(answer) = http.get(url).send().await {
            if answer.status().is_success() {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::NotReady {
                name: name.to_owned(),
                url: url.to_owned(),
                waited: within,
                log_tail: Default::default(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
