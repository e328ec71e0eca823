//! The task of one open tunnel: wait for the client's side of the upgrade,
//! splice it with the pod end ([`crate::tunnel`]), and stop there when the
//! router closes the connection (reset timeout, end of the shutdown drain).
//!
//! The task lives as long as the connection, so its size is what an idle
//! connection costs the router. It is a future of its own, two explicit
//! stages, rather than an `async fn` around a `select!`, which kept the
//! arguments next to the futures they had moved into (measured with
//! `-Zprint-type-sizes`: 904 bytes for the task's future then, 256 now; the
//! task's whole allocation is 384 bytes instead of 1,024). It keeps nothing a
//! log line can compute when it is written: the connection id comes from the
//! registration, and the pod was named in the `upgraded` line.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use hyper::upgrade::OnUpgrade;
use tokio::sync::futures::OwnedNotified;
use wsring_core::conn_limit::Permit;

use crate::pod_link::{PodEnd, PodSplice};
use crate::registry::Registration;
use crate::tunnel::{raw_stream, Transferred};

pin_project_lite::pin_project! {
    /// One connection's tunnel, its registration and its place under the
    /// connection caps; both are released when the task ends.
    pub struct TunnelTask {
        stage: Stage,
        #[pin]
        closed_by_router: OwnedNotified,
        registration: Registration,
        permit: Option<Permit>,
    }
}

/// Where a tunnel is.
enum Stage {
    /// Until hyper has sent the pod's 101 and gives the client's stream back.
    Upgrading {
        client: OnUpgrade,
        /// Taken when the client's stream is there.
        pod: Option<PodEnd>,
    },
    /// Moving bytes.
    Splicing(PodSplice),
}

impl TunnelTask {
    /// The task for the connection whose client side is `client` (completed
    /// once hyper has sent the 101) and whose pod end is `pod`.
    pub fn new(
        client: OnUpgrade,
        pod: PodEnd,
        registration: Registration,
        permit: Option<Permit>,
    ) -> Self {
        TunnelTask {
            stage: Stage::Upgrading {
                client,
                pod: Some(pod),
            },
            closed_by_router: registration.cancelled(),
            registration,
            permit,
        }
    }
}

impl Future for TunnelTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.closed_by_router.poll(cx).is_ready() {
            tracing::debug!(conn = %this.registration.id(), "tunnel closed by the router");
            return Poll::Ready(());
        }
        match ready!(this.stage.poll(cx)) {
            Ok(moved) => tracing::debug!(
                conn = %this.registration.id(),
                to_pod = moved.to_pod,
                to_client = moved.to_client,
                "tunnel closed"
            ),
            Err(error) => {
                tracing::debug!(conn = %this.registration.id(), %error, "tunnel failed")
            }
        }
        Poll::Ready(())
    }
}

impl Stage {
    /// Upgrade, then splice until both directions are finished or one fails.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Transferred>> {
        loop {
            match self {
                Stage::Upgrading { client, pod } => {
                    let upgraded = ready!(Pin::new(client).poll(cx)).map_err(io::Error::other)?;
                    let (client, client_early) = raw_stream(upgraded)?;
                    let pod = pod.take().expect("the pod end is taken once");
                    *self = Stage::Splicing(pod.splice(client, client_early)?);
                }
                Stage::Splicing(splice) => return Pin::new(splice).poll(cx),
            }
        }
    }
}
