//! The admin listener: health, metrics, ring, connections and the push API.
//!
//! Open without a token: the probes (`/healthz`, `/readyz`), Prometheus
//! scraping (`/metrics`) and the dashboard (`GET /`, `GET /dashboard/state`:
//! ring layout and per-pod counts, never a key). Everything else needs
//! `Authorization: Bearer <token>`, compared in constant time: what changes
//! state or reaches clients (`PUT /ring`, push) and what reveals routing keys
//! or pod addresses (`GET /ring`, `GET /ring/lookup`, `GET /v1/connections`).
//! The token is checked before any body is read, by the same middleware as on
//! ws-pod's admin API ([`wsring_core::bearer_guard`]).
//! The admin port is cluster-internal, but "internal" is not an access control.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde_json::json;
use wsring_core::RingSpec;

use crate::config::KeySource;
use crate::dashboard;
use crate::key::KeyExtractor;
use crate::metrics;
use crate::push::{BroadcastAnswer, KeyPushAnswer};
use crate::registry::ConnectionInfo;
use crate::state::{ApplyOutcome, Shared};
use crate::Error;

/// Largest accepted request body (ring documents, push messages).
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The admin API over `state`; tested with `tower::ServiceExt::oneshot`.
pub fn admin_app(state: Arc<Shared>) -> axum::Router {
    // Authentication runs before the body is read, so a stranger cannot make us buffer it.
    let protected = state.admin_auth.protect(
        axum::Router::new()
            .route("/ring", get(get_ring).put(put_ring))
            .route("/ring/lookup", get(lookup))
            .route("/v1/connections", get(connections))
            .route("/v1/keys/{key}/messages", post(push_to_key))
            .route("/v1/broadcast", post(broadcast)),
    );
    axum::Router::new()
        .route("/", get(dashboard::page))
        .route("/dashboard/state", get(dashboard::state))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(protected)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<Arc<Shared>>) -> Result<&'static str, Error> {
    if state.shutdown.has_begun() {
        Err(Error::Unavailable("shutting down".into()))
    } else if state.ready() {
        Ok("ready")
    } else {
        Err(Error::Unavailable(
            "no ring with at least one member loaded yet".into(),
        ))
    }
}

