//! `wsring soak`: many long-lived connections through one router while the
//! ring keeps changing, checking that exactly the moved connections are reset.
//!
//! A private redis-server and a real `wsring dev` child ([`plane`]) run the
//! data plane; [`fleet`] opens N client connections (distinct keys, reconnect
//! at once on 4001, echo traffic); every `--interval-secs` a scale event
//! ([`events`]) adds a pod or stops the newest one (gracefully, or with
//! `--crash` sometimes by SIGKILL). For each event the resets NEEDED (clients
//! whose owner changed between the router's rings before and after) are
//! compared with the resets the router SENT (its `connections_reset`
//! counter) and with the 4001 closes the clients saw. [`report`] prints the
//! table (or `--json`) and the verdict; the exit code is non-zero when a
//! check failed.
//!
//! With `--pushes-per-sec` a [`pushes::Pusher`] sends numbered pushes to
//! every key in turn through the router's push API during all of it, and
//! the report counts, among the accepted pushes, those each client received
//! exactly once, lost, duplicated and out of order, and the resume latency.
//! `--history on|off|both` runs it with per-key history, without, or both
//! one after the other with the figures side by side; `--redis-failover`
//! runs Redis as a Sentinel group and makes every fifth event a kill of its
//! primary.

pub mod events;
pub mod fleet;
pub mod plane;
pub mod pushes;
pub mod report;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokio::time::Instant;
use wsring_core::Ring;

use wsring_router::PodTransport;

use wsring::process::lifecycle::shutdown_signal;
use wsring::process::nofile::{fit_nofile, raise_nofile};

use events::Kind;
use fleet::Fleet;
use plane::{Plane, PlaneConfig};
use pushes::{Ledger, Pusher};
use report::{Comparison, EventRow, RssRow, SoakReport};

/// How long the clients may take to get back to all-connected after an event.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the first ramp-up to all-connected may take.
const RAMP_TIMEOUT: Duration = Duration::from_secs(180);
/// Moved clients must be closed within the router's reset timeout (2 s) and this margin.
const RESET_WAIT: Duration = Duration::from_secs(15);
/// How often memory is sampled.
const RSS_INTERVAL: Duration = Duration::from_secs(1);
/// How often the controller polls while waiting.
const POLL: Duration = Duration::from_millis(50);
/// How long accepted pushes may take to reach their clients once the
/// pusher stopped (with history; without, what is lost stays lost).
const DELIVERY_WAIT: Duration = Duration::from_secs(15);
/// Without history: just long enough for the last answered pushes to arrive.
const DELIVERY_WAIT_PLAIN: Duration = Duration::from_secs(2);

/// Which runs `--history` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryMode {
    /// Pushes without history (what a push to a moving key does today).
    Off,
    /// Per-key history and `wsring.v1` clients that resume.
    On,
    /// Off, then on, with the same schedule; the figures side by side.
    Both,
}

/// Options of `wsring soak`.
#[derive(Args, Debug, Clone)]
pub struct SoakArgs {
    /// Client connections (capped to what the open-files limit allows the router).
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Stop scheduling scale events after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// Seconds between scale events.
    #[arg(long, default_value_t = 5)]
    pub interval_secs: u64,
    /// At most this many scale events (default: as many as the duration allows).
    #[arg(long)]
    pub max_events: Option<usize>,
    /// Pods at start.
    #[arg(long, default_value_t = 3)]
    pub pods: usize,
    /// Make every second removal a crash (SIGKILL) instead of a graceful stop.
    #[arg(long)]
    pub crash: bool,
    /// The router's `--pod-transport`: `h2` needs one descriptor per
    /// connection in the router instead of two.
    #[arg(long, value_enum, default_value = "http1")]
    pub pod_transport: PodTransport,
    /// Milliseconds between two echo messages of one client.
    #[arg(long, default_value_t = 5_000)]
    pub message_interval_ms: u64,
    /// Numbered pushes per second through the router's push API, to every
    /// key in turn, during the whole run (0: none).
    #[arg(long, default_value_t = 0)]
    pub pushes_per_sec: u32,
    /// Per-key history for the pushes: `off`, `on`, or `both` (two runs).
    #[arg(long, value_enum, default_value = "off")]
    pub history: HistoryMode,
    /// `--history-size` of the runs with history.
    #[arg(long, default_value_t = 1000)]
    pub history_size: usize,
    /// Run Redis as a Sentinel group (primary, two replicas) and make the
    /// third of every five events a SIGKILL of its primary.
    #[arg(long)]
    pub redis_failover: bool,
    /// Print JSON instead of markdown.
    #[arg(long)]
    pub json: bool,
    /// Keep the temporary directory with the data plane's log.
    #[arg(long)]
    pub keep_logs: bool,
}

