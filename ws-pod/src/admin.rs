//! The admin listener (docs/interfaces.md, "ws-pod admin port"): health,
//! readiness, metrics, the connection list and the push API.
//!
//! [`admin_app`] builds the whole HTTP surface from an [`AdminState`], so the
//! handlers are tested with `tower::ServiceExt::oneshot` and no socket. Refusals
//! are JSON `{"error": "<code>", "message": "..."}`, like the router's.
//!
//! Only the probes (`/healthz`, `/readyz`) and `/metrics` are open; the
//! connection list (it reveals routing keys) and the push API need
//! `Authorization: Bearer <token>`, checked before any body is read by the
//! same middleware as on the router's admin API ([`wsring_core::bearer_guard`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use wsring_core::bearer_guard::BearerGuard;
use wsring_core::openmetrics;
use wsring_core::shutdown::Shutdown;

use crate::control::ResetChannel;
use crate::history::History;
use crate::metrics::Metrics;
use crate::push::{self, Target};
use crate::registry::{ConnectionInfo, Registry};

/// Everything the admin handlers read; cheap to clone.
#[derive(Clone, Debug)]
pub struct AdminState {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    /// The bearer check of the connection list and the push API.
    admin_auth: BearerGuard,
    max_message_bytes: usize,
    shutdown: Shutdown,
    reset_channel: ResetChannel,
    /// Per-key history: a key push is stored before it is answered.
    history: Option<Arc<History>>,
}

impl AdminState {
    /// `token` guards the push API; `max_message_bytes` bounds push bodies (413 beyond);
    /// `/readyz` answers 503 once `shutdown` has begun, and while the reset
    /// channel is not yet subscribed ([`ResetChannel`]).
    pub fn new(
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
        token: &str,
        max_message_bytes: usize,
        shutdown: Shutdown,
        reset_channel: ResetChannel,
    ) -> Self {
        AdminState {
            registry,
            metrics,
            admin_auth: BearerGuard::new(token, unauthorized),
            max_message_bytes,
            shutdown,
            reset_channel,
            history: None,
        }
    }

    /// Store every key push in `history` first, and answer its position.
    pub fn with_history(mut self, history: Option<Arc<History>>) -> Self {
        self.history = history;
        self
    }
}

/// The admin HTTP service.
pub fn admin_app(state: AdminState) -> Router {
    // Authentication runs before the body is read, so a stranger cannot make us buffer it.
    let protected = state
        .admin_auth
        .protect(
            Router::new()
                .route("/v1/connections", get(connections))
                .route("/v1/keys/{key}/messages", post(push_to_key))
                .route("/v1/broadcast", post(broadcast)),
        )
        .layer(DefaultBodyLimit::max(state.max_message_bytes));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(protected)
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.shutdown.has_begun() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else if state.reset_channel.waiting() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the reset channel",
        )
            .into_response()
    } else {
        "ready".into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, openmetrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn connections(State(state): State<AdminState>) -> Json<Vec<ConnectionInfo>> {
    Json(state.registry.list())
}

async fn push_to_key(
    State(state): State<AdminState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(history) = &state.history else {
        return deliver(&state, Target::Key(&key), &headers, body);
    };
    let message = match message(&headers, body) {
        Ok(message) => message,
        Err(e) => return not_utf8(e),
    };
    match history.append(&key, &message).await {
        Ok(at) => {
            let delivered =
                push::deliver_positioned(&state.registry, &state.metrics, &key, &at, &message);
            Json(json!({ "delivered": delivered, "offset": at.offset, "epoch": at.epoch }))
                .into_response()
        }
        Err(e) => {
            state.metrics.history_errors.inc();
            tracing::warn!(%key, error = %e, "push refused: the history cannot be written");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "history_unavailable",
                &format!("the push was not accepted (retry): {e}"),
            )
        }
    }
}

async fn broadcast(State(state): State<AdminState>, headers: HeaderMap, body: Bytes) -> Response {
    deliver(&state, Target::All, &headers, body)
}

fn deliver(state: &AdminState, target: Target<'_>, headers: &HeaderMap, body: Bytes) -> Response {
    match message(headers, body) {
        Ok(message) => {
            let delivered = push::deliver(&state.registry, &state.metrics, target, &message);
            Json(json!({ "delivered": delivered })).into_response()
        }
        Err(e) => not_utf8(e),
    }
}

/// The frame a push body becomes (its content type decides text or binary).
fn message(headers: &HeaderMap, body: Bytes) -> Result<Message, push::NotUtf8> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    push::message_from_body(content_type, body)
}

