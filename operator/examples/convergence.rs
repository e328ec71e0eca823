//! Membership convergence benchmark: EndpointSlice change → every router holds the new ring.
//!
//! Drives the real `reconcile` against a mocked API server (`tower_test`) that
//! answers like kube-apiserver (optionally with a fixed latency per call), and
//! REAL HTTP listeners on 127.0.0.1 standing in for the routers' `PUT /ring`
//! (each parses the document and builds the ring with `wsring_core::Ring`, as a
//! router does). Each event flips the readiness of one pod in the pod Service's
//! EndpointSlice, then runs the reconcile the controller would run for it; the
//! latency is from the change to the moment the LAST router has the new ring.
//! Not included: the watch delivery of the EndpointSlice event by a real API server.
//!
//! ```text
//! cargo run --release -p wsring-operator --example convergence -- \
//!     [--events 200] [--pods 10] [--routers 3] [--api-latency-ms 0]
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::client::Body;
use kube::{Client, Resource};
use serde_json::{json, Value};
use tower_test::mock::{self, Handle};
use wsring_core::{Ring, RingSpec};
use wsring_operator::controller::{reconcile, Context};
use wsring_operator::endpoint_fixtures::{self, EndpointFixture};
use wsring_operator::metrics::Metrics;
use wsring_operator::{WebSocketCluster, WebSocketClusterSpec, WebSocketClusterStatus};

const NS: &str = endpoint_fixtures::NAMESPACE;
const NAME: &str = "chat";
const TOKEN: &str = "bench-token";

struct Args {
    events: usize,
    pods: usize,
    routers: usize,
    api_latency: Duration,
}

