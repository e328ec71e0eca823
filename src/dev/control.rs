//! The control API of local mode: list, add, stop and crash pods.
//!
//! `GET /pods`, `POST /pods`, `DELETE /pods/{name}?mode=graceful|crash`,
//! all behind the bearer token printed at start-up (the same token as the
//! router's admin API, behind the same guard: [`wsring_core::bearer_guard`]).
//! CORS is open to the router dashboard's own origin only (the page served
//! by the admin listener, which drives the buttons), so no other web page can
//! even learn the answers of this API from a browser.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use wsring_core::bearer_guard::BearerGuard;

use super::supervisor::{StopMode, Supervisor};

#[derive(Clone)]
struct Control {
    supervisor: Arc<Supervisor>,
    /// Origins of the dashboard page (`http://ADMIN_ADDR`, and
    /// `http://localhost:PORT` for a loopback admin listener).
    dashboard_origins: Arc<[String]>,
}

/// The control API router; `dashboard` is the router's admin address, whose
/// page alone may call it from a browser.
pub fn app(supervisor: Arc<Supervisor>, token: String, dashboard: SocketAddr) -> Router {
    let mut dashboard_origins = vec![format!("http://{dashboard}")];
    if dashboard.ip().is_loopback() {
        dashboard_origins.push(format!("http://localhost:{}", dashboard.port()));
    }
    let state = Control {
        supervisor,
        dashboard_origins: dashboard_origins.into(),
    };
    let guard = BearerGuard::new(&token, unauthorized);
    guard
        .protect(
            Router::new()
                .route("/pods", get(list).post(add))
                .route("/pods/{name}", delete(stop)),
        )
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .with_state(state)
}

/// The 401 of this API, in its own error format.
fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid bearer token is required",
    )
}

#[derive(Deserialize)]
struct StopQuery {
    #[serde(default)]
    mode: Option<String>,
}

/// Answer preflights and mark answers readable, for the dashboard's origin
/// only; any other origin gets no CORS header, so browsers keep its pages out.
async fn cors(State(control): State<Control>, request: Request, next: Next) -> Response {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .filter(|o| {
            control
                .dashboard_origins
                .iter()
                .any(|d| o.as_bytes() == d.as_bytes())
        })
        .cloned();
    let mut response = if request.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    if let Some(origin) = origin {
        allow(response.headers_mut(), origin);
    }
    response
}

fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE"),
    );
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

async fn list(State(control): State<Control>) -> Response {
    let (version, pods) = control.supervisor.pods().await;
    Json(json!({"ringVersion": version, "pods": pods})).into_response()
}

async fn add(State(control): State<Control>) -> Response {
    match control.supervisor.add_pod().await {
        Ok(pod) => (StatusCode::CREATED, Json(pod)).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "add_failed",
            &format!("{e:#}"),
        ),
    }
}

async fn stop(
    State(control): State<Control>,
    Path(name): Path<String>,
    Query(query): Query<StopQuery>,
) -> Response {
    let mode = match query.mode.as_deref() {
        None | Some("graceful") => StopMode::Graceful,
        Some("crash") => StopMode::Crash,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_mode",
                &format!("mode must be graceful or crash, got {other:?}"),
            )
        }
    };
    match control.supervisor.stop_pod(&name, mode).await {
        Ok(()) => Json(json!({"stopped": name})).into_response(),
        Err(e) if e.to_string().starts_with("no pod named") => {
            error(StatusCode::NOT_FOUND, "no_such_pod", &e.to_string())
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "stop_failed",
            &format!("{e:#}"),
        ),
    }
}