/// Run the soak (once, or with `--history both` twice) and print its
/// report; Ctrl-C / SIGTERM abandon it (the children are stopped on drop).
/// Fails when a check failed.
pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.pods >= 1, "--pods must be at least 1");
    anyhow::ensure!(
        args.interval_secs >= 1,
        "--interval-secs must be at least 1"
    );
    anyhow::ensure!(
        args.history == HistoryMode::Off || args.pushes_per_sec > 0,
        "--history on/both needs --pushes-per-sec: history is about pushes"
    );
    anyhow::ensure!(args.history_size >= 1, "--history-size must be at least 1");
    let histories: &[bool] = match args.history {
        HistoryMode::Off => &[false],
        HistoryMode::On => &[true],
        HistoryMode::Both => &[false, true],
    };
    let runs = async {
        let mut reports = Vec::new();
        for history in histories {
            reports.push(soak(&args, *history).await?);
        }
        anyhow::Ok(reports)
    };
    let reports = tokio::select! {
        r = runs => r?,
        () = shutdown_signal() => anyhow::bail!("interrupted"),
    };
    let failures: Vec<String> = reports.iter().flat_map(|r| r.failures.clone()).collect();
    if let [report] = reports.as_slice() {
        if args.json {
            println!("{}", serde_json::to_string_pretty(report)?);
        } else {
            println!("{}", report.markdown());
        }
    } else {
        let comparison = Comparison::new(reports);
        if args.json {
            println!("{}", serde_json::to_string_pretty(&comparison)?);
        } else {
            println!("{}", comparison.markdown());
        }
    }
    anyhow::ensure!(failures.is_empty(), "soak failed: {}", failures.join("; "));
    Ok(())
}

async fn soak(args: &SoakArgs, history: bool) -> anyhow::Result<SoakReport> {
    // The router holds the client's socket and, over HTTP/1.1, one to the pod.
    let fds_per_connection = match args.pod_transport {
        PodTransport::Http1 => 2,
        PodTransport::H2 => 1,
    };
    let nofile = raise_nofile(args.connections, fds_per_connection)?;
    let connections = fit_nofile(args.connections, nofile, fds_per_connection);
    anyhow::ensure!(
        connections >= 1,
        "the open-files limit ({nofile}) leaves no room"
    );
    if connections < args.connections {
        tracing::warn!(
            requested = args.connections,
            connections,
            nofile,
            fds_per_connection,
            "open-files limit too low for the router's descriptors; using fewer connections"
        );
    }
    let plane = Plane::start(&PlaneConfig {
        pods: args.pods,
        transport: args.pod_transport,
        history_size: history.then_some(args.history_size),
        sentinel: args.redis_failover,
        keep_logs: args.keep_logs,
    })
    .await?;
    let mut report = SoakReport {
        pod_transport: args.pod_transport.as_str().to_string(),
        history: if history {
            format!("on (size {})", args.history_size)
        } else {
            "off".to_string()
        },
        redis: if args.redis_failover {
            "sentinel (primary + 2 replicas)".to_string()
        } else {
            "single".to_string()
        },
        requested_connections: args.connections,
        connections,
        nofile_limit: nofile,
        pods: args.pods,
        duration_secs: args.duration_secs,
        interval_secs: args.interval_secs,
        ..SoakReport::default()
    };
    let result = drive(&plane, args, history, &mut report).await;
    plane.shutdown().await;
    result?;
    Ok(report)
}

/// Memory samples: router and pods, idle/start/peak/end.
#[derive(Default)]
struct Memory {
    router: RssRow,
    pods_sum: RssRow,
    largest_pod: RssRow,
}

