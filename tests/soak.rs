//! `wsring soak` at small scale, as part of `cargo test`: the real command
//! (a `wsring dev` child with a private redis-server, real clients), checked
//! through its JSON report.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

mod support;
use support::wsring_command;

/// Run `wsring soak` with 300 connections on 3 pods and `extra` arguments;
/// its JSON report (one run's, or `{runs, ok}` with `--history both`),
/// after checking it passed.
async fn soak_json(extra: &[&str]) -> Value {
    let run = wsring_command("soak")
        .args(["--connections", "300", "--pods", "3"])
        .args(["--interval-secs", "3", "--duration-secs", "60"])
        .args(["--message-interval-ms", "1000", "--json"])
        .args(extra)
        .stdout(Stdio::piped())
        .output();
    // Generous: the soak itself takes ~10-20 s per run; the machine is shared.
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("soak finished in time")
        .expect("soak ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("soak printed no JSON report ({e}):\n{stdout}"));
    eprintln!("{report:#}");
    assert!(output.status.success(), "soak failed: {report}");
    assert_eq!(report["ok"], true);
    report
}

/// One run's report: every connection kept, no unexpected close, no reset missed.
fn assert_clean(report: &Value) {
    assert_eq!(report["ok"], true, "{}", report["failures"]);
    assert_eq!(report["connections"], 300);
    assert_eq!(report["connectionsLost"], 0);
    assert_eq!(report["unexpectedCloses"], 0);
    assert_eq!(report["missedResets"], 0);
}

/// [`soak_json`] of a single run, checked with [`assert_clean`].
async fn soak(extra: &[&str]) -> Value {
    let report = soak_json(extra).await;
    assert_clean(&report);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_resets_exactly_the_moved_connections() {
    let report = soak(&["--max-events", "2"]).await;
    let events = report["events"].as_array().expect("events");
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["add", "graceful"]);
    for e in events {
        let needed = e["resetsNeeded"].as_u64().unwrap();
        assert!(needed > 0, "a ring change moves some of 300 keys: {e}");
        assert_eq!(e["resetsSent"].as_u64(), Some(needed), "{e}");
        assert_eq!(e["closes4001"].as_u64(), Some(needed), "{e}");
        assert_eq!(e["unexpected"], 0, "{e}");
        assert_eq!(e["misplacedAfter"], 0, "{e}");
    }
    // Scaling 3 → 4 → 3 moves exactly the same clients there and back.
    assert_eq!(events[0]["resetsNeeded"], events[1]["resetsNeeded"]);
    assert_eq!(report["resetsNeeded"], report["resetsSent"]);
    assert!(report["messagesEchoed"].as_u64().unwrap() > 0);
    let rss = report["rss"].as_array().expect("rss rows");
    assert!(
        rss.iter().all(|r| r["peakKib"].as_u64().unwrap() > 0),
        "{rss:?}"
    );
}

/// `--crash`: the fourth event SIGKILLs a pod. Exactly its clients lose their
/// connection (no reset can reach them: the pod is gone), nobody else is
/// closed, and every one of them is back on its new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_crash_closes_only_the_crashed_pods_clients() {
    let report = soak(&["--max-events", "4", "--crash"]).await;
    let events = report["events"].as_array().expect("events");
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["add", "graceful", "add", "crash"]);
    let crash = &events[3];
    let needed = crash["resetsNeeded"].as_u64().unwrap();
    assert!(needed > 0, "the crashed pod had clients: {crash}");
    assert_eq!(crash["crashCloses"].as_u64(), Some(needed), "{crash}");
    assert_eq!(crash["unexpected"], 0, "{crash}");
    assert_eq!(crash["missed"], 0, "{crash}");
    assert_eq!(crash["misplacedAfter"], 0, "{crash}");
    assert!(crash["settleMs"].as_u64().is_some(), "{crash}");
    assert_eq!(report["crashCloses"].as_u64(), Some(needed));
    // The three orderly events are checked exactly, as without --crash.
    for e in &events[..3] {
        let needed = e["resetsNeeded"].as_u64().unwrap();
        assert_eq!(e["resetsSent"].as_u64(), Some(needed), "{e}");
        assert_eq!(e["closes4001"].as_u64(), Some(needed), "{e}");
    }
}

