//! `wsring bench`: the figures the README quotes, measured on one machine.
//!
//! - `wsring bench throughput`: messages/s and p50/p99/p99.9 latency of
//!   closed-loop echo round trips, direct to the ws-pods vs. through the
//!   router vs. through nginx (`hash $arg_key consistent`), same pods, same
//!   load client, one run.
//! - `wsring bench idle`: router (and nginx) RSS per idle connection with
//!   10k connections open.
//! - `wsring bench all`: both.
//!
//! Every process is started here and stopped at the end: pods and the router
//! are children of this binary, nginx gets a generated config in a temporary
//! prefix. Layout: [`setup`] (pods and router, the ring, their metrics),
//! [`nginx`] (nginx's config and process), [`load`] (the load client),
//! [`throughput`] and [`idle`] (the two measurements), [`report`] (tables,
//! JSON, target verdicts).
#![forbid(unsafe_code)]

pub mod idle;
pub mod load;
pub mod nginx;
pub mod push;
pub mod report;
pub mod setup;
pub mod throughput;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;
use wsring::process::lifecycle::shutdown_signal;
use wsring::process::nofile::{fit_nofile, raise_nofile};
use wsring::procfs::loadavg;
use wsring_router::PodTransport;

use report::{Environment, IdleReport, ThroughputReport};
use setup::{Bench, Plan};

/// Options of `wsring bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug, Clone)]
enum BenchCommand {
    /// Messages/s and latency: direct to the pods vs. router vs. nginx.
    Throughput {
        #[command(flatten)]
        load: ThroughputArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Memory per idle connection: router (and pod) vs. nginx.
    Idle {
        /// Idle connections to hold open.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// What per-key history costs a push: throughput and latency with
    /// history off and on, Redis memory per 1,000 retained pushes.
    Push {
        #[command(flatten)]
        push: push::PushArgs,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Throughput, then idle memory: everything the README quotes.
    All {
        #[command(flatten)]
        load: ThroughputArgs,
        /// Idle connections to hold open.
        #[arg(long, default_value_t = 10_000)]
        idle_connections: usize,
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// Load settings of the throughput benchmark.
#[derive(Args, Debug, Clone)]
pub struct ThroughputArgs {
    /// Concurrent connections per target, each with its own key and one message in flight.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Measured window per target, seconds.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Unmeasured warm-up per target, seconds.
    #[arg(long, default_value_t = 2)]
    pub warmup_secs: u64,
    /// Payload bytes per message (at least 8: the sequence number).
    #[arg(long, default_value_t = 64)]
    pub message_bytes: usize,
    /// ws-pods behind every target.
    #[arg(long, default_value_t = 2)]
    pub pods: usize,
    /// Load-client threads [default: one per CPU].
    #[arg(long)]
    pub client_threads: Option<usize>,
    /// Rounds: every round runs each target once (warm-up + window), starting
    /// with a different target each time, so background load and order
    /// effects hit all targets alike; results are summed over rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Targets to run, comma-separated, from `direct`, `router`, `nginx`.
    #[arg(long, value_delimiter = ',', default_value = "direct,router,nginx")]
    pub targets: Vec<throughput::Target>,
}

/// Options shared by every benchmark.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// nginx binary for the comparison.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,
    /// Leave nginx out (no comparison, no targets checked against it).
    #[arg(long)]
    pub skip_nginx: bool,
    /// Print JSON instead of markdown.
    #[arg(long)]
    pub json: bool,
    /// Keep the temporary directory with the children's logs and nginx.conf.
    #[arg(long)]
    pub keep_logs: bool,
    /// The router's `--pod-transport` (`http1` or `h2`).
    #[arg(long, value_enum, default_value = "http1")]
    pub pod_transport: PodTransport,
}

impl CommonArgs {
    fn nginx(&self) -> Option<PathBuf> {
        (!self.skip_nginx).then(|| self.nginx.clone())
    }
}

/// Everything `wsring bench all` measured (the JSON shape of `--json`).
#[derive(Serialize)]
struct AllReport {
    throughput: ThroughputReport,
    idle: IdleReport,
}

/// Run the chosen benchmark and print its report. Ctrl-C / SIGTERM abandon
/// it: dropping the benchmark stops every child and removes the temporary files.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    tokio::select! {
        r = run_command(args.command) => r,
        () = shutdown_signal() => anyhow::bail!("interrupted"),
    }
}

async fn run_command(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Throughput { load, common } => {
            let r = throughput_report(&load, &common).await?;
            print(&common, &r, || {
                format!("{}\n{}", r.environment.markdown(), r.markdown())
            })
        }
        BenchCommand::Idle {
            connections,
            common,
        } => {
            let r = idle_report(connections, &common).await?;
            print(&common, &r, || {
                format!("{}\n{}", r.environment.markdown(), r.markdown())
            })
        }
        BenchCommand::Push { push, common } => {
            let r = push::measure(&push, &common).await?;
            print(&common, &r, || r.markdown())
        }
        BenchCommand::All {
            load,
            idle_connections,
            common,
        } => {
            let throughput = throughput_report(&load, &common).await?;
            let idle = idle_report(idle_connections, &common).await?;
            let all = AllReport { throughput, idle };
            print(&common, &all, || {
                format!(
                    "{}\n{}\n{}",
                    all.throughput.environment.markdown(),
                    all.throughput.markdown(),
                    all.idle.markdown()
                )
            })
        }
    }
}

fn print<T: Serialize>(
    common: &CommonArgs,
    report: &T,
    markdown: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if common.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{}", markdown());
    }
    Ok(())
}

