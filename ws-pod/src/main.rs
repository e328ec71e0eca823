//! `ws-pod`: serve (default) or `ws-pod probe --url ws://…`. All the work is in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ws_pod::{Config, ProbeArgs};

/// wsring pod sidecar: terminates WebSocket in front of the app.
#[derive(Debug, Parser)]
#[command(name = "ws-pod", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    serve: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve WebSocket connections (the default).
    Serve(Box<Config>),
    /// Open a WebSocket, send a text frame and expect it back (helm test).
    Probe(ProbeArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    wsring_core::logging::init();
    match dispatch(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One readable line (with causes) whatever RUST_BACKTRACE says.
            eprintln!("ws-pod: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Probe(args)) => {
            let report = ws_pod::probe(&args).await?;
            println!(
                "ok: echo from pod {} in {:?}",
                report.pod.as_deref().unwrap_or("(no x-wsring-pod header)"),
                report.round_trip
            );
            Ok(())
        }
        Some(Command::Serve(config)) => serve(*config).await,
        None => serve(cli.serve).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    Ok(ws_pod::run(config, shutdown_signal()).await?)
}

/// Resolves on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
