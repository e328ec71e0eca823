//! Benchmark results as markdown tables (for the README) or JSON (for tools).
//!
//! Targets from the issue are checked here so every run says plainly whether
//! the router met them: ≥ 1.0× nginx throughput, p99 ≤ nginx, ≤ 8 KiB per
//! idle connection.

use std::fmt::Write as _;

use serde::Serialize;

use super::idle::IdleRow;
use super::load::LoadResult;

/// Router memory budget per idle connection (KiB).
pub const IDLE_TARGET_KIB: f64 = 8.0;

/// The machine and the way it was shared, printed above the tables.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// CPUs available to this process.
    pub cpus: usize,
    /// Threads of the load client (one current-thread runtime each).
    pub client_threads: usize,
    /// Router runtime worker threads (tokio default: one per CPU).
    pub router_workers: usize,
    /// nginx `worker_processes`.
    pub nginx_workers: usize,
    /// `nginx -v`, if nginx ran.
    pub nginx_version: Option<String>,
}

/// One target of the throughput benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputRow {
    /// `direct`, `router` or `nginx`.
    pub target: String,
    /// Connections that completed the handshake.
    pub connected: usize,
    /// Round trips completed in the window.
    pub round_trips: u64,
    /// Round trips per second.
    pub msgs_per_sec: f64,
    /// Latency percentiles and extremes, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Slowest round trip, µs.
    pub max_us: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Failed connects, transport errors, timeouts.
    pub errors: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
}

impl ThroughputRow {
    /// Summarise one load run.
    pub fn new(target: &str, r: &LoadResult) -> Self {
        let h = &r.latency_us;
        let q = |p: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(p)
            }
        };
        ThroughputRow {
            target: target.to_owned(),
            connected: r.connected,
            round_trips: r.round_trips,
            msgs_per_sec: r.per_second(),
            p50_us: q(0.50),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
            errors: r.errors,
            first_error: r.first_error.clone(),
        }
    }
}

/// Settings and results of `wsring bench throughput`.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    /// Where it ran.
    pub environment: Environment,
    /// Concurrent connections per target.
    pub connections: usize,
    /// Measured window, seconds.
    pub duration_secs: u64,
    /// Unmeasured warm-up, seconds.
    pub warmup_secs: u64,
    /// Payload bytes per message.
    pub message_bytes: usize,
    /// ws-pods behind every target.
    pub pods: usize,
    /// One row per target, in the order they ran.
    pub rows: Vec<ThroughputRow>,
    /// router msgs/s ÷ nginx msgs/s (target ≥ 1.0).
    pub router_vs_nginx_throughput: Option<f64>,
    /// router p99 ÷ nginx p99 (target ≤ 1.0).
    pub router_vs_nginx_p99: Option<f64>,
    /// router msgs/s ÷ direct msgs/s (cost of the extra hop).
    pub router_vs_direct_throughput: Option<f64>,
}

impl ThroughputReport {
    /// Fill in the ratios from the rows.
    pub fn with_ratios(mut self) -> Self {
        let find = |t: &str| {
            self.rows
                .iter()
                .find(|r| r.target == t && r.round_trips > 0)
        };
        let (router, nginx, direct) = (find("router"), find("nginx"), find("direct"));
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        self.router_vs_nginx_throughput = router
            .zip(nginx)
            .and_then(|(r, n)| ratio(r.msgs_per_sec, n.msgs_per_sec));
        self.router_vs_nginx_p99 = router
            .zip(nginx)
            .and_then(|(r, n)| ratio(r.p99_us as f64, n.p99_us as f64));
        self.router_vs_direct_throughput = router
            .zip(direct)
            .and_then(|(r, d)| ratio(r.msgs_per_sec, d.msgs_per_sec));
        self
    }

    /// Markdown: a settings line, the table, the ratios with their targets.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "### Throughput and latency\n\n{} connections, {} B binary messages, closed loop \
             (one message in flight per connection), {} s measured after {} s warm-up, \
             {} ws-pod(s) with the echo app behind every target.\n",
            self.connections, self.message_bytes, self.duration_secs, self.warmup_secs, self.pods
        );
        let _ = writeln!(
            s,
            "| target | connected | msgs/s | p50 µs | p99 µs | p99.9 µs | max µs | errors |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} |",
                r.target,
                r.connected,
                r.msgs_per_sec,
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.max_us,
                r.errors
            );
        }
        s.push('\n');
        if let Some(x) = self.router_vs_nginx_throughput {
            let _ = writeln!(
                s,
                "- router / nginx throughput: **{x:.2}×** (target ≥ 1.00×: {})",
                verdict(x >= 1.0)
            );
        }
        if let Some(x) = self.router_vs_nginx_p99 {
            let _ = writeln!(
                s,
                "- router / nginx p99: **{x:.2}×** (target ≤ 1.00×: {})",
                verdict(x <= 1.0)
            );
        }
        if let Some(x) = self.router_vs_direct_throughput {
            let _ = writeln!(
                s,
                "- router / direct throughput: {x:.2}× (cost of the extra hop)"
            );
        }
        for r in self.rows.iter().filter(|r| r.first_error.is_some()) {
            let _ = writeln!(
                s,
                "- {} first error: {}",
                r.target,
                r.first_error.as_deref().unwrap_or_default()
            );
        }
        s
    }
}

/// Settings and results of `wsring bench idle`.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Where it ran.
    pub environment: Environment,
    /// Open-files soft limit in force (inherited by the children).
    pub nofile_limit: u64,
    /// One row per measured process.
    pub rows: Vec<IdleRow>,
}

impl IdleReport {
    /// Markdown: the table and the router's verdict.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let n = self.rows.first().map_or(0, |r| r.connections);
        let _ = writeln!(
            s,
            "### Memory per idle connection\n\n{n} WebSocket connections opened and held \
             silent; RSS (`VmRSS`) before and after, once settled.\n\n\
             | process | open (self-reported) | RSS before MiB | RSS after MiB | KiB / connection |\n\
             |---|---:|---:|---:|---:|"
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.1} | {:.2} |",
                r.process,
                r.reported_open.map_or("–".to_owned(), |n| n.to_string()),
                r.rss_before_kib as f64 / 1024.0,
                r.rss_after_kib as f64 / 1024.0,
                r.kib_per_connection
            );
        }
        if let Some(r) = self.rows.iter().find(|r| r.process == "router") {
            let _ = writeln!(
                s,
                "\n- router: **{:.2} KiB** per idle connection (target ≤ {IDLE_TARGET_KIB} KiB: {})",
                r.kib_per_connection,
                verdict(r.kib_per_connection <= IDLE_TARGET_KIB)
            );
        }
        s
    }
}

impl Environment {
    /// Markdown: how the machine was shared.
    pub fn markdown(&self) -> String {
        format!(
            "{} CPU(s), shared by the load client ({} thread(s)), the proxy under test \
             (router: {} tokio worker threads; nginx: {} worker processes{}) and the \
             ws-pods, identically for every target; all traffic on loopback.\n",
            self.cpus,
            self.client_threads,
            self.router_workers,
            self.nginx_workers,
            self.nginx_version
                .as_deref()
                .map(|v| format!(", {v}"))
                .unwrap_or_default()
        )
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}
