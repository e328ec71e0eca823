//! Caps on open connections, in total and per client address, shared by the
//! router (client connections) and ws-pod (router connections and HTTP/2
//! streams).
//!
//! Without them nothing bounded a process's connections but the open-files
//! limit: about 10,000 idle tunnels used up a router's 20,000 descriptors, and
//! then it could not even accept its admin calls. A [`Permit`] holds a place
//! for as long as the connection lives and gives it back when dropped.
//!
//! The total defaults to what the open-files limit allows with room to spare
//! ([`from_open_files_limit`]); the per-client cap is off by default, since
//! behind an ingress controller or a load balancer every client has the same
//! address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Descriptors kept free for listeners, Redis, the API server, logs.
const RESERVED_DESCRIPTORS: usize = 256;

/// Which cap a refused connection hit (the `limit` label of the metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitHit {
    /// The process holds `--max-connections` already.
    Total,
    /// This client address holds `--max-connections-per-client` already.
    PerClient,
}

impl LimitHit {
    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitHit::Total => "total",
            LimitHit::PerClient => "per_client",
        }
    }
}

/// The caps (0: none) and the current counts.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_client: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// A place taken by one connection; given back on drop.
#[derive(Debug)]
pub struct Permit {
    limits: Arc<ConnectionLimits>,
    client: IpAddr,
}

impl ConnectionLimits {
    /// Caps of `max_total` connections and `max_per_client` per client
    /// address; 0 means no cap.
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_client,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// The total cap (0: none).
    pub fn max_total(&self) -> usize {
        self.max_total
    }

    /// Take a place for a connection from `client`, or say which cap is full.
    pub fn try_acquire(self: &Arc<Self>, client: IpAddr) -> Result<Permit, LimitHit> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if self.max_total > 0 && counts.total >= self.max_total {
            return Err(LimitHit::Total);
        }
        let mine = counts.per_client.get(&client).copied().unwrap_or(0);
        if self.max_per_client > 0 && mine >= self.max_per_client {
            return Err(LimitHit::PerClient);
        }
        counts.total += 1;
        *counts.per_client.entry(client).or_insert(0) += 1;
        Ok(Permit {
            limits: self.clone(),
            client,
        })
    }

    /// Connections holding a place now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.limits.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(n) = counts.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                counts.per_client.remove(&self.client);
            }
        }
    }
}

/// The default total cap: the soft open-files limit minus a reserve, divided
/// by the descriptors one connection holds (2 for a router tunnel over
/// HTTP/1.1, 1 otherwise); 0 (no cap) when the limit cannot be read.
pub fn from_open_files_limit(descriptors_per_connection: usize) -> usize {
    open_files_limit()
        .map(|limit| limit.saturating_sub(RESERVED_DESCRIPTORS) / descriptors_per_connection.max(1))
        .unwrap_or(0)
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits`.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn caps_hold_and_places_come_back() {
        let limits = ConnectionLimits::new(3, 2);
        let a1 = limits.try_acquire(ip(1)).unwrap();
        let _a2 = limits.try_acquire(ip(1)).unwrap();
        assert_eq!(limits.try_acquire(ip(1)).unwrap_err(), LimitHit::PerClient);
        let _b1 = limits.try_acquire(ip(2)).unwrap();
        assert_eq!(limits.try_acquire(ip(3)).unwrap_err(), LimitHit::Total);
        assert_eq!(limits.open(), 3);
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _a3 = limits.try_acquire(ip(1)).unwrap();
    }

    #[test]
    fn zero_means_no_cap() {
        let limits = ConnectionLimits::new(0, 0);
        let permits: Vec<_> = (0..1000)
            .map(|_| limits.try_acquire(ip(1)).unwrap())
            .collect();
        assert_eq!(limits.open(), 1000);
        drop(permits);
        assert_eq!(limits.open(), 0);
    }

    #[test]
    fn the_default_leaves_room_under_the_open_files_limit() {
        let limit = open_files_limit().expect("Linux reports its limits");
        let two = from_open_files_limit(2);
        assert!(
            two > 0 && two * 2 + RESERVED_DESCRIPTORS <= limit,
            "{two} of {limit}"
        );
        assert_eq!(from_open_files_limit(1), limit - RESERVED_DESCRIPTORS);
    }
}
