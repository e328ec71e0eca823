//! The library part of the `wsring` package: what the `wsring` binary
//! (local mode, benchmarks, soak) and the integration tests in `tests/`
//! share to run and measure wsring processes.
//!
//! # Layout
//! - [`process`]: starting, watching and stopping `wsring router`,
//!   `wsring pod` and `wsring dev` children (one way for every user), the
//!   shutdown signals of wsring processes, the open-files limit.
//! - [`procfs`]: process tree, memory and CPU readings from Linux `/proc`.
//! - [`metrics`]: values from the Prometheus text of the admin `/metrics`.
//! - [`error`]: the library's error type.
//!
//! Free ports, the private `redis-server` and the admin HTTP client are
//! `wsring_core::harness` (feature `harness`), shared with the router and
//! ws-pod test suites.
#![forbid(unsafe_code)]

pub mod error;
pub mod metrics;
pub mod process;
pub mod procfs;

pub use error::Error;
