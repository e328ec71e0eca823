//! `wsring bench push`: what per-key history costs a push.
//!
//! The same data plane twice, with a private redis-server both times (the
//! pods subscribe to their reset channels either way): once without history,
//! once with `--history-size`. One client per key stays connected through
//! the router (offering `wsring.v1` when history is on, so the positioned
//! path runs); `--concurrency` senders push to the keys in turn through the
//! router's push API for `--duration-secs`. Reported per mode: pushes per
//! second, latency p50/p99/max, refused pushes, frames the clients received,
//! and with history the Redis memory the retained pushes take.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsring_core::harness::RedisServer;
use wsring_core::resume::SUBPROTOCOL;

use super::setup::{Bench, Plan, TOKEN};
use super::CommonArgs;

/// Options of `wsring bench push`.
#[derive(Args, Debug, Clone)]
pub struct PushArgs {
    /// Keys, each with one connected client.
    #[arg(long, default_value_t = 200)]
    pub keys: usize,
    /// Measured seconds per mode.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Pushes in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// `--history-size` of the mode with history.
    #[arg(long, default_value_t = 1000)]
    pub history_size: usize,
    /// Bytes of each pushed message.
    #[arg(long, default_value_t = 100)]
    pub body_bytes: usize,
    /// Pods.
    #[arg(long, default_value_t = 3)]
    pub pods: usize,
}

/// One mode's figures.
#[derive(Debug, Serialize)]
pub struct PushRow {
    /// `off` or `on (size N)`.
    pub history: String,
    /// Pushes answered 200.
    pub accepted: u64,
    /// Pushes answered otherwise.
    pub refused: u64,
    /// Accepted pushes per second.
    pub per_second: f64,
    /// Push API latency through the router, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Frames the clients received (should equal the accepted pushes).
    pub received: u64,
    /// Redis memory per 1,000 retained pushes, bytes (history only).
    pub redis_bytes_per_1000: Option<u64>,
}

/// `wsring bench push` as printed.
#[derive(Debug, Serialize)]
pub struct PushReport {
    /// The options it ran with.
    pub keys: usize,
    /// Measured seconds per mode.
    pub duration_secs: u64,
    /// Pushes in flight.
    pub concurrency: usize,
    /// Bytes per push.
    pub body_bytes: usize,
    /// Without, then with history.
    pub rows: Vec<PushRow>,
}

impl PushReport {
    /// A markdown table.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "push API through the router: {} keys with one client each, {} in flight, {} B bodies, {} s per mode\n\n",
            self.keys, self.concurrency, self.body_bytes, self.duration_secs
        );
        out.push_str("| history | accepted | refused | pushes/s | p50 ms | p99 ms | max ms | received | Redis B per 1,000 kept |\n");
        out.push_str("|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
                r.history,
                r.accepted,
                r.refused,
                r.per_second,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                r.received,
                r.redis_bytes_per_1000
                    .map_or_else(|| "–".to_string(), |b| b.to_string())
            ));
        }
        out
    }
}

/// Measure both modes.
pub async fn measure(args: &PushArgs, common: &CommonArgs) -> anyhow::Result<PushReport> {
    anyhow::ensure!(args.keys >= 1, "--keys must be at least 1");
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(
        args.duration_secs >= 1,
        "--duration-secs must be at least 1"
    );
    anyhow::ensure!(args.history_size >= 1, "--history-size must be at least 1");
    let mut rows = Vec::new();
    for history in [None, Some(args.history_size)] {
        rows.push(one_mode(args, common, history).await?);
    }
    Ok(PushReport {
        keys: args.keys,
        duration_secs: args.duration_secs,
        concurrency: args.concurrency,
        body_bytes: args.body_bytes,
        rows,
    })
}

