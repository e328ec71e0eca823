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
    /// The router's `--pod-transport`.
    pub pod_transport: String,
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
    /// Round trips per second of each round, in round order (the spread).
    pub per_round_msgs_per_sec: Vec<f64>,
    /// CPU time of the proxy (router, or nginx master + workers) per round
    /// trip, µs; none for `direct`. Less sensitive than msgs/s to other work
    /// on the machine.
    pub proxy_cpu_us_per_msg: Option<f64>,
    /// CPU time of all pods per round trip, µs (the same work for every target).
    pub pods_cpu_us_per_msg: f64,
}

impl ThroughputRow {
    /// Summarise the (merged) load runs of one target.
    pub fn new(target: &str, r: &LoadResult, per_round: Vec<f64>, cpu: ProxyCpu) -> Self {
        let per_msg = |d: std::time::Duration| {
            (r.all_round_trips > 0).then(|| d.as_secs_f64() * 1e6 / r.all_round_trips as f64)
        };
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
            per_round_msgs_per_sec: per_round,
            proxy_cpu_us_per_msg: cpu.proxy.and_then(per_msg),
            pods_cpu_us_per_msg: per_msg(cpu.pods).unwrap_or_default(),
        }
    }
}

/// CPU time the servers used during a target's runs (warm-up included).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyCpu {
    /// The proxy under test; None for `direct`.
    pub proxy: Option<std::time::Duration>,
    /// All pods.
    pub pods: std::time::Duration,
}

/// Settings and results of `wsring bench throughput`.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    /// Where it ran.
    pub environment: Environment,
    /// `/proc/loadavg` (1, 5, 15 min) before the run: other work on the machine.
    pub loadavg_before: Option<String>,
    /// `/proc/loadavg` after the run.
    pub loadavg_after: Option<String>,
    /// Concurrent connections per target.
    pub connections: usize,
    /// Rounds (each target once per round).
    pub rounds: usize,
    /// Measured window per target and round, seconds.
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
             (one message in flight per connection), {} round(s) of {} s measured after {} s \
             warm-up per target (targets rotate their order each round), {} ws-pod(s) with the \
             echo app behind every target. Load average before / after: {} / {}.\n",
            self.connections,
            self.message_bytes,
            self.rounds,
            self.duration_secs,
            self.warmup_secs,
            self.pods,
            self.loadavg_before.as_deref().unwrap_or("?"),
            self.loadavg_after.as_deref().unwrap_or("?"),
        );
        let _ = writeln!(
            s,
            "| target | connected | msgs/s | per round | p50 µs | p99 µs | p99.9 µs | max µs | proxy CPU µs/msg | pods CPU µs/msg | errors |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &self.rows {
            let rounds: Vec<String> = r
                .per_round_msgs_per_sec
                .iter()
                .map(|x| format!("{x:.0}"))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
                r.target,
                r.connected,
                r.msgs_per_sec,
                rounds.join(" / "),
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.max_us,
                r.proxy_cpu_us_per_msg
                    .map_or("–".to_owned(), |c| format!("{c:.1}")),
                r.pods_cpu_us_per_msg,
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
    /// Connections asked for; more than measured when the limit did not allow them.
    pub requested_connections: usize,
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
             silent; RSS (`VmRSS`) before and after, once settled.{}\n\n\
             | process | open (self-reported) | RSS before MiB | RSS after MiB | KiB / connection |\n\
             |---|---:|---:|---:|---:|",
            if n < self.requested_connections {
                format!(
                    " ({} asked for: the open-files limit here is {} and cannot be raised, and a \
                     proxy holds two descriptors per connection)",
                    self.requested_connections, self.nofile_limit
                )
            } else {
                String::new()
            }
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
             (router: {} tokio worker threads, pod transport {}; nginx: {} worker processes{}) \
             and the ws-pods, identically for every target; all traffic on loopback.\n",
            self.cpus,
            self.client_threads,
            self.router_workers,
            self.pod_transport,
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
