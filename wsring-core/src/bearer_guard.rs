//! The bearer check of the router's and ws-pod's admin APIs as one axum
//! middleware (feature `http-auth`), on top of the one rule of
//! [`crate::bearer::authorizes`].
//!
//! Protected routes are grouped and put behind the guard with
//! [`BearerGuard::protect`]: the token is checked before any handler runs, so
//! before any body is read (a stranger cannot make the process buffer one),
//! and the route table shows at a glance what is open. Each API keeps its own
//! 401 body ([`BearerGuard::new`]'s `refusal`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;

/// The token an API is guarded with, and its answer to a request without it.
#[derive(Clone)]
pub struct BearerGuard {
    token: Arc<str>,
    refusal: fn() -> Response,
}

impl std::fmt::Debug for BearerGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token: states holding a guard are logged with `{:?}`.
        f.debug_struct("BearerGuard").finish_non_exhaustive()
    }
}

impl BearerGuard {
    /// Guard with `token`; `refusal` builds the 401 (with `WWW-Authenticate:
    /// Bearer`) in the API's own error format.
    pub fn new(token: &str, refusal: fn() -> Response) -> Self {
        BearerGuard {
            token: Arc::from(token),
            refusal,
        }
    }

    /// `routes` behind this guard, layered with [`require_bearer`] as a
    /// route layer: it runs before the handler (so before the body is read)
    /// and only for these routes, which the caller merges with its open ones.
    pub fn protect<S>(&self, routes: axum::Router<S>) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        routes.route_layer(axum::middleware::from_fn_with_state(
            self.clone(),
            require_bearer,
        ))
    }

    /// Whether `headers` carry `Authorization: Bearer <the token>`; for
    /// handlers that show more with the token than without.
    pub fn authorizes(&self, headers: &HeaderMap) -> bool {
        let header = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        crate::bearer::authorizes(header, &self.token)
    }
}

/// The middleware: the request goes on with the token, else the guard's refusal.
pub async fn require_bearer(
    State(guard): State<BearerGuard>,
    request: Request,
    next: Next,
) -> Response {
    if guard.authorizes(request.headers()) {
        next.run(request).await
    } else {
        (guard.refusal)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    fn refusal() -> Response {
        let mut response = Response::default();
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response
    }

    #[test]
    fn the_guard_applies_the_bearer_rule() {
        let guard = BearerGuard::new("s3cret", refusal);
        let mut headers = HeaderMap::new();
        assert!(!guard.authorizes(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer s3cret"),
        );
        assert!(guard.authorizes(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert!(!guard.authorizes(&headers));
        assert_eq!((guard.refusal)().status(), StatusCode::UNAUTHORIZED);
        assert!(!format!("{guard:?}").contains("s3cret"));
    }
}