impl Memory {
    async fn sample(&mut self, plane: &Plane, slot: fn(&mut RssRow) -> &mut u64) {
        let (router, pods) = plane.rss().await;
        let sum = pods.iter().map(|(_, k)| k).sum();
        let largest = pods.iter().map(|(_, k)| *k).max().unwrap_or(0);
        for (row, kib) in [
            (&mut self.router, router.unwrap_or(0)),
            (&mut self.pods_sum, sum),
            (&mut self.largest_pod, largest),
        ] {
            *slot(row) = kib;
            row.peak_kib = row.peak_kib.max(kib);
        }
    }

    fn rows(mut self) -> Vec<RssRow> {
        self.router.process = "router".into();
        self.pods_sum.process = "pods (sum of live pods)".into();
        self.largest_pod.process = "largest pod".into();
        vec![self.router, self.pods_sum, self.largest_pod]
    }
}

async fn drive(
    plane: &Plane,
    args: &SoakArgs,
    history: bool,
    report: &mut SoakReport,
) -> anyhow::Result<()> {
    let mut memory = Memory::default();
    memory.sample(plane, |r| &mut r.idle_kib).await;
    let started = Instant::now();
    let ledger = Arc::new(Ledger::new(report.connections));
    let fleet = Fleet::start(
        plane.public,
        report.connections,
        Duration::from_millis(args.message_interval_ms.max(1)),
        history,
        ledger.clone(),
    );
    let ramped = wait_all_connected(plane, &fleet, RAMP_TIMEOUT, &mut memory).await;
    report.ramp_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        ramped,
        "only {} of {} clients connected within {RAMP_TIMEOUT:?}",
        fleet.connected(),
        fleet.len()
    );
    tracing::info!(
        connections = fleet.len(),
        secs = report.ramp_secs,
        "all clients connected"
    );
    memory.sample(plane, |r| &mut r.start_kib).await;
    let pusher = (args.pushes_per_sec > 0).then(|| {
        Pusher::start(
            plane.admin,
            plane.token(),
            ledger.clone(),
            args.pushes_per_sec,
        )
    });

    let t0 = Instant::now();
    let pre_events = fleet.close_mark();
    let mut windows = Vec::new();
    let interval = Duration::from_secs(args.interval_secs);
    let max_events = args.max_events.unwrap_or(usize::MAX);
    for n in 0..max_events {
        let due = t0 + interval * (n as u32 + 1);
        if due - t0 > Duration::from_secs(args.duration_secs) {
            break;
        }
        while Instant::now() < due {
            memory.sample(plane, |r| &mut r.end_kib).await;
            tokio::time::sleep(RSS_INTERVAL.min(due - Instant::now())).await;
        }
        let kind = Kind::nth(n, args.crash, args.redis_failover);
        let (row, window) = run_event(plane, &fleet, n + 1, kind, t0, &mut memory)
            .await
            .with_context(|| format!("event {} ({kind:?})", n + 1))?;
        tracing::info!(
            n = row.n,
            kind = ?row.kind,
            pod = %row.pod,
            needed = row.resets_needed,
            sent = row.resets_sent,
            settle_ms = row.settle_ms,
            "scale event done"
        );
        report.events.push(row);
        windows.push(window);
    }
    // Let the last event settle for a full interval too, then take stock.
    tokio::time::sleep(interval).await;
    wait_all_connected(plane, &fleet, SETTLE_TIMEOUT, &mut memory).await;
    memory.sample(plane, |r| &mut r.end_kib).await;
    if let Some(pusher) = pusher {
        pusher.stop().await;
        let wait = if history {
            DELIVERY_WAIT
        } else {
            DELIVERY_WAIT_PLAIN
        };
        let deadline = Instant::now() + wait;
        while !ledger.all_received() && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        report.pushes = Some(pushes::PushTotals {
            per_second: args.pushes_per_sec,
            ..ledger.totals()
        });
    }
    let end = fleet.close_mark();
    report.connections_lost = fleet.len() - fleet.connected();
    // Closes before the first event are unexpected; each event's window
    // runs until the next event started (or the end).
    let first = windows.first().map_or(end, |w| w.from);
    let outside = fleet.closes(pre_events, Some(first)).len();
    for (i, w) in windows.iter().enumerate() {
        let to = windows.get(i + 1).map_or(end, |next| next.from);
        let closes = fleet.closes(w.from, Some(to));
        report.events[i].closes =
            events::attribute(&w.needed, &closes, report.events[i].kind == Kind::Crash);
    }
    let totals = fleet.totals();
    report.messages_echoed = totals.echoed;
    report.echo_errors = totals.echo_errors;
    report.connect_failures = totals.connect_failures;
    fleet.stop().await;
    report.rss = memory.rows();
    report.finish(outside);
    Ok(())
}

