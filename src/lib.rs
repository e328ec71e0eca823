//! The small library part of the `wsring` package: what the `wsring` binary
//! (benchmarks, soak) and the integration tests in `tests/` both need.
//!
//! - [`procfs`]: process tree and memory readings from Linux `/proc`.

pub mod procfs;
