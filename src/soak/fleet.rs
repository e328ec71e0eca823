//! The soak's clients: one task per connection, each with its own key
//! (`soak-{i}`), behaving like a well-written wsring client: on close 4001
//! it reconnects at once, on anything else it retries with capped backoff.
//! While connected it sends a text message every few seconds and checks the
//! echo, and records every push it receives in the [`Ledger`]. With history
//! on it speaks `wsring.v1`: it remembers its last position and offers it on
//! every reconnect, and measures how long after its 101 (and after the start
//! of the reconnect) it holds every push accepted before that 101 (the
//! resume latency). Every close is logged
//! with the client, the pod it was on and its code, so the controller can
//! attribute closes to the scale event in whose window they happened.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use wsring_core::protocol::{CLOSE_RING_MOVED, HEADER_POD};
use wsring_core::resume::{self, Frame, Position, SUBPROTOCOL};

use super::pushes::{seq_of, Ledger};

/// First wait before reconnecting after a close other than 4001 or a failed attempt.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait between reconnect attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A connect attempt (TCP + upgrade) taking longer than this counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Initial connects in flight at once (reconnects are never throttled).
const RAMP_CONCURRENCY: usize = 256;
/// Read buffer per connection: messages are tiny, 10k connections add up.
const READ_BUFFER: usize = 4096;

/// The routing key of client `i`.
pub fn key(i: usize) -> String {
    format!("soak-{i}")
}

/// One close a client saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// Client index.
    pub client: usize,
    /// Pod the connection was on.
    pub pod: String,
    /// Close code, `None` when the connection ended without a close frame.
    pub code: Option<u16>,
}

/// State shared by the client tasks and the controller.
struct Shared {
    addr: SocketAddr,
    /// Speak `wsring.v1` and resume.
    history: bool,
    ledger: Arc<Ledger>,
    /// Current pod of each client (`None` while not connected).
    pods: Vec<Mutex<Option<String>>>,
    connected: AtomicUsize,
    closes: Mutex<Vec<Close>>,
    echoed: AtomicU64,
    echo_errors: AtomicU64,
    connect_failures: AtomicU64,
    ramp: Semaphore,
}

/// Totals of the whole run.
#[derive(Debug, Clone, Copy)]
pub struct FleetTotals {
    /// Messages sent and echoed back unchanged.
    pub echoed: u64,
    /// Wrong echoes, or none before the next message was due.
    pub echo_errors: u64,
    /// Connect attempts that failed (refused upgrade, timeout, reset).
    pub connect_failures: u64,
}

/// The running clients; stop them with [`Fleet::stop`].
pub struct Fleet {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Fleet {
    /// Start `n` clients against the router at `addr`; they connect in the
    /// background, record pushes in `ledger`, and with `history` speak
    /// `wsring.v1` and resume.
    pub fn start(
        addr: SocketAddr,
        n: usize,
        message_interval: Duration,
        history: bool,
        ledger: Arc<Ledger>,
    ) -> Fleet {
        let shared = Arc::new(Shared {
            addr,
            history,
            ledger,
            pods: (0..n).map(|_| Mutex::new(None)).collect(),
            connected: AtomicUsize::new(0),
            closes: Mutex::new(Vec::new()),
            echoed: AtomicU64::new(0),
            echo_errors: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            ramp: Semaphore::new(RAMP_CONCURRENCY),
        });
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for i in 0..n {
            tasks.spawn(client(i, shared.clone(), stopped.clone(), message_interval));
        }
        Fleet {
            shared,
            stop,
            tasks,
        }
    }

    /// Clients.
    pub fn len(&self) -> usize {
        self.shared.pods.len()
    }

