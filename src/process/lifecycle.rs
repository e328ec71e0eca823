//! When a `wsring` process ends: on Ctrl-C or SIGTERM, and — for the router
//! and pods `wsring dev` starts — also when their launcher is gone, so no
//! child outlives its local cluster.

use std::time::Duration;

/// Environment variable naming the launcher's pid in its children.
pub const PARENT_PID_ENV: &str = "WSRING_DEV_PARENT_PID";

/// How often a child of `wsring dev` checks that its launcher is alive.
const ORPHAN_CHECK: Duration = Duration::from_millis(250);

/// Resolves on Ctrl-C, SIGTERM, or — for children of `wsring dev` — when the
/// launcher is gone (killed with SIGKILL it cannot stop them), so no router
/// or pod outlives its local cluster.
pub async fn shutdown_or_orphaned() {
    let parent = std::env::var(PARENT_PID_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok());
    let orphaned = async move {
        match parent {
            Some(pid) => loop {
                if nix::unistd::getppid().as_raw() != pid {
                    tracing::warn!(launcher = pid, "wsring dev is gone; shutting down");
                    return;
                }
                tokio::time::sleep(ORPHAN_CHECK).await;
            },
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = orphaned => {}
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
