//! `wsring`: the whole wsring data plane from one binary, for trying it and for tests.
//!
//! - `wsring dev --pods 3`: router + N ws-pods on loopback with a bus (Redis or
//!   in-process) and a control API to add, stop and crash pods ([`dev`]).
//! - `wsring router …` / `wsring pod …`: the router and the ws-pod sidecar,
//!   exactly the code of the `wsring-router` and `ws-pod` images (local mode
//!   runs its children through these).
//! - `wsring bench …`: throughput/latency and idle-memory benchmarks ([`bench`]).
//! - `wsring soak`: many connections through one router while pods come and
//!   go; checks that exactly the moved connections are reset ([`soak`]).
//!
//! Layout: `dev/` (local mode), `bench/` (load client and reports), `soak/`
//! (soak test). What they share with each other and with the tests —
//! starting and stopping wsring processes, `/proc` readings, metrics — is
//! the package's library (`wsring::process`, `wsring::procfs`,
//! `wsring::metrics`); ports, redis-server and the admin HTTP client are
//! `wsring_core::harness`.

mod bench;
mod dev;
mod soak;

use clap::{Parser, Subcommand};
use wsring::process::lifecycle::shutdown_or_orphaned;

#[derive(Parser)]
#[command(
    name = "wsring",
    version,
    about = "wsring: key-affine WebSocket routing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run router + N pods on loopback, no Kubernetes needed.
    Dev(dev::DevArgs),
    /// Run the router (same code as the wsring-router image).
    Router(wsring_router::Config),
    /// Run a ws-pod (same code as the ws-pod image).
    Pod(ws_pod::Config),
    /// Benchmarks: router vs. direct vs. nginx, idle memory per connection.
    Bench(bench::BenchArgs),
    /// Soak: N connections through one router while pods come and go; checks resets.
    Soak(soak::SoakArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wsring_core::logging::init();
    match Cli::parse().command {
        Command::Dev(args) => dev::run(args).await,
        Command::Router(config) => Ok(wsring_router::run(config, shutdown_or_orphaned()).await?),
        Command::Pod(config) => Ok(ws_pod::run(config, shutdown_or_orphaned()).await?),
        Command::Bench(args) => bench::run(args).await,
        Command::Soak(args) => soak::run(args).await,
    }
}