fn not_utf8(e: push::NotUtf8) -> Response {
    error(StatusCode::BAD_REQUEST, "body_not_utf8", &e.to_string())
}

/// The answer without the bearer token (docs/interfaces.md, "Admin authentication").
fn unauthorized() -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid bearer token is required",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tokio_tungstenite::tungstenite::Message;
    use tower::ServiceExt;

    use crate::mailbox::Command;
    use crate::registry::Registration;

    const TOKEN: &str = "s3cret";
    const LIMIT: usize = 64;

    fn state() -> AdminState {
        AdminState::new(
            Registry::new(),
            Arc::new(Metrics::new()),
            TOKEN,
            LIMIT,
            Shutdown::new(),
            ResetChannel::none(),
        )
    }

    async fn call(state: &AdminState, request: axum::http::Request<Body>) -> (StatusCode, String) {
        let response = admin_app(state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn push(
        uri: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> axum::http::Request<Body> {
        let mut builder = axum::http::Request::post(uri);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        builder.body(Body::from(body)).unwrap()
    }

    fn get(uri: &str) -> axum::http::Request<Body> {
        axum::http::Request::get(uri).body(Body::empty()).unwrap()
    }

    fn get_with_token(uri: &str, token: &str) -> axum::http::Request<Body> {
        axum::http::Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    }

    fn next_push(registration: &Registration) -> Option<Message> {
        match futures_util::FutureExt::now_or_never(registration.mailbox().recv()) {
            Some(Command::Push(message)) => Some(message),
            Some(other) => panic!("expected a push, got {other:?}"),
            None => None,
        }
    }

    #[tokio::test]
    async fn health_and_readiness_follow_shutdown() {
        let state = state();
        assert_eq!(call(&state, get("/healthz")).await.0, StatusCode::OK);
        assert_eq!(call(&state, get("/readyz")).await.0, StatusCode::OK);
        state.shutdown.begin();
        assert_eq!(
            call(&state, get("/readyz")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(call(&state, get("/healthz")).await.0, StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_waits_for_the_reset_channel_at_most_its_grace() {
        let grace = std::time::Duration::from_secs(5);
        let subscribed_later = AdminState {
            reset_channel: ResetChannel::awaiting(grace),
            ..state()
        };
        let (status, body) = call(&subscribed_later, get("/readyz")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "waiting for the reset channel");
        subscribed_later.reset_channel.mark_subscribed();
        assert_eq!(
            call(&subscribed_later, get("/readyz")).await.0,
            StatusCode::OK
        );

        // Redis unreachable: ready anyway once the grace has passed, so an
        // outage never keeps a pod out of service.
        let never_subscribed = AdminState {
            reset_channel: ResetChannel::awaiting(grace),
            ..state()
        };
        tokio::time::advance(grace - std::time::Duration::from_millis(1)).await;
        assert_eq!(
            call(&never_subscribed, get("/readyz")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        assert_eq!(
            call(&never_subscribed, get("/readyz")).await.0,
            StatusCode::OK
        );
    }

    /// With history on, a push Redis cannot store is refused (503, retry)
    /// and reaches nobody; one it stores is delivered with its position.
    #[tokio::test]
    async fn history_pushes_are_stored_first_or_refused() {
        use crate::history::{History, HistorySettings};
        use wsring_core::redis_target::RedisTarget;
        let settings = HistorySettings {
            size: 10,
            ttl: std::time::Duration::from_secs(60),
            replicas: 0,
        };
        let history_at = |url: String| {
            Some(Arc::new(History::new(
                RedisTarget::single(redis::Client::open(url).unwrap()),
                "ns",
                "c",
                settings,
            )))
        };
        let down = state().with_history(history_at("redis://127.0.0.1:1".into()));
        let conn = down.registry.register_positioned("1", "k");
        let (status, body) = call(
            &down,
            push("/v1/keys/k/messages", Some(TOKEN), None, b"x".to_vec()),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("history_unavailable"), "{body}");
        assert!(futures_util::FutureExt::now_or_never(conn.mailbox().recv()).is_none());
        assert_eq!(down.metrics.history_errors.get(), 1);

        let redis = wsring_core::harness::RedisServer::start().await.unwrap();
        let up = state().with_history(history_at(redis.url()));
        let conn = up.registry.register_positioned("1", "k");
        let (status, body) = call(
            &up,
            push("/v1/keys/k/messages", Some(TOKEN), None, b"x".to_vec()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (answer["delivered"].as_u64(), answer["offset"].as_u64()),
            (Some(1), Some(1))
        );
        assert!(matches!(
            futures_util::FutureExt::now_or_never(conn.mailbox().recv()),
            Some(Command::Positioned(at, _)) if at.offset == 1
        ));
    }

    #[tokio::test]
    async fn push_requires_the_token() {
        let state = state();
        let _conn = state.registry.register("r-1", "k");
        for token in [None, Some("wrong"), Some("s3cret-not")] {
            let (status, body) = call(
                &state,
                push("/v1/keys/k/messages", token, None, b"x".to_vec()),
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
            assert!(body.contains("unauthorized"), "{body}");
        }
        let (status, _) = call(&state, push("/v1/broadcast", None, None, b"x".to_vec())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(state.metrics.pushes_delivered.get(), 0);
    }

    #[tokio::test]
    async fn text_push_reaches_exactly_the_keys_connections() {
        let state = state();
        let a = state.registry.register("r-1", "room/1");
        let b = state.registry.register("r-2", "room/1");
        let other = state.registry.register("r-3", "room/2");
        let (status, body) = call(
            &state,
            push(
                "/v1/keys/room%2F1/messages",
                Some(TOKEN),
                Some("text/plain"),
                "héllo".into(),
            ),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"{"delivered":2}"#)
        );
        assert_eq!(next_push(&a), Some(Message::text("héllo")));
        assert_eq!(next_push(&b), Some(Message::text("héllo")));
        assert_eq!(next_push(&other), None);
    }

    #[tokio::test]
    async fn binary_push_and_broadcast() {
        let state = state();
        let a = state.registry.register("r-1", "k1");
        let b = state.registry.register("r-2", "k2");
        let body = vec![0u8, 0xff, 0x80];
        let (status, text) = call(
            &state,
            push(
                "/v1/keys/k1/messages",
                Some(TOKEN),
                Some("application/octet-stream"),
                body.clone(),
            ),
        )
        .await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::OK, r#"{"delivered":1}"#)
        );
        assert_eq!(next_push(&a), Some(Message::binary(body)));
        let (status, text) = call(
            &state,
            push("/v1/broadcast", Some(TOKEN), None, b"all".to_vec()),
        )
        .await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::OK, r#"{"delivered":2}"#)
        );
        assert_eq!(next_push(&a), Some(Message::text("all")));
        assert_eq!(next_push(&b), Some(Message::text("all")));
        assert_eq!(state.metrics.pushes_delivered.get(), 3);
    }

    #[tokio::test]
    async fn text_push_must_be_utf8() {
        let state = state();
        let conn = state.registry.register("r-1", "k");
        let (status, body) = call(
            &state,
            push("/v1/keys/k/messages", Some(TOKEN), None, vec![0xff, 0xfe]),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("body_not_utf8"), "{body}");
        assert_eq!(next_push(&conn), None);
    }

    #[tokio::test]
    async fn oversize_push_is_413() {
        let state = state();
        let conn = state.registry.register("r-1", "k");
        let (status, _) = call(
            &state,
            push(
                "/v1/keys/k/messages",
                Some(TOKEN),
                None,
                vec![b'x'; LIMIT + 1],
            ),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(next_push(&conn), None);
        let (status, _) = call(
            &state,
            push("/v1/keys/k/messages", Some(TOKEN), None, vec![b'x'; LIMIT]),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn push_to_a_key_without_connections_delivers_zero() {
        let state = state();
        let (status, body) = call(
            &state,
            push("/v1/keys/nobody/messages", Some(TOKEN), None, b"x".to_vec()),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"{"delivered":0}"#)
        );
        let (status, body) = call(
            &state,
            push("/v1/broadcast", Some(TOKEN), None, b"x".to_vec()),
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"{"delivered":0}"#)
        );
    }

    #[tokio::test]
    async fn connections_and_metrics_are_listed() {
        let state = state();
        let _conn = state.registry.register("r-1", "k");
        for request in [
            get("/v1/connections"),
            get_with_token("/v1/connections", "nope"),
        ] {
            let (status, body) = call(&state, request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
            assert!(!body.contains("\"k\""), "no key without the token: {body}");
        }
        let (status, body) = call(&state, get_with_token("/v1/connections", TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        let lower = axum::http::Request::get("/v1/connections")
            .header(header::AUTHORIZATION, format!("bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            call(&state, lower).await.0,
            StatusCode::OK,
            "the auth scheme is case-insensitive"
        );
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(list[0]["id"], "r-1");
        assert_eq!(list[0]["key"], "k");
        assert!(list[0]["since"].as_str().unwrap().ends_with('Z'));
        let (status, body) = call(&state, get("/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("wsring_pod_active_connections"), "{body}");
    }
}