async fn metrics_text(State(state): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn get_ring(State(state): State<Arc<Shared>>) -> Result<Json<RingSpec>, Error> {
    state
        .ring
        .current()
        .map(|ring| Json(ring.spec().clone()))
        .ok_or_else(|| Error::Unavailable("no ring loaded yet".into()))
}

async fn put_ring(
    State(state): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<ApplyOutcome>, Error> {
    let spec = RingSpec::parse(&body)?;
    state.apply_ring(spec, "api").map(Json)
}

/// `GET /ring/lookup?key=K`: the key is read exactly as the public listener reads a query key.
async fn lookup(
    State(state): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, Error> {
    let key = KeyExtractor::new(KeySource::Query, "key", state.keys.max_bytes())
        .extract(&uri, &headers)?;
    let ring = state.ring.current().ok_or(Error::EmptyRing)?;
    let owner = ring.owner(&key).ok_or(Error::EmptyRing)?;
    Ok(Json(json!({
        "key": key,
        "owner": owner.name,
        "addr": owner.addr,
        "version": ring.version(),
    })))
}

async fn connections(State(state): State<Arc<Shared>>) -> Json<Vec<ConnectionInfo>> {
    Json(state.registry.snapshot())
}

async fn push_to_key(
    State(state): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<KeyPushAnswer>, Error> {
    let result = async {
        // The `{key}` segment, decoded and checked like a key on the public listener.
        let key = KeyExtractor::new(KeySource::Path, "keys", state.keys.max_bytes())
            .extract(&uri, &headers)?;
        check_text(&headers, &body)?;
        let ring = state.ring.current().ok_or(Error::EmptyRing)?;
        state
            .push
            .to_key(&ring, &key, headers.get(header::CONTENT_TYPE), body)
            .await
    }
    .await;
    count_push(&state, "key", &result);
    result.map(Json)
}

async fn broadcast(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<BroadcastAnswer>, Error> {
    let result = async {
        check_text(&headers, &body)?;
        let ring = state.ring.current().ok_or(Error::EmptyRing)?;
        state
            .push
            .broadcast(&ring, headers.get(header::CONTENT_TYPE), body)
            .await
    }
    .await;
    count_push(&state, "broadcast", &result);
    result.map(Json)
}

/// A push becomes a text frame unless it is `application/octet-stream`; text must be UTF-8.
fn check_text(headers: &HeaderMap, body: &[u8]) -> Result<(), Error> {
    let binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"));
    if binary || std::str::from_utf8(body).is_ok() {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "a text message must be UTF-8; send binary data as application/octet-stream".into(),
        ))
    }
}

fn count_push<T>(state: &Shared, kind: &'static str, result: &Result<T, Error>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    state
        .metrics
        .push_requests
        .get_or_create(&[("kind", kind), ("result", outcome)])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::config::Config;

    const TOKEN: &str = "t0ken";

    fn state() -> Arc<Shared> {
        let config = Config::for_tests(TOKEN);
        let resolved = config.resolve().unwrap();
        Arc::new(Shared::new(&config, resolved, None))
    }

    fn ring_json(version: u64, names: &[&str]) -> String {
        let members: Vec<_> = names
            .iter()
            .map(|n| json!({"name": n, "addr": format!("{n}:8081"), "admin": format!("{n}:9091")}))
            .collect();
        json!({"version": version, "vnodes": 64, "boundedLoad": null, "members": members})
            .to_string()
    }

    async fn call(
        state: &Arc<Shared>,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = admin_app(state.clone())
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn put_ring(state: &Arc<Shared>, body: &str) -> (StatusCode, serde_json::Value) {
        call(state, "PUT", "/ring", Some(TOKEN), body).await
    }

    #[tokio::test]
    async fn mutations_need_the_bearer_token() {
        let s = state();
        let body = ring_json(1, &["a"]);
        for token in [None, Some("wrong"), Some("t0ke"), Some("t0ken2")] {
            let (status, err) = call(&s, "PUT", "/ring", token, &body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
            assert_eq!(err["error"], "unauthorized");
        }
        for uri in ["/v1/keys/k/messages", "/v1/broadcast"] {
            let (status, _) = call(&s, "POST", uri, Some("nope"), "hi").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        }
        assert!(
            s.ring.current().is_none(),
            "unauthorized PUT changed the ring"
        );
        let (status, _) = put_ring(&s, &body).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn reads_revealing_keys_or_addresses_need_the_token() {
        let s = state();
        put_ring(&s, &ring_json(1, &["a"])).await;
        let _route = s.route("user-1").unwrap();
        for uri in ["/ring", "/ring/lookup?key=alice", "/v1/connections"] {
            for token in [None, Some("wrong")] {
                let (status, err) = call(&s, "GET", uri, token, "").await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} {token:?}");
                assert_eq!(err["error"], "unauthorized", "{uri}");
            }
            let (status, _) = call(&s, "GET", uri, Some(TOKEN), "").await;
            assert_eq!(status, StatusCode::OK, "{uri}");
        }
        for uri in ["/", "/dashboard/state", "/healthz", "/readyz", "/metrics"] {
            let (status, _) = call(&s, "GET", uri, None, "").await;
            assert_eq!(status, StatusCode::OK, "{uri} stays open");
        }
        let (_, view) = call(&s, "GET", "/dashboard/state", None, "").await;
        assert!(
            !view.to_string().contains("user-1"),
            "the open dashboard state never shows keys: {view}"
        );
    }

    #[tokio::test]
    async fn put_ring_follows_the_version_rules() {
        let s = state();
        let (status, answer) = put_ring(&s, &ring_json(5, &["a", "b"])).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            answer,
            json!({"applied": true, "version": 5, "moved": 0, "resetBatches": 0})
        );

        let (status, answer) = put_ring(&s, &ring_json(5, &["b", "a"])).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer, json!({"applied": false}));

        let (status, err) = put_ring(&s, &ring_json(4, &["a", "b", "c"])).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(err["error"], "ring_conflict");

        let (status, _) = put_ring(&s, &ring_json(5, &["a"])).await;
        assert_eq!(status, StatusCode::CONFLICT);

        for bad in [
            "{not json".to_string(),
            r#"{"version": 9, "vnodes": 0, "members": []}"#.to_string(),
            r#"{"version": 9, "vnodes": 8, "boundedLoad": 1.0, "members": []}"#.to_string(),
            ring_json(9, &["a", "a"]),
        ] {
            let (status, err) = put_ring(&s, &bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(err["error"], "invalid_ring");
        }

        let (status, ring) = call(&s, "GET", "/ring", Some(TOKEN), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ring["version"], 5, "refused rings left the ring unchanged");
        assert_eq!(ring["members"].as_array().unwrap().len(), 2);
        assert_eq!(ring["vnodes"], 64);

        let (status, answer) = put_ring(&s, &ring_json(6, &["a", "b", "c"])).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["version"], 6);
    }

    #[tokio::test]
    async fn readiness_and_lookup_follow_the_ring() {
        let s = state();
        let (status, _) = call(&s, "GET", "/healthz", None, "").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(&s, "GET", "/readyz", None, "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, err) = call(&s, "GET", "/ring/lookup?key=alice", Some(TOKEN), "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err["error"], "ring_empty");

        put_ring(&s, &ring_json(1, &[])).await;
        let (status, _) = call(&s, "GET", "/readyz", None, "").await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "a ring without members is not ready"
        );

        put_ring(&s, &ring_json(2, &["a", "b", "c"])).await;
        let (status, _) = call(&s, "GET", "/readyz", None, "").await;
        assert_eq!(status, StatusCode::OK);

        let ring = s.ring.current().unwrap();
        let (status, found) = call(&s, "GET", "/ring/lookup?key=al%20ice", Some(TOKEN), "").await;
        assert_eq!(status, StatusCode::OK);
        let owner = ring.owner("al ice").unwrap();
        assert_eq!(
            found,
            json!({"key": "al ice", "owner": owner.name, "addr": owner.addr, "version": 2})
        );
        let (status, err) = call(&s, "GET", "/ring/lookup", Some(TOKEN), "").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(err["error"], "missing_key");
    }

    #[tokio::test]
    async fn connections_and_metrics_are_listed() {
        let s = state();
        put_ring(&s, &ring_json(1, &["a"])).await;
        let route = s.route("user-1").unwrap();
        let (status, list) = call(&s, "GET", "/v1/connections", Some(TOKEN), "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list[0]["id"], route.registration.id());
        assert_eq!(list[0]["key"], "user-1");
        assert_eq!(list[0]["pod"], "a");
        assert!(list[0]["since"].as_u64().unwrap() > 0);
        let (status, text) = call(&s, "GET", "/metrics", None, "").await;
        assert_eq!(status, StatusCode::OK);
        let text = text.as_str().unwrap();
        assert!(
            text.contains("wsring_router_active_connections 1"),
            "{text}"
        );
        assert!(text.contains("wsring_router_ring_members 1"), "{text}");
        drop(route);
        let (_, list) = call(&s, "GET", "/v1/connections", Some(TOKEN), "").await;
        assert_eq!(list, json!([]));
    }

    #[tokio::test]
    async fn dashboard_shows_ring_and_connections() {
        let s = state();
        let (status, page) = call(&s, "GET", "/", None, "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.as_str().unwrap().contains("/dashboard/state"));
        put_ring(&s, &ring_json(3, &["a", "b"])).await;
        let _route = s.route("user-1").unwrap();
        let (status, view) = call(&s, "GET", "/dashboard/state", None, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(view["router"], "router-test");
        assert_eq!(view["ring"]["version"], 3);
        let owner = s
            .ring
            .current()
            .unwrap()
            .owner("user-1")
            .unwrap()
            .name
            .clone();
        assert_eq!(view["connections"][owner.as_str()], 1);
        let shares: f64 = ["a", "b"]
            .iter()
            .map(|m| view["shares"][m].as_f64().unwrap())
            .sum();
        assert!((shares - 1.0).abs() < 1e-9);
        assert!(!view["arcs"].as_array().unwrap().is_empty());
        assert_eq!(view["control"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn pushes_are_validated_before_forwarding() {
        let s = state();
        let (status, err) = call(&s, "POST", "/v1/keys/k/messages", Some(TOKEN), "hi").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err["error"], "ring_empty");
        put_ring(&s, &ring_json(1, &["a"])).await;
        let long = "x".repeat(300);
        let (status, err) = call(
            &s,
            "POST",
            &format!("/v1/keys/{long}/messages"),
            Some(TOKEN),
            "hi",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(err["error"], "key_too_long");
        let (status, err) = call(&s, "POST", "/v1/keys/%zz/messages", Some(TOKEN), "hi").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(err["error"], "bad_percent_escape");
        let response = admin_app(s.clone())
            .oneshot(
                Request::post("/v1/broadcast")
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(Body::from(vec![0xff, 0xfe]))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "text pushes must be UTF-8"
        );
    }
}
