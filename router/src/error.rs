//! The crate's one error type, and how each error looks on the wire.
//!
//! Every refusal the router sends (public listener or admin API) is JSON
//! `{"error": "<code>", "message": "..."}`: [`Error::code`] is the stable
//! machine-readable part (also the `reason` label of the upgrade-error metric),
//! [`Error::status`] the HTTP status it maps to.

use http::StatusCode;

/// What is wrong with a routing key (the shared rules of `wsring_core::key`).
pub use wsring_core::key::KeyProblem;

/// Everything that can go wrong in the router.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Startup configuration is unusable (missing token, bad URL, ...).
    #[error("configuration: {0}")]
    Config(String),

    /// A listener failed while serving.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (e.g. "admin listener").
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// `--listen` or `--admin-listen` could not be bound at start-up
    /// (`wsring_core::Error::Bind`, as in ws-pod).
    #[error(transparent)]
    Bind(wsring_core::Error),

    /// The request carries no usable routing key.
    #[error("{detail}")]
    BadKey {
        /// What exactly is wrong.
        problem: KeyProblem,
        /// Human-readable explanation naming the key source.
        detail: String,
    },

    /// An upgrade request that could be read two ways (two `Upgrade`, `Host`
    /// or `Sec-WebSocket-Key` headers, another protocol next to websocket, a
    /// malformed key): refused, never forwarded.
    #[error("{0}")]
    BadUpgrade(String),

    /// A connection over `--max-connections` or `--max-connections-per-client`.
    #[error("too many connections ({}): retry later", .0.as_str())]
    TooManyConnections(wsring_core::conn_limit::LimitHit),

    /// A request to the public listener that is not a WebSocket upgrade.
    #[error("this endpoint only accepts WebSocket upgrade requests (GET with Connection: upgrade and Upgrade: websocket)")]
    NotUpgrade,

    /// No ring loaded yet, or a ring without members: nobody can own the key.
    #[error("no ring member can take the connection: the ring is empty")]
    EmptyRing,

    /// TCP connect or HTTP exchange with the owner pod failed.
    #[error("pod {pod} ({addr}) is unreachable: {detail}")]
    PodUnreachable {
        /// Ring member name.
        pod: String,
        /// Address dialled.
        addr: String,
        /// Underlying failure.
        detail: String,
    },

    /// The owner pod did not answer within the handshake timeout.
    #[error("pod {pod} did not answer the upgrade within {timeout_ms} ms")]
    PodTimeout {
        /// Ring member name.
        pod: String,
        /// The limit that was exceeded.
        timeout_ms: u64,
    },

    /// The owner pod answered the upgrade with something other than 101.
    #[error("pod {pod} refused the upgrade with {status}: {body}")]
    PodRejected {
        /// Ring member name.
        pod: String,
        /// Status the pod sent; passed through to the client.
        status: StatusCode,
        /// Start of the pod's answer body, for the client's benefit.
        body: String,
    },

    /// A ring document that does not parse or breaks a ring rule.
    #[error(transparent)]
    InvalidRing(wsring_core::Error),

    /// A ring older than the current one, or the same version with other members.
    #[error("ring version {offered} conflicts with the current ring version {current}: {reason}")]
    RingConflict {
        /// Version currently applied.
        current: u64,
        /// Version offered.
        offered: u64,
        /// "older version" or "same version, different content".
        reason: &'static str,
    },

    /// The upgrade request's `Origin` is not on `--allowed-origins` (or is
    /// missing under `--require-origin`): refused before anything reaches a pod.
    #[error("{0}")]
    OriginNotAllowed(String),

    /// Admin request without the right bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,

    /// A well-formed admin request the router cannot serve (e.g. a member without admin address).
    #[error("{0}")]
    Unavailable(String),

    /// Bad admin request input (e.g. push body that is not UTF-8 for a text frame).
    #[error("{0}")]
    BadRequest(String),

    /// Publishing to Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),

    /// The Kubernetes API could not be reached for the ring ConfigMap.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// Stable machine-readable code, used in JSON bodies and as a metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Bind(_) => "bind",
            Error::Io { .. } => "io",
            Error::BadKey { problem, .. } => problem.code(),
            Error::NotUpgrade => "upgrade_required",
            Error::BadUpgrade(_) => "bad_upgrade_request",
            Error::TooManyConnections(_) => "too_many_connections",
            Error::EmptyRing => "ring_empty",
            Error::PodUnreachable { .. } => "pod_unreachable",
            Error::PodTimeout { .. } => "pod_timeout",
            Error::PodRejected { .. } => "pod_rejected",
            Error::InvalidRing(_) => "invalid_ring",
            Error::RingConflict { .. } => "ring_conflict",
            Error::OriginNotAllowed(_) => "origin_not_allowed",
            Error::Unauthorized => "unauthorized",
            Error::Unavailable(_) => "unavailable",
            Error::BadRequest(_) => "bad_request",
            Error::Redis(_) => "redis",
            Error::Kube(_) => "kubernetes",
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadKey { .. }
            | Error::BadUpgrade(_)
            | Error::InvalidRing(_)
            | Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotUpgrade => StatusCode::UPGRADE_REQUIRED,
            Error::EmptyRing | Error::Unavailable(_) | Error::TooManyConnections(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::PodUnreachable { .. } => StatusCode::BAD_GATEWAY,
            Error::PodTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::PodRejected { status, .. } => *status,
            Error::RingConflict { .. } => StatusCode::CONFLICT,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            Error::Config(_)
            | Error::Bind(_)
            | Error::Io { .. }
            | Error::Redis(_)
            | Error::Kube(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body `{"error": code, "message": text}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({"error": self.code(), "message": self.to_string()}).to_string()
    }

    /// The JSON body for a client of the public listener: like
    /// [`Error::to_json`], but a failure at the pod is told without the pod's
    /// name, address or answer (those are in the router's log and metrics).
    pub fn to_public_json(&self) -> String {
        let message = match self {
            Error::PodUnreachable { .. } => {
                "the pod that owns this key cannot be reached; retry with backoff".to_string()
            }
            Error::PodTimeout { .. } => {
                "the pod that owns this key did not answer in time; retry with backoff".to_string()
            }
            Error::PodRejected { status, .. } => {
                format!("the pod that owns this key refused the connection ({status})")
            }
            other => other.to_string(),
        };
        serde_json::json!({"error": self.code(), "message": message}).to_string()
    }

    /// The admin API's answer to a request without the bearer token (401,
    /// `WWW-Authenticate: Bearer`), for its [`wsring_core::bearer_guard`].
    pub fn unauthorized_response() -> axum::response::Response {
        axum::response::IntoResponse::into_response(Error::Unauthorized)
    }

    /// Shorthand for a key refusal.
    pub(crate) fn bad_key(problem: KeyProblem, detail: impl Into<String>) -> Self {
        Error::BadKey {
            problem,
            detail: detail.into(),
        }
    }

    /// Shorthand for an I/O failure with context.
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

impl From<wsring_core::Error> for Error {
    fn from(e: wsring_core::Error) -> Self {
        Error::InvalidRing(e)
    }
}

impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let mut response = (
            self.status(),
            [(http::header::CONTENT_TYPE, "application/json")],
            self.to_json(),
        )
            .into_response();
        if matches!(self, Error::Unauthorized) {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
