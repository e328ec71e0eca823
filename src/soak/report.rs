//! What a soak found: one row per event, totals, pushes, memory, and the
//! verdict (markdown table or `--json`). The verdict is what the exit code
//! reports: resets needed = resets sent, no connection lost, no unexpected
//! close, every moved client closed with 4001; with pushes, no accepted push
//! duplicated or out of order, and with history none lost. [`Comparison`]
//! puts the runs of `--history both` side by side.

use std::fmt::Write as _;

use serde::Serialize;

use super::events::{Attribution, Kind};
use super::pushes::PushTotals;

/// One scale event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    /// 1-based.
    pub n: usize,
    /// Seconds since all clients were first connected.
    pub at_secs: f64,
    /// What happened.
    pub kind: Kind,
    /// The pod added or removed.
    pub pod: String,
    /// Ring version before and after.
    pub ring_before: u64,
    /// Ring version after.
    pub ring_after: u64,
    /// Members after.
    pub members: usize,
    /// Connected clients whose owner changed (router's `GET /ring` before/after).
    pub resets_needed: usize,
    /// Connections the router scheduled for a reset (`connections_reset` delta).
    pub resets_sent: u64,
    /// Reset messages published (one per old owner).
    pub reset_batches: u64,
    /// Reset messages Redis did not take.
    pub publish_errors: u64,
    /// Moved connections the router had to close itself at the reset timeout.
    pub forced_closes: u64,
    /// What clients saw in this event's window.
    #[serde(flatten)]
    pub closes: Attribution,
    /// Clients not on their owner just before the event (must be 0).
    pub misplaced_before: usize,
    /// Clients not on their owner once everyone was back (must be 0).
    pub misplaced_after: usize,
    /// From the control call until every client was connected again, ms.
    pub settle_ms: u64,
    /// A Redis failover: how long there was no writable primary with a
    /// synced replica, ms.
    pub redis_unavailable_ms: Option<u64>,
}

/// Memory of one process (or group) over the run, KiB.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RssRow {
    /// `router`, `pods (sum)`, `largest pod`.
    pub process: String,
    /// Before any client connected.
    pub idle_kib: u64,
    /// All clients connected, before the first event.
    pub start_kib: u64,
    /// Highest sample (every second).
    pub peak_kib: u64,
    /// After the last event, clients still connected.
    pub end_kib: u64,
}

/// The whole soak (the JSON shape of `--json`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SoakReport {
    /// The router's `--pod-transport` (`http1` or `h2`).
    pub pod_transport: String,
    /// `off` or `on (size N)`.
    pub history: String,
    /// `single` or the Sentinel group.
    pub redis: String,
    /// `--connections` as asked.
    pub requested_connections: usize,
    /// Connections actually used (capped by the open-files limit).
    pub connections: usize,
    /// Open-files soft limit in force.
    pub nofile_limit: u64,
    /// Pods at start.
    pub pods: usize,
    /// `--duration-secs`, `--interval-secs`.
    pub duration_secs: u64,
    /// Seconds between events.
    pub interval_secs: u64,
    /// Seconds from start until all clients were first connected.
    pub ramp_secs: f64,
    /// Every event.
    pub events: Vec<EventRow>,
    /// Sum over add/graceful events (crash events are reported on their own).
    pub resets_needed: usize,
    /// Sum over add/graceful events.
    pub resets_sent: u64,
    /// Moved clients closed with 4001.
    pub closes_4001: usize,
    /// Moved clients closed without 4001 (add/graceful events).
    pub moved_without_4001: usize,
    /// Moved clients never closed.
    pub missed_resets: usize,
    /// Closes of clients that did not need to move, including outside any event.
    pub unexpected_closes: usize,
    /// Clients that lost their connection to a crashed pod (expected).
    pub crash_closes: usize,
    /// Router's own closes at the reset timeout.
    pub forced_closes: u64,
    /// Clients not connected at the end.
    pub connections_lost: usize,
    /// Messages echoed back unchanged.
    pub messages_echoed: u64,
    /// Wrong or missing echoes (informational: a message in flight when the pod closes is lost).
    pub echo_errors: u64,
    /// Failed connect attempts (informational: a reconnect may race the ring change).
    pub connect_failures: u64,
    /// The push load, when there was one.
    pub pushes: Option<PushTotals>,
    /// Memory.
    pub rss: Vec<RssRow>,
    /// True when every check passed.
    pub ok: bool,
    /// What failed.
    pub failures: Vec<String>,
}

