//! Graceful shutdown of the connection tasks.
//!
//! axum and tokio-tungstenite do not track WebSocket tasks, so ws-pod does: every
//! connection task is spawned through [`Drain::spawn`]. [`Drain::run`] then makes
//! the shutdown order of docs/interfaces.md happen: readiness goes false (the
//! `draining` token, also read by `/readyz`), every connection is told to close
//! with 1001, and the tasks get at most the drain timeout to finish their close
//! handshakes before the stragglers are dropped.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every connection finished its close handshake in time.
    Clean,
    /// This many connections were still open at the timeout and were dropped.
    Forced(usize),
}

/// The set of connection tasks and the two signals that end them.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    /// Cancelled when the drain starts: connections close with 1001, `/readyz` says 503.
    draining: CancellationToken,
    /// Cancelled at the drain timeout: remaining tasks stop where they are.
    abort: CancellationToken,
    tasks: TaskTracker,
}

impl Drain {
    /// No tasks yet, not draining.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancelled once the pod drains.
    pub fn draining(&self) -> &CancellationToken {
        &self.draining
    }

    /// Run a connection task under this drain.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let abort = self.abort.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = task => {}
                () = abort.cancelled() => {}
            }
        });
    }

    /// Connection tasks still running.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no connection task is running.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Start draining and wait for the tasks, at most `timeout`.
    pub async fn run(&self, timeout: Duration) -> DrainOutcome {
        self.draining.cancel();
        self.tasks.close();
        if tokio::time::timeout(timeout, self.tasks.wait())
            .await
            .is_ok()
        {
            return DrainOutcome::Clean;
        }
        let left = self.tasks.len();
        self.abort.cancel();
        self.tasks.wait().await;
        DrainOutcome::Forced(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_that_obey_draining_end_cleanly() {
        let drain = Drain::new();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let draining = drain.draining().clone();
        drain.spawn(async move {
            draining.cancelled().await;
            done_tx.send(()).unwrap();
        });
        assert_eq!(
            drain.run(Duration::from_secs(3600)).await,
            DrainOutcome::Clean
        );
        done_rx.await.unwrap();
        assert!(drain.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn stragglers_are_dropped_at_the_timeout() {
        let drain = Drain::new();
        drain.spawn(std::future::pending());
        assert_eq!(drain.len(), 1);
        assert_eq!(
            drain.run(Duration::from_secs(10)).await,
            DrainOutcome::Forced(1)
        );
        assert!(drain.is_empty());
    }
}
