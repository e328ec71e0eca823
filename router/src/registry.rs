//! Every live tunnel of this router: who it is, which pod it is on, how to stop it.
//!
//! A connection is registered when it is routed (see
//! [`crate::state::Shared::route`]) and deregistered when its [`Registration`]
//! is dropped, whether the tunnel ended normally, failed or was aborted. Ring
//! changes walk the registry to find the connections whose owner moved
//! ([`Registry::mark_moved`]); each is marked with the ring version that moved
//! it, so it is reset at most once however many rings follow.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use wsring_core::Ring;

/// Connections that moved away from one pod: one reset message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetBatch {
    /// The old owner, whose channel gets the message.
    pub pod: String,
    /// Connection ids (`{router-id}-{n}`), in registration order.
    pub ids: Vec<String>,
}

/// A live connection as shown by `GET /v1/connections`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ConnectionInfo {
    /// `{router-id}-{n}`, as sent to the pod in `x-wsring-conn`.
    pub id: String,
    /// Decoded routing key.
    pub key: String,
    /// Pod the connection is tunnelled to.
    pub pod: String,
    /// Ring version used for the routing decision.
    #[serde(rename = "ringVersion")]
    pub ring_version: u64,
    /// Seconds since the Unix epoch when it was routed.
    pub since: u64,
    /// Ring version whose change scheduled a reset of this connection, if any.
    #[serde(rename = "resetPending", skip_serializing_if = "Option::is_none")]
    pub reset_pending: Option<u64>,
}

/// Per-connection record; kept small, it exists for every open tunnel.
#[derive(Debug)]
struct Entry {
    key: Box<str>,
    pod: Box<str>,
    ring_version: u64,
    since: SystemTime,
    /// Set once a ring change moved the key away from `pod`.
    reset: Option<u64>,
    /// Wakes the tunnel task to close the connection (a stored permit if it is not waiting yet).
    cancel: Arc<Notify>,
}

/// The set of live connections of this router.
#[derive(Debug)]
pub struct Registry {
    router_id: String,
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
    active: Gauge,
}

