//! Scale events and what they should do to the clients.
//!
//! The schedule alternates adding a pod and stopping the newest one
//! gracefully; with `--crash` every second removal is a `kill -9` instead;
//! with `--redis-failover` every fifth event (the third of each five) kills
//! the Redis primary instead of changing the ring.
//! For each event the controller snapshots which pod every client is on and
//! the router's ring before and after; [`needed`] is the set of clients whose
//! owner changed, and [`attribute`] sorts the closes clients saw in the
//! event's window into expected (4001 on a moved client, or the crash taking
//! its clients down) and unexpected ones.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use wsring_core::protocol::CLOSE_RING_MOVED;
use wsring_core::Ring;

use super::fleet::{key, Close};

/// One membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    /// `POST /pods`: a new pod joins the ring.
    Add,
    /// `DELETE /pods/{newest}?mode=graceful`: it leaves the ring, then drains.
    Graceful,
    /// `DELETE /pods/{newest}?mode=crash`: SIGKILL, the ring follows.
    Crash,
    /// SIGKILL of the Redis primary; the Sentinel promotes a replica. The
    /// ring stays as it is: no client may be closed.
    RedisFailover,
}

impl Kind {
    /// The `n`-th event (from 0): add, remove, add, remove, … where with
    /// `crash` every second removal is a crash, and with `failover` the
    /// third of every five events is a Redis failover.
    pub fn nth(n: usize, crash: bool, failover: bool) -> Kind {
        let scale = if failover {
            if n % 5 == 2 {
                return Kind::RedisFailover;
            }
            // Failovers before this event (at 2, 7, 12, …) are not scale events.
            n - (n + 2) / 5
        } else {
            n
        };
        match scale % 4 {
            0 | 2 => Kind::Add,
            3 if crash => Kind::Crash,
            _ => Kind::Graceful,
        }
    }
}

/// Clients (by index) connected in `pods` whose key's owner differs between `before` and `after`.
pub fn needed(pods: &[Option<String>], before: &Ring, after: &Ring) -> BTreeSet<usize> {
    pods.iter()
        .enumerate()
        .filter(|(_, pod)| pod.is_some())
        .filter(|(i, _)| {
            let k = key(*i);
            before.owner(&k).map(|m| &m.name) != after.owner(&k).map(|m| &m.name)
        })
        .map(|(i, _)| i)
        .collect()
}

/// Clients connected in `pods` that are not on their owner under `ring`.
pub fn misplaced(pods: &[Option<String>], ring: &Ring) -> usize {
    pods.iter()
        .enumerate()
        .filter(|(i, pod)| {
            pod.as_deref()
                .is_some_and(|p| ring.owner(&key(*i)).map(|m| m.name.as_str()) != Some(p))
        })
        .count()
}

/// The closes of one event's window, sorted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribution {
    /// Moved clients closed with 4001 (the reset reached them through Redis).
    pub closes_4001: usize,
    /// Moved clients closed some other way (router's own close, 1001, no close frame).
    pub moved_other_close: usize,
    /// Clients of a crashed pod that lost their connection (expected).
    pub crash_closes: usize,
    /// Closes of clients whose key did not move: must never happen.
    pub unexpected: usize,
    /// Moved clients that were never closed in the window.
    pub missed: usize,
}

/// Sort `closes` (one event's window) against the `needed` set; `crash` makes
/// any close of a moved client expected whatever its code.
pub fn attribute(needed: &BTreeSet<usize>, closes: &[Close], crash: bool) -> Attribution {
    let mut a = Attribution::default();
    let mut seen: HashMap<usize, usize> = HashMap::new();
    for c in closes {
        *seen.entry(c.client).or_default() += 1;
        if !needed.contains(&c.client) {
            a.unexpected += 1;
        } else if crash {
            a.crash_closes += 1;
        } else if c.code == Some(CLOSE_RING_MOVED) {
            a.closes_4001 += 1;
        } else {
            a.moved_other_close += 1;
        }
    }
    a.missed = needed.iter().filter(|i| !seen.contains_key(i)).count();
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(version: u64, names: &[&str]) -> Ring {
        wsring_core::testkit::ring(version, 64, names)
    }

    fn close(client: usize, code: Option<u16>) -> Close {
        Close {
            client,
            pod: "p".into(),
            code,
        }
    }

    #[test]
    fn schedule_alternates_and_crashes_every_second_removal() {
        let plain: Vec<Kind> = (0..4).map(|n| Kind::nth(n, false, false)).collect();
        assert_eq!(
            plain,
            [Kind::Add, Kind::Graceful, Kind::Add, Kind::Graceful]
        );
        let crashy: Vec<Kind> = (0..5).map(|n| Kind::nth(n, true, false)).collect();
        assert_eq!(
            crashy,
            [Kind::Add, Kind::Graceful, Kind::Add, Kind::Crash, Kind::Add]
        );
        let failing: Vec<Kind> = (0..10).map(|n| Kind::nth(n, true, true)).collect();
        assert_eq!(
            failing,
            [
                Kind::Add,
                Kind::Graceful,
                Kind::RedisFailover,
                Kind::Add,
                Kind::Crash,
                Kind::Add,
                Kind::Graceful,
                Kind::RedisFailover,
                Kind::Add,
                Kind::Crash,
            ]
        );
    }

    #[test]
    fn needed_is_exactly_the_connected_clients_whose_owner_changed() {
        let (three, four) = (ring(1, &["a", "b", "c"]), ring(2, &["a", "b", "c", "d"]));
        let mut pods: Vec<Option<String>> = (0..400)
            .map(|i| Some(three.owner(&key(i)).unwrap().name.clone()))
            .collect();
        pods[0] = None;
        let moved = needed(&pods, &three, &four);
        for (i, pod) in pods.iter().enumerate() {
            let changes = four.owner(&key(i)).unwrap().name != three.owner(&key(i)).unwrap().name;
            assert_eq!(moved.contains(&i), pod.is_some() && changes, "client {i}");
        }
        assert!(moved
            .iter()
            .all(|i| four.owner(&key(*i)).unwrap().name == "d"));
        assert!(!moved.is_empty());
        assert_eq!(misplaced(&pods, &three), 0);
        assert_eq!(misplaced(&pods, &four), moved.len());
    }

    #[test]
    fn closes_are_sorted_into_expected_and_unexpected() {
        let needed: BTreeSet<usize> = [1, 2, 3, 4].into();
        let closes = [
            close(1, Some(4001)),
            close(2, Some(4001)),
            close(3, None),
            close(9, Some(1001)),
        ];
        assert_eq!(
            attribute(&needed, &closes, false),
            Attribution {
                closes_4001: 2,
                moved_other_close: 1,
                crash_closes: 0,
                unexpected: 1,
                missed: 1,
            }
        );
        let crash = attribute(&needed, &closes, true);
        assert_eq!(
            (crash.crash_closes, crash.closes_4001, crash.unexpected),
            (3, 0, 1)
        );
    }
}
