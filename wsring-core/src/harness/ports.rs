//! Free loopback ports for children and servers started on one machine, and
//! the bounded wait until something accepts connections on one.
//!
//! A port is picked here and bound by a child a moment later, so something
//! else can take it in between. Picking with a bind to port 0 makes that
//! likely under load: the kernel hands out ports from its ephemeral range
//! (`net.ipv4.ip_local_port_range`), the same range every outgoing
//! connection's source port and every other bind to port 0 comes from, and
//! a test suite opens thousands of connections while it starts children.
//! So ports come from a pool just below that range, which the kernel never
//! gives out by itself: each process walks the pool from its own offset
//! (derived from its pid, so the test process and the `wsring dev` it
//! starts do not walk the same ports), never hands out a port twice, and
//! skips ports it cannot bind.

use std::net::{SocketAddr, TcpListener};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::Error;

/// How often [`wait_for_port`] tries to connect.
const POLL: Duration = Duration::from_millis(20);

/// Ports in the pool below the ephemeral range.
const POOL_SIZE: u16 = 10_000;

/// Below this the pool would reach ports that services commonly listen on;
/// with an ephemeral range starting this low the kernel's port 0 is used
/// instead.
const POOL_FLOOR: u16 = 10_000;

/// Where the kernel says its ephemeral range is.
const EPHEMERAL_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// How many pool ports [`free_port`] tries before it gives up.
const TRIES: u32 = 1_000;

/// This process's walk over the pool: the pool, and how many ports it has
/// handed out or skipped.
struct PortWalk {
    pool: Option<Range<u16>>,
    offset: u32,
    next: AtomicU32,
}

impl PortWalk {
    fn new() -> Self {
        let pool = std::fs::read_to_string(EPHEMERAL_RANGE)
            .ok()
            .and_then(|range| pool_below(&range));
        // Knuth's multiplicative hash spreads neighbouring pids (a test and
        // the launcher it spawned) far apart in the pool.
        let offset = std::process::id().wrapping_mul(2_654_435_761);
        PortWalk {
            pool,
            offset,
            next: AtomicU32::new(0),
        }
    }

    /// The next port of the walk that can be bound right now.
    fn free_port(&self) -> Result<u16, Error> {
        let Some(pool) = &self.pool else {
            return kernel_port();
        };
        (0..TRIES)
            .map(|_| self.next_port(pool))
            .find(|port| bindable(*port))
            .ok_or_else(|| {
                Error::NoFreePort(format!(
                    "none of {TRIES} ports tried in {}..{} could be bound",
                    pool.start, pool.end
                ))
            })
    }

    /// The next port of the walk, never one handed out before by this
    /// process (until the whole pool has been walked).
    fn next_port(&self, pool: &Range<u16>) -> u16 {
        let len = u64::from(pool.end - pool.start);
        let step = self.next.fetch_add(1, Ordering::Relaxed);
        let index = (u64::from(self.offset) + u64::from(step)) % len;
        pool.start + u16::try_from(index).expect("index below the pool's u16 length")
    }
}

/// The pool just below an ephemeral range written as `LOW<whitespace>HIGH`;
/// `None` when unreadable or when it would reach below [`POOL_FLOOR`].
fn pool_below(ephemeral_range: &str) -> Option<Range<u16>> {
    let low: u16 = ephemeral_range.split_whitespace().next()?.parse().ok()?;
    let start = low.checked_sub(POOL_SIZE)?;
    (start >= POOL_FLOOR).then_some(start..low)
}

/// This process's one walk, started on first use.
fn walk() -> &'static PortWalk {
    static WALK: OnceLock<PortWalk> = OnceLock::new();
    WALK.get_or_init(PortWalk::new)
}

/// Whether `port` can be bound on loopback right now.
fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A free loopback TCP port for a child that must be told its port before
/// it starts: from the pool below the ephemeral range (see the module
/// overview), or, where that range leaves no room, from the kernel's port 0.
pub fn free_port() -> Result<u16, Error> {
    walk().free_port()
}

/// A port bound to port 0 on loopback, read and released.
fn kernel_port() -> Result<u16, Error> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| Error::NoFreePort(e.to_string()))
}

/// `127.0.0.1:PORT` on a [`free_port`].
pub fn free_addr() -> Result<SocketAddr, Error> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}

/// Wait until something accepts TCP connections on `addr`, at most `within`:
/// how a caller knows a freshly spawned server is up.
pub async fn wait_for_port(addr: SocketAddr, within: Duration) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if tokio::time::Instant::now() > deadline {
            return Err(Error::NotListening {
                addr,
                waited: within,
            });
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_lies_just_below_the_ephemeral_range() {
        assert_eq!(pool_below("32768\t60999\n"), Some(22_768..32_768));
        assert_eq!(pool_below("49152 65535"), Some(39_152..49_152));
    }

    #[test]
    fn no_pool_where_it_would_reach_well_known_ports_or_the_range_is_unreadable() {
        assert_eq!(pool_below("1024 65535"), None);
        assert_eq!(pool_below("19999 60999"), None);
        assert_eq!(pool_below(""), None);
        assert_eq!(pool_below("low high"), None);
    }

    #[test]
    fn a_process_never_hands_out_a_port_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn a_walk_covers_its_pool_once_even_from_the_largest_offset() {
        let pool = 20_000..20_010; // 2^32 is no multiple of its length
        let walk = PortWalk {
            pool: Some(pool.clone()),
            offset: u32::MAX - 2,
            next: AtomicU32::new(0),
        };
        let mut ports: Vec<u16> = (0..10).map(|_| walk.next_port(&pool)).collect();
        ports.sort_unstable();
        assert_eq!(ports, pool.collect::<Vec<_>>());
    }

    #[test]
    fn pool_ports_are_outside_the_kernels_ephemeral_range() {
        let range = std::fs::read_to_string(EPHEMERAL_RANGE).unwrap();
        for _ in 0..50 {
            let port = free_port().unwrap();
            match pool_below(&range) {
                Some(pool) => assert!(pool.contains(&port), "{port} not in {pool:?}"),
                // This machine's range leaves no room: the kernel's port 0.
                None => assert!(port > 0),
            }
        }
    }

    #[test]
    fn a_port_in_use_is_skipped() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let walk = PortWalk {
            pool: Some(taken_port..taken_port.saturating_add(16)),
            offset: 0,
            next: AtomicU32::new(0),
        };
        let port = walk.free_port().unwrap();
        assert_ne!(port, taken_port);
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
