//! Which client connections this pod holds: id → (key, since, mailbox), and
//! whether each speaks `wsring.v1` (gets positioned pushes and catch-ups).
//!
//! Resets address connections by the router's connection id, pushes by routing key,
//! the admin API lists them all; the registry keeps an index for each so none of
//! them scans every connection. A connection is in the registry exactly as long
//! as its [`Registration`] lives (dropping it removes the entry), so a task that
//! ends for any reason, panics included, never leaves a stale id behind.
//!
//! Connection ids are unique per router, but two connections may still share one
//! (a router restarted under the same id, or two direct connections naming
//! themselves): entries are keyed by a local serial, and a reset for an id closes
//! every connection that carries it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use wsring_core::resume::Position;

use crate::mailbox::{CatchUp, Mailbox};

/// One open connection, as listed by `GET /v1/connections`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionInfo {
    /// Connection id (`x-wsring-conn`, or a local id for direct connections).
    pub id: String,
    /// Routing key (decoded).
    pub key: String,
    /// When the upgrade completed, RFC 3339 UTC with milliseconds.
    pub since: String,
}

#[derive(Debug)]
struct Entry {
    id: Arc<str>,
    key: Arc<str>,
    since: SystemTime,
    mailbox: Arc<Mailbox>,
    /// A `wsring.v1` connection: pushes carry their position.
    positioned: bool,
}

#[derive(Debug, Default)]
struct Inner {
    conns: HashMap<u64, Entry>,
    by_id: HashMap<Arc<str>, Vec<u64>>,
    by_key: HashMap<Arc<str>, HashSet<u64>>,
}

/// The connection table of one pod; cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    next_serial: AtomicU64,
}

/// Membership of one connection in the [`Registry`]; dropping it unregisters.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<Registry>,
    serial: u64,
    mailbox: Arc<Mailbox>,
}

impl Registration {
    /// The connection's inbox (close orders and pushes).
    pub fn mailbox(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove(self.serial);
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A process-unique number, used for local connection ids.
    pub fn next_local_number(&self) -> u64 {
        self.next_serial.fetch_add(1, Ordering::Relaxed)
    }

    /// Add a connection; it stays registered until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, id: &str, key: &str) -> Registration {
        self.insert(id, key, false)
    }

    /// Add a `wsring.v1` connection (positioned pushes, catch-ups).
    pub fn register_positioned(self: &Arc<Self>, id: &str, key: &str) -> Registration {
        self.insert(id, key, true)
    }

    fn insert(self: &Arc<Self>, id: &str, key: &str, positioned: bool) -> Registration {
        let serial = self.next_local_number();
        let mailbox = Arc::new(Mailbox::new());
        let id: Arc<str> = Arc::from(id);
        let mut inner = self.lock();
        // Share one allocation per distinct key between the index and the entries.
        let key: Arc<str> = match inner.by_key.get_key_value(key) {
            Some((existing, _)) => existing.clone(),
            None => Arc::from(key),
        };
        inner.by_id.entry(id.clone()).or_default().push(serial);
        inner.by_key.entry(key.clone()).or_default().insert(serial);
        inner.conns.insert(
            serial,
            Entry {
                id,
                key,
                since: SystemTime::now(),
                mailbox: mailbox.clone(),
                positioned,
            },
        );
        drop(inner);
        Registration {
            registry: self.clone(),
            serial,
            mailbox,
        }
    }

    fn remove(&self, serial: u64) {
        let mut inner = self.lock();
        let Some(entry) = inner.conns.remove(&serial) else {
            return;
        };
        if let Some(serials) = inner.by_id.get_mut(&entry.id) {
            serials.retain(|s| *s != serial);
            if serials.is_empty() {
                inner.by_id.remove(&entry.id);
            }
        }
        if let Some(serials) = inner.by_key.get_mut(&entry.key) {
            serials.remove(&serial);
            if serials.is_empty() {
                inner.by_key.remove(&entry.key);
            }
        }
    }

