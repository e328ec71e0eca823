//! The crate's one error type.
//!
//! Per-connection trouble (a client that sends garbage, an upstream app that
//! dies) is handled where it happens and becomes a WebSocket close code, never
//! an [`Error`]: this type is for what stops the process or a subcommand
//! (bad configuration, a port that cannot be bound, a failed probe) and for
//! the few admin-API refusals that need a reason.

/// Everything that can stop ws-pod (or `ws-pod probe`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable (missing token, bad URL, ...); the message says which flag.
    #[error("configuration: {0}")]
    Config(String),

    /// `--listen` or `--admin-listen` could not be bound
    /// (`wsring_core::Error::Bind`, as in the router).
    #[error(transparent)]
    Bind(wsring_core::Error),

    /// The admin HTTP server failed.
    #[error("admin server: {0}")]
    Admin(#[source] std::io::Error),

    /// The per-key history in Redis could not be written or read.
    #[error("history: {0}")]
    History(String),

    /// `ws-pod probe` failed; the message says at which step.
    #[error("probe failed: {0}")]
    Probe(String),
}
