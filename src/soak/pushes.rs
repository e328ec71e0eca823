//! The soak's push load and its ledger.
//!
//! A [`Pusher`] sends numbered pushes (`push <seq>`, `seq` counting per key
//! from 1) to every client's key in turn, at a fixed total rate, through the
//! router's push API, at most one in flight per key (so the order a key's
//! pushes were accepted in is their `seq` order). The [`Ledger`] records
//! which pushes the API accepted and which the clients received, across all
//! of each client's connections; [`Ledger::totals`] then counts what was
//! received exactly once, lost, duplicated and out of order, and the resume
//! latencies the clients measured.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use wsring_core::harness::AdminClient;

use super::fleet::key;

/// Pushes in flight at once; a tick that finds none free is skipped.
const MAX_IN_FLIGHT: usize = 256;
/// How often the pusher tops up to its rate.
const TICK: Duration = Duration::from_millis(10);
/// How long in-flight pushes may take to finish once the pusher stops.
const DRAIN: Duration = Duration::from_secs(30);

/// The body of push `seq`.
pub fn body(seq: u64) -> String {
    format!("push {seq}")
}

/// The `seq` of a push body, `None` for anything else (an echo).
pub fn seq_of(body: &[u8]) -> Option<u64> {
    std::str::from_utf8(body)
        .ok()?
        .strip_prefix("push ")?
        .parse()
        .ok()
}

/// One client's pushes.
#[derive(Debug, Default)]
struct ClientLedger {
    /// Last `seq` sent to this key.
    last_sent: u64,
    /// A push to this key is waiting for its answer.
    in_flight: bool,
    /// Pushes the API answered 200, in `seq` order.
    accepted: Vec<u64>,
    /// Pushes received, in arrival order, over all connections.
    received: Vec<u64>,
}

/// What the API answered and the clients received, shared by the pusher,
/// the clients and the controller.
#[derive(Debug)]
pub struct Ledger {
    clients: Vec<Mutex<ClientLedger>>,
    refused: AtomicU64,
    skipped: AtomicU64,
    delivered_zero: AtomicU64,
    gone: AtomicU64,
    malformed: AtomicU64,
    /// Per resume: (from the 101, from the start of the connect attempt), µs.
    resumes_micros: Mutex<Vec<(u64, u64)>>,
}

/// How a push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200, with the `delivered` count it reported.
    Accepted {
        /// Connections the owner handed it to when it answered.
        delivered: u64,
    },
    /// Any other status, or no answer.
    Refused,
}

impl Ledger {
    /// A ledger for `clients` clients (client `i` has key [`key`]`(i)`).
    pub fn new(clients: usize) -> Ledger {
        Ledger {
            clients: (0..clients).map(|_| Mutex::default()).collect(),
            refused: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            delivered_zero: AtomicU64::new(0),
            gone: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            resumes_micros: Mutex::default(),
        }
    }

