//! WebSockets over HTTP/2 (a router with `--pod-transport h2`): a real pod, a
//! real HTTP/2 connection carrying several WebSockets as extended CONNECT
//! streams (RFC 8441), and what the pod refuses on such a connection.

mod common;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper::ext::Protocol;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use wsring_core::protocol::{ControlMessage, CLOSE_GOING_AWAY, CLOSE_RING_MOVED, HEADER_POD};

use common::{config, router_headers, TestPod};

type H2Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// An HTTP/2 connection to the pod that has seen its SETTINGS.
async fn h2(pod: &TestPod) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(pod.ws).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let mut connection = Box::pin(connection);
    while !connection.is_extended_connect_protocol_enabled() {
        tokio::select! {
            _ = connection.as_mut() => panic!("the pod closed the HTTP/2 connection"),
            () = tokio::time::sleep(std::time::Duration::from_millis(1)) => {}
        }
    }
    tokio::spawn(connection);
    sender
}

/// An extended CONNECT like the router's, with `headers` added.
fn connect(pod: &TestPod, headers: &[(&str, &str)]) -> Request<Empty<Bytes>> {
    let mut request = Request::builder()
        .method(Method::CONNECT)
        .version(http::Version::HTTP_2)
        .uri(format!("http://{}/chat", pod.ws))
        .extension(Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Empty::new()).unwrap()
}

/// Open one WebSocket stream as connection `conn` for `key`.
async fn open(
    sender: &mut SendRequest<Empty<Bytes>>,
    pod: &TestPod,
    conn: &str,
    key: &str,
) -> H2Ws {
    sender.ready().await.unwrap();
    let headers = router_headers(conn, key, "3");
    let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let request = connect(pod, &pairs);
    let mut response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[HEADER_POD], "pod-h2");
    let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
}

async fn close_code(ws: &mut H2Ws) -> Option<u16> {
    while let Some(frame) = ws.next().await {
        if let Message::Close(frame) = frame.ok()? {
            return frame.map(|f| u16::from(f.code));
        }
    }
    None
}

#[tokio::test]
async fn many_websockets_share_one_connection_and_obey_resets_and_drain() {
    let pod = TestPod::start(config("pod-h2")).await;
    let mut sender = h2(&pod).await;
    let mut alice = open(&mut sender, &pod, "r-1", "alice").await;
    let mut bob = open(&mut sender, &pod, "r-2", "bob").await;
    for (ws, text) in [(&mut alice, "hi from alice"), (&mut bob, "hi from bob")] {
        ws.send(Message::text(text)).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    }
    let mut ids: Vec<String> = pod.handle.connections().into_iter().map(|c| c.id).collect();
    ids.sort();
    assert_eq!(ids, ["r-1", "r-2"]);

    // A reset for r-1 closes alice's stream with 4001 and nothing else.
    let reset = ControlMessage::reset(4, "r", vec!["r-1".into()]).to_json();
    pod.handle.apply_control(reset.as_bytes());
    assert_eq!(close_code(&mut alice).await, Some(CLOSE_RING_MOVED));
    bob.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        bob.next().await.unwrap().unwrap(),
        Message::text("still here")
    );

    // SIGTERM's drain closes bob with 1001, over the same connection.
    let shutdown = tokio::spawn(pod.shutdown());
    assert_eq!(close_code(&mut bob).await, Some(CLOSE_GOING_AWAY));
    shutdown.await.unwrap().unwrap();
}

#[tokio::test]
async fn streams_that_are_not_websockets_or_unsigned_or_malformed_are_refused() {
    let pod = TestPod::start(config("pod-h2")).await;
    let mut sender = h2(&pod).await;
    let plain_get = Request::builder()
        .uri(format!("http://{}/", pod.ws))
        .version(http::Version::HTTP_2)
        .body(Empty::new())
        .unwrap();
    let signed_bad_key = router_headers("r-1", "%zz", "3");
    let pairs: Vec<(&str, &str)> = signed_bad_key
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    let bad_key = connect(&pod, &pairs);
    let unsigned = connect(
        &pod,
        &[
            ("x-wsring-conn", "r-1"),
            ("x-wsring-key", "alice"),
            ("x-wsring-ring-version", "3"),
        ],
    );
    for (request, status, why) in [
        (plain_get, StatusCode::BAD_REQUEST, "extended CONNECT"),
        (bad_key, StatusCode::BAD_REQUEST, "x-wsring-key"),
        (unsigned, StatusCode::FORBIDDEN, "x-wsring-auth"),
    ] {
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), status);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(why), "{body}");
    }
    assert!(
        pod.handle.connections().is_empty(),
        "nothing was registered"
    );
    assert_eq!(pod.metric("wsring_pod_failed_handshakes_total").await, 3);
    // The connection is still usable after refusals.
    let mut ws = open(&mut sender, &pod, "r-9", "carol").await;
    ws.send(Message::text("ok")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ok"));
}

#[tokio::test]
async fn streams_reach_an_upstream_app_with_the_key_and_connection_id() {
    // The "app" is another pod (its echo), as in the HTTP/1.1 upstream test.
    let app = TestPod::start(config("app")).await;
    let front = TestPod::start(ws_pod::Config {
        upstream: Some(app.url()),
        ..config("pod-h2")
    })
    .await;
    let mut sender = h2(&front).await;
    let mut ws = open(&mut sender, &front, "r-7", "user%2F7").await;
    ws.send(Message::text("through the app")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("through the app")
    );
    let seen = app.handle.connections();
    assert_eq!(
        (seen[0].id.as_str(), seen[0].key.as_str()),
        ("r-7", "user/7")
    );
}

/// Found in the security review: one HTTP/2 connection opened 20,000
/// WebSockets (1,048,576 streams were allowed). `--h2-max-streams` caps what
/// one connection carries: a client has to wait for a free stream.
#[tokio::test]
async fn a_connection_carries_at_most_h2_max_streams_websockets() {
    let pod = TestPod::start(ws_pod::Config {
        h2_max_streams: 2,
        ..config("pod-h2")
    })
    .await;
    let mut sender = h2(&pod).await;
    let mut first = open(&mut sender, &pod, "r-1", "a").await;
    let _second = open(&mut sender, &pod, "r-2", "b").await;
    let mut third = Box::pin(open(&mut sender, &pod, "r-3", "c"));
    let waited = tokio::time::timeout(std::time::Duration::from_millis(500), &mut third).await;
    assert!(waited.is_err(), "a third stream had to wait for a free one");
    assert_eq!(pod.handle.connections().len(), 2);
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    let mut third = tokio::time::timeout(std::time::Duration::from_secs(10), third)
        .await
        .expect("a stream is free again");
    third.send(Message::text("ok")).await.unwrap();
    assert_eq!(third.next().await.unwrap().unwrap(), Message::text("ok"));
}
