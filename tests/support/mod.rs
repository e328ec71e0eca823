//! Test harness of the top-level integration tests: a real `wsring dev`
//! process (router + pods as child processes, started with
//! `wsring::process`) on free loopback ports with a real redis-server, the
//! admin HTTP client of `wsring_core::harness`, and real WebSocket clients.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::process::Stdio;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsring::process::{DevLaunch, DevProcess, Logs};
use wsring_core::harness::admin_http::Method;
use wsring_core::harness::{free_addr, AdminClient, RedisServer};
use wsring_core::{Ring, RingSpec};

/// Generous upper bound for anything a test waits on, so a broken build fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

/// `wsring SUBCOMMAND` as the tests run it: the test's `RUST_LOG` (default
/// `warn`), stderr shown with the test output, killed when dropped.
pub fn wsring_command(subcommand: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wsring"));
    command
        .arg(subcommand)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("warn".into()),
        )
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

/// Run `wsring SUBCOMMAND ARGS…`, which must refuse to run: its stderr.
pub async fn refused_stderr(subcommand: &str, args: &[&str]) -> String {
    let output = wsring_command(subcommand)
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("wsring runs");
    assert!(
        !output.status.success(),
        "wsring {subcommand} {args:?} should have refused to run"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running `wsring dev` with its own Redis; dropping it stops the
/// launcher (SIGTERM: it stops its router and pods first), then Redis.
pub struct Dev {
    process: DevProcess,
    /// Router public address, `127.0.0.1:PORT`.
    pub public: String,
    /// Router admin base URL.
    pub admin: String,
    /// Launcher control API base URL.
    pub control: String,
    /// Bearer token of admin, push and control APIs.
    pub token: String,
    /// The redis-server the data plane uses (`None` with a Sentinel group:
    /// the test holds the group).
    pub redis: Option<RedisServer>,
    /// The `--redis` URL the data plane was given.
    pub redis_url: String,
    http: AdminClient,
}

impl Dev {
    /// Start `wsring dev --pods N` against a fresh redis-server; returns once the ring has N pods.
    pub async fn start(pods: usize) -> Dev {
        Self::start_with(pods, &[]).await
    }

    /// Like [`Dev::start`] with extra `wsring dev` arguments.
    pub async fn start_with(pods: usize, extra: &[&str]) -> Dev {
        let redis = RedisServer::start().await.expect("redis-server on PATH");
        let url = redis.url();
        Self::start_against(Some(redis), url, pods, extra).await
    }

    /// Like [`Dev::start_with`] against the Redis at `redis_url` (e.g. a
    /// `redis+sentinel://` group the test runs).
    pub async fn start_against(
        redis: Option<RedisServer>,
        redis_url: String,
        pods: usize,
        extra: &[&str],
    ) -> Dev {
        let (public, admin, control) = (
            free_addr().unwrap(),
            free_addr().unwrap(),
            free_addr().unwrap(),
        );
        let launch = DevLaunch {
            exe: env!("CARGO_BIN_EXE_wsring").into(),
            pods,
            listen: public,
            admin,
            control,
            redis_url: Some(redis_url.clone()),
            token: Some("test-token".into()),
            args: extra.iter().map(|a| a.to_string()).collect(),
            logs: Logs::Inherit,
        };
        let process = DevProcess::start(launch, Duration::from_secs(60))
            .await
            .expect("wsring dev ready in time");
        assert_eq!(process.ready["pods"].as_array().map(Vec::len), Some(pods));
        Dev {
            process,
            public: public.to_string(),
            admin: format!("http://{admin}"),
            control: format!("http://{control}"),
            token: "test-token".into(),
            redis,
            redis_url,
            http: AdminClient::new(),
        }
    }

    /// `ws://…/?key=K` through the router.
    pub fn url(&self, key: &str) -> String {
        format!("ws://{}/?key={key}", self.public)
    }

    /// The router's current ring (`GET /ring` needs the token).
    pub async fn ring(&self) -> Ring {
        self.try_ring()
            .await
            .expect("GET /ring answers with a valid ring")
    }

    /// Wait until the router's ring has exactly these member names.
    pub async fn wait_for_members(&self, names: &[&str]) -> Ring {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ring = self.ring().await;
            if ring.spec().member_names() == names {
                return ring;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "ring never became {names:?}, is {:?}",
                ring.spec().member_names()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Control API call: returns (status, json body).
    pub async fn control(&self, method: Method, path: &str) -> (u16, Value) {
        let res = self
            .http
            .request(method, format!("{}{path}", self.control))
            .bearer(&self.token)
            .send()
            .await
            .expect("control call");
        (res.status().as_u16(), res.json().unwrap_or(Value::Null))
    }

    /// Admin API call with the token: returns (status, body text).
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> (u16, String) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.admin))
            .bearer(&self.token);
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        let res = req.send().await.expect("admin call");
        (res.status().as_u16(), res.text())
    }

    /// A plain HTTP GET on the public port (for refusals before the upgrade).
    pub async fn public_get(&self, path_and_query: &str) -> (u16, String) {
        let res = self
            .http
            .get(format!("http://{}{path_and_query}", self.public))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .expect("public GET");
        (res.status().as_u16(), res.text())
    }
}

/// What a client saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    /// Close frame received (code), or `None` when the TCP connection ended without one.
    Closed(Option<u16>),
}

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// A real WebSocket client whose incoming frames are collected by a task.
pub struct Client {
    /// Routing key.
    pub key: String,
    /// `x-wsring-pod` of the 101 answer.
    pub pod: String,
    sink: Sink,
    events: mpsc::UnboundedReceiver<Event>,
}

