//! Clients that behave like a well-written wsring client for the length of the
//! walk-through: on close 4001 reconnect at once, on anything else retry with
//! a short capped backoff. Every connection (a "visit": the pod of its 101,
//! when it opened, how and when it ended) is logged per client, so a step can
//! ask afterwards exactly who was closed, with which code, and when the last
//! one was back on its new owner.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::support::{Client, Event};

/// First wait after a close other than 4001, or after a failed attempt.
const BACKOFF_START: Duration = Duration::from_millis(50);
/// Longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Initial connects in flight at once.
const RAMP: usize = 100;

/// One connection of one client.
#[derive(Clone, Debug)]
pub struct Visit {
    /// `x-wsring-pod` of its 101.
    pub pod: String,
    /// When the 101 arrived.
    pub opened: Instant,
    /// How it ended (close code, `None` without a close frame) and when.
    pub closed: Option<(Option<u16>, Instant)>,
}

/// A close seen by client `client`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Close {
    /// Client index.
    pub client: usize,
    /// Pod the connection was on.
    pub pod: String,
    /// Close code, `None` when it ended without a close frame.
    pub code: Option<u16>,
}

struct Shared {
    keys: Vec<String>,
    visits: Vec<Mutex<Vec<Visit>>>,
}

/// The running clients.
pub struct Fleet {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Fleet {
    /// One client per key, each connecting to `url(key)`.
    pub fn start(keys: Vec<String>, url: impl Fn(&str) -> String) -> Fleet {
        let shared = Arc::new(Shared {
            visits: keys.iter().map(|_| Mutex::new(Vec::new())).collect(),
            keys,
        });
        let (stop, stopped) = watch::channel(false);
        let ramp = Arc::new(tokio::sync::Semaphore::new(RAMP));
        let mut tasks = JoinSet::new();
        for (i, key) in shared.keys.iter().enumerate() {
            tasks.spawn(run(
                i,
                url(key),
                shared.clone(),
                stopped.clone(),
                ramp.clone(),
            ));
        }
        Fleet {
            shared,
            stop,
            tasks,
        }
    }

    /// The routing keys, by client index.
    pub fn keys(&self) -> &[String] {
        &self.shared.keys
    }

    /// Every client's current pod (`None` while it is reconnecting).
    pub fn pods(&self) -> Vec<Option<String>> {
        (0..self.shared.keys.len())
            .map(|i| {
                let visits = self.visits(i);
                visits
                    .last()
                    .filter(|v| v.closed.is_none())
                    .map(|v| v.pod.clone())
            })
            .collect()
    }

    /// Client `i`'s connections so far.
    pub fn visits(&self, i: usize) -> Vec<Visit> {
        self.shared.visits[i]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Closes that happened at or after `since`.
    pub fn closes_since(&self, since: Instant) -> Vec<Close> {
        let mut out = Vec::new();
        for i in 0..self.shared.keys.len() {
            for v in self.visits(i) {
                if let Some((code, at)) = v.closed {
                    if at >= since {
                        out.push(Close {
                            client: i,
                            pod: v.pod,
                            code,
                        });
                    }
                }
            }
        }
        out
    }

    /// The latest connection opened at or after `since`, if any.
    pub fn last_open_since(&self, since: Instant) -> Option<Instant> {
        (0..self.shared.keys.len())
            .flat_map(|i| self.visits(i))
            .map(|v| v.opened)
            .filter(|at| *at >= since)
            .max()
    }

    /// Wait until every client is connected and `on_owner(key, pod)` holds for
    /// each; `Err` names the clients that were not, after `limit`.
    pub async fn settle(
        &self,
        limit: Duration,
        on_owner: impl Fn(&str, &str) -> bool,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            let wrong: Vec<String> = self
                .pods()
                .iter()
                .zip(self.keys())
                .filter(|(pod, key)| !pod.as_deref().is_some_and(|p| on_owner(key, p)))
                .map(|(pod, key)| format!("{key} on {pod:?}"))
                .collect();
            if wrong.is_empty() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                let shown = wrong.iter().take(10).cloned().collect::<Vec<_>>();
                return Err(format!(
                    "{} clients not on their owner after {limit:?}: {shown:?}",
                    wrong.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stop every client and wait for their tasks.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn run(
    i: usize,
    url: String,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
    ramp: Arc<tokio::sync::Semaphore>,
) {
    let key = shared.keys[i].clone();
    let mut backoff = BACKOFF_START;
    let mut first = Some(ramp.acquire_owned().await.expect("semaphore open"));
    loop {
        if *stopped.borrow() {
            return;
        }
        let mut client = match Client::try_connect(&url, &key).await {
            Ok(c) => c,
            Err(_) => {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stopped.changed() => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        first.take();
        backoff = BACKOFF_START;
        let visit = {
            let mut visits = shared.visits[i].lock().unwrap_or_else(|e| e.into_inner());
            visits.push(Visit {
                pod: client.pod.clone(),
                opened: Instant::now(),
                closed: None,
            });
            visits.len() - 1
        };
        let code = loop {
            tokio::select! {
                event = client.next_event(Duration::from_secs(3600)) => match event {
                    Some(Event::Closed(code)) => break code,
                    Some(_) => continue,
                    None => break None,
                },
                _ = stopped.changed() => {
                    client.close().await;
                    return;
                }
            }
        };
        shared.visits[i].lock().unwrap_or_else(|e| e.into_inner())[visit].closed =
            Some((code, Instant::now()));
        if code != Some(4001) {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}