    /// Order the connections with these ids closed; unknown ids are ignored.
    /// Returns how many connections got a new close order (a repeated reset adds none).
    pub fn close_ids<S: AsRef<str>>(&self, ids: &[S], code: u16, reason: &'static str) -> usize {
        let inner = self.lock();
        ids.iter()
            .filter_map(|id| inner.by_id.get(id.as_ref()))
            .flatten()
            .filter(|serial| inner.conns[serial].mailbox.close(code, reason))
            .count()
    }

    /// Order every connection closed (drain); returns how many got a new order.
    pub fn close_all(&self, code: u16, reason: &'static str) -> usize {
        let inner = self.lock();
        inner
            .conns
            .values()
            .filter(|e| e.mailbox.close(code, reason))
            .count()
    }

    /// Queue `message` on every connection of `key`; returns how many accepted it.
    pub fn push_to_key(&self, key: &str, message: &Message) -> usize {
        self.count_of_key(key, |e| e.mailbox.push(message.clone()).is_ok())
    }

    /// Queue a push stored at `at` on every connection of `key`: positioned
    /// for `wsring.v1` connections, plain for the others; returns how many
    /// accepted it.
    pub fn push_positioned(&self, key: &str, at: &Position, message: &Message) -> usize {
        self.count_of_key(key, |e| {
            if e.positioned {
                e.mailbox.push_positioned(at.clone(), message.clone())
            } else {
                e.mailbox.push(message.clone())
            }
            .is_ok()
        })
    }

    /// Tell the `wsring.v1` connections of `key` that its history reached
    /// `at` (a push another pod, or this one, stored); returns how many.
    pub fn catch_up(&self, key: &str, at: &Position) -> usize {
        self.count_of_key(key, |e| {
            if e.positioned {
                e.mailbox.catch_up(CatchUp::UpTo(at.clone()));
            }
            e.positioned
        })
    }

    /// Run `act` on every connection of `key`; how many it returned true for.
    fn count_of_key(&self, key: &str, act: impl Fn(&Entry) -> bool) -> usize {
        let inner = self.lock();
        let Some(serials) = inner.by_key.get(key) else {
            return 0;
        };
        serials
            .iter()
            .filter(|serial| act(&inner.conns[serial]))
            .count()
    }

    /// Tell every `wsring.v1` connection to check its history (after the
    /// announcements may have been missed); returns how many.
    pub fn catch_up_all(&self) -> usize {
        let inner = self.lock();
        inner
            .conns
            .values()
            .filter(|e| e.positioned)
            .inspect(|e| e.mailbox.catch_up(CatchUp::Everything))
            .count()
    }

    /// Queue `message` on every connection; returns how many accepted it.
    pub fn push_to_all(&self, message: &Message) -> usize {
        let inner = self.lock();
        inner
            .conns
            .values()
            .filter(|e| e.mailbox.push(message.clone()).is_ok())
            .count()
    }

    /// Every open connection, oldest first.
    pub fn list(&self) -> Vec<ConnectionInfo> {
        let inner = self.lock();
        let mut entries: Vec<(&u64, &Entry)> = inner.conns.iter().collect();
        entries.sort_by_key(|(serial, _)| **serial);
        entries
            .into_iter()
            .map(|(_, e)| ConnectionInfo {
                id: e.id.to_string(),
                key: e.key.to_string(),
                since: humantime::format_rfc3339_millis(e.since).to_string(),
            })
            .collect()
    }

    /// Number of open connections.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation above completes before anything can panic, so a poisoned
        // table is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::{CloseOrder, Command};

    fn close_order(registration: &Registration) -> Option<CloseOrder> {
        registration.mailbox().is_closing().then(|| {
            match futures_util::FutureExt::now_or_never(registration.mailbox().recv()) {
                Some(Command::Close(order)) => order,
                other => panic!("expected a close order, got {other:?}"),
            }
        })
    }

