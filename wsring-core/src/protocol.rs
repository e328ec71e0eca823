//! The router ↔ pod protocol: headers, Redis channels, control messages, close codes
//! and routing-key rules. docs/interfaces.md is the prose version of this file.

use serde::{Deserialize, Serialize};

use crate::Error;

/// How routers carry WebSockets to pods: the router's `--pod-transport` and
/// the CRD's `spec.router.podTransport`, one enum so the two cannot drift.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum PodTransport {
    /// A TCP connection per client connection (HTTP/1.1 upgrade).
    #[default]
    Http1,
    /// One HTTP/2 connection per pod, a stream per client connection
    /// (RFC 8441): one socket and no ephemeral port per client in the router.
    H2,
}

impl PodTransport {
    /// The flag value and the CRD spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PodTransport::Http1 => "http1",
            PodTransport::H2 => "h2",
        }
    }
}

/// Router → pod: connection id, unique per router (`{router-id}-{n}`).
pub const HEADER_CONN: &str = "x-wsring-conn";
/// Router → pod: routing key, percent-encoded with [`encode_key`].
pub const HEADER_KEY: &str = "x-wsring-key";
/// Router → pod: ring version used for the routing decision.
pub const HEADER_RING_VERSION: &str = "x-wsring-ring-version";
/// Pod/router → client on the 101 answer: the pod that owns the connection.
pub const HEADER_POD: &str = "x-wsring-pod";
/// Every internal header starts with this; routers strip client-supplied ones.
pub const HEADER_PREFIX: &str = "x-wsring-";

/// Close code telling a client its key moved to another pod: reconnect now (with small jitter).
pub const CLOSE_RING_MOVED: u16 = 4001;
/// Reason text sent with [`CLOSE_RING_MOVED`].
pub const CLOSE_RING_MOVED_REASON: &str = "ring moved: reconnect";
/// Close code when a pod drains (SIGTERM): reconnect with backoff.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a peer that broke the WebSocket protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code for a text message (or close reason) that is not UTF-8.
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Close code for a message not finished within ws-pod's message deadline,
/// or a peer that broke the protocol.
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;
/// Close code for a message over the configured size.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code when the upstream app failed.
pub const CLOSE_INTERNAL_ERROR: u16 = 1011;
/// Close code of a `wsring.v1` connection whose key's history cannot be read
/// (Redis down or failing over): reconnect with backoff and resume from the
/// same position; nothing was skipped.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;
/// Close reason sent with [`CLOSE_TRY_AGAIN_LATER`].
pub const CLOSE_TRY_AGAIN_LATER_REASON: &str = "history unavailable: resume later";

/// ws-pod's WebSocket port: routers tunnel here (the chart, the operator's
/// StatefulSet and ws-pod's default listen address all use this one number).
pub const POD_WS_PORT: u16 = 8081;
/// ws-pod's admin port: health, metrics, control and push.
pub const POD_ADMIN_PORT: u16 = 9091;
/// The router's public WebSocket port.
pub const ROUTER_WS_PORT: u16 = 8080;
/// The router's admin port: `PUT /ring`, push, metrics, dashboard.
pub const ROUTER_ADMIN_PORT: u16 = 9090;

/// Version of the control-message format this build speaks.
pub const CONTROL_VERSION: u32 = 1;
/// Default maximum routing-key length in bytes.
pub const DEFAULT_MAX_KEY_BYTES: usize = 256;

/// Namespace of the Redis channels outside Kubernetes (local mode, tests).
pub const LOCAL_NAMESPACE: &str = "local";

/// Largest control message a pod reads (bytes); bigger ones are refused
/// before they are parsed, so a flood of ids cannot balloon a pod.
pub const MAX_CONTROL_MESSAGE_BYTES: usize = 256 * 1024;
/// Most connection ids a router puts in one reset message: a bigger batch
/// goes out as several messages, each well under [`MAX_CONTROL_MESSAGE_BYTES`]
/// (and far below Redis' output buffer limit for subscribers).
pub const MAX_RESET_IDS: usize = 2048;

/// Redis channel a pod subscribes to for its control messages:
/// `wsring:{namespace}:{cluster}:pod:{pod}`. The Kubernetes namespace is
/// part of it, so two clusters of the same name in two namespaces that share
/// one Redis never share channels (and ACLs can grant per namespace).
pub fn pod_channel(namespace: &str, cluster: &str, pod: &str) -> String {
    format!("wsring:{namespace}:{cluster}:pod:{pod}")
}

/// Redis channel on which every pod of a cluster with history announces each
/// stored push (`<epoch> <offset> <key>`), so the pod that holds a key's
/// connections catches up even when another pod took the push (during a move).
pub fn history_channel(namespace: &str, cluster: &str) -> String {
    format!("wsring:{namespace}:{cluster}:pushes")
}

/// The Redis keys of one routing key's history: the stream of pushes and the
/// hash of its epoch and last offset. The braces make them one Redis Cluster
/// hash slot, so the scripts that touch both run on one node.
pub fn history_keys(namespace: &str, cluster: &str, key: &str) -> (String, String) {
    let base = format!("wsring:{{{namespace}/{cluster}/{key}}}");
    (format!("{base}:log"), format!("{base}:pos"))
}

/// A command published on a pod's channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum ControlMessage {
    /// Close exactly these connections with 4001: their key now belongs to another pod.
    Reset(ResetCommand),
}

/// Batched reset for one pod, from one router, for one ring change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetCommand {
    /// Format version; must equal [`CONTROL_VERSION`].
    pub v: u32,
    /// Ring version that moved the connections (for logs and dedup).
    pub ring_version: u64,
    /// Router that owns the connections.
    pub router: String,
    /// Connection ids (`x-wsring-conn`) to close; each is `{router}-{n}`.
    pub connections: Vec<String>,
}