impl SoakReport {
    /// Fill the totals from the event rows and decide the verdict.
    pub fn finish(&mut self, outside_unexpected: usize) {
        let checked = || self.events.iter().filter(|e| e.kind != Kind::Crash);
        self.resets_needed = checked().map(|e| e.resets_needed).sum();
        self.resets_sent = checked().map(|e| e.resets_sent).sum();
        self.moved_without_4001 = checked().map(|e| e.closes.moved_other_close).sum();
        let all = || self.events.iter();
        self.closes_4001 = all().map(|e| e.closes.closes_4001).sum();
        self.missed_resets = all().map(|e| e.closes.missed).sum();
        self.crash_closes = all().map(|e| e.closes.crash_closes).sum();
        self.forced_closes = all().map(|e| e.forced_closes).sum();
        self.unexpected_closes =
            outside_unexpected + all().map(|e| e.closes.unexpected).sum::<usize>();
        let misplaced: usize = all().map(|e| e.misplaced_before + e.misplaced_after).sum();
        let mut failures = Vec::new();
        if self.events.is_empty() {
            failures.push("no scale event ran (duration shorter than the interval?)".into());
        }
        if self.resets_needed != self.resets_sent as usize {
            failures.push(format!(
                "resets needed {} != resets sent {}",
                self.resets_needed, self.resets_sent
            ));
        }
        for (n, what) in [
            (self.connections_lost, "connections lost"),
            (self.unexpected_closes, "unexpected closes"),
            (self.moved_without_4001, "moved clients closed without 4001"),
            (self.missed_resets, "moved clients never closed"),
            (
                misplaced,
                "clients found on a pod that does not own their key",
            ),
        ] {
            if n > 0 {
                failures.push(format!("{n} {what}"));
            }
        }
        let ring_moved = all()
            .filter(|e| e.kind == Kind::RedisFailover && e.ring_before != e.ring_after)
            .count();
        if ring_moved > 0 {
            failures.push(format!("{ring_moved} Redis failovers changed the ring"));
        }
        if let Some(p) = &self.pushes {
            // Without history a push to a key between owners reaches nobody
            // (that is what history is for); a copy or a reordering never.
            let lost = if self.history == "off" { 0 } else { p.lost };
            for (n, what) in [
                (lost, "accepted pushes lost"),
                (p.duplicated, "pushes received twice"),
                (p.out_of_order, "pushes received out of order"),
                (p.malformed, "frames neither echo nor push"),
            ] {
                if n > 0 {
                    failures.push(format!("{n} {what}"));
                }
            }
            if p.accepted == 0 {
                failures.push("no push was accepted".into());
            }
        }
        self.ok = failures.is_empty();
        self.failures = failures;
    }

