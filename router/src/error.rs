//! The crate's one error type, and how each error looks on the wire.
//!
//! Every refusal the router sends (public listener or admin API) is JSON
//! `{"error": "<code>", "message": "..."}`: [`Error::code`] is the stable
//! machine-readable part (also the `reason` label of the upgrade-error metric),
//! [`Error::status`] the HTTP status it maps to.

use http::StatusCode;

/// Why a routing key was refused (part of [`Error::BadKey`]).
///
/// A plain reason rather than an error type: the key module names the
/// problem, [`Error`] carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyProblem {
    /// The configured key source (query parameter, header, path segment, cookie) is absent.
    Missing,
    /// The source is present but empty.
    Empty,
    /// Longer than `--max-key-bytes` (after decoding).
    TooLong,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
    /// Control characters (newline, NUL, ...) have no business in a key.
    ControlCharacters,
}

impl KeyProblem {
    /// Stable error code for the JSON body and metrics.
    pub fn code(self) -> &'static str {
        match self {
            KeyProblem::Missing => "missing_key",
            KeyProblem::Empty => "empty_key",
            KeyProblem::TooLong => "key_too_long",
            KeyProblem::BadEscape => "bad_percent_escape",
            KeyProblem::NotUtf8 => "key_not_utf8",
            KeyProblem::ControlCharacters => "key_control_characters",
        }
    }
}

/// Everything that can go wrong in the router.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Startup configuration is unusable (missing token, bad URL, ...).
    #[error("configuration: {0}")]
    Config(String),

    /// A listener could not be bound or accepted on.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (e.g. "bind public listener 0.0.0.0:8080").
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// The request carries no usable routing key.
    #[error("{detail}")]
    BadKey {
        /// What exactly is wrong.
        problem: KeyProblem,
        /// Human-readable explanation naming the key source.
        detail: String,
    },

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
            Error::Io { .. } => "io",
            Error::BadKey { problem, .. } => problem.code(),
            Error::NotUpgrade => "upgrade_required",
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
            Error::BadKey { .. } | Error::InvalidRing(_) | Error::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::NotUpgrade => StatusCode::UPGRADE_REQUIRED,
            Error::EmptyRing | Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::PodUnreachable { .. } => StatusCode::BAD_GATEWAY,
            Error::PodTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::PodRejected { status, .. } => *status,
            Error::RingConflict { .. } => StatusCode::CONFLICT,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::OriginNotAllowed(_) => StatusCode::FORBIDDEN,
            Error::Config(_) | Error::Io { .. } | Error::Redis(_) | Error::Kube(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The JSON body `{"error": code, "message": text}`.
    pub fn to_json(&self) -> String {
        serde_json::json!({"error": self.code(), "message": self.to_string()}).to_string()
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