    /// Clients connected right now.
    pub fn connected(&self) -> usize {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Current pod of every client (`None` while reconnecting).
    pub fn pods(&self) -> Vec<Option<String>> {
        self.shared
            .pods
            .iter()
            .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// Position in the close log: closes from here on belong to what happens next.
    pub fn close_mark(&self) -> usize {
        self.shared.closes().len()
    }

    /// Closes logged from `from` up to `to` (or the end).
    pub fn closes(&self, from: usize, to: Option<usize>) -> Vec<Close> {
        let log = self.shared.closes();
        let to = to.unwrap_or(log.len()).min(log.len());
        log[from.min(to)..to].to_vec()
    }

    /// Echo and connect totals so far.
    pub fn totals(&self) -> FleetTotals {
        FleetTotals {
            echoed: self.shared.echoed.load(Ordering::Relaxed),
            echo_errors: self.shared.echo_errors.load(Ordering::Relaxed),
            connect_failures: self.shared.connect_failures.load(Ordering::Relaxed),
        }
    }

    /// Close every connection politely and wait for the tasks.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let all_done = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(30), all_done)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
    }
}

impl Shared {
    fn closes(&self) -> std::sync::MutexGuard<'_, Vec<Close>> {
        self.closes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_pod(&self, i: usize, pod: Option<String>) {
        let up = pod.is_some();
        *self.pods[i].lock().unwrap_or_else(|e| e.into_inner()) = pod;
        if up {
            self.connected.fetch_add(1, Ordering::SeqCst);
        } else {
            self.connected.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// How a session ended.
enum Ended {
    /// The server (or the network) closed it: the close code, if any.
    Closed(Option<u16>),
    /// The soak is over.
    Stopped,
}

/// One client for the whole run: connect, talk, reconnect.
async fn client(
    i: usize,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    message_interval: Duration,
) {
    let key = key(i);
    let url = format!("ws://{}/?key={key}", shared.addr);
    let mut ramp = Some(shared.ramp.acquire().await);
    let mut backoff = BACKOFF_START;
    let mut pushes = Pushes::default();
    loop {
        let offer = shared.history.then(|| protocols(pushes.position.as_ref()));
        let attempt_started = tokio::time::Instant::now();
        let attempt = tokio::select! {
            r = connect(shared.addr, &url, offer) => r,
            _ = stop.changed() => return,
        };
        ramp.take();
        let (ws, pod) = match attempt {
            Ok(ok) => ok,
            Err(e) => {
                shared.connect_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%key, error = format!("{e:#}"), "connect failed");
                if pause(&mut stop, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        backoff = BACKOFF_START;
        shared.set_pod(i, Some(pod.clone()));
        pushes.connected(attempt_started, shared.ledger.last_accepted(i));
        let ended = session(ws, i, &shared, &mut stop, message_interval, &mut pushes).await;
        if let Ended::Closed(code) = &ended {
            shared.closes().push(Close {
                client: i,
                pod,
                code: *code,
            });
        }
        shared.set_pod(i, None);
        match ended {
            Ended::Stopped => return,
            Ended::Closed(Some(CLOSE_RING_MOVED)) => {} // reconnect at once
            Ended::Closed(_) => {
                if pause(&mut stop, &mut backoff).await {
                    return;
                }
            }
        }
    }
}

/// Wait `backoff` (doubling it for next time); true if the soak ended meanwhile.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    tokio::select! {
        () = tokio::time::sleep(wait) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

type Ws = WebSocketStream<TcpStream>;

/// The `Sec-WebSocket-Protocol` a resuming client offers.
fn protocols(position: Option<&Position>) -> String {
    match position {
        Some(at) => format!("{SUBPROTOCOL}, {}", at.since_token()),
        None => SUBPROTOCOL.to_string(),
    }
}

/// TCP connect and upgrade (offering `protocols` if given); returns the
/// stream and the pod named by `x-wsring-pod`.
async fn connect(
    addr: SocketAddr,
    url: &str,
    protocols: Option<String>,
) -> anyhow::Result<(Ws, String)> {
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        let mut request = url.into_client_request()?;
        if let Some(offer) = protocols {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", offer.parse()?);
        }
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0);
        let (ws, response) =
            tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
                .await
                .context("upgrade")?;
        let pod = response
            .headers()
            .get(HEADER_POD)
            .and_then(|v| v.to_str().ok())
            .context("no x-wsring-pod header")?
            .to_string();
        Ok((ws, pod))
    })
    .await
    .context("connect timed out")?
}

/// Talk until the connection ends or the soak stops: a message every
/// `interval` (first one staggered by client index), each echo checked.
async fn session(
    ws: Ws,
    i: usize,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
    interval: Duration,
    pushes: &mut Pushes,
) -> Ended {
    let (mut sink, mut stream) = ws.split();
    let offset = interval.mul_f64((i % 1000) as f64 / 1000.0);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    let mut outstanding: Option<String> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let bye = CloseFrame { code: CloseCode::Normal, reason: "soak over".into() };
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(bye)))).await;
                return Ended::Stopped;
            }
            _ = tick.tick() => {
                if outstanding.take().is_some() {
                    shared.echo_errors.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
                let text = format!("{i}:{seq}");
                // A failed send means the peer is closing: the read side says how.
                if sink.send(Message::text(text.clone())).await.is_ok() {
                    outstanding = Some(text);
                }
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let app = if shared.history {
                        pushes.frame(t.as_bytes(), i, &shared.ledger)
                    } else {
                        pushes.plain(t.as_bytes(), i, &shared.ledger)
                    };
                    let Some(app) = app else { continue };
                    if outstanding.as_deref().map(str::as_bytes) == Some(app) {
                        outstanding = None;
                        shared.echoed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        shared.echo_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ended::Closed(frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ended::Closed(None),
            }
        }
    }
}

/// One client's push state across its connections.
#[derive(Debug, Default)]
struct Pushes {
    /// Last position seen (`wsring.v1`), offered on the next reconnect.
    position: Option<Position>,
    /// Highest push `seq` received.
    highest: u64,
    /// A resume being timed: when its connect attempt began, when its 101
    /// came, and the push it must reach.
    resuming: Option<(tokio::time::Instant, tokio::time::Instant, u64)>,
    /// The opening frame (`s`, `r`, `g`) of this connection arrived.
    opened: bool,
}

impl Pushes {
    /// A connection is up (its attempt began at `attempt_started`);
    /// `last_accepted` is the newest push of the key the API had accepted
    /// by its 101.
    fn connected(&mut self, attempt_started: tokio::time::Instant, last_accepted: u64) {
        self.opened = false;
        self.resuming = self
            .position
            .is_some()
            .then(|| (attempt_started, tokio::time::Instant::now(), last_accepted));
    }

