//! Graceful shutdown of the connection tasks.
//!
//! axum and tokio-tungstenite do not track WebSocket tasks, so ws-pod does: every
//! connection task is spawned through [`Drain::spawn`]. The shutdown order of
//! docs/interfaces.md is the pod's [`Shutdown`] (the same type as the
//! router's): readiness goes false first ([`Shutdown::begin`], read by
//! `/readyz`) while connections are still served for the shutdown delay; then
//! [`Drain::run`] starts draining (every connection closes with 1001 on
//! [`Shutdown::draining`]), and the tasks get at most the drain timeout to
//! finish their close handshakes before the stragglers are dropped.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use wsring_core::shutdown::Shutdown;

pin_project_lite::pin_project! {
    /// A connection task that stops where it is when the drain aborts.
    ///
    /// A future of its own, not `async move { select! { .. } }`: that block
    /// holds the task twice, once captured and once inside the select, so an
    /// idle connection cost twice its task's size (measured with
    /// `-Zprint-type-sizes`: 4.9 KiB instead of 2.5 KiB per connection).
    struct Abortable<F> {
        #[pin]
        task: F,
        #[pin]
        aborted: WaitForCancellationFutureOwned,
    }
}

impl<F: Future<Output = ()>> Future for Abortable<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.aborted.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        this.task.poll(cx)
    }
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every connection finished its close handshake in time.
    Clean,
    /// This many connections were still open at the timeout and were dropped.
    Forced(usize),
}

/// The set of connection tasks, the shutdown that ends them, and the abort
/// of those that outlive the drain timeout.
#[derive(Clone, Debug)]
pub struct Drain {
    /// The pod's shutdown steps; [`Drain::run`] starts the draining step.
    shutdown: Shutdown,
    /// Cancelled at the drain timeout: remaining tasks stop where they are.
    abort: CancellationToken,
    tasks: TaskTracker,
}

impl Drain {
    /// No tasks yet; `shutdown` is the one the tasks close on.
    pub fn new(shutdown: Shutdown) -> Self {
        Drain {
            shutdown,
            abort: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Run a connection task under this drain.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(Abortable {
            task,
            aborted: self.abort.clone().cancelled_owned(),
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
        self.shutdown.start_draining();
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
        let shutdown = Shutdown::new();
        let drain = Drain::new(shutdown.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let draining = shutdown.draining().clone();
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
        let drain = Drain::new(Shutdown::new());
        drain.spawn(std::future::pending());
        assert_eq!(drain.len(), 1);
        assert_eq!(
            drain.run(Duration::from_secs(10)).await,
            DrainOutcome::Forced(1)
        );
        assert!(drain.is_empty());
    }
}
