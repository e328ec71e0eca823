//! A `wsring dev` child: local mode launched from outside, the way the soak
//! and the integration tests run it. It is ready once it prints its ready
//! line; its router and pods are its own children.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::child::{ChildProcess, Logs, Stdout};
use crate::error::Error;
use crate::procfs::children_of;

/// What `wsring dev` prints on stdout, followed by a JSON object (URLs,
/// token, bus, pod names), once router and pods are up.
pub const READY_PREFIX: &str = "WSRING_DEV_READY ";

/// How long a launcher whose stdout closed before its ready line is given
/// to exit, so the error can say how it ended.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// How long a dropped launcher may take to stop its children after SIGTERM.
const DROP_STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything needed to start `wsring dev`.
#[derive(Debug, Clone)]
pub struct DevLaunch {
    /// The `wsring` binary.
    pub exe: PathBuf,
    /// `--pods`.
    pub pods: usize,
    /// Router public listener, `--listen`.
    pub listen: SocketAddr,
    /// Router admin listener, `--admin-listen`.
    pub admin: SocketAddr,
    /// Control API, `--control-listen`.
    pub control: SocketAddr,
    /// `--redis`: the bus router and pods use. `None` leaves the choice to
    /// `wsring dev`, as a user running it bare gets (a private
    /// `redis-server` if one is installed, else its in-process bus).
    pub redis_url: Option<String>,
    /// Token of the admin, push and control APIs, passed as `WSRING_TOKEN`.
    /// `None` unsets it: `wsring dev` then makes one and prints it in its
    /// ready line.
    pub token: Option<String>,
    /// Further `wsring dev` arguments (`--router-arg=…`, `--pod-arg=…`).
    pub args: Vec<String>,
    /// Where its log (and its children's) goes.
    pub logs: Logs,
}

/// A running `wsring dev`; stopped with SIGTERM (it stops its router and
/// pods first) by [`DevProcess::stop`] or, failing that, when dropped.
pub struct DevProcess {
    process: ChildProcess,
    /// The JSON object of its ready line.
    pub ready: serde_json::Value,
    /// The ready line as printed (what the README shows).
    pub ready_line: String,
}

impl DevProcess {
    /// Start it with the caller's `RUST_LOG` (default `warn`) and wait, at
    /// most `within`, for its ready line.
    pub async fn start(launch: DevLaunch, within: Duration) -> Result<Self, Error> {
        let mut command = Command::new(&launch.exe);
        command
            .arg("dev")
            .args(["--pods", &launch.pods.to_string()])
            .args(["--listen", &launch.listen.to_string()])
            .args(["--admin-listen", &launch.admin.to_string()])
            .args(["--control-listen", &launch.control.to_string()])
            .args(launch.redis_url.iter().flat_map(|url| ["--redis", url]))
            .args(&launch.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        match &launch.token {
            Some(token) => command.env("WSRING_TOKEN", token),
            None => command.env_remove("WSRING_TOKEN"),
        };
        let mut process = ChildProcess::spawn("wsring dev", command, launch.logs, Stdout::Piped)?;
        let stdout = process.take_stdout();
        let not_ready = |reason: String, process: &ChildProcess| Error::DevNotReady {
            reason,
            log_tail: process.log_tail(),
        };
        let Some(stdout) = stdout else {
            return Err(not_ready("no stdout".into(), &process));
        };
        let ready = tokio::time::timeout(within, async {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(json) = line.strip_prefix(READY_PREFIX) {
                    return serde_json::from_str(json)
                        .map(|ready| (ready, line.clone()))
                        .map_err(|e| format!("unreadable ready line: {e}"));
                }
            }
            Err("it exited before it was ready".to_string())
        })
        .await;
        match ready {
            Ok(Ok((ready, ready_line))) => Ok(DevProcess {
                process,
                ready,
                ready_line,
            }),
            Ok(Err(reason)) => {
                // Its stdout closed: say how it ended (it may take a moment to exit).
                let reason = match tokio::time::timeout(EXIT_WAIT, process.wait()).await {
                    Ok(Some(status)) => format!("{reason}: {status}"),
                    _ => reason,
                };
                Err(not_ready(reason, &process))
            }
            Err(_) => Err(not_ready(
                format!("no ready line within {within:?}"),
                &process,
            )),
        }
    }

    /// The launcher's pid.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The router: the launcher's child run as `wsring router`.
    pub fn router_pid(&self) -> Option<u32> {
        children_of(self.pid()?).into_iter().find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .ok()
                .and_then(|c| c.split(|b| *b == 0).nth(1).map(|a| a == b"router"))
                .unwrap_or(false)
        })
    }

    /// SIGTERM it and wait (at most `within`, then SIGKILL) until it has
    /// stopped its router and pods and exited.
    pub async fn stop(&mut self, within: Duration) {
        self.process.stop(within).await;
    }
}

impl Drop for DevProcess {
    /// SIGTERM the launcher and wait for it: it stops its router and pods first.
    fn drop(&mut self) {
        self.process.signal(Signal::SIGTERM);
        self.process.wait_blocking(DROP_STOP_TIMEOUT);
    }
}
