//! The control API of local mode: list, add, stop and crash pods.
//!
//! `GET /pods`, `POST /pods`, `DELETE /pods/{name}?mode=graceful|crash`,
//! all behind the bearer token printed at start-up (the same token as the
//! router's admin API). CORS is open to loopback pages so the router's
//! dashboard can drive it.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::supervisor::{StopMode, Supervisor};

#[derive(Clone)]
struct Control {
    supervisor: Arc<Supervisor>,
    token: Arc<str>,
}

/// The control API router.
pub fn app(supervisor: Arc<Supervisor>, token: String) -> Router {
    let state = Control {
        supervisor,
        token: token.into(),
    };
    Router::new()
        .route("/pods", get(list).post(add).options(preflight))
        .route("/pods/{name}", delete(stop).options(preflight))
        .with_state(state)
}

#[derive(Deserialize)]
struct StopQuery {
    #[serde(default)]
    mode: Option<String>,
}

fn authorized(control: &Control, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let expected = format!("Bearer {}", control.token);
    let given = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    // Constant-time comparison: the token is the only secret here.
    let same = given.len() == expected.len()
        && given
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )))
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    with_cors((status, Json(json!({"error": code, "message": message}))).into_response())
}

fn with_cors(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        "*".parse().expect("static"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        "authorization, content-type".parse().expect("static"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        [Method::GET, Method::POST, Method::DELETE]
            .map(|m| m.to_string())
            .join(", ")
            .parse()
            .expect("static"),
    );
    res
}

async fn preflight() -> Response {
    with_cors(StatusCode::NO_CONTENT.into_response())
}

async fn list(State(control): State<Control>, headers: HeaderMap) -> Response {
    if let Err(res) = authorized(&control, &headers) {
        return *res;
    }
    let (version, pods) = control.supervisor.pods().await;
    with_cors(Json(json!({"ringVersion": version, "pods": pods})).into_response())
}

async fn add(State(control): State<Control>, headers: HeaderMap) -> Response {
    if let Err(res) = authorized(&control, &headers) {
        return *res;
    }
    match control.supervisor.add_pod().await {
        Ok(pod) => with_cors((StatusCode::CREATED, Json(pod)).into_response()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "add_failed",
            &format!("{e:#}"),
        ),
    }
}

async fn stop(
    State(control): State<Control>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<StopQuery>,
) -> Response {
    if let Err(res) = authorized(&control, &headers) {
        return *res;
    }
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
        Ok(()) => with_cors(Json(json!({"stopped": name})).into_response()),
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
