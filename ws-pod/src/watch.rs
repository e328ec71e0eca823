//! Deadlines on what a client sends.
//!
//! - Message timeout: once the first byte of a message (or of one of its
//!   fragments) has arrived, the whole message must arrive within
//!   `--message-timeout-ms`. Found in the security review: 100 tunnels each
//!   holding an unfinished 1,000 KiB fragmented message grew a pod from 75 to
//!   238 MB, for ever. A client past the deadline is closed with 1008.
//! - Idle timeout (`--idle-timeout-ms`, off by default: many apps have quiet
//!   clients): a connection that sends nothing at all, not even a ping, for
//!   that long is closed with 1001.
//!
//! tungstenite reassembles fragments out of sight, so the message deadline is
//! kept under it: [`Watched`] wraps the connection's byte stream and arms a
//! timer when bytes arrive while no message is in progress; the relay says
//! when a message is complete ([`MessageClock::done`]), which disarms it. An
//! idle connection holds no timer.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Whether part of a message has arrived but not the whole of it.
#[derive(Debug, Default)]
pub struct MessageClock {
    in_progress: AtomicBool,
}

impl MessageClock {
    /// A complete message (or control frame) was read: no deadline runs.
    pub fn done(&self) {
        self.in_progress.store(false, Ordering::Relaxed);
    }

    fn started(&self) -> bool {
        self.in_progress.swap(true, Ordering::Relaxed)
    }

    fn running(&self) -> bool {
        self.in_progress.load(Ordering::Relaxed)
    }
}

/// The error a [`Watched`] stream reports at the message deadline.
pub fn is_message_timeout(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::TimedOut && error.to_string().starts_with(MESSAGE_TIMEOUT_PREFIX)
}

const MESSAGE_TIMEOUT_PREFIX: &str = "message not finished within";

/// A client byte stream under the message deadline.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    clock: Arc<MessageClock>,
    limit: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Watched<S> {
    /// `inner`, with messages to be finished within `limit`.
    pub fn new(inner: S, clock: Arc<MessageClock>, limit: Duration) -> Self {
        Watched {
            inner,
            clock,
            limit,
            deadline: None,
        }
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.clock.running() {
            this.deadline = None;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && !this.clock.started() {
                    this.deadline = Some(Box::pin(tokio::time::sleep(this.limit)));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{MESSAGE_TIMEOUT_PREFIX} {:?}", this.limit),
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The deadlines the relay keeps for one connection.
#[derive(Clone, Debug, Default)]
pub struct Deadlines {
    /// Close a connection that sent nothing for this long (`None`: never).
    pub idle: Option<Duration>,
    /// The clock of the connection's [`Watched`] stream, if it has one.
    pub clock: Option<Arc<MessageClock>>,
}

impl Deadlines {
    /// A message or control frame arrived complete.
    pub fn message_done(&self) {
        if let Some(clock) = &self.clock {
            clock.done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn an_unfinished_message_times_out_and_a_finished_one_does_not() {
        let (mut client, server) = tokio::io::duplex(64);
        let clock = Arc::new(MessageClock::default());
        let mut watched = Watched::new(server, clock.clone(), Duration::from_secs(30));
        let mut buf = [0u8; 8];

        client.write_all(b"part").await.unwrap();
        assert_eq!(watched.read(&mut buf).await.unwrap(), 4);
        clock.done();
        // Nothing in progress: waiting for the next message has no deadline.
        let idle = tokio::time::timeout(Duration::from_secs(3600), watched.read(&mut buf)).await;
        assert!(idle.is_err(), "no deadline while no message is in progress");

        client.write_all(b"half").await.unwrap();
        assert_eq!(watched.read(&mut buf).await.unwrap(), 4);
        let err = watched.read(&mut buf).await.unwrap_err();
        assert!(is_message_timeout(&err), "{err}");
    }
}
