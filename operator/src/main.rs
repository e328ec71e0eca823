//! `wsring-operator`: parse flags, set up logging, run the operator until SIGTERM/SIGINT.

use std::io::IsTerminal;

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::{fmt, EnvFilter};
use wsring_operator::{Config, LogFormat};

#[derive(Parser)]
#[command(
    name = "wsring-operator",
    version,
    about = "Kubernetes operator for wsring WebSocketClusters"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    match cli.config.log_format {
        LogFormat::Json => fmt().json().with_env_filter(filter).init(),
        // Colours only on a terminal: `kubectl logs` and log files get plain text.
        LogFormat::Text => fmt()
            .with_ansi(std::io::stdout().is_terminal())
            .with_env_filter(filter)
            .init(),
    }
    wsring_operator::run(cli.config, shutdown_signal())
        .await
        .context("wsring-operator stopped")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight reconciles");
}