    /// A plain text frame: a push is recorded; anything else is the app's.
    fn plain<'a>(&mut self, text: &'a [u8], i: usize, ledger: &Ledger) -> Option<&'a [u8]> {
        match seq_of(text) {
            Some(seq) => {
                self.push(seq, i, ledger);
                None
            }
            None => Some(text),
        }
    }

    /// A `wsring.v1` frame: positions and pushes are recorded; the app's
    /// own frames are returned.
    fn frame<'a>(&mut self, bytes: &'a [u8], i: usize, ledger: &Ledger) -> Option<&'a [u8]> {
        match resume::decode(bytes) {
            Ok(Frame::App(body)) => return Some(body),
            Ok(Frame::Push(at, body)) => match seq_of(body) {
                Some(seq) => {
                    self.position = Some(at);
                    self.push(seq, i, ledger);
                }
                None => ledger.malformed(),
            },
            Ok(Frame::Start(at) | Frame::Resumed(at)) => {
                self.position = Some(at);
                self.opened = true;
            }
            Ok(Frame::Gone(at, _)) => {
                self.position = Some(at);
                self.opened = true;
                // What was missed is gone: no resume to time.
                self.resuming = None;
                ledger.gone();
            }
            Err(_) => ledger.malformed(),
        }
        self.check_resumed(ledger);
        None
    }

    fn push(&mut self, seq: u64, i: usize, ledger: &Ledger) {
        ledger.received(i, seq);
        self.highest = self.highest.max(seq);
    }

    /// The resume is over once the opening frame came and every push
    /// accepted before the reconnect is here.
    fn check_resumed(&mut self, ledger: &Ledger) {
        if let Some((attempt, upgraded, target)) = self.resuming {
            if self.opened && self.highest >= target {
                ledger.resumed(upgraded.elapsed(), attempt.elapsed());
                self.resuming = None;
            }
        }
    }
}