    /// Markdown: settings, one row per event, totals, memory, verdict.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## wsring soak: {} connections ({} asked, open-files limit {}, pod transport {}), {} pods, {} s, an event every {} s, history {}, Redis {}\n",
            self.connections,
            self.requested_connections,
            self.nofile_limit,
            self.pod_transport,
            self.pods,
            self.duration_secs,
            self.interval_secs,
            self.history,
            self.redis
        );
        let _ = writeln!(
            out,
            "| # | t (s) | event | ring | needed | sent | batches | 4001 seen | other close | crash close | unexpected | missed | forced | all back (ms) |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for e in &self.events {
            let outage = e
                .redis_unavailable_ms
                .map_or_else(String::new, |ms| format!(" (no primary for {ms} ms)"));
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:?} {}{outage} | v{}→v{} ({} pods) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                e.n,
                e.at_secs,
                e.kind,
                e.pod,
                e.ring_before,
                e.ring_after,
                e.members,
                e.resets_needed,
                e.resets_sent,
                e.reset_batches,
                e.closes.closes_4001,
                e.closes.moved_other_close,
                e.closes.crash_closes,
                e.closes.unexpected,
                e.closes.missed,
                e.forced_closes,
                e.settle_ms
            );
        }
        let _ = writeln!(
            out,
            "\n| total | value |\n|---|---|\n\
             | resets needed (add/graceful) | {} |\n| resets sent (add/graceful) | {} |\n\
             | 4001 closes seen | {} |\n| moved without 4001 | {} |\n| moved never closed | {} |\n\
             | unexpected closes | {} |\n| crash closes (expected) | {} |\n| router forced closes | {} |\n\
             | connections lost | {} |\n| messages echoed | {} |\n| echo errors | {} |\n\
             | failed connect attempts | {} |\n| ramp to all connected (s) | {:.1} |",
            self.resets_needed,
            self.resets_sent,
            self.closes_4001,
            self.moved_without_4001,
            self.missed_resets,
            self.unexpected_closes,
            self.crash_closes,
            self.forced_closes,
            self.connections_lost,
            self.messages_echoed,
            self.echo_errors,
            self.connect_failures,
            self.ramp_secs
        );
        if let Some(p) = &self.pushes {
            let _ = writeln!(out, "\n| pushes ({}/s) | value |\n|---|---|", p.per_second);
            for (name, value) in push_rows(p) {
                let _ = writeln!(out, "| {name} | {value} |");
            }
        }
        let mib = |kib: u64| kib as f64 / 1024.0;
        let _ = writeln!(
            out,
            "\n| RSS (MiB) | no clients | start | peak | end |\n|---|---|---|---|---|"
        );
        for r in &self.rss {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                r.process,
                mib(r.idle_kib),
                mib(r.start_kib),
                mib(r.peak_kib),
                mib(r.end_kib)
            );
        }
        let verdict = if self.ok {
            "PASS".to_string()
        } else {
            format!("FAIL: {}", self.failures.join("; "))
        };
        let _ = writeln!(out, "\nverdict: {verdict}");
        out
    }
}

/// The push figures as (name, value) rows, shared by one report and the comparison.
fn push_rows(p: &PushTotals) -> Vec<(&'static str, String)> {
    let ms = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |ms| format!("{ms:.2}"));
    vec![
        ("accepted", p.accepted.to_string()),
        ("refused (retry is the sender's)", p.refused.to_string()),
        ("turns skipped (rate not kept)", p.skipped.to_string()),
        ("answered delivered: 0", p.delivered_zero.to_string()),
        ("received exactly once", p.received_once.to_string()),
        ("lost", p.lost.to_string()),
        ("duplicated", p.duplicated.to_string()),
        ("out of order", p.out_of_order.to_string()),
        ("received though refused", p.unaccepted_received.to_string()),
        ("history gone (`g`)", p.gone.to_string()),
        ("resumes", p.resumes.to_string()),
        ("resume p50 ms (101 → caught up)", ms(p.resume_p50_ms)),
        ("resume p99 ms (101 → caught up)", ms(p.resume_p99_ms)),
        ("resume max ms (101 → caught up)", ms(p.resume_max_ms)),
        (
            "reconnect + resume p50 ms (connect → caught up)",
            ms(p.reconnect_resume_p50_ms),
        ),
        (
            "reconnect + resume p99 ms (connect → caught up)",
            ms(p.reconnect_resume_p99_ms),
        ),
    ]
}

/// The runs of `--history both` (the JSON shape then).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// History off, then on.
    pub runs: Vec<SoakReport>,
    /// True when every run passed.
    pub ok: bool,
}

impl Comparison {
    /// The runs, in order.
    pub fn new(runs: Vec<SoakReport>) -> Comparison {
        let ok = runs.iter().all(|r| r.ok);
        Comparison { runs, ok }
    }

