//! Errors of the shared core: every one names what was wrong with the input.

/// Why a ring document or a protocol message was refused.
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
}