/// CPUs of this machine: nginx gets one worker process per CPU, like the
/// router's tokio runtime, which runs one worker thread per CPU (tokio's
/// default); the load client one thread per CPU unless told otherwise.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn environment(
    client_threads: usize,
    nginx: Option<String>,
    pod_transport: PodTransport,
) -> Environment {
    let cpus = cpu_count();
    Environment {
        pod_transport: pod_transport.as_str().to_string(),
        cpus,
        client_threads,
        router_workers: cpus,
        nginx_workers: cpus,
        nginx_version: nginx,
    }
}

async fn throughput_report(
    load: &ThroughputArgs,
    common: &CommonArgs,
) -> anyhow::Result<ThroughputReport> {
    anyhow::ensure!(load.pods >= 1, "--pods must be at least 1");
    anyhow::ensure!(load.connections >= 1, "--connections must be at least 1");
    anyhow::ensure!(
        load.duration_secs >= 1,
        "--duration-secs must be at least 1"
    );
    raise_nofile(load.connections, 2)?;
    let wants_nginx = load.targets.contains(&throughput::Target::Nginx);
    let plan = Plan {
        pods: load.pods,
        nginx: common.nginx().filter(|_| wants_nginx),
        nginx_worker_connections: (load.connections * 2 + 64).max(1024),
        keep_logs: common.keep_logs,
        pod_transport: common.pod_transport,
        pod_args: Vec::new(),
    };
    let load_before = loadavg();
    let mut bench = Bench::start(&plan).await?;
    let result = throughput::measure(&mut bench, load).await;
    let version = bench.nginx.as_ref().map(|n| n.version.clone());
    bench.shutdown().await;
    let rows = result?;
    let threads = load.client_threads.unwrap_or_else(cpu_count);
    Ok(ThroughputReport {
        environment: environment(threads, version, common.pod_transport),
        loadavg_before: load_before,
        loadavg_after: loadavg(),
        connections: load.connections,
        rounds: load.rounds,
        duration_secs: load.duration_secs,
        warmup_secs: load.warmup_secs,
        message_bytes: load.message_bytes,
        pods: load.pods,
        rows,
        router_vs_nginx_throughput: None,
        router_vs_nginx_p99: None,
        router_vs_direct_throughput: None,
    }
    .with_ratios())
}

async fn idle_report(connections: usize, common: &CommonArgs) -> anyhow::Result<IdleReport> {
    anyhow::ensure!(connections >= 1, "--connections must be at least 1");
    let nofile = raise_nofile(connections, 2)?;
    let requested = connections;
    let connections = fit_nofile(connections, nofile, 2);
    anyhow::ensure!(
        connections >= 1,
        "the open-files limit ({nofile}) leaves no room"
    );
    if connections < requested {
        tracing::warn!(
            requested,
            connections,
            nofile,
            "open-files limit too low (a proxy holds two descriptors per connection); measuring fewer"
        );
    }
    let plan = Plan {
        pods: 1,
        nginx: common.nginx(),
        nginx_worker_connections: connections * 2 + 1024,
        keep_logs: common.keep_logs,
        pod_transport: common.pod_transport,
        pod_args: Vec::new(),
    };
    let mut bench = Bench::start(&plan).await?;
    tracing::info!(connections, nofile, "measuring idle memory");
    let result = idle::measure(&mut bench, connections).await;
    let version = bench.nginx.as_ref().map(|n| n.version.clone());
    bench.shutdown().await;
    Ok(IdleReport {
        environment: environment(0, version, common.pod_transport),
        nofile_limit: nofile,
        requested_connections: requested,
        rows: result?,
    })
}
