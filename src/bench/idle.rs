//! Idle-connection memory: what one open, silent WebSocket costs a proxy.
//!
//! For the router and for nginx in turn: read the proxy's resident set size
//! (`VmRSS`; for nginx master + workers), open `connections` WebSockets
//! through it and keep them open without sending anything, wait until the RSS
//! stops moving, read it again: (after − before) / connections. The handshake
//! is written by hand on a raw socket so the client holds nothing but the
//! socket, and every answer is checked (101, the accept hash and, for the
//! router, the `x-wsring-pod` header). The open count is cross-checked with
//! the router's and the pod's `*_active_connections` gauges. Kernel socket
//! buffers are not part of RSS (idle sockets hold next to none).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use wsring::procfs::{children_of, rss_kib, tree_rss_kib};

use super::setup::{self, Bench};

/// Handshakes in flight at once while opening connections.
const CONNECT_CONCURRENCY: usize = 128;
/// Connections opened (and closed) before the baseline, so one-time
/// allocations (first connection, thread-locals, pools) are not counted.
const WARMUP_CONNECTIONS: usize = 16;
/// RSS is settled when two samples this far apart differ by less than 1 %.
const SETTLE_STEP: Duration = Duration::from_millis(500);
/// Give up waiting for a settled RSS after this long.
const SETTLE_MAX: Duration = Duration::from_secs(10);
/// A fixed handshake key and its RFC 6455 accept value.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Memory per idle connection of one process (or process tree).
#[derive(Debug, Clone, Serialize)]
pub struct IdleRow {
    /// What was measured (`router`, `ws-pod (behind router)`, `nginx (master+N workers)`).
    pub process: String,
    /// Connections held open while measuring.
    pub connections: usize,
    /// Open connections the process itself reported, where it reports them.
    pub reported_open: Option<u64>,
    /// RSS before opening them, KiB.
    pub rss_before_kib: u64,
    /// Settled RSS with them open, KiB.
    pub rss_after_kib: u64,
    /// (after − before) / connections, KiB.
    pub kib_per_connection: f64,
}

/// Measure router, pod and nginx memory per idle connection.
pub async fn measure(bench: &mut Bench, connections: usize) -> anyhow::Result<Vec<IdleRow>> {
    let mut rows = Vec::new();
    let router_pid = bench.router.process.pid().context("router is gone")?;
    let pod_pid = bench.pods[0].process.pid().context("pod is gone")?;
    let pod_admin = bench.pods[0].admin;

    // Through the router.
    let router = bench.router.listen;
    drop(open_idle(router, WARMUP_CONNECTIONS, true).await?);
    wait_open(bench, pod_admin, 0).await?;
    let router_before = settled_rss(|| rss_kib(router_pid)).await?;
    let pod_before = settled_rss(|| rss_kib(pod_pid)).await?;
    let held = open_idle(router, connections, true).await?;
    let router_after = settled_rss(|| rss_kib(router_pid)).await?;
    let pod_after = settled_rss(|| rss_kib(pod_pid)).await?;
    bench.check_alive()?;
    let router_open = setup::active_connections(&bench.http, bench.router.admin)
        .await
        .ok();
    let pod_open = setup::active_connections(&bench.http, pod_admin).await.ok();
    check_count("router", router_open, connections)?;
    check_count("ws-pod", pod_open, connections)?;
    drop(held);
    wait_open(bench, pod_admin, 0).await?;
    rows.push(row(
        "router",
        connections,
        router_open,
        router_before,
        router_after,
    ));
    rows.push(row(
        "ws-pod (behind the router, informational)",
        connections,
        pod_open,
        pod_before,
        pod_after,
    ));

    // Through nginx.
    if let Some(nginx) = &bench.nginx {
        let (addr, pid) = (nginx.addr, nginx.process.pid().context("nginx is gone")?);
        drop(open_idle(addr, WARMUP_CONNECTIONS, false).await?);
        wait_open(bench, pod_admin, 0).await?;
        let before = settled_rss(|| tree_rss_kib(pid)).await?;
        let held = open_idle(addr, connections, false).await?;
        let after = settled_rss(|| tree_rss_kib(pid)).await?;
        bench.check_alive()?;
        let pod_open = setup::active_connections(&bench.http, pod_admin).await.ok();
        check_count("ws-pod behind nginx", pod_open, connections)?;
        drop(held);
        let workers = children_of(pid).len();
        rows.push(row(
            &format!("nginx (master + {workers} workers)"),
            connections,
            None,
            before,
            after,
        ));
        wait_open(bench, pod_admin, 0).await?;
    }
    Ok(rows)
}

fn row(process: &str, n: usize, open: Option<u64>, before: u64, after: u64) -> IdleRow {
    IdleRow {
        process: process.to_owned(),
        connections: n,
        reported_open: open,
        rss_before_kib: before,
        rss_after_kib: after,
        kib_per_connection: (after as f64 - before as f64) / n as f64,
    }
}