fn args() -> Args {
    let mut a = Args {
        events: 200,
        pods: 10,
        routers: 3,
        api_latency: Duration::ZERO,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        let n: u64 = value
            .parse()
            .unwrap_or_else(|_| panic!("{} needs a number", pair[0]));
        match pair[0].as_str() {
            "--events" => a.events = n as usize,
            "--pods" => a.pods = n as usize,
            "--routers" => a.routers = n as usize,
            "--api-latency-ms" => a.api_latency = Duration::from_millis(n),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Shared state of the fake API server.
#[derive(Default)]
struct World {
    pod_ready: Vec<bool>,
    router_ports: Vec<u16>,
    ring_cm: Option<Value>,
    status: Option<WebSocketClusterStatus>,
}

fn pod_slice(world: &World) -> EndpointSlice {
    let endpoints: Vec<_> = world
        .pod_ready
        .iter()
        .enumerate()
        .map(|(i, ready)| match ready {
            true => EndpointFixture::ready(i),
            false => EndpointFixture::not_ready(i),
        })
        .collect();
    endpoint_fixtures::pod_slice(NAME, &endpoints)
}

fn router_slices(world: &World) -> Vec<EndpointSlice> {
    // One slice per router: each fake router has its own port on 127.0.0.1.
    world
        .router_ports
        .iter()
        .map(|port| endpoint_fixtures::router_slice(NAME, &["127.0.0.1"], &[], i32::from(*port)))
        .collect()
}

fn reply(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// Answer every call like the API server would for a settled cluster.
async fn api_server(
    mut handle: Handle<Request<Body>, Response<Body>>,
    world: Arc<Mutex<World>>,
    latency: Duration,
) {
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
    while let Some((request, send)) = handle.next_request().await {
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let method = request.method().clone();
        let uri = request.uri().to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut w = world.lock().unwrap();
        let response = if method == Method::GET && uri.contains("/secrets/") {
            reply(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{NAME}-token")},
                        "data": {"token": base64(TOKEN.as_bytes())}}),
            )
        } else if method == Method::GET && uri.contains("endpointslices") {
            let items = if uri.contains("router-admin") {
                router_slices(&w)
            } else {
                vec![pod_slice(&w)]
            };
            reply(
                StatusCode::OK,
                &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList", "metadata": {}, "items": items}),
            )
        } else if method == Method::GET && uri.contains("/configmaps/") {
            match &w.ring_cm {
                Some(cm) => reply(StatusCode::OK, cm),
                None => reply(StatusCode::NOT_FOUND, &not_found),
            }
        } else if method == Method::GET {
            reply(StatusCode::NOT_FOUND, &not_found)
        } else if method == Method::PATCH && uri.contains("/configmaps/") {
            w.ring_cm = Some(body.clone());
            reply(StatusCode::OK, &body)
        } else if method == Method::PATCH && uri.contains("/status?") {
            w.status = serde_json::from_value(body["status"].clone()).ok();
            let mut wsc = cluster();
            wsc.status = w.status.clone();
            reply(StatusCode::OK, &serde_json::to_value(wsc).unwrap())
        } else {
            // Child applies and events: the API server answers with the object.
            reply(StatusCode::OK, &body)
        };
        send.send_response(response);
    }
}

fn base64(bytes: &[u8]) -> String {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

fn cluster() -> WebSocketCluster {
    let mut wsc = WebSocketCluster::new(NAME, WebSocketClusterSpec::default());
    wsc.meta_mut().namespace = Some(NS.into());
    wsc.meta_mut().uid = Some("uid-bench".into());
    wsc.meta_mut().generation = Some(1);
    wsc
}

type Arrivals = Arc<Mutex<HashMap<u64, Vec<Instant>>>>;

/// A stand-in router: real HTTP, parses and builds the ring, records arrival time per version.
async fn fake_router(arrivals: Arrivals, notify: Arc<tokio::sync::Notify>) -> u16 {
    use axum::extract::State;
    type St = (Arrivals, Arc<tokio::sync::Notify>, Arc<Mutex<u64>>);
    async fn put_ring(
        State((arrivals, notify, current)): State<St>,
        body: String,
    ) -> (StatusCode, String) {
        let spec = match RingSpec::parse(body.as_bytes()) {
            Ok(s) => s,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
        };
        let version = spec.version;
        let mut held = *current.lock().unwrap();
        let applied = version > held;
        if applied {
            let ring = Ring::build(spec).expect("valid ring");
            std::hint::black_box(ring.point_count());
            held = version;
            *current.lock().unwrap() = held;
            arrivals
                .lock()
                .unwrap()
                .entry(version)
                .or_default()
                .push(Instant::now());
            notify.notify_waiters();
        }
        (
            StatusCode::OK,
            json!({"applied": applied, "version": held}).to_string(),
        )
    }
    let app = axum::Router::new()
        .route("/ring", axum::routing::put(put_ring))
        .with_state((arrivals, notify, Arc::new(Mutex::new(0))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

#[tokio::main]
async fn main() {
    let args = args();
    let arrivals: Arrivals = Arc::default();
    let notify = Arc::new(tokio::sync::Notify::new());
    let mut ports = Vec::new();
    for _ in 0..args.routers {
        ports.push(fake_router(arrivals.clone(), notify.clone()).await);
    }
    let world = Arc::new(Mutex::new(World {
        pod_ready: vec![true; args.pods],
        router_ports: ports,
        ..World::default()
    }));
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(api_server(handle, world.clone(), args.api_latency));
    let ctx = Arc::new(Context::new(
        Client::new(service, NS),
        Arc::new(Metrics::default()),
        wsring_operator::policy::Policy::default(),
        None,
    ));

    // Initial reconcile: publishes version 1 with every pod.
    reconcile(Arc::new(cluster()), ctx.clone())
        .await
        .expect("initial reconcile");

    let mut latencies = Vec::with_capacity(args.events);
    let mut reconciles = Vec::with_capacity(args.events);
    for event in 0..args.events {
        let mut wsc = cluster();
        let expected = {
            let mut w = world.lock().unwrap();
            wsc.status = w.status.clone();
            let pod = args.pods - 1 - (event / 2) % args.pods.min(3);
            w.pod_ready[pod] = !w.pod_ready[pod];
            w.status.as_ref().map_or(0, |s| s.ring_version) + 1
        };
        let start = Instant::now();
        let wait = async {
            loop {
                let notified = notify.notified();
                if arrivals
                    .lock()
                    .unwrap()
                    .get(&expected)
                    .is_some_and(|a| a.len() == args.routers)
                {
                    return;
                }
                notified.await;
            }
        };
        let run = reconcile(Arc::new(wsc), ctx.clone());
        let (result, waited) =
            tokio::join!(run, tokio::time::timeout(Duration::from_secs(5), wait));
        result.expect("reconcile");
        waited.expect("routers did not all receive the ring within 5 s");
        reconciles.push(start.elapsed());
        let last = *arrivals.lock().unwrap()[&expected].iter().max().unwrap();
        latencies.push(last - start);
    }
    latencies.sort();
    reconciles.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "convergence: {} events, {} pods, {} routers, API latency {} ms/call",
        args.events,
        args.pods,
        args.routers,
        args.api_latency.as_millis()
    );
    println!(
        "  EndpointSlice change -> all routers hold the new ring: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap())
    );
    println!(
        "  full reconcile (incl. children and status):           p50 {:.2} ms  p99 {:.2} ms",
        ms(percentile(&reconciles, 0.5)),
        ms(percentile(&reconciles, 0.99))
    );
    let target = Duration::from_millis(500);
    let p99 = percentile(&latencies, 0.99);
    println!(
        "  target p99 < {} ms: {}",
        target.as_millis(),
        if p99 < target { "met" } else { "MISSED" }
    );
}