    fn client(&self, i: usize) -> MutexGuard<'_, ClientLedger> {
        self.clients[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claim the next `seq` of client `i`'s key, unless a push to it is
    /// still in flight.
    fn begin(&self, i: usize) -> Option<u64> {
        let mut c = self.client(i);
        if c.in_flight {
            return None;
        }
        c.in_flight = true;
        c.last_sent += 1;
        Some(c.last_sent)
    }

    fn end(&self, i: usize, seq: u64, answer: Answer) {
        let mut c = self.client(i);
        c.in_flight = false;
        match answer {
            Answer::Accepted { delivered } => {
                c.accepted.push(seq);
                if delivered == 0 {
                    self.delivered_zero.fetch_add(1, Ordering::Relaxed);
                }
            }
            Answer::Refused => {
                self.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Client `i` received push `seq`.
    pub fn received(&self, i: usize, seq: u64) {
        self.client(i).received.push(seq);
    }

    /// The newest push of client `i`'s key the API has accepted (0: none).
    pub fn last_accepted(&self, i: usize) -> u64 {
        self.client(i).accepted.last().copied().unwrap_or(0)
    }

    /// A client resumed: it held every push accepted before its 101
    /// `after_101` after that 101, `after_attempt` after it began to
    /// reconnect.
    pub fn resumed(&self, after_101: Duration, after_attempt: Duration) {
        let micros = |d: Duration| d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.resumes_micros
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((micros(after_101), micros(after_attempt)));
    }

    /// A connection opened with `g`: its history no longer reached back.
    pub fn gone(&self) {
        self.gone.fetch_add(1, Ordering::Relaxed);
    }

    /// A frame that was neither an echo nor a push (or not `wsring.v1`).
    pub fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// Every accepted push has reached its client at least once.
    pub fn all_received(&self) -> bool {
        (0..self.clients.len()).all(|i| {
            let c = self.client(i);
            c.accepted.iter().all(|seq| c.received.contains(seq))
        })
    }

    /// Count it all up.
    pub fn totals(&self) -> PushTotals {
        let mut t = PushTotals {
            refused: self.refused.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            delivered_zero: self.delivered_zero.load(Ordering::Relaxed),
            gone: self.gone.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            ..PushTotals::default()
        };
        for i in 0..self.clients.len() {
            t.add(&Delivery::of(&self.client(i)));
        }
        let resumes = self
            .resumes_micros
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        t.resumes = resumes.len() as u64;
        let after_101 = Percentiles::of(resumes.iter().map(|r| r.0).collect());
        let after_attempt = Percentiles::of(resumes.iter().map(|r| r.1).collect());
        (t.resume_p50_ms, t.resume_p99_ms, t.resume_max_ms) =
            (after_101.ms(0.5), after_101.ms(0.99), after_101.ms(1.0));
        (t.reconnect_resume_p50_ms, t.reconnect_resume_p99_ms) =
            (after_attempt.ms(0.5), after_attempt.ms(0.99));
        t
    }
}

/// Sorted samples in µs.
struct Percentiles(Vec<u64>);

impl Percentiles {
    fn of(mut micros: Vec<u64>) -> Percentiles {
        micros.sort_unstable();
        Percentiles(micros)
    }

    /// The `q` quantile (nearest rank) in ms; `None` without samples.
    fn ms(&self, q: f64) -> Option<f64> {
        let index = ((self.0.len() as f64 * q).ceil() as usize).saturating_sub(1);
        self.0.get(index).map(|us| *us as f64 / 1000.0)
    }
}

/// One client's pushes, checked.
#[derive(Debug, Default, PartialEq, Eq)]
struct Delivery {
    accepted: u64,
    received_once: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    unaccepted_received: u64,
}

impl Delivery {
    fn of(c: &ClientLedger) -> Delivery {
        let mut d = Delivery {
            accepted: c.accepted.len() as u64,
            ..Delivery::default()
        };
        let mut copies = std::collections::HashMap::<u64, u64>::new();
        let mut highest = 0;
        for seq in &c.received {
            let n = copies.entry(*seq).or_default();
            *n += 1;
            if *n > 1 {
                d.duplicated += 1;
            } else if *seq < highest {
                d.out_of_order += 1;
            }
            highest = highest.max(*seq);
        }
        for seq in &c.accepted {
            match copies.remove(seq) {
                None => d.lost += 1,
                Some(1) => d.received_once += 1,
                Some(_) => {}
            }
        }
        // What is left was received but never accepted (refused, yet stored).
        d.unaccepted_received = copies.len() as u64;
        d
    }
}

/// The push load's figures (the `pushes` object of the JSON report).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushTotals {
    /// Pushes per second asked for (all keys together).
    pub per_second: u32,
    /// Pushes the API answered 200.
    pub accepted: u64,
    /// Pushes answered otherwise (e.g. 503 while Redis fails over).
    pub refused: u64,
    /// Turns skipped because the key's previous push was still in flight
    /// or too many were (the rate was not kept).
    pub skipped: u64,
    /// Accepted pushes answered `delivered: 0` (nobody connected right then).
    pub delivered_zero: u64,
    /// Accepted pushes their client received exactly once.
    pub received_once: u64,
    /// Accepted pushes their client never received.
    pub lost: u64,
    /// Extra copies received.
    pub duplicated: u64,
    /// Pushes received after a later one of the same key.
    pub out_of_order: u64,
    /// Pushes received that the API had refused (stored before the refusal).
    pub unaccepted_received: u64,
    /// Connections opened with `g` (history gone).
    pub gone: u64,
    /// Frames that were neither an echo nor a push.
    pub malformed: u64,
    /// Reconnects that offered a position.
    pub resumes: u64,
    /// From the 101 of a resuming reconnect until the client holds every
    /// push accepted before that 101 (the history read and the replay), ms.
    pub resume_p50_ms: Option<f64>,
    /// 99th percentile of the same.
    pub resume_p99_ms: Option<f64>,
    /// Slowest.
    pub resume_max_ms: Option<f64>,
    /// The same from the start of the reconnect (TCP connect and upgrade
    /// through the router included), ms.
    pub reconnect_resume_p50_ms: Option<f64>,
    /// 99th percentile of the same.
    pub reconnect_resume_p99_ms: Option<f64>,
}

impl PushTotals {
    fn add(&mut self, d: &Delivery) {
        self.accepted += d.accepted;
        self.received_once += d.received_once;
        self.lost += d.lost;
        self.duplicated += d.duplicated;
        self.out_of_order += d.out_of_order;
        self.unaccepted_received += d.unaccepted_received;
    }
}

/// The running push load; stop it with [`Pusher::stop`].
pub struct Pusher {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Pusher {
    /// Push `per_second` times a second (keys in turn) to the router's admin
    /// API at `admin`, recording into `ledger`.
    pub fn start(admin: SocketAddr, token: &str, ledger: Arc<Ledger>, per_second: u32) -> Pusher {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(push_loop(
            admin,
            token.to_owned(),
            ledger,
            per_second,
            stopped,
        ));
        Pusher { stop, task }
    }

    /// Stop sending and wait for the pushes in flight to be answered.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn push_loop(
    admin: SocketAddr,
    token: String,
    ledger: Arc<Ledger>,
    per_second: u32,
    mut stop: watch::Receiver<bool>,
) {
    let http = AdminClient::new();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    let started = Instant::now();
    let mut issued: u64 = 0;
    let mut next_client = 0;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        while in_flight.try_join_next().is_some() {}
        let due = (started.elapsed().as_secs_f64() * f64::from(per_second)) as u64;
        while issued < due {
            issued += 1;
            let i = next_client;
            next_client = (next_client + 1) % ledger.clients.len();
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                ledger.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let Some(seq) = ledger.begin(i) else {
                ledger.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let url = format!("http://{admin}/v1/keys/{}/messages", key(i));
            let (http, token, ledger) = (http.clone(), token.clone(), ledger.clone());
            in_flight.spawn(async move {
                let answer = http.post(url).bearer(&token).body(body(seq)).send().await;
                let answer = match answer {
                    Ok(a) if a.status() == 200 => Answer::Accepted {
                        delivered: a.json_or_text()["delivered"].as_u64().unwrap_or(0),
                    },
                    _ => Answer::Refused,
                };
                ledger.end(i, seq, answer);
                drop(slot);
            });
        }
    }
    if tokio::time::timeout(DRAIN, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        in_flight.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(accepted: &[u64], received: &[u64]) -> ClientLedger {
        ClientLedger {
            accepted: accepted.to_vec(),
            received: received.to_vec(),
            ..ClientLedger::default()
        }
    }

    #[test]
    fn bodies_carry_their_number_and_echoes_are_not_pushes() {
        assert_eq!(seq_of(body(17).as_bytes()), Some(17));
        assert_eq!(seq_of(b"3:5"), None);
        assert_eq!(seq_of(b"push x"), None);
        assert_eq!(seq_of(&[0xff, 0xfe]), None);
    }

    #[test]
    fn every_accepted_push_once_in_order_is_clean() {
        let d = Delivery::of(&ledger(&[1, 2, 4], &[1, 2, 3, 4]));
        assert_eq!(
            d,
            Delivery {
                accepted: 3,
                received_once: 3,
                unaccepted_received: 1,
                ..Delivery::default()
            }
        );
    }

    #[test]
    fn lost_duplicated_and_out_of_order_pushes_are_counted() {
        let d = Delivery::of(&ledger(&[1, 2, 3, 4, 5], &[1, 3, 2, 3, 5]));
        assert_eq!(
            d,
            Delivery {
                accepted: 5,
                received_once: 3,
                lost: 1,
                duplicated: 1,
                out_of_order: 1,
                unaccepted_received: 0,
            }
        );
    }

    #[test]
    fn one_push_per_key_in_flight_and_totals_with_percentiles() {
        let l = Ledger::new(2);
        assert_eq!(l.begin(0), Some(1));
        assert_eq!(l.begin(0), None, "the previous push is still in flight");
        l.end(0, 1, Answer::Accepted { delivered: 0 });
        assert_eq!(l.begin(0), Some(2));
        l.end(0, 2, Answer::Refused);
        assert_eq!(l.last_accepted(0), 1);
        assert!(!l.all_received());
        l.received(0, 1);
        assert!(l.all_received());
        for ms in 1..=100 {
            l.resumed(Duration::from_millis(ms), Duration::from_millis(ms + 100));
        }
        let t = l.totals();
        assert_eq!(
            (t.accepted, t.refused, t.delivered_zero, t.received_once),
            (1, 1, 1, 1)
        );
        assert_eq!(t.resumes, 100);
        assert_eq!(
            (t.resume_p50_ms, t.resume_p99_ms, t.resume_max_ms),
            (Some(50.0), Some(99.0), Some(100.0))
        );
        assert_eq!(
            (t.reconnect_resume_p50_ms, t.reconnect_resume_p99_ms),
            (Some(150.0), Some(199.0))
        );
    }
}
