//! The throughput benchmark: the same load against each target in turn.
//!
//! Targets: `direct` (each connection straight to the pod that owns its key
//! on the router's ring, so the pods carry the same load split), `router`,
//! `nginx`. Every round runs each target once, with fresh connections and
//! its own warm-up, and the starting target rotates from round to round:
//! on a machine shared with other work, slow phases then hit every target
//! alike instead of whichever happened to run last. The pods stay up for all.

use std::time::Duration;

use anyhow::Context as _;
use clap::ValueEnum;

use super::load::{self, Endpoint, LoadResult, LoadSpec};
use super::report::{ProxyCpu, ThroughputRow};
use super::setup::Bench;
use super::ThroughputArgs;

/// Pause between runs, so closing connections do not overlap the next run.
const BETWEEN_RUNS: Duration = Duration::from_secs(1);

/// Where the load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Straight to the owning ws-pod: the floor no proxy can beat.
    Direct,
    /// Through the wsring router.
    Router,
    /// Through nginx with `hash $arg_key consistent`.
    Nginx,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Router => "router",
            Target::Nginx => "nginx",
        }
    }
}

/// Connection `i`'s routing key.
fn key(i: usize) -> String {
    format!("bench-{i}")
}

/// One endpoint per connection for `target`; None if the target is not running.
fn endpoints(bench: &Bench, target: Target, n: usize) -> anyhow::Result<Option<Vec<Endpoint>>> {
    let via = |addr| {
        (0..n)
            .map(|i| Endpoint {
                addr,
                url: format!("ws://{addr}/?key={}", key(i)),
            })
            .collect()
    };
    Ok(match target {
        Target::Direct => Some(
            (0..n)
                .map(|i| {
                    let addr = bench.owner_addr(&key(i))?;
                    Ok(Endpoint {
                        addr,
                        url: format!("ws://{addr}/?key={}", key(i)),
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        Target::Router => Some(via(bench.router.listen)),
        Target::Nginx => bench.nginx.as_ref().map(|nginx| via(nginx.addr)),
    })
}

/// Run every round against every target and summarise each target.
pub async fn measure(
    bench: &mut Bench,
    args: &ThroughputArgs,
) -> anyhow::Result<Vec<ThroughputRow>> {
    let spec = LoadSpec {
        connections: args.connections,
        duration: Duration::from_secs(args.duration_secs),
        warmup: Duration::from_secs(args.warmup_secs),
        message_bytes: args.message_bytes,
        threads: args.client_threads.unwrap_or_else(super::cpu_count).max(1),
    };
    let mut targets: Vec<(Target, Vec<Endpoint>)> = Vec::new();
    for &t in &args.targets {
        if targets.iter().any(|(seen, _)| *seen == t) {
            continue;
        }
        match endpoints(bench, t, spec.connections)? {
            Some(e) => targets.push((t, e)),
            None => tracing::warn!(target = t.name(), "not running; left out"),
        }
    }
    let mut merged: Vec<Option<LoadResult>> = targets.iter().map(|_| None).collect();
    let mut per_round: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut cpu: Vec<ProxyCpu> = vec![ProxyCpu::default(); targets.len()];
    for round in 0..args.rounds {
        for k in 0..targets.len() {
            let idx = (round + k) % targets.len();
            let (target, endpoints) = &targets[idx];
            let name = target.name();
            tracing::info!(
                round = round + 1,
                target = name,
                connections = spec.connections,
                secs = args.warmup_secs + args.duration_secs,
                "running load"
            );
            let (spec, endpoints) = (spec.clone(), endpoints.clone());
            let before = bench.cpu();
            let result = tokio::task::spawn_blocking(move || load::run(&spec, endpoints))
                .await
                .context("load client")??;
            let after = bench.cpu();
            let proxy = match target {
                Target::Direct => None,
                Target::Router => Some(after.router.saturating_sub(before.router)),
                Target::Nginx => Some(after.nginx.saturating_sub(before.nginx)),
            };
            let used = &mut cpu[idx];
            used.proxy = proxy.map(|p| p + used.proxy.unwrap_or_default());
            used.pods += after.pods.saturating_sub(before.pods);
            bench
                .check_alive()
                .with_context(|| format!("after the {name} run"))?;
            tracing::info!(
                round = round + 1,
                target = name,
                msgs_per_sec = result.per_second() as u64,
                errors = result.errors,
                "done"
            );
            if *target == Target::Router && result.pod_header < result.connected {
                tracing::warn!(
                    with_header = result.pod_header,
                    connected = result.connected,
                    "some router answers lacked x-wsring-pod"
                );
            }
            per_round[idx].push(result.per_second());
            match &mut merged[idx] {
                Some(m) => m.merge(result)?,
                slot => *slot = Some(result),
            }
            tokio::time::sleep(BETWEEN_RUNS).await;
        }
    }
    Ok(targets
        .iter()
        .zip(merged)
        .zip(per_round)
        .zip(cpu)
        .filter_map(|((((t, _), m), rounds), cpu)| {
            Some(ThroughputRow::new(t.name(), &m?, rounds, cpu))
        })
        .collect())
}
