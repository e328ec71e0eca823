//! Resetting the connections a ring change moved.
//!
//! For each ring change the registry yields one [`ResetBatch`] per old owner
//! ([`crate::registry::Registry::mark_moved`]). [`Resets::dispatch`] publishes
//! each batch as one `reset` control message on the old owner's channel, then,
//! at the reset timeout, closes whatever is still open itself. The timer runs
//! whether or not Redis took the message, so a lost or unpublishable reset
//! never leaves a connection on a pod that no longer owns its key.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use wsring_core::protocol::{pod_channel, ControlMessage, MAX_RESET_IDS};

use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::registry::{Registry, ResetBatch};

/// How many recent reset events the dashboard can show.
const HISTORY: usize = 50;

/// One thing that happened to a reset batch, for the dashboard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetEvent {
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// Ring version that moved the connections.
    pub ring_version: u64,
    /// Old owner.
    pub pod: String,
    /// Connections concerned.
    pub connections: usize,
    /// `published`, `no subscriber` (the pod is gone), `publish failed`,
    /// `no redis` or `closed by router`.
    pub outcome: &'static str,
}

/// Publishes resets and enforces the reset timeout.
#[derive(Debug)]
pub struct Resets {
    publisher: Option<Publisher>,
    namespace: String,
    cluster: String,
    router_id: String,
    timeout: Duration,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    history: Mutex<VecDeque<ResetEvent>>,
}