/// The same with the router reaching pods over HTTP/2 (`--pod-transport h2`):
/// one socket per client in the router, the same reset accounting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_over_h2_resets_exactly_the_moved_connections() {
    let report = soak(&["--max-events", "4", "--crash", "--pod-transport", "h2"]).await;
    assert_eq!(report["podTransport"], "h2");
    let events = report["events"].as_array().expect("events");
    assert_eq!(events.len(), 4);
    for e in &events[..3] {
        let needed = e["resetsNeeded"].as_u64().unwrap();
        assert!(needed > 0, "{e}");
        assert_eq!(e["resetsSent"].as_u64(), Some(needed), "{e}");
        assert_eq!(e["closes4001"].as_u64(), Some(needed), "{e}");
    }
    let crash = &events[3];
    assert_eq!(crash["crashCloses"], crash["resetsNeeded"], "{crash}");
    assert_eq!(crash["unexpected"], 0, "{crash}");
}

/// Numbered pushes (100/s) during adds, a graceful stop, a crash and a kill
/// of the Redis primary (Sentinel group), once without history and once
/// with it. With history every accepted push reaches its client exactly
/// once and in order, through the 4001 moves, the crash and the failover;
/// without it, what was pushed while a key moved is lost (and counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_pushes_loses_nothing_with_history_and_counts_the_loss_without() {
    let report = soak_json(&[
        "--max-events",
        "5",
        "--crash",
        "--redis-failover",
        "--pushes-per-sec",
        "100",
        "--history",
        "both",
    ])
    .await;
    let runs = report["runs"].as_array().expect("two runs");
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_clean(run);
        let kinds: Vec<&str> = run["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["add", "graceful", "redisFailover", "add", "crash"]);
        let failover = &run["events"][2];
        assert_eq!(failover["ringBefore"], failover["ringAfter"], "{failover}");
        assert_eq!(failover["unexpected"], 0, "{failover}");
        assert!(
            failover["redisUnavailableMs"].as_u64().is_some(),
            "{failover}"
        );
        let p = &run["pushes"];
        let n = |field: &str| p[field].as_u64().unwrap_or_else(|| panic!("{field}: {p}"));
        assert!(n("accepted") > 100, "{p}");
        assert_eq!(n("receivedOnce") + n("lost"), n("accepted"), "{p}");
        assert_eq!(
            (n("duplicated"), n("outOfOrder"), n("malformed")),
            (0, 0, 0),
            "{p}"
        );
    }
    let (off, on) = (&runs[0], &runs[1]);
    assert_eq!(off["history"], "off");
    assert_eq!(on["history"], "on (size 1000)");
    assert_eq!(off["pushes"]["resumes"], 0, "plain clients do not resume");
    let on = &on["pushes"];
    assert_eq!(on["lost"], 0, "{on}");
    assert_eq!(on["gone"], 0, "the replica kept every accepted push: {on}");
    assert!(
        on["resumes"].as_u64().unwrap() > 0,
        "moved and crashed clients resumed: {on}"
    );
    assert!(on["resumeP99Ms"].as_f64().is_some(), "{on}");
}

/// Options that cannot make a meaningful soak are refused up front.
#[tokio::test]
async fn soak_refuses_history_without_pushes_and_a_zero_history() {
    let stderr = support::refused_stderr("soak", &["--history", "on"]).await;
    assert!(stderr.contains("--pushes-per-sec"), "{stderr}");
    let stderr = support::refused_stderr(
        "soak",
        &[
            "--pushes-per-sec",
            "10",
            "--history",
            "on",
            "--history-size",
            "0",
        ],
    )
    .await;
    assert!(
        stderr.contains("--history-size must be at least 1"),
        "{stderr}"
    );
    let stderr = support::refused_stderr("soak", &["--history", "sometimes"]).await;
    assert!(stderr.contains("sometimes"), "{stderr}");
}
