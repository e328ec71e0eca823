//! One child process: spawned with its log where the caller wants it,
//! checked for an early exit, stopped by pid (SIGTERM, then SIGKILL after a
//! bounded wait), and stopped even when its owner is dropped first.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStdout, Command};

use crate::error::{Error, LogTail};
use crate::procfs::children_of;

/// Lines of a log file quoted in an error.
const TAIL_LINES: usize = 20;

/// Where a child's log (its stderr) goes.
#[derive(Debug, Clone)]
pub enum Logs {
    /// Inherited: local mode's children and test children log to the
    /// terminal or test output, next to their launcher's.
    Inherit,
    /// Into this file (created), whose last lines errors quote: benchmark
    /// children, the soak's `wsring dev`.
    File(PathBuf),
}

/// What happens to a child's stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// The same place as its log.
    WithLogs,
    /// A pipe the owner reads ([`ChildProcess::take_stdout`]): how
    /// `wsring dev` reports that it is ready.
    Piped,
}

/// A running child, named for messages.
pub struct ChildProcess {
    name: String,
    child: Child,
    log: Option<PathBuf>,
}

impl ChildProcess {
    /// Spawn `command` as `name`: stdin closed, output as asked, SIGKILLed
    /// should this value be dropped while it still runs.
    pub fn spawn(
        name: &str,
        mut command: Command,
        logs: Logs,
        stdout: Stdout,
    ) -> Result<Self, Error> {
        let spawn_error = |source| Error::Spawn {
            name: name.to_owned(),
            source,
        };
        command.stdin(Stdio::null()).kill_on_drop(true);
        let log = match logs {
            Logs::Inherit => None,
            Logs::File(path) => {
                let file = File::create(&path).map_err(spawn_error)?;
                if stdout == Stdout::WithLogs {
                    command.stdout(file.try_clone().map_err(spawn_error)?);
                }
                command.stderr(file);
                Some(path)
            }
        };
        if stdout == Stdout::Piped {
            command.stdout(Stdio::piped());
        }
        let child = command.spawn().map_err(spawn_error)?;
        Ok(ChildProcess {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// What it is (`router`, `pod-0`, `nginx`), for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Process id (None once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its piped stdout, once (see [`Stdout::Piped`]).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// How it ended, if it has exited on its own (it is reaped then).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Wait until it exits: how it ended (`None` if that cannot be read).
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        self.child.wait().await.ok()
    }

    /// Fail, quoting its log, if it has already exited.
    pub fn check_alive(&mut self) -> Result<(), Error> {
        match self.exited() {
            Some(status) => Err(Error::Exited {
                name: self.name.clone(),
                status,
                log_tail: self.log_tail(),
            }),
            None => Ok(()),
        }
    }

    /// The last lines of its log file (empty when it logs to the terminal).
    pub fn log_tail(&self) -> LogTail {
        LogTail(self.log.as_deref().map(last_lines).unwrap_or_default())
    }

    /// Send `signal` by pid; nothing if it has already been reaped.
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            send(pid, signal);
        }
    }

    /// Wait up to `within` for it to exit, then SIGKILL it and reap it.
    pub async fn wait_or_kill(&mut self, within: Duration) {
        if tokio::time::timeout(within, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(child = %self.name, "no exit after SIGTERM; killing");
            let _ = self.child.kill().await;
        }
    }

    /// SIGTERM (a graceful stop), then [`ChildProcess::wait_or_kill`].
    pub async fn stop(&mut self, within: Duration) {
        self.signal(Signal::SIGTERM);
        self.wait_or_kill(within).await;
    }

    /// SIGKILL now and reap it: a crash, as a node failure would cause.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Wait (blocking, at most `within`) for it to exit: for `Drop` of an
    /// owner that has sent SIGTERM and must not return before it is gone.
    pub fn wait_blocking(&mut self, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        while self.exited().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildProcess {
    /// Only when it was not stopped (error, Ctrl-C): SIGTERM the child's own
    /// children first (nginx workers outlive a killed master), then the
    /// child; `kill_on_drop` follows with SIGKILL.
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            for p in children_of(pid).into_iter().chain([pid]) {
                send(p, Signal::SIGTERM);
            }
        }
    }
}

/// Send `signal` to `pid`; a process already gone is not an error.
fn send(pid: u32, signal: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// The last 20 lines of a log file (empty if unreadable), for
/// errors; also for logs a child writes elsewhere (nginx's error log).
pub fn last_lines(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}
