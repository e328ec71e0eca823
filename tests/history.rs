//! Per-key history and `wsring.v1` resume, end to end: a real `wsring dev`
//! (router and pods as processes, a real redis-server) with `--history-size`,
//! real WebSocket clients that resume by themselves, numbered pushes through
//! the router's push API while a pod is added and another one crashes.
//!
//! What must hold (docs/interfaces.md, "Per-key history and `wsring.v1`"):
//! every accepted push reaches its key's client exactly once and in order,
//! across 4001 moves and crashes; a position the history no longer reaches is
//! told as `gone`; a malformed resume token is refused; clients that do not
//! offer `wsring.v1` see exactly the frames they would without history.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use support::{Dev, Event, WAIT};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use wsring_core::harness::admin_http::Method;
use wsring_core::protocol::{history_keys, LOCAL_NAMESPACE};
use wsring_core::resume::{decode, Frame, Position, SUBPROTOCOL};

const HISTORY: &[&str] = &["--history-size", "50", "--history-ttl", "2m"];

/// The tests of this file each run a data plane (and one a Sentinel group)
/// on these 2 cores; one at a time, so none of them measures the others'
/// load (failover and WAIT timings stretch under it).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What one resuming client saw, over all its connections.
#[derive(Debug, Default)]
struct Seen {
    /// `(epoch, offset, body)` of every push, in arrival order.
    pushes: Vec<(String, u64, String)>,
    /// Opening of each connection: `s`, `r`, or `g:<reason>`.
    openings: Vec<String>,
    /// Close code of each connection that ended (`None`: no close frame).
    closes: Vec<Option<u16>>,
    /// The last position, offered on the next connection.
    position: Option<Position>,
    /// Upgrades that failed (refused, or answered without `wsring.v1`).
    failed_upgrades: Vec<String>,
    /// Notified: the client drops its connection without a close frame
    /// (its own network drop), then reconnects.
    drop_connection: Arc<tokio::sync::Notify>,
}

impl Seen {
    /// No upgrade was answered without `wsring.v1` (refused upgrades during
    /// a recovery are allowed; they are retried).
    fn assert_every_101_spoke_v1(&self, key: &str) {
        assert!(
            !self
                .failed_upgrades
                .iter()
                .any(|e| e.starts_with("101 without")),
            "{key}: every 101 speaks wsring.v1: {:?}",
            self.failed_upgrades
        );
    }
}

/// A `wsring.v1` client of `key` that reconnects by itself, offering its
/// last position, until its task is aborted: at once after 4001, after
/// 100 ms otherwise.
fn resuming_client(dev: &Dev, key: &str) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let url = dev.url(key);
    let task = tokio::spawn({
        let seen = seen.clone();
        async move {
            loop {
                let since = seen.lock().unwrap().position.clone();
                let close = one_connection(&url, since, &seen).await;
                let delay = match close {
                    Some(Some(4001)) => 0,
                    _ => 100,
                };
                if close.is_some() {
                    seen.lock().unwrap().closes.push(close.flatten());
                }
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        }
    });
    (seen, task)
}

