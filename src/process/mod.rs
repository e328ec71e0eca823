//! Running wsring's own processes: what local mode, `wsring bench`,
//! `wsring soak` and the integration tests share to start, watch and stop
//! `wsring router`, `wsring pod` and `wsring dev` children.
//!
//! Ports, `redis-server` and the admin HTTP client are one level down, in
//! `wsring_core::harness`, where the router and ws-pod test suites reach
//! them too.
//!
//! Layout:
//! - [`child`]: [`ChildProcess`], any child: log destination, early-exit
//!   check, stop by pid (SIGTERM, bounded wait, SIGKILL).
//! - [`server`]: [`ServerProcess`], a `wsring router` / `wsring pod` child
//!   and the wait for its health endpoint.
//! - [`dev`]: [`DevProcess`], a `wsring dev` child, ready on its ready line.
//! - [`lifecycle`]: when a wsring process shuts down (signals, orphaned children).
//! - [`nofile`]: the open-files limit for many connections.

pub mod child;
pub mod dev;
pub mod lifecycle;
pub mod nofile;
pub mod server;

pub use child::{ChildProcess, Logs, Stdout};
pub use dev::{DevLaunch, DevProcess};
pub use server::{Role, ServerLaunch, ServerProcess};
