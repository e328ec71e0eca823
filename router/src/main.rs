//! `wsring-router` binary: flags → [`wsring_router::run`], logs, signals.

use anyhow::Context;
use clap::Parser;

/// wsring router: routes WebSocket upgrades to the pod owning the routing key.
#[derive(Parser, Debug)]
#[command(name = "wsring-router", version, about)]
struct Cli {
    #[command(flatten)]
    config: wsring_router::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wsring_core::logging::init();
    let cli = Cli::parse();
    wsring_router::run(cli.config, shutdown_signal())
        .await
        .context("wsring-router failed")
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
