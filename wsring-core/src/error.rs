//! Errors of the shared core: every one names what was wrong with the input.

/// Why a ring document, a protocol message or a setting was refused, or a
/// harness piece (feature `harness`: ports, redis-server, admin calls) failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// The ring document is not valid JSON of the expected shape.
    #[error("malformed ring document: {0}")]
    MalformedRing(String),
    /// The ring document parsed but breaks a rule (duplicate member, vnodes out of range, ...).
    #[error("invalid ring: {0}")]
    InvalidRing(String),
    /// A control message from Redis could not be understood.
    #[error("malformed control message: {0}")]
    MalformedMessage(String),
    /// A control message over the size limit, refused unread.
    #[error("control message of {len} bytes refused unread: the limit is {limit}")]
    MessageTooLarge {
        /// Its size.
        len: usize,
        /// The limit ([`crate::protocol::MAX_CONTROL_MESSAGE_BYTES`]).
        limit: usize,
    },
    /// A routing key is unusable (empty, too long, not UTF-8).
    #[error("invalid routing key: {0}")]
    InvalidKey(String),
    /// An `Origin` allow-list entry is malformed, or the list cannot be used
    /// as configured.
    #[error("invalid origin allow-list: {0}")]
    InvalidOrigin(String),
    /// The Redis flags are unusable (bad URL, unreadable or empty CA file, a
    /// CA with a plain `redis://` URL); the message names the flag.
    #[error("redis settings: {0}")]
    RedisConfig(String),
    /// A helper program (`redis-server`) could not be run at all.
    #[error("could not start {program}: {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// What the OS said (e.g. no such file: not installed).
        reason: String,
    },
    /// Nothing accepted TCP connections on an address in time.
    #[error("nothing listens on {addr} after {waited:?}")]
    NotListening {
        /// The address waited for.
        addr: std::net::SocketAddr,
        /// How long.
        waited: std::time::Duration,
    },
    /// No loopback port could be bound.
    #[error("no free loopback port: {0}")]
    NoFreePort(String),
    /// An admin HTTP call got no usable answer.
    #[error("{call}: {reason}")]
    AdminCall {
        /// `METHOD URL`.
        call: String,
        /// What went wrong (no connection, cut answer, unexpected JSON).
        reason: String,
    },
    /// `--token`/`--token-file` give no usable token (neither set, the file
    /// unreadable, or empty); the message names the flag.
    #[error("{0}")]
    TokenConfig(String),
    /// `--cluster` or `--namespace` is empty; the message names the flag.
    #[error("{0}")]
    ClusterConfig(String),
    /// A listener of `--listen` or `--admin-listen` could not be bound.
    #[error("cannot bind the {what} listener on {addr}: {reason}")]
    Bind {
        /// Which listener: "websocket" or "admin".
        what: &'static str,
        /// The address from the flag.
        addr: std::net::SocketAddr,
        /// What the OS said (address in use, not a local address, ...).
        reason: String,
    },
    /// A `wsring.v1` resume token or frame is malformed; the message says how.
    #[error("invalid resume: {0}")]
    InvalidResume(String),
}
