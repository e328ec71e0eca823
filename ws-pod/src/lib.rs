//! ws-pod: the sidecar in every wsring pod.
//!
//! It terminates the WebSocket connections a router tunnels to this pod, runs
//! them against the built-in echo app or the app container (`--upstream`), and
//! can close any one of them without the app's help: a reset on the pod's Redis
//! channel closes exactly the connections whose key moved with 4001, SIGTERM
//! closes all with 1001. Its admin port serves health, metrics, the connection
//! list and the push API. docs/interfaces.md is the contract it implements.
//!
//! The `ws-pod` binary and the local launcher (`wsring pod`) both call [`run`]
//! with a [`Config`]; [`Pod::bind`] + [`Pod::serve`] do the same in two steps
//! for callers that need the bound addresses first (port 0 in tests).
//!
//! # Layout
//!
//! - [`config`]: flags and env vars ([`Config`]), checked once at start-up into
//!   the pod's `Settings`.
//! - [`server`]: bind, serve, drain ([`Pod`], [`PodHandle`]).
//! - `listener`: the TCP accept loop and HTTP/1.1 upgrades.
//! - `h2`: WebSockets over HTTP/2 streams from a router with `--pod-transport h2`.
//! - `session`: one upgraded WebSocket from either listener (register → relay →
//!   count its ending), and the `Shared` state of every connection task.
//! - [`handshake`]: what is read from the upgrade request, `x-wsring-pod` on the 101.
//! - [`connection`]: the relay between client and app, generic over `Sink`/`Stream`.
//! - [`history`]: per-key history of pushes in Redis (`--history-size`).
//! - [`cursor`]: a `wsring.v1` connection's position: every push once, in order.
//! - [`watch`]: the message and idle deadlines on what a client sends.
//! - [`app`]: the echo app and the upstream app connection.
//! - [`mailbox`]: the control channel into one connection task (close orders, pushes).
//! - [`registry`]: id → (key, since, mailbox), indexed by id and by key.
//! - [`control`]: the Redis reset channel and what a control message does.
//! - [`push`]: push bodies → frames → connections.
//! - [`admin`]: the admin HTTP API ([`admin_app`]).
//! - [`drain`]: tracked connection tasks and the SIGTERM sequence (on
//!   `wsring_core::shutdown::Shutdown`, as in the router).
//! - [`metrics`]: Prometheus metrics.
//! - [`probe`](mod@probe): `ws-pod probe`, one echo round trip.
//! - [`error`]: the crate's [`Error`].

pub mod admin;
pub mod app;
pub mod config;
pub mod connection;
pub mod control;
pub mod cursor;
pub mod drain;
pub mod error;
mod h2;
pub mod handshake;
pub mod history;
mod listener;
pub mod mailbox;
pub mod metrics;
pub mod probe;
pub mod push;
pub mod registry;
pub mod server;
mod session;
pub mod watch;

use std::future::Future;

pub use admin::{admin_app, AdminState};
pub use config::Config;
pub use error::Error;
pub use probe::{probe, ProbeArgs, ProbeReport};
pub use server::{Pod, PodHandle};

/// Run a pod until `shutdown` resolves, then drain it (see [`Pod::serve`]).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    Pod::bind(config).await?.serve(shutdown).await
}
