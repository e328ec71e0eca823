//! Test harness: a real router on loopback, stand-in pods (a real WebSocket
//! server and a push endpoint), and admin calls through the one admin HTTP
//! client (`wsring_core::harness::AdminClient`).
//!
//! The stand-in pod is deliberately tiny (tokio-tungstenite echo) so these
//! tests exercise the router alone; end-to-end tests with real ws-pod
//! processes live at the workspace top level.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;
use wsring_core::harness::{AdminClient, BackgroundServer};
use wsring_core::{Member, RingSpec};
use wsring_router::{Config, Router, RouterHandle};

pub const TOKEN: &str = "test-token";

/// A router serving in the background until dropped or [`TestRouter::shutdown`].
pub struct TestRouter {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub handle: RouterHandle,
    server: BackgroundServer<wsring_router::Error>,
}

impl TestRouter {
    pub async fn start(config: Config) -> Self {
        let router = Router::bind(config).await.expect("router binds");
        let (public, admin, handle) = (router.public_addr(), router.admin_addr(), router.handle());
        TestRouter {
            public,
            admin,
            handle,
            server: BackgroundServer::spawn(|stop| router.serve(stop)),
        }
    }

    /// Signal shutdown (SIGTERM) without waiting for `serve` to return.
    pub fn signal_shutdown(&mut self) {
        self.server.signal_shutdown();
    }

    /// Signal shutdown and wait for `serve` to return.
    pub async fn shutdown(self) -> Result<(), wsring_router::Error> {
        self.server.shutdown().await
    }

    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{path_and_query}", self.public)
    }

    pub async fn put_ring(&self, spec: &RingSpec) -> (StatusCode, serde_json::Value) {
        http_call(
            self.admin,
            "PUT",
            "/ring",
            Some(TOKEN),
            None,
            spec.to_json().into(),
        )
        .await
    }

    /// An admin `GET` with the bearer token (most reads need it).
    pub async fn get(&self, path: &str) -> (StatusCode, serde_json::Value) {
        http_call(self.admin, "GET", path, Some(TOKEN), None, Bytes::new()).await
    }

    /// An admin `GET` without a token, like a probe or Prometheus.
    pub async fn get_anonymous(&self, path: &str) -> (StatusCode, serde_json::Value) {
        http_call(self.admin, "GET", path, None, None, Bytes::new()).await
    }

    pub async fn metrics(&self) -> String {
        match self.get("/metrics").await {
            (StatusCode::OK, serde_json::Value::String(text)) => text,
            other => panic!("metrics: {other:?}"),
        }
    }

    /// Wait until the router lists exactly `n` connections.
    pub async fn wait_connections(&self, n: usize) -> Vec<serde_json::Value> {
        loop {
            let (_, list) = self.get("/v1/connections").await;
            let list = list.as_array().cloned().unwrap_or_default();
            if list.len() == n {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// An admin call on a fresh connection; JSON bodies are parsed, anything
/// else comes back as a string.
pub async fn http_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Bytes,
) -> (StatusCode, serde_json::Value) {
    let client = AdminClient::new();
    let method = method.parse().expect("an HTTP method");
    let mut request = client
        .request(method, format!("http://{addr}{path}"))
        .body(body);
    if let Some(token) = token {
        request = request.bearer(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let answer = request.send().await.expect("admin request");
    (answer.status(), answer.json_or_text())
}

pub use wsring_core::testkit::raw_exchange;

/// Status code and JSON body of a raw HTTP answer.
pub fn parse_answer(answer: &str) -> (u16, serde_json::Value) {
    let status: u16 = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// How a stand-in pod answers upgrades.
#[derive(Clone, Copy, Debug)]
pub enum PodMode {
    /// Accept and echo every message.
    Echo,
    /// Refuse every upgrade with 403 and a body.
    Refuse,
}

/// A request a stand-in pod received on its push endpoint.
#[derive(Debug)]
pub struct PushSeen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A stand-in pod: WebSocket echo server + push endpoint answering `{"delivered": 2}`.
pub struct FakePod {
    pub name: String,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// Headers of every upgrade request received.
    pub upgrades: mpsc::UnboundedReceiver<HeaderMap>,
    /// Every push received.
    pub pushes: mpsc::UnboundedReceiver<PushSeen>,
    /// TCP connections accepted on the WebSocket port.
    pub accepted: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl FakePod {
    pub async fn start(name: &str, mode: PodMode) -> Self {
        let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (ws.local_addr().unwrap(), admin.local_addr().unwrap());
        let (upgrades_tx, upgrades) = mpsc::unbounded_channel();
        let (pushes_tx, pushes) = mpsc::unbounded_channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let ws_task = tokio::spawn(serve_ws(ws, mode, upgrades_tx, accepted.clone()));
        let app = axum::Router::new()
            .route("/v1/keys/{key}/messages", axum::routing::post(push))
            .route("/v1/broadcast", axum::routing::post(push))
            .with_state(pushes_tx);
        let admin_task = tokio::spawn(async move {
            axum::serve(admin, app).await.unwrap();
        });
        FakePod {
            name: name.to_string(),
            addr,
            admin: admin_addr,
            upgrades,
            pushes,
            accepted,
            tasks: vec![ws_task, admin_task],
        }
    }

    pub fn member(&self) -> Member {
        Member {
            name: self.name.clone(),
            addr: self.addr.to_string(),
            admin: self.admin.to_string(),
        }
    }
}

impl Drop for FakePod {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn push(
    axum::extract::State(seen): axum::extract::State<mpsc::UnboundedSender<PushSeen>>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<serde_json::Value> {
    let _ = seen.send(PushSeen {
        path: uri.path().to_string(),
        headers,
        body,
    });
    axum::Json(serde_json::json!({"delivered": 2}))
}

// The callback's signature is tungstenite's.
#[allow(clippy::result_large_err)]
async fn serve_ws(
    listener: TcpListener,
    mode: PodMode,
    upgrades: mpsc::UnboundedSender<HeaderMap>,
    accepted: Arc<AtomicUsize>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        let upgrades = upgrades.clone();
        tokio::spawn(async move {
            let callback = move |request: &Request, response: Response| {
                let _ = upgrades.send(request.headers().clone());
                match mode {
                    PodMode::Echo => Ok(response),
                    PodMode::Refuse => {
                        let mut refusal = ErrorResponse::new(Some("pod says no".into()));
                        *refusal.status_mut() = StatusCode::FORBIDDEN;
                        Err(refusal)
                    }
                }
            };
            let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                let reply = match message {
                    Message::Text(_) | Message::Binary(_) => message,
                    Message::Close(_) => break,
                    _ => continue,
                };
                if ws.send(reply).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// A ring of `members` at `version` (small vnode count keeps tests fast).
pub fn ring(version: u64, members: Vec<Member>) -> RingSpec {
    RingSpec::new(version, 64, None, members).unwrap()
}

/// A config for tests: loopback port 0 listeners and the test token.
pub fn config() -> Config {
    Config::for_tests(TOKEN)
}
