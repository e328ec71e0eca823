//! Errors of the `wsring` library: `/proc` readings, child processes,
//! open-file limits; each names the process or call that failed.

use std::fmt;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a reading, a child process or a limit change failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `/proc` reading failed: the process is gone or `/proc` is not Linux's.
    #[error("{0}")]
    Proc(String),
    /// A child process could not be started, or its log file not created.
    #[error("spawning {name}: {source}")]
    Spawn {
        /// The child (`router`, `pod-0`, `nginx`, `wsring dev`).
        name: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A child exited while it was meant to run.
    #[error("{name} exited ({status}){log_tail}")]
    Exited {
        /// The child.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// The last lines of its log, when it logs to a file.
        log_tail: LogTail,
    },
    /// A child did not answer its health endpoint in time.
    #[error("{name}: {url} did not answer 200 within {waited:?}{log_tail}")]
    NotReady {
        /// The child.
        name: String,
        /// The health endpoint polled.
        url: String,
        /// How long it was given.
        waited: Duration,
        /// The last lines of its log, when it logs to a file.
        log_tail: LogTail,
    },
    /// `wsring dev` did not print its ready line in time, or an unreadable one.
    #[error("wsring dev did not become ready ({reason}){log_tail}")]
    DevNotReady {
        /// What went wrong.
        reason: String,
        /// The last lines of its log, when it logs to a file.
        log_tail: LogTail,
    },
    /// Reading or raising the open-files limit failed.
    #[error("{call}: {source}")]
    Limit {
        /// `getrlimit(NOFILE)` or `setrlimit(NOFILE)`.
        call: &'static str,
        /// What the OS said.
        source: nix::Error,
    },
    /// A shared harness piece failed: ports, redis-server, an admin call.
    #[error(transparent)]
    Harness(#[from] wsring_core::Error),
}

/// The last lines of a child's log file, shown after an error message
/// (nothing when the child logs to the terminal, where they already are).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogTail(pub String);

impl fmt::Display for LogTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "; last log lines:\n{}", self.0)
        }
    }
}