async fn one_mode(
    args: &PushArgs,
    common: &CommonArgs,
    history: Option<usize>,
) -> anyhow::Result<PushRow> {
    let redis = RedisServer::start()
        .await
        .context("redis-server (the push benchmark needs one)")?;
    let mut pod_args = vec!["--redis-url".to_string(), redis.url()];
    if let Some(size) = history {
        pod_args.extend(["--history-size".to_string(), size.to_string()]);
    }
    let plan = Plan {
        pods: args.pods,
        nginx: None,
        nginx_worker_connections: 1024,
        keep_logs: common.keep_logs,
        pod_transport: common.pod_transport,
        pod_args,
    };
    let bench = Bench::start(&plan).await?;
    let result = run_load(&bench, args, history, &redis).await;
    bench.shutdown().await;
    result
}

async fn run_load(
    bench: &Bench,
    args: &PushArgs,
    history: Option<usize>,
    redis: &RedisServer,
) -> anyhow::Result<PushRow> {
    let keys: Vec<String> = (0..args.keys).map(|i| format!("push-{i}")).collect();
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for key in &keys {
        let url = format!("ws://{}/?key={key}", bench.router.listen);
        let mut request = url.into_client_request()?;
        if history.is_some() {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", SUBPROTOCOL.parse()?);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .with_context(|| format!("connecting {key} through the router"))?;
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let (_sink, mut stream) = ws.split();
            let mut first = history.is_some();
            while let Some(Ok(message)) = stream.next().await {
                if message.is_text() || message.is_binary() {
                    // The `s` opening of a wsring.v1 connection is no push.
                    if std::mem::take(&mut first) {
                        continue;
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let memory_before = redis.used_memory().await?;
    let body = "x".repeat(args.body_bytes);
    let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let senders = (0..args.concurrency).map(|_| {
        let (keys, body, next, http) = (&keys, &body, next.clone(), bench.http.clone());
        let admin = bench.router.admin;
        async move {
            let mut latency = Histogram::<u64>::new_with_max(60_000_000, 3)?;
            let (mut accepted, mut refused) = (0u64, 0u64);
            while Instant::now() < deadline {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                let key = &keys[n % keys.len()];
                let sent = Instant::now();
                let answer = http
                    .post(format!("http://{admin}/v1/keys/{key}/messages"))
                    .bearer(TOKEN)
                    .body(body.clone().into_bytes())
                    .send()
                    .await;
                let micros = sent.elapsed().as_micros().min(60_000_000) as u64;
                match answer {
                    Ok(a) if a.status() == 200 => {
                        accepted += 1;
                        latency.record(micros)?;
                    }
                    _ => refused += 1,
                }
            }
            anyhow::Ok((latency, accepted, refused))
        }
    });
    let mut latency = Histogram::<u64>::new_with_max(60_000_000, 3)?;
    let (mut accepted, mut refused) = (0, 0);
    for result in futures_util::future::join_all(senders).await {
        let (l, a, r) = result?;
        latency.add(&l)?;
        accepted += a;
        refused += r;
    }
    let elapsed = started.elapsed();
    // Give the last frames a moment to arrive, then stop the readers.
    let settle = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::Relaxed) < accepted && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for reader in readers {
        reader.abort();
    }
    let retained = history.map(|size| accepted.min((size * keys.len()) as u64));
    let redis_bytes_per_1000 = match retained {
        Some(kept) if kept > 0 => {
            let grown = redis.used_memory().await?.saturating_sub(memory_before);
            Some(grown * 1000 / kept)
        }
        _ => None,
    };
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(PushRow {
        history: history.map_or_else(|| "off".to_string(), |s| format!("on (size {s})")),
        accepted,
        refused,
        per_second: accepted as f64 / elapsed.as_secs_f64(),
        p50_ms: ms(latency.value_at_quantile(0.5)),
        p99_ms: ms(latency.value_at_quantile(0.99)),
        max_ms: ms(latency.max()),
        received: received.load(Ordering::Relaxed),
        redis_bytes_per_1000,
    })
}