impl Client {
    /// Connect to `url` (must answer 101 with `x-wsring-pod`).
    pub async fn connect(url: &str, key: &str) -> Client {
        Self::try_connect(url, key)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"))
    }

    /// Like [`Client::connect`], but a refused or failed upgrade is an error,
    /// not a panic (for reconnect loops while the data plane recovers).
    pub async fn try_connect(url: &str, key: &str) -> Result<Client, String> {
        let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| format!("connect {url} timed out"))?
            .map_err(|e| e.to_string())?;
        let pod = response
            .headers()
            .get("x-wsring-pod")
            .ok_or("no x-wsring-pod header")?
            .to_str()
            .map_err(|e| e.to_string())?
            .to_string();
        let (sink, mut stream) = ws.split();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let event = match stream.next().await {
                    Some(Ok(Message::Text(t))) => Event::Text(t.to_string()),
                    Some(Ok(Message::Binary(b))) => Event::Binary(b.to_vec()),
                    Some(Ok(Message::Close(frame))) => {
                        Event::Closed(frame.map(|f| u16::from(f.code)))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => Event::Closed(None),
                };
                let closed = matches!(event, Event::Closed(_));
                if tx.send(event).is_err() || closed {
                    break;
                }
            }
        });
        Ok(Client {
            key: key.to_string(),
            pod,
            sink,
            events,
        })
    }

    /// Send a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.sink
            .send(Message::text(text))
            .await
            .expect("send text");
    }

    /// Send a binary frame (errors are returned: the peer may have closed).
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        self.sink
            .send(Message::binary(bytes))
            .await
            .map_err(|e| e.to_string())
    }

    /// Next event, or `None` after `within` with nothing received.
    pub async fn next_event(&mut self, within: Duration) -> Option<Event> {
        tokio::time::timeout(within, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Drain events already received without waiting.
    pub fn pending_events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// Send a text frame and expect it echoed back unchanged.
    pub async fn assert_echo(&mut self, text: &str) {
        self.send_text(text).await;
        match self.next_event(WAIT).await {
            Some(Event::Text(t)) => assert_eq!(t, text, "echo of {}", self.key),
            other => panic!("{}: expected echo of {text:?}, got {other:?}", self.key),
        }
    }

    /// Close politely.
    pub async fn close(mut self) {
        let _ = self
            .sink
            .send(Message::Close(Some(
                tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Normal,
                    reason: "bye".into(),
                },
            )))
            .await;
    }
}