/// One connection until it ends: `None` if it never opened, else its close code.
async fn one_connection(
    url: &str,
    since: Option<Position>,
    seen: &Mutex<Seen>,
) -> Option<Option<u16>> {
    let mut request = url.into_client_request().unwrap();
    let mut offer = SUBPROTOCOL.to_string();
    if let Some(since) = &since {
        offer = format!("{offer}, {}", since.since_token());
    }
    request
        .headers_mut()
        .insert("sec-websocket-protocol", offer.parse().unwrap());
    let (mut ws, response) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(error) => {
            seen.lock().unwrap().failed_upgrades.push(error.to_string());
            return None;
        }
    };
    if response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.as_bytes())
        != Some(SUBPROTOCOL.as_bytes())
    {
        let what = format!("101 without {SUBPROTOCOL}: {:?}", response.headers());
        seen.lock().unwrap().failed_upgrades.push(what);
        return None;
    }
    let drop_connection = seen.lock().unwrap().drop_connection.clone();
    loop {
        let next = tokio::select! {
            next = ws.next() => next,
            () = drop_connection.notified() => return Some(None),
        };
        let bytes = match next {
            Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
            Some(Ok(Message::Binary(b))) => b.to_vec(),
            Some(Ok(Message::Close(frame))) => return Some(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Some(None),
        };
        let frame = decode(&bytes).expect("every frame is a wsring.v1 frame");
        let mut seen = seen.lock().unwrap();
        match frame {
            Frame::Push(at, body) => {
                seen.pushes.push((
                    at.epoch.clone(),
                    at.offset,
                    String::from_utf8_lossy(body).into_owned(),
                ));
                seen.position = Some(at);
            }
            Frame::Start(at) => {
                seen.openings.push("s".into());
                seen.position = Some(at);
            }
            Frame::Resumed(at) => {
                assert_eq!(Some(&at), since.as_ref(), "resumed from what was offered");
                seen.openings.push("r".into());
            }
            Frame::Gone(at, reason) => {
                seen.openings.push(format!("g:{}", reason.as_str()));
                seen.position = Some(at);
            }
            Frame::App(_) => {}
        }
    }
}

/// Push `body` to `key` through the router; `(offset, epoch)` if accepted.
async fn push(dev: &Dev, key: &str, body: &str) -> Result<(u64, String), String> {
    let path = format!("/v1/keys/{key}/messages");
    let (status, answer) = dev
        .admin(
            Method::POST,
            &path,
            Some(("text/plain", body.as_bytes().to_vec())),
        )
        .await;
    if status != 200 {
        return Err(format!("{status} {answer}"));
    }
    let answer: Value = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
    Ok((
        answer["offset"].as_u64().ok_or("no offset")?,
        answer["epoch"].as_str().ok_or("no epoch")?.to_string(),
    ))
}

/// Each key's resuming client and its task.
type Clients<'a> = HashMap<&'a str, (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>)>;

/// Each key's accepted pushes: `(offset, epoch)`.
type Accepted<'a> = HashMap<&'a str, Vec<(u64, String)>>;

/// A resuming client per key, once every one has opened.
async fn resuming_clients<'a>(dev: &Dev, keys: &'a [String]) -> Clients<'a> {
    let clients: Clients = keys
        .iter()
        .map(|k| (k.as_str(), resuming_client(dev, k)))
        .collect();
    until("every client opened", || {
        clients
            .values()
            .all(|(seen, _)| !seen.lock().unwrap().openings.is_empty())
    })
    .await;
    clients
}

