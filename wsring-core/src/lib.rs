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
//! - [`origin`]: browser `Origin` allow-list syntax and matching (router and operator).
//! - `redis_args` (feature `redis-client`): the Redis flags and client shared by
//!   router and ws-pod.
//! - `logging` (feature `logging`): tracing set-up of the binaries.
//! - [`error`]: the crate's error type.
//! - `testkit` (feature `testkit`): real redis-server and free ports for tests.

pub mod error;
pub mod hash;
#[cfg(feature = "logging")]
pub mod logging;
pub mod origin;
pub mod protocol;
#[cfg(feature = "redis-client")]
pub mod redis_args;
pub mod ring;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::Error;
pub use ring::{Member, Ring, RingSpec};
