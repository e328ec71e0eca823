//! Test support shared by every crate's tests (feature `testkit`, dev-only):
//! rings of named members, raw bytes sent to a server that must hang up, and
//! the metric names a binary exports next to those docs/interfaces.md
//! documents. The processes and clients tests run (redis-server, free ports,
//! the admin HTTP client) are [`crate::harness`], which this feature includes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// A valid ring document of members `names` (addresses `NAME:8081`, admin
/// `NAME:9091`) with `vnodes` virtual nodes each.
pub fn ring_spec(version: u64, vnodes: u32, names: &[&str]) -> crate::RingSpec {
    let members = names
        .iter()
        .map(|n| crate::Member {
            name: n.to_string(),
            addr: format!("{n}:8081"),
            admin: format!("{n}:9091"),
        })
        .collect();
    crate::RingSpec::new(version, vnodes, None, members).expect("a valid test ring")
}

/// The ring built from [`ring_spec`].
pub fn ring(version: u64, vnodes: u32, names: &[&str]) -> crate::Ring {
    crate::Ring::build(ring_spec(version, vnodes, names)).expect("a valid test ring")
}

/// Send `request` on a fresh connection to `addr` and read everything until
/// the server hangs up. Bounded (10 s), so a server that never hangs up fails
/// the test instead of hanging it; a write cut short by the server's hang-up
/// (a request it refused half-way) is not an error.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    let _ = read.await.expect("the server must answer and hang up");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The metric names a Prometheus text exposition declares (its `# TYPE`
/// lines), spelled as a scraper sees them: counters with their `_total`.
pub fn exported_metric_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|declaration| declaration.split_once(' '))
        .map(|(name, kind)| match kind {
            "counter" => format!("{name}_total"),
            _ => name.to_string(),
        })
        .collect()
}

/// The metric names starting with `prefix` in the first column of a
/// Markdown table (rows like ``| `wsring_pod_connections_total` | …``).
pub fn documented_metric_names(markdown: &str, prefix: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| name.starts_with(prefix))
        .map(str::to_string)
        .collect()
}