/// Push `body` to `key` until accepted (the sender's side of the contract:
/// only accepted pushes count), counting refusals; at most 30 s.
async fn push_until_accepted(
    dev: &Dev,
    key: &str,
    body: &str,
    refused: &mut usize,
) -> (u64, String) {
    let mut tries = 0;
    loop {
        match push(dev, key, body).await {
            Ok(position) => return position,
            Err(error) => {
                *refused += 1;
                tries += 1;
                assert!(tries < 1500, "push to {key} never accepted: {error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Wait until every client has its key's last accepted push; on a timeout,
/// show what each late client saw, then fail.
async fn wait_caught_up(keys: &[String], accepted: &Accepted<'_>, clients: &Clients<'_>) {
    let caught_up = |k: &String| {
        let last = accepted[k.as_str()].last().unwrap().0;
        clients[k.as_str()]
            .0
            .lock()
            .unwrap()
            .pushes
            .last()
            .is_some_and(|p| p.1 >= last)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while !keys.iter().all(caught_up) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for key in keys.iter().filter(|k| !caught_up(k)) {
        let seen = clients[key.as_str()].0.lock().unwrap();
        eprintln!(
            "{key}: accepted up to {:?}, saw {:?}, openings {:?}, closes {:?}, failed upgrades {:?}",
            accepted[key.as_str()].last(),
            seen.pushes.iter().map(|p| p.1).collect::<Vec<_>>(),
            seen.openings,
            seen.closes,
            seen.failed_upgrades
        );
    }
    assert!(
        keys.iter().all(caught_up),
        "every client has its key's last push"
    );
}

/// Wait until `check` holds, or fail with `what` after [`WAIT`].
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_push_arrives_once_in_order_across_moves_a_crash_a_drain_and_drops() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dev = Dev::start_with(3, HISTORY).await;
    let keys: Vec<String> = (0..40).map(|i| format!("h-{i}")).collect();
    let clients = resuming_clients(&dev, &keys).await;

    // Numbered pushes to every key in turn; a scale-up after the first
    // round, a crash after the third, a SIGTERM (drain: 1001) of another
    // pod after the fourth, and after the fifth ten clients drop their own
    // connections. A refused push is retried (the sender's side of the
    // contract: only accepted pushes count).
    let mut accepted: Accepted = HashMap::new();
    let mut refused = 0;
    for round in 0..7 {
        if round == 1 {
            let (status, body) = dev.control(Method::POST, "/pods").await;
            assert_eq!(status, 201, "{body}");
        }
        if round == 3 {
            let (status, body) = dev.control(Method::DELETE, "/pods/pod-1?mode=crash").await;
            assert_eq!(status, 200, "{body}");
        }
        if round == 4 {
            let pods = dev.pods().await;
            let pod = pods.iter().find(|p| p.name == "pod-2").expect("pod-2 runs");
            support::sigterm(pod.pid);
        }
        if round == 5 {
            for key in &keys[..10] {
                clients[key.as_str()]
                    .0
                    .lock()
                    .unwrap()
                    .drop_connection
                    .notify_one();
            }
        }
        for key in &keys {
            let body = format!("{key}:{round}");
            let position = push_until_accepted(&dev, key, &body, &mut refused).await;
            accepted.entry(key).or_default().push(position);
        }
    }
    // Every client catches up to its key's last accepted push.
    wait_caught_up(&keys, &accepted, &clients).await;
    for (_, task) in clients.values() {
        task.abort();
    }

    let (mut moved, mut drained, mut other, mut resumed) = (0, 0, 0, 0);
    for key in &keys {
        let seen = clients[key.as_str()].0.lock().unwrap();
        let accepted = &accepted[key.as_str()];
        seen.assert_every_101_spoke_v1(key);
        let epoch = &accepted[0].1;
        assert!(accepted.iter().all(|(_, e)| e == epoch), "{key}: one epoch");
        let offsets: Vec<u64> = seen.pushes.iter().map(|p| p.1).collect();
        let expected: Vec<u64> = (1..=accepted.last().unwrap().0).collect();
        assert_eq!(offsets, expected, "{key}: each push once, in order, no gap");
        assert!(
            seen.pushes.iter().all(|p| &p.0 == epoch),
            "{key}: one epoch"
        );
        for (offset, _) in accepted {
            let body = &seen.pushes[*offset as usize - 1].2;
            assert!(body.starts_with(&format!("{key}:")), "{key}: {body}");
        }
        assert!(
            !seen.openings.iter().any(|o| o.starts_with('g')),
            "{key}: nothing was lost, so nothing is gone: {:?}",
            seen.openings
        );
        moved += seen.closes.iter().filter(|c| **c == Some(4001)).count();
        drained += seen.closes.iter().filter(|c| **c == Some(1001)).count();
        other += seen
            .closes
            .iter()
            .filter(|c| !matches!(c, Some(4001 | 1001)))
            .count();
        resumed += seen.openings.iter().filter(|o| *o == "r").count();
    }
    eprintln!(
        "history e2e: {} keys, {} pushes accepted, {refused} refused and retried, {moved} moved (4001), {drained} drained (1001), {other} crash closes and own drops, {resumed} resumed",
        keys.len(),
        accepted.values().map(Vec::len).sum::<usize>()
    );
    assert!(moved > 0, "the scale-up moved some keys");
    assert!(drained > 0, "the SIGTERM drained some clients with 1001");
    assert!(
        other >= 10,
        "the crash and the ten own drops closed clients"
    );
    assert_eq!(resumed, moved + drained + other, "every reconnect resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_history_is_told_and_plain_clients_are_untouched() {
    let _one = ONE_AT_A_TIME.lock().await;
    gone_history_and_plain_clients(&[]).await;
}

/// The same over HTTP/2 between router and pods: the subprotocol and the
/// resume token cross the extended CONNECT both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_history_and_plain_clients_over_h2() {
    let _one = ONE_AT_A_TIME.lock().await;
    gone_history_and_plain_clients(&["--router-arg=--pod-transport=h2"]).await;
}

async fn gone_history_and_plain_clients(extra: &[&str]) {
    let args: Vec<&str> = HISTORY.iter().chain(extra).copied().collect();
    let dev = Dev::start_with(3, &args).await;
    let key = "g-1";
    let first = push(&dev, key, "before").await.unwrap();
    assert_eq!(first.0, 1);

    // A plain client (no wsring.v1 offered): plain frames, no protocol.
    let mut plain = support::Client::connect(&dev.url(key), key).await;
    plain.send_text("echo").await;
    assert_eq!(
        plain.next_event(WAIT).await,
        Some(Event::Text("echo".into()))
    );
    push(&dev, key, "live").await.unwrap();
    assert_eq!(
        plain.next_event(WAIT).await,
        Some(Event::Text("live".into()))
    );

    // Resuming from before 60 further pushes (size 50): trimmed, told,
    // then live from the current position.
    let stale = Position {
        epoch: first.1.clone(),
        offset: 1,
    };
    for n in 0..60 {
        push(&dev, key, &format!("n{n}")).await.unwrap();
    }
    let seen = Mutex::new(Seen::default());
    let opened =
        one_connection_until(&dev, key, Some(stale), &seen, |s| !s.openings.is_empty()).await;
    assert_eq!(opened.openings, ["g:trimmed"]);
    assert_eq!(
        opened.position,
        Some(Position {
            epoch: first.1.clone(),
            offset: 62
        })
    );

    // An epoch that is not the key's: gone (epoch).
    let foreign = Position {
        epoch: "0123456789abcdef".into(),
        offset: 3,
    };
    let seen = Mutex::new(Seen::default());
    let opened =
        one_connection_until(&dev, key, Some(foreign), &seen, |s| !s.openings.is_empty()).await;
    assert_eq!(opened.openings, ["g:epoch"]);

    // Resuming from within the history: exactly what was missed.
    let recent = Position {
        epoch: first.1.clone(),
        offset: 59,
    };
    let seen = Mutex::new(Seen::default());
    let opened =
        one_connection_until(&dev, key, Some(recent), &seen, |s| s.pushes.len() == 3).await;
    assert_eq!(opened.openings, ["r"]);
    let bodies: Vec<&str> = opened.pushes.iter().map(|p| p.2.as_str()).collect();
    assert_eq!(bodies, ["n57", "n58", "n59"]);

    // A malformed resume token is refused (400) through the router.
    let mut request = dev.url(key).into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "wsring.v1, wsring.since.nope".parse().unwrap(),
    );
    let error = tokio_tungstenite::connect_async(request).await.unwrap_err();
    assert!(error.to_string().contains("400"), "{error}");
    plain.close().await;
}

/// One `wsring.v1` connection that stays open until `done` holds for what it saw.
async fn one_connection_until(
    dev: &Dev,
    key: &str,
    since: Option<Position>,
    seen: &Mutex<Seen>,
    done: impl Fn(&Seen) -> bool,
) -> Seen {
    let url = dev.url(key);
    let connection = one_connection(&url, since, seen);
    let watch = until("the connection saw what it should", || {
        done(&seen.lock().unwrap())
    });
    tokio::select! {
        close = connection => panic!("connection ended early: {close:?}"),
        () = watch => {}
    }
    std::mem::take(&mut *seen.lock().unwrap())
}

#[tokio::test]
async fn history_needs_a_real_redis() {
    let stderr = support::refused_stderr(
        "dev",
        &[
            "--builtin-bus",
            "--history-size",
            "10",
            "--token",
            "t",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--control-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    assert!(stderr.contains("--history-size"), "{stderr}");
    assert!(stderr.contains("redis-server"), "{stderr}");
}

/// A Redis that loses its primary mid-run (SIGKILL; the Sentinel promotes a
/// replica): pushes are refused while there is no primary and retried,
/// resets and the history follow the new primary, and every accepted push
/// still reaches its client once and in order (`--history-replicas 1`: a
/// push counts only once a replica has it). No epoch changes: nothing a
/// client saw was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_resets_survive_a_sentinel_failover() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut group = wsring_core::harness::SentinelGroup::start()
        .await
        .expect("redis-server can run a primary, a replica and a Sentinel");
    let url = group.url();
    let outcome = through_a_failover(url, "f", || async {
        group.kill_primary_and_fail_over().await.expect("failover")
    })
    .await;
    eprintln!("sentinel failover: {outcome}");
}

/// The same on a Redis Cluster (three primaries with a replica each;
/// `redis+cluster://`): the history's keys are spread over the shards, the
/// reset and history channels are sharded pub/sub (`SSUBSCRIBE` on the
/// shard of each channel's slot), and the primary holding the first key is
/// killed mid-run; its replica takes over the slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_resets_survive_a_cluster_failover() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut cluster = wsring_core::harness::RedisCluster::start()
        .await
        .expect("redis-server and redis-cli can run a three-shard cluster");
    let url = cluster.url();
    let mut shard_channels = Vec::new();
    let (channels, cluster) = (&mut shard_channels, &mut cluster);
    let outcome = through_a_failover(url, "c", move || async move {
        // While the pods are subscribed: which channels each shard carries.
        for primary in cluster.primary_urls().await {
            let client = redis::Client::open(primary).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let names: Vec<String> = redis::cmd("PUBSUB")
                .arg("SHARDCHANNELS")
                .query_async(&mut conn)
                .await
                .unwrap();
            channels.extend(names);
        }
        // `wsring dev` runs cluster "dev" in the local namespace.
        let (log, _) = history_keys(LOCAL_NAMESPACE, "dev", "c-0");
        cluster
            .kill_primary_of(&log)
            .await
            .expect("cluster failover")
    })
    .await;
    shard_channels.sort();
    eprintln!("cluster failover: {outcome}; shard channels {shard_channels:?}");
    assert!(
        shard_channels.iter().any(|c| c.ends_with(":pushes")),
        "the history channel is a shard channel: {shard_channels:?}"
    );
    assert!(
        shard_channels
            .iter()
            .filter(|c| c.contains(":pod:"))
            .count()
            >= 3,
        "every pod's reset channel is a shard channel: {shard_channels:?}"
    );
}

/// 20 resuming clients on keys `PREFIX-N`, 8 rounds of a push to every key
/// through `wsring dev` on the Redis at `url`; `fail_over` runs before round
/// 2 (returning how long there was no primary), a pod is added before round
/// 5. Every accepted push reaches its client once and in order, in one
/// epoch; the scale-up's moved clients are closed (by a reset, or by the
/// router if the pods are still resubscribing). Returns what happened, for
/// the log.
async fn through_a_failover<F, Fut>(url: String, prefix: &str, fail_over: F) -> String
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Duration>,
{
    let dev = Dev::start_against(
        None,
        url,
        3,
        &["--history-size", "200", "--history-replicas", "1"],
    )
    .await;
    let keys: Vec<String> = (0..20).map(|i| format!("{prefix}-{i}")).collect();
    let clients = resuming_clients(&dev, &keys).await;

    let mut accepted: Accepted = HashMap::new();
    let mut refused = 0;
    let mut fail_over = Some(fail_over);
    let mut failover_took = None;
    for round in 0..8 {
        if round == 2 {
            let fail_over = fail_over.take().expect("once");
            failover_took = Some(fail_over().await);
        }
        if round == 5 {
            // Resets after the failover go through the new primary.
            let (status, body) = dev.control(Method::POST, "/pods").await;
            assert_eq!(status, 201, "{body}");
        }
        for key in &keys {
            let body = format!("{key}:{round}");
            let position = push_until_accepted(&dev, key, &body, &mut refused).await;
            accepted.entry(key).or_default().push(position);
        }
    }
    // The scale-up's moved clients are closed: by a reset if the pods hear
    // it, else by the router at its reset timeout; then they resume.
    until("the scale-up's moved clients were closed", || {
        clients.values().any(|(seen, _)| {
            seen.lock()
                .unwrap()
                .closes
                .iter()
                .any(|c| *c == Some(4001) || c.is_none())
        })
    })
    .await;
    wait_caught_up(&keys, &accepted, &clients).await;
    let (mut moved, mut closed_by_router) = (0, 0);
    for key in &keys {
        let seen = clients[key.as_str()].0.lock().unwrap();
        let accepted = &accepted[key.as_str()];
        seen.assert_every_101_spoke_v1(key);
        // A push refused because no replica confirmed it in time may still
        // be in the stream (and then reach the client): only accepted pushes
        // are promised, each exactly once and in order.
        let offsets: Vec<u64> = seen.pushes.iter().map(|p| p.1).collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "{key}: once and in order: {offsets:?}"
        );
        for (offset, _) in accepted {
            assert!(
                offsets.contains(offset),
                "{key}: accepted {offset} missing; saw {offsets:?}, openings {:?}, closes {:?}",
                seen.openings,
                seen.closes
            );
        }
        assert!(
            accepted.iter().all(|(_, e)| *e == accepted[0].1),
            "{key}: the replica kept the history: one epoch"
        );
        assert!(
            !seen.openings.iter().any(|o| o.starts_with('g')),
            "{key}: nothing lost: {:?}",
            seen.openings
        );
        moved += seen.closes.iter().filter(|c| **c == Some(4001)).count();
        closed_by_router += seen.closes.iter().filter(|c| c.is_none()).count();
    }
    for (_, task) in clients.values() {
        task.abort();
    }
    // A reset the pods cannot hear yet (still resubscribing to the new
    // primary) falls back to the router's own close, as during any outage.
    assert!(
        moved + closed_by_router > 0,
        "the scale-up moved keys, by reset or by the router's close"
    );
    format!(
        "no primary for {failover_took:?}; {} pushes accepted, {refused} refused and retried; after the scale-up {moved} moved with 4001, {closed_by_router} closed by the router (reset not heard yet)",
        accepted.values().map(Vec::len).sum::<usize>()
    )
}

/// `push` answers carry the position (the README's push example).
#[tokio::test]
async fn push_answers_carry_the_position() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dev = Dev::start_with(1, HISTORY).await;
    let (status, body) = dev
        .admin(
            Method::POST,
            "/v1/keys/alice/messages",
            Some(("text/plain", b"hi".to_vec())),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["pod"], "pod-0");
    assert_eq!(answer["delivered"], 0);
    assert_eq!(answer["offset"], 1);
    assert_eq!(answer["epoch"].as_str().map(str::len), Some(16));
}
