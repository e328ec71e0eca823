//! The two steps of a graceful shutdown, the same in the router and ws-pod
//! (feature `shutdown`; docs/interfaces.md, `--shutdown-delay-ms`).
//!
//! 1. [`Shutdown::begin`]: readiness goes false (`/readyz` answers 503) while
//!    connections are still served, so load balancers and the ring let go of
//!    the process first.
//! 2. [`Shutdown::start_draining`]: after the shutdown delay the listener
//!    closes and open connections are drained.
//!
//! Both steps are [`CancellationToken`]s: cheap to clone into every task,
//! checked without waiting, or awaited.

use tokio_util::sync::CancellationToken;

/// Where a process is in its shutdown; clones share the state.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Cancelled when shutdown begins: not ready, still serving.
    begun: CancellationToken,
    /// Cancelled when the drain starts: stop accepting, close what is open.
    draining: CancellationToken,
}

impl Shutdown {
    /// Serving and ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Step 1: readiness goes false; connections are still served.
    pub fn begin(&self) {
        self.begun.cancel();
    }

    /// Whether shutdown has begun (then `/readyz` answers 503).
    pub fn has_begun(&self) -> bool {
        self.begun.is_cancelled()
    }

    /// Step 2 (implies step 1): stop accepting and drain open connections.
    pub fn start_draining(&self) {
        self.begun.cancel();
        self.draining.cancel();
    }

    /// Cancelled once the drain starts; connection tasks await it to close.
    pub fn draining(&self) -> &CancellationToken {
        &self.draining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beginning_stops_readiness_and_draining_implies_it() {
        let shutdown = Shutdown::new();
        let seen_by_a_task = shutdown.clone();
        assert!(!seen_by_a_task.has_begun());
        shutdown.begin();
        assert!(seen_by_a_task.has_begun());
        assert!(!seen_by_a_task.draining().is_cancelled());

        let other = Shutdown::new();
        other.start_draining();
        assert!(other.has_begun());
        assert!(other.draining().is_cancelled());
    }
}
