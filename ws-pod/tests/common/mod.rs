//! Harness for the integration tests: a real pod on loopback ports, real
//! WebSocket clients, admin calls through the one admin HTTP client
//! (`wsring_core::harness::AdminClient`), Redis helpers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use ws_pod::{Config, Pod, PodHandle};
use wsring_core::harness::{AdminClient, BackgroundServer};
use wsring_core::listen_args::ListenArgs;
use wsring_core::protocol::{encode_key, HEADER_POD};
use wsring_core::router_auth::{unix_now, RouterAuth, SignedHeaders};

pub const TOKEN: &str = "test-token";

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Loopback ports chosen by the kernel, a token, a pod name.
pub fn config(pod_name: &str) -> Config {
    Config {
        listeners: ListenArgs::loopback(),
        pod_name: Some(pod_name.to_string()),
        token: wsring_core::token_args::TokenArgs::value(TOKEN),
        ..Config::default()
    }
}

/// The headers a router of this cluster (token [`TOKEN`]) sends for
/// connection `conn`, percent-encoded key `key` and ring version `version`.
pub fn router_headers(conn: &str, key: &str, version: &str) -> [(&'static str, String); 4] {
    let signed = SignedHeaders {
        conn,
        key,
        ring_version: version,
    };
    RouterAuth::new(TOKEN).signed_headers(signed, unix_now())
}

/// A pod serving in the background until dropped or [`TestPod::shutdown`].
pub struct TestPod {
    pub ws: SocketAddr,
    pub admin: SocketAddr,
    pub handle: PodHandle,
    server: BackgroundServer<ws_pod::Error>,
}

impl TestPod {
    pub async fn start(config: Config) -> TestPod {
        let pod = Pod::bind(config).await.expect("bind");
        let (ws, admin, handle) = (pod.ws_addr(), pod.admin_addr(), pod.handle());
        TestPod {
            ws,
            admin,
            handle,
            server: BackgroundServer::spawn(|stop| pod.serve(stop)),
        }
    }

    /// Signal shutdown (SIGTERM) without waiting for `serve` to return.
    pub fn signal_shutdown(&mut self) {
        self.server.signal_shutdown();
    }

    /// Signal shutdown and wait for `serve` to return.
    pub async fn shutdown(self) -> Result<(), ws_pod::Error> {
        self.server.shutdown().await
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.ws)
    }

    /// Connect like a router does: connection id, percent-encoded key, ring
    /// version, signed with the cluster token.
    pub async fn connect_as(&self, conn_id: &str, key: &str) -> Ws {
        let mut request = format!("{}/chat?key=ignored", self.url())
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        for (name, value) in router_headers(conn_id, &encode_key(key), "7") {
            headers.insert(name, HeaderValue::from_str(&value).unwrap());
        }
        let (ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("upgrade");
        assert_eq!(response.headers()[HEADER_POD], self.handle.pod_name());
        ws
    }

    /// Admin API request on a fresh connection; returns status and body.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let client = AdminClient::new();
        let method = method.parse().expect("an HTTP method");
        let mut request = client
            .request(method, format!("http://{}{path}", self.admin))
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let answer = request.send().await.expect("admin request");
        (answer.status().as_u16(), answer.text())
    }

    pub async fn metric(&self, name: &str) -> u64 {
        let (_, text) = self.admin("GET", "/metrics", &[], b"").await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
    }
}

/// Next data or close message (pings and pongs skipped).
pub async fn recv(ws: &mut Ws) -> Message {
    loop {
        match ws.next().await.expect("connection open").expect("no error") {
            Message::Ping(_) | Message::Pong(_) => continue,
            message => return message,
        }
    }
}

/// Send `text` and expect it back: proves the connection is open and in order.
pub async fn assert_echo(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(recv(ws).await, Message::text(text));
}

/// Read until the close frame; answer it and see the end. Returns code and reason.
pub async fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match recv(ws).await {
            Message::Close(Some(frame)) => {
                while let Some(Ok(_)) = ws.next().await {}
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Message::Close(None) => panic!("close frame without a code"),
            _ => continue,
        }
    }
}

/// Redis connection for publishing and inspecting subscriptions.
pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

pub async fn publish(
    conn: &mut redis::aio::MultiplexedConnection,
    channel: &str,
    payload: &str,
) -> i64 {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(conn)
        .await
        .unwrap()
}

/// Wait until `channel` has a subscriber (the pod subscribed); polls, never asserts on time.
pub async fn wait_for_subscriber(url: &str, channel: &str) {
    loop {
        if let Ok(client) = redis::Client::open(url) {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(channel)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if counts.first().is_some_and(|(_, n)| *n >= 1) {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
