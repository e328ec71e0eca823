//! The open-files limit a proxy under test needs: raised before its children
//! start (they inherit it), and the connection count that fits it. Shared by
//! the idle-memory benchmark and the soak.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

use crate::error::Error;

/// Descriptors a proxy needs besides its tunnels (listeners, admin, logs, epoll, …).
const SPARE_FDS: u64 = 512;

/// Raise the open-files soft limit to what `connections` need at
/// `fds_per_connection` descriptors each in the proxy (2 when both sides of a
/// proxied connection are sockets of its own), raising the hard limit too
/// when privileged; children inherit it. Returns the soft limit now in force.
pub fn raise_nofile(connections: usize, fds_per_connection: u64) -> Result<u64, Error> {
    let get = || {
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|source| Error::Limit {
            call: "getrlimit(NOFILE)",
            source,
        })
    };
    let wanted = (connections as u64) * fds_per_connection + SPARE_FDS;
    let (soft, hard) = get()?;
    if hard < wanted && setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_ok() {
        return Ok(wanted);
    }
    let target = hard.min(wanted.max(soft));
    if target > soft {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(|source| Error::Limit {
            call: "setrlimit(NOFILE)",
            source,
        })?;
    }
    let (soft, _) = get()?;
    Ok(soft)
}

/// The most connections a proxy can hold with `nofile` descriptors at
/// `fds_per_connection` each, plus spares.
pub fn fit_nofile(connections: usize, nofile: u64, fds_per_connection: u64) -> usize {
    let fit = nofile.saturating_sub(SPARE_FDS) / fds_per_connection.max(1);
    connections.min(usize::try_from(fit).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_the_descriptor_limit() {
        assert_eq!(fit_nofile(10_000, 1_048_576, 2), 10_000);
        assert_eq!(fit_nofile(10_000, 20_000, 2), 9_744);
        assert_eq!(fit_nofile(10_000, 20_000, 1), 10_000);
        assert_eq!(fit_nofile(10, 100, 2), 0);
    }
}