/// One event's attribution window: where its closes start and who had to move.
struct Window {
    from: usize,
    needed: BTreeSet<usize>,
}

/// Wait (at most `timeout`) until every client is connected and the router
/// holds exactly that many tunnels; samples memory meanwhile.
async fn wait_all_connected(
    plane: &Plane,
    fleet: &Fleet,
    timeout: Duration,
    memory: &mut Memory,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut next_sample = Instant::now();
    loop {
        if fleet.connected() == fleet.len() {
            let active = plane.counters().await.map(|c| c.active).unwrap_or(0);
            if active == fleet.len() as u64 {
                return true;
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        if Instant::now() >= next_sample {
            memory.sample(plane, |r| &mut r.end_kib).await;
            next_sample = Instant::now() + RSS_INTERVAL;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Run one event from a settled state and measure it. A Redis failover
/// leaves the ring as it is: no client needs to move, so any close in its
/// window is unexpected.
async fn run_event(
    plane: &Plane,
    fleet: &Fleet,
    n: usize,
    kind: Kind,
    t0: Instant,
    memory: &mut Memory,
) -> anyhow::Result<(EventRow, Window)> {
    wait_all_connected(plane, fleet, SETTLE_TIMEOUT, memory).await;
    let before = plane.ring().await?;
    let counters_before = plane.counters().await?;
    let pods_before = fleet.pods();
    let from = fleet.close_mark();
    let at_secs = t0.elapsed().as_secs_f64();
    let started = Instant::now();
    let (pod, redis_unavailable) = match kind {
        Kind::Add => (plane.add_pod().await?, None),
        Kind::Graceful | Kind::Crash => {
            let newest = newest_pod(&before).context("no pod to stop")?;
            let mode = if kind == Kind::Crash {
                "crash"
            } else {
                "graceful"
            };
            plane.stop_pod(&newest, mode).await?;
            (newest, None)
        }
        Kind::RedisFailover => {
            let unavailable = plane.fail_over_redis().await?;
            ("redis primary".to_string(), Some(unavailable))
        }
    };
    let after = match kind {
        Kind::RedisFailover => plane.ring().await?,
        _ => newer_ring(plane, before.version()).await?,
    };
    let needed = events::needed(&pods_before, &before, &after);
    // Every moved client is closed within the reset timeout; then all come back.
    let reset_deadline = Instant::now() + RESET_WAIT;
    while Instant::now() < reset_deadline {
        let closed: BTreeSet<usize> = fleet.closes(from, None).iter().map(|c| c.client).collect();
        if needed.is_subset(&closed) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    wait_all_connected(plane, fleet, SETTLE_TIMEOUT, memory).await;
    let settle_ms = started.elapsed().as_millis() as u64;
    let delta = plane.counters().await?.since(&counters_before);
    let row = EventRow {
        n,
        at_secs,
        kind,
        pod,
        ring_before: before.version(),
        ring_after: after.version(),
        members: after.members().len(),
        resets_needed: needed.len(),
        resets_sent: delta.connections_reset,
        reset_batches: delta.resets_published,
        publish_errors: delta.publish_errors,
        forced_closes: delta.forced_closes,
        closes: Default::default(),
        misplaced_before: events::misplaced(&pods_before, &before),
        misplaced_after: events::misplaced(&fleet.pods(), &after),
        settle_ms,
        redis_unavailable_ms: redis_unavailable.map(|d| d.as_millis() as u64),
    };
    Ok((row, Window { from, needed }))
}

/// The member with the highest ordinal (`pod-N`): the one scaling down removes.
fn newest_pod(ring: &Ring) -> Option<String> {
    ring.members()
        .iter()
        .max_by_key(|m| {
            let ordinal = m
                .name
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<u64>().ok());
            (ordinal, m.name.clone())
        })
        .map(|m| m.name.clone())
}

/// Poll the router until its ring is newer than `version`.
async fn newer_ring(plane: &Plane, version: u64) -> anyhow::Result<Ring> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ring = plane.ring().await?;
        if ring.version() > version {
            return Ok(ring);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the router's ring stayed at v{version}"
        );
        tokio::time::sleep(POLL).await;
    }
}
