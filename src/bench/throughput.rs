//! The throughput benchmark: the same load, one target after the other.
//!
//! Targets, in this order: `direct` (each connection straight to the pod that
//! owns its key on the router's ring, so the pods carry the same load split),
//! `router`, `nginx`. Each gets a fresh set of connections and its own
//! warm-up; the pods stay up for all three.

use std::time::Duration;

use anyhow::Context as _;

use super::load::{self, Endpoint, LoadSpec};
use super::report::ThroughputRow;
use super::setup::{self, Bench};
use super::ThroughputArgs;

/// Pause between targets, so closing connections do not overlap the next run.
const BETWEEN_TARGETS: Duration = Duration::from_secs(1);

/// Run the load against every target and summarise each.
pub async fn measure(
    bench: &mut Bench,
    args: &ThroughputArgs,
) -> anyhow::Result<Vec<ThroughputRow>> {
    let spec = LoadSpec {
        connections: args.connections,
        duration: Duration::from_secs(args.duration_secs),
        warmup: Duration::from_secs(args.warmup_secs),
        message_bytes: args.message_bytes,
        threads: args.client_threads.unwrap_or_else(setup::cpu_count).max(1),
    };
    let key = |i: usize| format!("bench-{i}");
    let mut targets: Vec<(&str, Vec<Endpoint>)> = Vec::new();
    let direct = (0..spec.connections)
        .map(|i| {
            let addr = bench.owner_addr(&key(i))?;
            Ok(Endpoint {
                addr,
                url: format!("ws://{addr}/?key={}", key(i)),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    targets.push(("direct", direct));
    let via = |addr| {
        (0..spec.connections)
            .map(|i| Endpoint {
                addr,
                url: format!("ws://{addr}/?key={}", key(i)),
            })
            .collect()
    };
    targets.push(("router", via(bench.router.addr)));
    if let Some(nginx) = &bench.nginx {
        targets.push(("nginx", via(nginx.addr)));
    }

    let mut rows = Vec::new();
    for (name, endpoints) in targets {
        tracing::info!(
            target = name,
            connections = spec.connections,
            secs = args.warmup_secs + args.duration_secs,
            "running load"
        );
        let spec = spec.clone();
        let result = tokio::task::spawn_blocking(move || load::run(&spec, endpoints))
            .await
            .context("load client")??;
        bench
            .check_alive()
            .with_context(|| format!("after the {name} run"))?;
        let row = ThroughputRow::new(name, &result);
        tracing::info!(
            target = name,
            msgs_per_sec = row.msgs_per_sec as u64,
            p50_us = row.p50_us,
            p99_us = row.p99_us,
            errors = row.errors,
            "done"
        );
        if name == "router" && result.pod_header < result.connected {
            tracing::warn!(
                with_header = result.pod_header,
                connected = result.connected,
                "some router answers lacked x-wsring-pod"
            );
        }
        rows.push(row);
        tokio::time::sleep(BETWEEN_TARGETS).await;
    }
    Ok(rows)
}
