//! Shared core of wsring: the consistent-hash ring and the router ↔ pod protocol.
//!
//! Every process that makes a routing decision (router, ws-pod, operator, local
//! launcher) links this one crate, so they all agree on which pod owns a key.
//!
//! Layout:
//! - [`hash`]: the one fixed 64-bit hash (xxh3, seed 0) used for keys and virtual nodes.
//! - [`ring`]: [`Ring`] built from a [`RingSpec`] (versioned membership), lookups,
//!   bounded-load option, and the diff of owners between two rings.
//! - [`protocol`]: Redis channel names, reset messages, headers and close codes.
//! - [`resume`]: the `wsring.v1` subprotocol: positions of pushed messages,
//!   the resume token and the frame headers.
//! - [`key`]: routing key rules (decoding, refused characters, ambiguity),
//!   the same in router and ws-pod.
//! - [`router_auth`]: the router's signature of the headers it sends pods.
//! - [`bearer`]: the bearer-token check of every API, and token generation.
//! - `bearer_guard` (feature `http-auth`): that check as the axum middleware of
//!   the router's and ws-pod's admin APIs.
//! - `token_args` (feature `cli`): the `--token`/`--token-file` flags of router
//!   and ws-pod and the one way to resolve them.
//! - `cluster_args` (feature `cli`): their `--cluster`/`--namespace` flags, the
//!   parts of every Redis channel name.
//! - `listen_args` (feature `listen`): their `--listen`/`--admin-listen` flags,
//!   with each process's default ports, and the one way to bind them.
//! - `shutdown` (feature `shutdown`): the two steps of a graceful shutdown
//!   (not ready, then draining) of router and ws-pod.
//! - [`conn_limit`]: caps on open connections, total and per client address.
//! - [`origin`]: browser `Origin` allow-list syntax and matching (router and operator).
//! - `redis_args` (feature `redis-client`): the Redis flags and client shared by
//!   router and ws-pod.
//! - `redis_target` (feature `redis-client`): one server or a Sentinel group,
//!   and the one connection to its primary that follows a failover.
//! - `logging` (feature `logging`): tracing set-up of the binaries.
//! - `openmetrics` (feature `metrics`): the `/metrics` text and content type
//!   of router, ws-pod and operator.
//! - [`error`]: the crate's error type.
//! - `harness` (feature `harness`): free loopback ports, a private
//!   redis-server, the admin HTTP client and servers run in a test's
//!   background, shared by local mode, the benchmarks, the soak and every
//!   test suite.
//! - `testkit` (feature `testkit`, which includes `harness`): rings, raw
//!   socket exchanges and metric-name helpers for tests.

pub mod bearer;
#[cfg(feature = "http-auth")]
pub mod bearer_guard;
#[cfg(feature = "cli")]
pub mod cluster_args;
pub mod conn_limit;
pub mod error;
#[cfg(feature = "harness")]
pub mod harness;
pub mod hash;
pub mod key;
#[cfg(feature = "listen")]
pub mod listen_args;
#[cfg(feature = "logging")]
pub mod logging;
#[cfg(feature = "metrics")]
pub mod openmetrics;
pub mod origin;
pub mod protocol;
#[cfg(feature = "redis-client")]
pub mod redis_args;
#[cfg(feature = "redis-client")]
pub mod redis_target;
pub mod resume;
pub mod ring;
pub mod router_auth;
#[cfg(feature = "shutdown")]
pub mod shutdown;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(feature = "cli")]
pub mod token_args;

pub use error::Error;
pub use ring::{Member, Ring, RingSpec};