impl ResetCommand {
    /// The listed ids that belong to the message's router (`{router}-…`):
    /// a message never closes another router's connections.
    pub fn own_connections(&self) -> impl Iterator<Item = &str> {
        let prefix = format!("{}-", self.router);
        self.connections
            .iter()
            .map(String::as_str)
            .filter(move |id| id.starts_with(&prefix))
    }
}

impl ControlMessage {
    /// Parse a message read from Redis; anything unexpected is an error, never a guess.
    /// Over [`MAX_CONTROL_MESSAGE_BYTES`] is an error before any parsing.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_CONTROL_MESSAGE_BYTES {
            return Err(Error::MessageTooLarge {
                len: bytes.len(),
                limit: MAX_CONTROL_MESSAGE_BYTES,
            });
        }
        let msg: ControlMessage =
            serde_json::from_slice(bytes).map_err(|e| Error::MalformedMessage(e.to_string()))?;
        match &msg {
            ControlMessage::Reset(r) if r.v != CONTROL_VERSION => {
                Err(Error::MalformedMessage(format!(
                    "unsupported version {} (this build speaks {CONTROL_VERSION})",
                    r.v
                )))
            }
            ControlMessage::Reset(r) if r.router.is_empty() => {
                Err(Error::MalformedMessage("empty router id".into()))
            }
            _ => Ok(msg),
        }
    }

    /// A reset command of the current format version.
    pub fn reset(ring_version: u64, router: &str, connections: Vec<String>) -> Self {
        ControlMessage::Reset(ResetCommand {
            v: CONTROL_VERSION,
            ring_version,
            router: router.to_string(),
            connections,
        })
    }

    /// Wire form (JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("control message always serializes")
    }
}

/// Percent-encode a key for a header value: RFC 3986 unreserved bytes stay, all others are `%XX`.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode `%XX` escapes (and nothing else: `+` stays `+`) into UTF-8.
pub fn decode_percent(encoded: &str) -> Result<String, Error> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::InvalidKey(format!("bad percent escape at byte {i}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::InvalidKey("the routing key is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_round_trips() {
        let msg = ControlMessage::reset(8, "r1", vec!["r1-1".into(), "r1-2".into()]);
        let json = msg.to_json();
        assert_eq!(
            json,
            r#"{"type":"reset","v":1,"ringVersion":8,"router":"r1","connections":["r1-1","r1-2"]}"#
        );
        assert_eq!(ControlMessage::parse(json.as_bytes()).unwrap(), msg);
    }

    #[test]
    fn malformed_control_messages_are_errors() {
        for bad in [
            &b"garbage"[..],
            br#"{"type":"explode","v":1}"#,
            br#"{"type":"reset","v":2,"ringVersion":1,"router":"r","connections":[]}"#,
            br#"{"type":"reset","v":1,"ringVersion":1,"router":"","connections":[]}"#,
            br#"{"type":"reset","v":1,"ringVersion":1,"router":"r"}"#,
            br#"{"type":"reset","v":1,"ringVersion":1,"router":"r","connections":[],"x":1}"#,
            b"\xff\xfe",
        ] {
            assert!(
                matches!(ControlMessage::parse(bad), Err(Error::MalformedMessage(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn history_keys_share_one_hash_slot() {
        let (log, pos) = history_keys("ns", "chat", "a}b");
        assert_eq!(log, "wsring:{ns/chat/a}b}:log");
        assert_eq!(pos, "wsring:{ns/chat/a}b}:pos");
        // Redis hashes what lies between the first `{` and the next `}`: the
        // same for both, whatever the key holds.
        let tag = |k: &str| {
            k[k.find('{').unwrap() + 1..]
                .split('}')
                .next()
                .unwrap()
                .to_string()
        };
        assert_eq!(tag(&log), tag(&pos));
        assert_eq!(history_channel("ns", "chat"), "wsring:ns:chat:pushes");
    }

    #[test]
    fn channels_carry_the_namespace() {
        assert_eq!(
            pod_channel("apps", "chat", "chat-0"),
            "wsring:apps:chat:pod:chat-0"
        );
        assert_ne!(
            pod_channel("team-a", "chat", "chat-0"),
            pod_channel("team-b", "chat", "chat-0")
        );
    }

    /// Found in the security review: a 25 MB reset made a pod grow to 165 MB,
    /// and one router's message could close another router's connections.
    #[test]
    fn oversize_messages_and_foreign_ids_are_refused() {
        let huge = ControlMessage::reset(1, "r", vec!["r-1".repeat(1000); 100]).to_json();
        assert!(huge.len() > MAX_CONTROL_MESSAGE_BYTES);
        let err = ControlMessage::parse(huge.as_bytes()).unwrap_err();
        assert!(matches!(err, Error::MessageTooLarge { .. }), "{err}");
        let ControlMessage::Reset(reset) = ControlMessage::reset(
            1,
            "router-a",
            vec!["router-a-1".into(), "router-b-2".into(), "router-a".into()],
        );
        assert_eq!(reset.own_connections().collect::<Vec<_>>(), ["router-a-1"]);
    }

    #[test]
    fn percent_encoding_round_trips() {
        for key in ["plain", "with space/slash", "ünï", "a%b", "~._-"] {
            let enc = encode_key(key);
            assert!(enc.bytes().all(|b| b.is_ascii_graphic()), "{enc}");
            assert_eq!(decode_percent(&enc).unwrap(), key);
        }
        assert_eq!(encode_key("a b"), "a%20b");
        assert!(decode_percent("%zz").is_err());
        assert!(decode_percent("%4").is_err());
        assert!(decode_percent("%ff").is_err(), "not UTF-8");
    }
}