    #[test]
    fn close_ids_closes_exactly_the_listed_connections() {
        let registry = Registry::new();
        let a = registry.register("r-1", "k");
        let b = registry.register("r-2", "k");
        let c = registry.register("r-3", "other");
        assert_eq!(
            registry.close_ids(&["r-1", "r-3", "unknown"], 4001, "moved"),
            2
        );
        assert_eq!(
            close_order(&a),
            Some(CloseOrder {
                code: 4001,
                reason: "moved"
            })
        );
        assert_eq!(close_order(&b), None);
        assert!(close_order(&c).is_some());
        assert_eq!(
            registry.close_ids(&["r-1", "r-3"], 4001, "moved"),
            0,
            "idempotent"
        );
    }

    #[test]
    fn duplicate_ids_are_all_closed_and_unregistered_independently() {
        let registry = Registry::new();
        let first = registry.register("dup", "k");
        let second = registry.register("dup", "k");
        drop(first);
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.close_ids(&["dup"], 4001, "moved"), 1);
        assert!(second.mailbox().is_closing());
        drop(second);
        assert!(registry.is_empty());
        assert_eq!(registry.close_ids(&["dup"], 4001, "moved"), 0);
        assert_eq!(registry.push_to_key("k", &Message::text("x")), 0);
    }

    #[test]
    fn pushes_reach_only_the_key() {
        let registry = Registry::new();
        let a = registry.register("1", "k");
        let b = registry.register("2", "k");
        let c = registry.register("3", "z");
        assert_eq!(registry.push_to_key("k", &Message::text("hi")), 2);
        assert_eq!(registry.push_to_key("nobody", &Message::text("hi")), 0);
        for r in [&a, &b] {
            let got = futures_util::FutureExt::now_or_never(r.mailbox().recv());
            assert_eq!(got, Some(Command::Push(Message::text("hi"))));
        }
        assert!(futures_util::FutureExt::now_or_never(c.mailbox().recv()).is_none());
        assert_eq!(registry.push_to_all(&Message::text("all")), 3);
    }

    #[test]
    fn positioned_pushes_and_catch_ups_reach_only_v1_connections_of_the_key() {
        let registry = Registry::new();
        let plain = registry.register("1", "k");
        let v1 = registry.register_positioned("2", "k");
        let elsewhere = registry.register_positioned("3", "z");
        let at = Position {
            epoch: "e".into(),
            offset: 4,
        };
        assert_eq!(registry.push_positioned("k", &at, &Message::text("hi")), 2);
        let next = |r: &Registration| futures_util::FutureExt::now_or_never(r.mailbox().recv());
        assert_eq!(next(&plain), Some(Command::Push(Message::text("hi"))));
        assert_eq!(
            next(&v1),
            Some(Command::Positioned(at.clone(), Message::text("hi")))
        );
        assert_eq!(next(&elsewhere), None);
        assert_eq!(registry.catch_up("k", &at), 1);
        assert_eq!(next(&v1), Some(Command::CatchUp(CatchUp::UpTo(at))));
        assert_eq!(next(&plain), None);
        assert_eq!(registry.catch_up_all(), 2);
        assert_eq!(
            next(&elsewhere),
            Some(Command::CatchUp(CatchUp::Everything))
        );
    }

    #[test]
    fn list_shows_id_key_and_since() {
        let registry = Registry::new();
        let _a = registry.register("r-1", "ü key");
        let _b = registry.register("r-2", "k2");
        let list = registry.list();
        assert_eq!(list.len(), 2);
        assert_eq!(
            (list[0].id.as_str(), list[0].key.as_str()),
            ("r-1", "ü key")
        );
        assert_eq!(list[1].id, "r-2");
        assert!(
            list[0].since.ends_with('Z') && list[0].since.contains('T'),
            "{}",
            list[0].since
        );
    }
}
