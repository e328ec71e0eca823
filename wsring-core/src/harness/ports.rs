//! Free loopback ports for children and servers started on one machine, and
//! the bounded wait until something accepts connections on one.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::Error;

/// How often [`wait_for_port`] tries to connect.
const POLL: Duration = Duration::from_millis(20);

/// A free loopback TCP port (bound, read, released), for a child that must
/// be told its port before it starts.
pub fn free_port() -> Result<u16, Error> {
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
