//! Harness for the integration tests: a real pod on loopback ports, real
//! WebSocket clients, a tiny HTTP client for the admin port, Redis helpers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use ws_pod::{Config, PodHandle, Server};
use wsring_core::protocol::{encode_key, HEADER_CONN, HEADER_KEY, HEADER_POD, HEADER_RING_VERSION};

pub const TOKEN: &str = "test-token";

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Loopback ports chosen by the kernel, a token, a pod name.
pub fn config(pod_name: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        pod_name: Some(pod_name.to_string()),
        token: Some(TOKEN.to_string()),
        ..Config::default()
    }
}

/// A running pod.
pub struct Pod {
    pub ws: SocketAddr,
    pub admin: SocketAddr,
    pub handle: PodHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ws_pod::Error>>>,
}

impl Pod {
    pub async fn start(config: Config) -> Pod {
        let server = Server::bind(config).await.expect("bind");
        let (ws, admin, handle) = (server.ws_addr(), server.admin_addr(), server.handle());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Pod {
            ws,
            admin,
            handle,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Trigger the drain and wait for `run` to return.
    pub async fn shutdown(mut self) -> Result<(), ws_pod::Error> {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap()
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.ws)
    }

    /// Connect like a router does: connection id, percent-encoded key, ring version.
    pub async fn connect_as(&self, conn_id: &str, key: &str) -> Ws {
        let mut request = format!("{}/chat?key=ignored", self.url())
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        headers.insert(HEADER_CONN, HeaderValue::from_str(conn_id).unwrap());
        headers.insert(HEADER_KEY, HeaderValue::from_str(&encode_key(key)).unwrap());
        headers.insert(HEADER_RING_VERSION, HeaderValue::from_static("7"));
        let (ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("upgrade");
        assert_eq!(response.headers()[HEADER_POD], self.handle.pod_name());
        ws
    }

    /// Admin API request; returns status and body.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        http(self.admin, method, path, headers, body).await
    }

    pub async fn metric(&self, name: &str) -> u64 {
        let (_, text) = self.admin("GET", "/metrics", &[], b"").await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Minimal HTTP/1.1 client (one request per connection).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
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