impl Resets {
    /// Resets for this router; without a publisher every moved connection is
    /// closed by the router at the timeout.
    pub fn new(
        publisher: Option<Publisher>,
        (namespace, cluster): (&str, &str),
        router_id: &str,
        timeout: Duration,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Resets {
            publisher,
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
            router_id: router_id.to_string(),
            timeout,
            registry,
            metrics,
            tasks: TaskTracker::new(),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Recent reset events, oldest first.
    pub fn history(&self) -> Vec<ResetEvent> {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.iter().cloned().collect()
    }

    fn record(&self, ring_version: u64, pod: &str, connections: usize, outcome: &'static str) {
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(ResetEvent {
            at,
            ring_version,
            pod: pod.to_string(),
            connections,
            outcome,
        });
    }

    /// The control message and channel for one batch.
    pub fn message(&self, ring_version: u64, batch: &ResetBatch) -> (String, String) {
        (
            pod_channel(&self.namespace, &self.cluster, &batch.pod),
            ControlMessage::reset(ring_version, &self.router_id, batch.ids.clone()).to_json(),
        )
    }

    /// Publish `batches` (moved by ring `ring_version`) in the background and
    /// close the survivors at the reset timeout.
    pub fn dispatch(self: &Arc<Self>, ring_version: u64, batches: Vec<ResetBatch>) {
        if batches.is_empty() {
            return;
        }
        // A batch over MAX_RESET_IDS goes out as several messages to the same pod.
        let batches: Vec<ResetBatch> = batches
            .into_iter()
            .flat_map(|batch| {
                let pod = batch.pod;
                batch
                    .ids
                    .chunks(MAX_RESET_IDS)
                    .map(|ids| ResetBatch {
                        pod: pod.clone(),
                        ids: ids.to_vec(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let moved: usize = batches.iter().map(|b| b.ids.len()).sum();
        self.metrics.connections_reset.inc_by(moved as u64);
        let deadline = Instant::now() + self.timeout;
        let this = self.clone();
        self.tasks.spawn(async move {
            match &this.publisher {
                Some(publisher) => {
                    // Publishing may not delay the forced close past the deadline.
                    let done = AtomicUsize::new(0);
                    let publish = this.publish_all(publisher, ring_version, &batches, &done);
                    if tokio::time::timeout_at(deadline, publish).await.is_err() {
                        let late = batches.len() - done.load(Ordering::Relaxed);
                        this.metrics.reset_publish_errors.inc_by(late as u64);
                        tracing::warn!(
                            ring_version,
                            late,
                            "publishing resets outlasted the reset timeout"
                        );
                    }
                }
                None => {
                    for batch in &batches {
                        this.record(ring_version, &batch.pod, batch.ids.len(), "no redis");
                    }
                }
            }
            tokio::time::sleep_until(deadline).await;
            let mut closed = 0;
            for batch in &batches {
                let n = this.registry.force_close(&batch.ids, ring_version);
                if n > 0 {
                    this.record(ring_version, &batch.pod, n, "closed by router");
                }
                closed += n;
            }
            if closed > 0 {
                this.metrics.forced_closes.inc_by(closed as u64);
                tracing::info!(
                    ring_version,
                    closed,
                    "closed moved connections still open after the reset timeout"
                );
            }
        });
    }

    /// Publish every batch concurrently; `done` counts the finished ones
    /// (the caller gives up on the rest at the reset deadline).
    async fn publish_all(
        &self,
        publisher: &Publisher,
        ring_version: u64,
        batches: &[ResetBatch],
        done: &AtomicUsize,
    ) {
        let sends = batches.iter().map(|batch| async move {
            let (channel, payload) = self.message(ring_version, batch);
            // One retry: the first command after a broken connection fails
            // and makes the connection manager reconnect.
            let mut result = publisher.publish(&channel, &payload).await;
            if result.is_err() {
                result = publisher.publish(&channel, &payload).await;
            }
            done.fetch_add(1, Ordering::Relaxed);
            match result {
                Ok(0) => {
                    // Nobody subscribed: the old owner is gone (crashed or
                    // removed), so its connections are already closed or end
                    // with the router's own close at the timeout.
                    self.metrics.resets_published.inc();
                    self.record(ring_version, &batch.pod, batch.ids.len(), "no subscriber");
                    tracing::info!(
                        pod = %batch.pod,
                        %channel,
                        connections = batch.ids.len(),
                        ring_version,
                        "reset sent, but the pod does not listen (gone); the router closes these connections at the timeout"
                    );
                }
                Ok(receivers) => {
                    self.metrics.resets_published.inc();
                    self.record(ring_version, &batch.pod, batch.ids.len(), "published");
                    tracing::info!(
                        pod = %batch.pod,
                        %channel,
                        connections = batch.ids.len(),
                        receivers,
                        ring_version,
                        "published reset"
                    );
                }
                Err(error) => {
                    self.metrics.reset_publish_errors.inc();
                    self.record(ring_version, &batch.pod, batch.ids.len(), "publish failed");
                    tracing::warn!(
                        pod = %batch.pod,
                        %channel,
                        connections = batch.ids.len(),
                        %error,
                        "could not publish reset; the router closes these connections at the timeout"
                    );
                }
            }
        });
        futures_util::future::join_all(sends).await;
    }

    /// Wait for the pending reset timers (used by tests and on shutdown after
    /// the tunnels are gone, when they finish at once).
    pub async fn idle(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use prometheus_client::metrics::gauge::Gauge;

    fn resets(registry: Arc<Registry>, metrics: Arc<Metrics>) -> Arc<Resets> {
        Arc::new(Resets::new(
            None,
            ("apps", "prod"),
            "r1",
            Duration::from_millis(20),
            registry,
            metrics,
        ))
    }

    #[test]
    fn one_message_per_batch_on_the_old_owners_channel() {
        let registry = Arc::new(Registry::new("r1", Gauge::default()));
        let r = resets(registry, Arc::new(Metrics::new()));
        let batch = ResetBatch {
            pod: "chat-2".into(),
            ids: vec!["r1-4".into(), "r1-9".into()],
        };
        let (channel, payload) = r.message(8, &batch);
        assert_eq!(channel, "wsring:apps:prod:pod:chat-2");
        assert_eq!(
            ControlMessage::parse(payload.as_bytes()).unwrap(),
            ControlMessage::reset(8, "r1", vec!["r1-4".into(), "r1-9".into()])
        );
    }

    #[tokio::test]
    async fn without_redis_the_router_closes_moved_connections_at_the_timeout() {
        let registry = Arc::new(Registry::new("r1", Gauge::default()));
        let metrics = Arc::new(Metrics::new());
        let r = resets(registry.clone(), metrics.clone());
        let moved = registry.register("k1", "a", 1);
        let closed_meanwhile = registry.register("k2", "a", 1);
        let stays = registry.register("k3", "b", 1);
        let ring = wsring_core::Ring::build(
            wsring_core::RingSpec::new(
                2,
                8,
                None,
                vec![wsring_core::Member {
                    name: "b".into(),
                    addr: "b:1".into(),
                    admin: String::new(),
                }],
            )
            .unwrap(),
        )
        .unwrap();
        let batches = registry.mark_moved(&ring);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].ids, vec![moved.id(), closed_meanwhile.id()]);
        r.dispatch(2, batches);
        drop(closed_meanwhile);
        r.idle().await;
        assert_eq!(metrics.forced_closes.get(), 1);
        let outcomes: Vec<(&str, usize)> = r
            .history()
            .iter()
            .map(|e| (e.outcome, e.connections))
            .collect();
        assert_eq!(outcomes, [("no redis", 2), ("closed by router", 1)]);
        assert_eq!(metrics.connections_reset.get(), 2);
        // The moved connection got its close signal; the other one did not.
        assert!(moved.cancelled().now_or_never().is_some());
        assert!(stays.cancelled().now_or_never().is_none());
    }
}