/// Connect many clients (bounded concurrency), in key order.
pub async fn connect_all(dev: &Dev, keys: &[String]) -> Vec<Client> {
    let mut clients = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let batch = futures_util::future::join_all(
            chunk
                .iter()
                .map(|k| async move { Client::connect(&dev.url(k), k).await }),
        )
        .await;
        clients.extend(batch);
    }
    clients
}

/// `user-0 … user-{n-1}`.
pub fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i}")).collect()
}

/// A pod as the launcher's `GET /pods` lists it.
#[derive(Debug, Clone)]
pub struct PodProc {
    /// Ring member name.
    pub name: String,
    /// Process id (to kill it from outside the control API).
    pub pid: u32,
    /// Admin base URL (`/v1/connections`, `/metrics`).
    pub admin: String,
}

impl Dev {
    /// The pods the launcher runs, from its control API.
    pub async fn pods(&self) -> Vec<PodProc> {
        let (status, body) = self.control(Method::GET, "/pods").await;
        assert_eq!(status, 200, "{body}");
        body["pods"]
            .as_array()
            .expect("pods array")
            .iter()
            .map(|p| PodProc {
                name: p["name"].as_str().expect("name").to_string(),
                pid: p["pid"].as_u64().expect("pid") as u32,
                admin: format!("http://{}", p["admin"].as_str().expect("admin")),
            })
            .collect()
    }

    /// Pid of the router process: the launcher's child run as `wsring router`.
    pub fn router_pid(&self) -> Option<u32> {
        self.process.router_pid()
    }

    /// The router's ring, or `None` while it has none (e.g. just restarted).
    pub async fn try_ring(&self) -> Option<Ring> {
        let res = self
            .http
            .get(format!("{}/ring", self.admin))
            .bearer(&self.token)
            .send()
            .await
            .ok()?;
        if !res.status().is_success() {
            return None;
        }
        Ring::build(RingSpec::parse(res.body()).ok()?).ok()
    }

    /// `GET /v1/connections` on any admin base URL (router or pod).
    pub async fn connections_at(&self, admin: &str) -> Vec<Value> {
        self.http
            .get(format!("{admin}/v1/connections"))
            .bearer(&self.token)
            .send()
            .await
            .expect("GET /v1/connections")
            .json()
            .expect("connections json")
    }

    /// The value of an unlabelled router metric (e.g. `wsring_router_connections_reset_total`).
    pub async fn router_metric(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .expect("GET /metrics")
            .text();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (n, v) = l.split_once(' ')?;
                (n == name).then(|| v.trim().parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }

    /// Subscribers of a pod's reset channel (`PUBSUB NUMSUB`: sends nothing to the pod).
    pub async fn reset_subscribers(&self, pod: &str) -> Option<u64> {
        let client = redis::Client::open(self.redis_url.as_str()).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let channel =
            wsring_core::protocol::pod_channel(wsring_core::protocol::LOCAL_NAMESPACE, "dev", pod);
        let answer: (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut conn)
            .await
            .ok()?;
        Some(answer.1)
    }

    /// Reconnect `key` until the router accepts it (the data plane may be
    /// recovering: no ring yet, owner just died); panics after [`WAIT`].
    pub async fn reconnect(&self, key: &str) -> Client {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match Client::try_connect(&self.url(key), key).await {
                Ok(c) => return c,
                Err(e) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "{key} could not reconnect: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// SIGKILL a process, from outside (like the OOM killer or a node failure).
pub fn sigkill(pid: u32) {
    signal(pid, nix::sys::signal::Signal::SIGKILL);
}

/// SIGTERM a process, from outside (like the kubelet deleting a pod).
pub fn sigterm(pid: u32) {
    signal(pid, nix::sys::signal::Signal::SIGTERM);
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
        .unwrap_or_else(|e| panic!("kill -{signal} {pid}: {e}"));
}