    /// Every run's report, then the push figures side by side.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for run in &self.runs {
            out.push_str(&run.markdown());
            out.push('\n');
        }
        let with_pushes: Vec<(&SoakReport, &PushTotals)> = self
            .runs
            .iter()
            .filter_map(|r| Some((r, r.pushes.as_ref()?)))
            .collect();
        let Some((_, first)) = with_pushes.first() else {
            return out;
        };
        let _ = write!(out, "## pushes side by side\n\n| pushes |");
        for (r, _) in &with_pushes {
            let _ = write!(out, " history {} |", r.history);
        }
        let _ = write!(out, "\n|---|");
        for _ in &with_pushes {
            out.push_str("---|");
        }
        out.push('\n');
        let columns: Vec<Vec<(&str, String)>> =
            with_pushes.iter().map(|(_, p)| push_rows(p)).collect();
        for (row, (name, _)) in push_rows(first).iter().enumerate() {
            let _ = write!(out, "| {name} |");
            for column in &columns {
                let _ = write!(out, " {} |", column[row].1);
            }
            out.push('\n');
        }
        let verdict = if self.ok { "PASS" } else { "FAIL" };
        let _ = writeln!(out, "\nverdict (all runs): {verdict}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: Kind, needed: usize, sent: u64, closes: Attribution) -> EventRow {
        EventRow {
            n: 1,
            at_secs: 5.0,
            kind,
            pod: "pod-3".into(),
            ring_before: 3,
            ring_after: 4,
            members: 4,
            resets_needed: needed,
            resets_sent: sent,
            reset_batches: 3,
            publish_errors: 0,
            forced_closes: 0,
            closes,
            misplaced_before: 0,
            misplaced_after: 0,
            settle_ms: 40,
            redis_unavailable_ms: None,
        }
    }

    #[test]
    fn clean_run_passes_and_crash_events_are_not_in_the_reset_totals() {
        let ok = Attribution {
            closes_4001: 10,
            ..Attribution::default()
        };
        let crash = Attribution {
            crash_closes: 7,
            ..Attribution::default()
        };
        let mut r = SoakReport {
            events: vec![row(Kind::Add, 10, 10, ok), row(Kind::Crash, 7, 2, crash)],
            ..SoakReport::default()
        };
        r.finish(0);
        assert!(r.ok, "{:?}", r.failures);
        assert_eq!(
            (r.resets_needed, r.resets_sent, r.crash_closes),
            (10, 10, 7)
        );
        assert!(r.markdown().contains("verdict: PASS"));
    }

    #[test]
    fn mismatches_and_losses_fail() {
        let mut r = SoakReport {
            events: vec![row(Kind::Graceful, 10, 9, Attribution::default())],
            connections_lost: 1,
            ..SoakReport::default()
        };
        r.finish(2);
        assert!(!r.ok);
        let text = r.failures.join("; ");
        assert!(text.contains("resets needed 10 != resets sent 9"), "{text}");
        assert!(text.contains("1 connections lost"), "{text}");
        assert!(text.contains("2 unexpected closes"), "{text}");
        assert!(r.markdown().contains("verdict: FAIL"));
    }

    #[test]
    fn lost_pushes_fail_with_history_and_are_only_counted_without() {
        let ok = Attribution::default();
        let pushes = PushTotals {
            accepted: 100,
            received_once: 97,
            lost: 3,
            ..PushTotals::default()
        };
        let mut off = SoakReport {
            history: "off".into(),
            events: vec![row(Kind::Add, 0, 0, ok)],
            pushes: Some(pushes.clone()),
            ..SoakReport::default()
        };
        off.finish(0);
        assert!(off.ok, "{:?}", off.failures);
        assert!(off.markdown().contains("| lost | 3 |"));
        let mut on = SoakReport {
            history: "on (size 1000)".into(),
            events: vec![row(Kind::Add, 0, 0, ok)],
            pushes: Some(PushTotals {
                duplicated: 1,
                ..pushes
            }),
            ..SoakReport::default()
        };
        on.finish(0);
        assert_eq!(
            on.failures,
            ["3 accepted pushes lost", "1 pushes received twice"]
        );
    }

    #[test]
    fn a_failover_that_moves_the_ring_fails() {
        let mut failover = row(Kind::RedisFailover, 0, 0, Attribution::default());
        failover.ring_after = failover.ring_before + 1;
        let mut r = SoakReport {
            events: vec![failover],
            ..SoakReport::default()
        };
        r.finish(0);
        assert_eq!(r.failures, ["1 Redis failovers changed the ring"]);
    }
}