fn check_count(who: &str, reported: Option<u64>, expected: usize) -> anyhow::Result<()> {
    match reported {
        Some(n) if n as usize != expected => {
            bail!("{who} reports {n} open connections, expected {expected}")
        }
        None => tracing::warn!("{who}: no active-connections gauge; count not cross-checked"),
        _ => {}
    }
    Ok(())
}

/// Wait (up to 10 s) until the pod reports `n` open connections.
async fn wait_open(bench: &Bench, admin: SocketAddr, n: u64) -> anyhow::Result<()> {
    for _ in 0..100 {
        match setup::active_connections(&bench.http, admin).await {
            Ok(open) if open == n => return Ok(()),
            Err(_) => return Ok(()), // no gauge: nothing to wait for
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    bail!("the pod did not get to {n} open connections within 10 s")
}

/// Sample RSS until two samples [`SETTLE_STEP`] apart agree within 1 %.
async fn settled_rss(read: impl Fn() -> Result<u64, wsring::Error>) -> anyhow::Result<u64> {
    let deadline = tokio::time::Instant::now() + SETTLE_MAX;
    let mut last = read()?;
    loop {
        tokio::time::sleep(SETTLE_STEP).await;
        let now = read()?;
        if now.abs_diff(last) * 100 <= last || tokio::time::Instant::now() > deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// Open `n` idle WebSockets to `addr` (distinct keys) and return their sockets.
async fn open_idle(addr: SocketAddr, n: usize, want_pod: bool) -> anyhow::Result<Vec<TcpStream>> {
    let results: Vec<anyhow::Result<TcpStream>> = futures_util::stream::iter(0..n)
        .map(|i| handshake(addr, format!("idle-{i}"), want_pod))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let total = results.len();
    let mut held = Vec::with_capacity(total);
    let mut first_error = None;
    for r in results {
        match r {
            Ok(s) => held.push(s),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e.context(format!(
            "{} of {total} idle connections to {addr} failed",
            total - held.len()
        )));
    }
    Ok(held)
}

/// A WebSocket handshake on a raw socket, verified; the socket stays open.
async fn handshake(addr: SocketAddr, key: String, want_pod: bool) -> anyhow::Result<TcpStream> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let request = format!(
        "GET /?key={key} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let head_len = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok::<_, anyhow::Error>(end);
            }
            if buf.len() > 16 * 1024 || tcp.read_buf(&mut buf).await? == 0 {
                bail!("no complete response head");
            }
        }
    })
    .await
    .context("handshake timed out")??;
    let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
    check_upgrade_head(&head, want_pod).with_context(|| format!("{key} via {addr}"))?;
    if buf.len() > head_len + 4 {
        bail!("{key}: the server sent data on an idle connection");
    }
    Ok(tcp)
}

/// Check a (lower-cased) response head: 101, `upgrade: websocket`,
/// `connection: upgrade`, the right accept hash and, for the router, `x-wsring-pod`.
fn check_upgrade_head(head: &str, want_pod: bool) -> anyhow::Result<()> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !status.starts_with("http/1.1 101") {
        bail!("not upgraded: {status}");
    }
    let headers: Vec<(&str, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim()))
        .collect();
    let has = |name: &str, pred: &dyn Fn(&str) -> bool| {
        headers.iter().any(|(n, v)| *n == name && pred(v))
    };
    if !has("upgrade", &|v| v == "websocket") {
        bail!("101 without upgrade: websocket");
    }
    if !has("connection", &|v| {
        v.split(',').any(|t| t.trim() == "upgrade")
    }) {
        bail!("101 without connection: upgrade");
    }
    let accept = WS_ACCEPT.to_ascii_lowercase();
    if !has("sec-websocket-accept", &|v| v == accept) {
        bail!("wrong or missing sec-websocket-accept");
    }
    if want_pod && !has(wsring_core::protocol::HEADER_POD, &|v| !v.is_empty()) {
        bail!("101 without {}", wsring_core::protocol::HEADER_POD);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "http/1.1 101 switching protocols\r\nupgrade: websocket\r\n\
                        connection: upgrade\r\nsec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n\
                        x-wsring-pod: bench-0";

    #[test]
    fn a_proper_router_answer_passes() {
        check_upgrade_head(GOOD, true).unwrap();
    }

    #[test]
    fn missing_pieces_are_refused() {
        assert!(check_upgrade_head(&GOOD.replace("101", "502"), false).is_err());
        assert!(check_upgrade_head(&GOOD.replace("connection: upgrade", "x: y"), false).is_err());
        assert!(check_upgrade_head(&GOOD.replace("s3pp", "xxxx"), false).is_err());
        let no_pod = GOOD.replace("x-wsring-pod: bench-0", "");
        assert!(check_upgrade_head(&no_pod, true).is_err());
        check_upgrade_head(&no_pod, false).unwrap();
    }
}
