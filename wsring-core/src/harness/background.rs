//! A server (router or ws-pod) serving in this process's background until a
//! test tells it to stop, as a SIGTERM would, or drops it.
//!
//! The router's and ws-pod's serving loops both take the future that ends
//! them (`Router::serve`, `Pod::serve`); the test suites of both crates start
//! them the same way, signal the shutdown the same way and want the task
//! gone when a test ends early, so that lives here once.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Resolves when the server is asked to stop ([`BackgroundServer::signal_shutdown`],
/// or the [`BackgroundServer`] is dropped).
pub type StopSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A serving loop spawned on the runtime, with its stop signal; the task is
/// aborted when this is dropped.
pub struct BackgroundServer<E> {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), E>>>,
}

impl<E: Send + 'static> BackgroundServer<E> {
    /// Spawn `serve` with the signal that ends it, e.g.
    /// `BackgroundServer::spawn(|stop| router.serve(stop))`.
    pub fn spawn<S>(serve: impl FnOnce(StopSignal) -> S) -> Self
    where
        S: Future<Output = Result<(), E>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let signal: StopSignal = Box::pin(async move {
            let _ = stopped.await;
        });
        BackgroundServer {
            stop: Some(stop),
            task: Some(tokio::spawn(serve(signal))),
        }
    }

    /// Signal shutdown (what SIGTERM does) without waiting for the server to
    /// finish; a second call does nothing.
    pub fn signal_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            // A server that already ended has nobody listening: nothing to stop.
            let _ = stop.send(());
        }
    }

    /// Signal shutdown and wait for the serving loop to return its result.
    ///
    /// # Panics
    /// When the serving task panicked.
    pub async fn shutdown(mut self) -> Result<(), E> {
        self.signal_shutdown();
        let task = self.task.take().expect("the task is only taken here");
        task.await.expect("the serving task panicked")
    }
}

impl<E> Drop for BackgroundServer<E> {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_ends_the_serving_loop_and_returns_its_result() {
        let server = BackgroundServer::spawn(|stop| async move {
            stop.await;
            Err::<(), _>("stopped")
        });
        assert_eq!(server.shutdown().await, Err("stopped"));
    }

    #[tokio::test]
    async fn dropping_aborts_the_serving_loop() {
        let (_keep, never) = oneshot::channel::<()>();
        let (tx, gone) = oneshot::channel::<()>();
        let server = BackgroundServer::<()>::spawn(|_stop| async move {
            let _tx = tx; // dropped when the task is aborted
            let _ = never.await;
            Ok(())
        });
        drop(server);
        assert!(gone.await.is_err(), "the task was aborted");
    }
}