impl Registry {
    /// An empty registry minting ids `{router_id}-{n}`; `active` tracks its size.
    pub fn new(router_id: impl Into<String>, active: Gauge) -> Self {
        Registry {
            router_id: router_id.into(),
            next: AtomicU64::new(1),
            entries: Mutex::new(HashMap::new()),
            active,
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The wire form of connection number `n`.
    pub fn id_string(&self, n: u64) -> String {
        format!("{}-{n}", self.router_id)
    }

    fn parse_id(&self, id: &str) -> Option<u64> {
        let (prefix, n) = id.rsplit_once('-')?;
        (prefix == self.router_id).then(|| n.parse().ok())?
    }

    /// Register a connection routed to `pod` with ring `ring_version`.
    pub fn register(self: &Arc<Self>, key: &str, pod: &str, ring_version: u64) -> Registration {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let cancel = Arc::new(Notify::new());
        self.entries().insert(
            n,
            Entry {
                key: key.into(),
                pod: pod.into(),
                ring_version,
                since: SystemTime::now(),
                reset: None,
                cancel: cancel.clone(),
            },
        );
        self.active.inc();
        Registration {
            registry: self.clone(),
            n,
            cancel,
        }
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// True when no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mark every connection whose owner differs under `ring` and that is not
    /// already awaiting a reset; return them grouped by old owner.
    pub fn mark_moved(&self, ring: &Ring) -> Vec<ResetBatch> {
        let mut entries = self.entries();
        let candidates: Vec<(String, &Entry)> = entries
            .iter()
            .filter(|(_, e)| e.reset.is_none())
            .map(|(n, e)| (self.id_string(*n), e))
            .collect();
        let batches = wsring_core::ring::moved_connections(
            candidates
                .iter()
                .map(|(id, e)| (id.as_str(), &*e.key, &*e.pod)),
            ring,
        );
        let mut out: Vec<ResetBatch> = batches
            .into_iter()
            .map(|(pod, mut ids)| {
                ids.sort_by_key(|id| self.parse_id(id));
                ResetBatch { pod, ids }
            })
            .collect();
        out.sort_by(|a, b| a.pod.cmp(&b.pod));
        for batch in &out {
            for id in &batch.ids {
                if let Some(entry) = self.parse_id(id).and_then(|n| entries.get_mut(&n)) {
                    entry.reset = Some(ring.version());
                }
            }
        }
        out
    }

    /// Close the connections of `batch` that are still open and still awaiting
    /// the reset scheduled by `ring_version`; returns how many were closed.
    pub fn force_close(&self, ids: &[String], ring_version: u64) -> usize {
        let entries = self.entries();
        ids.iter()
            .filter_map(|id| self.parse_id(id).and_then(|n| entries.get(&n)))
            .filter(|e| e.reset == Some(ring_version))
            .map(|e| e.cancel.notify_one())
            .count()
    }

    /// Close every live connection (end of the shutdown drain).
    pub fn cancel_all(&self) -> usize {
        self.entries()
            .values()
            .map(|e| e.cancel.notify_one())
            .count()
    }

    /// All live connections, oldest first.
    pub fn snapshot(&self) -> Vec<ConnectionInfo> {
        let entries = self.entries();
        let ordered: BTreeMap<u64, &Entry> = entries.iter().map(|(n, e)| (*n, e)).collect();
        ordered
            .into_iter()
            .map(|(n, e)| ConnectionInfo {
                id: self.id_string(n),
                key: e.key.to_string(),
                pod: e.pod.to_string(),
                ring_version: e.ring_version,
                since: e
                    .since
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                reset_pending: e.reset,
            })
            .collect()
    }

    fn deregister(&self, n: u64) {
        let mut entries = self.entries();
        if entries.remove(&n).is_some() {
            self.active.dec();
        }
    }
}

/// A registered connection; dropping it deregisters the connection.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    n: u64,
    cancel: Arc<Notify>,
}

impl Registration {
    /// The connection id sent to the pod (`x-wsring-conn`).
    pub fn id(&self) -> String {
        self.registry.id_string(self.n)
    }

    /// Resolves when the router decided to close this connection (reset
    /// timeout expired or shutdown drain over); owned, so that the tunnel
    /// task can hold it next to the registration.
    pub fn cancelled(&self) -> OwnedNotified {
        self.cancel.clone().notified_owned()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.deregister(self.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(version: u64, names: &[&str]) -> Ring {
        wsring_core::testkit::ring(version, 64, names)
    }

    fn registry() -> Arc<Registry> {
        Arc::new(Registry::new("r1", Gauge::default()))
    }

    /// Registers 300 connections routed with `before`, returns them.
    fn populate(reg: &Arc<Registry>, before: &Ring) -> Vec<(Registration, String)> {
        (0..300)
            .map(|i| {
                let key = format!("user-{i}");
                let owner = before.owner(&key).unwrap().name.clone();
                (reg.register(&key, &owner, before.version()), key)
            })
            .collect()
    }

    #[test]
    fn ids_are_unique_and_deregistered_on_drop() {
        let active = Gauge::default();
        let reg = Arc::new(Registry::new("r1", active.clone()));
        let a = reg.register("k", "p", 1);
        let b = reg.register("k", "p", 1);
        assert_eq!(a.id(), "r1-1");
        assert_eq!(b.id(), "r1-2");
        assert_eq!(active.get(), 2);
        drop(a);
        assert_eq!(reg.len(), 1);
        assert_eq!(reg.snapshot()[0].id, "r1-2");
        drop(b);
        assert!(reg.is_empty());
        assert_eq!(active.get(), 0);
    }

    #[test]
    fn moved_connections_form_one_batch_per_old_owner() {
        let reg = registry();
        let before = ring(1, &["a", "b", "c"]);
        let after = ring(2, &["a", "b"]);
        let conns = populate(&reg, &before);
        let batches = reg.mark_moved(&after);
        assert_eq!(batches.len(), 1, "only c lost keys: {batches:?}");
        assert_eq!(batches[0].pod, "c");
        let expected: Vec<String> = conns
            .iter()
            .filter(|(_, k)| before.owner(k).unwrap().name == "c")
            .map(|(r, _)| r.id())
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(batches[0].ids, expected);
        for info in reg.snapshot() {
            let moved = expected.contains(&info.id);
            assert_eq!(info.reset_pending, moved.then_some(2), "{info:?}");
        }
    }

    #[test]
    fn adding_a_member_batches_by_every_losing_owner() {
        let reg = registry();
        let before = ring(1, &["a", "b"]);
        let after = ring(2, &["a", "b", "c"]);
        let conns = populate(&reg, &before);
        let batches = reg.mark_moved(&after);
        let pods: Vec<&str> = batches.iter().map(|b| b.pod.as_str()).collect();
        assert_eq!(pods, ["a", "b"]);
        let total: usize = batches.iter().map(|b| b.ids.len()).sum();
        let expected = conns
            .iter()
            .filter(|(_, k)| after.owner(k).unwrap().name == "c")
            .count();
        assert_eq!(total, expected);
    }

    #[test]
    fn a_pending_connection_is_never_batched_twice() {
        let reg = registry();
        let before = ring(1, &["a", "b", "c"]);
        let _conns = populate(&reg, &before);
        let first = reg.mark_moved(&ring(2, &["a", "b"]));
        assert!(!first.is_empty());
        // Another change before the resets completed: the connections still on
        // `c` moved again, but they are already pending.
        let second = reg.mark_moved(&ring(3, &["a"]));
        let first_ids: Vec<&String> = first.iter().flat_map(|b| &b.ids).collect();
        for batch in &second {
            assert_ne!(batch.pod, "c");
            for id in &batch.ids {
                assert!(!first_ids.contains(&id), "{id} reset twice");
            }
        }
        assert!(reg.mark_moved(&ring(4, &["a"])).is_empty());
    }

    #[tokio::test]
    async fn force_close_cancels_only_still_pending_connections() {
        let reg = registry();
        let a = reg.register("k1", "p", 1);
        let b = reg.register("k2", "p", 1);
        let ids = vec![a.id(), b.id(), "r1-999".to_string(), "other-1".to_string()];
        {
            let mut entries = reg.entries();
            for e in entries.values_mut() {
                e.reset = Some(2);
            }
        }
        drop(b);
        assert_eq!(reg.force_close(&ids, 3), 0, "wrong ring version");
        assert_eq!(reg.force_close(&ids, 2), 1);
        // The permit is stored: the tunnel sees it even if it waits later.
        a.cancelled().await;
    }
}
