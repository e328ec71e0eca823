//! What every wsring process runner and test suite shares (feature `harness`):
//! free loopback ports, a private `redis-server`, the one HTTP client for
//! the admin, push and control APIs, and servers run in a test's background.
//!
//! Local mode (`wsring dev`), `wsring bench`, `wsring soak` and the test
//! suites of every crate all start Redis, pick ports and call admin APIs the
//! same way, so those pieces live here, below all of them: the router and
//! ws-pod tests reach them through the `testkit` feature, the `wsring`
//! binary through this one. Starting `wsring router` / `wsring pod` /
//! `wsring dev` processes is the `wsring` crate's own `process` module.
//!
//! Layout:
//! - [`ports`]: free loopback ports, and waiting until something listens.
//! - [`redis_server`]: [`RedisServer`], a `redis-server` child stopped by pid.
//! - [`redis_sentinel`]: [`SentinelGroup`], primary, replicas and Sentinel
//!   for failover tests.
//! - [`redis_cluster`]: [`RedisCluster`], three primaries with a replica
//!   each, for sharded pub/sub and failover tests.
//! - [`admin_http`]: [`AdminClient`], the HTTP/1 client of the admin APIs.
//! - [`background`]: [`BackgroundServer`], a router or ws-pod serving in the
//!   test's process until told to stop.

pub mod admin_http;
pub mod background;
pub mod ports;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;

pub use admin_http::{AdminClient, AdminRequest, AdminResponse};
pub use background::{BackgroundServer, StopSignal};
pub use ports::{free_addr, free_port, wait_for_port};
pub use redis_cluster::RedisCluster;
pub use redis_sentinel::SentinelGroup;
pub use redis_server::RedisServer;
