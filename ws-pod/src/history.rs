//! Per-key history in Redis: every accepted push is stored before the push
//! API answers, so a `wsring.v1` client that reconnects gets what it missed.
//!
//! A key's history is two Redis keys in one hash slot
//! ([`wsring_core::protocol::history_keys`]): a stream of pushes, whose entry
//! ids are the offsets (`1-0`, `2-0`, …), and a small hash holding the epoch and
//! the last offset. Each operation is one Lua script, so appends, reads and the
//! epoch never race between pods:
//!
//! - [`History::append`] creates the epoch if there is none, takes the next
//!   offset, adds the entry (stream trimmed to `size`, expiring `ttl` after the
//!   last push), then announces `<epoch> <offset> <key>` on the cluster's
//!   history channel.
//! - [`History::read`] answers a connecting client: a fresh start at the last
//!   offset, everything after its position, or why that is gone.
//!
//! With `replicas` > 0 (a replicated Redis, e.g. behind Sentinel), both wait
//! (`WAIT`) until that many replicas have everything up to their own write
//! before anything is announced, delivered or answered: whatever a client was
//! ever sent survives the primary's loss. Replication is one ordered stream,
//! so a read whose own write (the epoch's expiry) is replicated has every push
//! it returns replicated too. A push not confirmed in time is refused (503,
//! retry), and delivered only if it turns out to have survived. A resume that
//! reveals nothing new (the client is already at the head) has nothing to
//! protect and does not wait.
//!
//! The epoch outlives the stream ([`EPOCH_KEEP`]): a stream that expired for
//! lack of pushes leaves its epoch and offsets in place, so a client that saw
//! everything simply continues, and one that missed trimmed entries is told
//! `trimmed`. A new epoch means the history itself was lost: the hash expired
//! or vanished with Redis. A client whose position the stream never reached
//! (it saw writes a failover without `replicas` lost, or it lies) is told
//! `epoch` and reloads; the key's history stays as it is for everyone else,
//! so no client can wipe it.

use std::time::Duration;

use redis::{Script, Value};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use wsring_core::protocol::{history_channel, history_keys};
use wsring_core::redis_target::{PrimaryLink, RedisConnection, RedisTarget};
use wsring_core::resume::{GoneReason, Position};

use crate::Error;

/// How long a key's epoch and last offset stay after its last push or
/// connection, at least (the stream itself keeps only `ttl`).
pub const EPOCH_KEEP: Duration = Duration::from_secs(24 * 3600);

/// Largest `--history-size`: a resume replays at most this many pushes.
pub const MAX_HISTORY_SIZE: usize = 100_000;

/// Largest `--history-replicas`.
pub const MAX_HISTORY_REPLICAS: usize = 5;

/// How long one Redis command may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Creates the epoch if missing; shared head of both scripts.
const FRESH_EPOCH: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'last', 0)
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
";

/// KEYS: log, pos. ARGV: new epoch, pos ttl ms, log ttl ms, size, kind,
/// data. Returns {epoch, offset}.
const APPEND: &str = r"
local offset = redis.call('HINCRBY', KEYS[2], 'last', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[4], offset .. '-0', 't', ARGV[5], 'd', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {epoch, offset}
";

/// KEYS: log, pos. ARGV: new epoch, pos ttl ms, since epoch ('' for none),
/// since offset. Returns {status, epoch, last, reason, id, kind, data, ...}.
const READ: &str = r"
local last = tonumber(redis.call('HGET', KEYS[2], 'last'))
if ARGV[3] == '' then return {'start', epoch, last, ''} end
if ARGV[3] ~= epoch then return {'gone', epoch, last, 'epoch'} end
local after = tonumber(ARGV[4])
if after > last then return {'gone', epoch, last, 'epoch'} end
local out = {'resumed', epoch, last, ''}
if after == last then return out end
local entries = redis.call('XRANGE', KEYS[1], (after + 1) .. '-0', '+')
if #entries == 0 or entries[1][1] ~= (after + 1) .. '-0' then
  return {'gone', epoch, last, 'trimmed'}
end
for _, entry in ipairs(entries) do
  table.insert(out, entry[1])
  table.insert(out, entry[2][2])
  table.insert(out, entry[2][4])
end
return out
";

/// `--history-size`, `--history-ttl` and `--history-replicas`, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistorySettings {
    /// Pushes kept per key (1..=[`MAX_HISTORY_SIZE`]).
    pub size: usize,
    /// How long a key's pushes are kept after its last push.
    pub ttl: Duration,
    /// Replicas that must have a push before it counts (`WAIT`); 0: none.
    pub replicas: usize,
}

/// How long `WAIT` may take before a push is refused (or a read is
/// answered `unavailable`).
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections to Redis when pushes and reads wait for replicas: a `WAIT`
/// blocks its connection inside Redis until the replicas answer, so over one
/// connection every push and every resuming read would wait for the
/// replication round trips of all earlier ones, in series (a limit that
/// grows with the distance to the replicas). Without `WAIT` one multiplexed
/// connection pipelines everything.
const WAITING_CONNECTIONS: usize = 8;

/// One stored push read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// Its offset in the key's current epoch.
    pub offset: u64,
    /// The frame, text or binary as pushed.
    pub message: Message,
}

/// What a connecting client gets from the history.
#[derive(Clone, Debug, PartialEq)]
pub enum Opening {
    /// No position given: live pushes follow this one.
    Start(Position),
    /// Everything after the client's position, then live pushes after `Position`.
    Resumed(Position, Vec<Stored>),
    /// The client's position can no longer be served; live pushes follow this one.
    Gone(Position, GoneReason),
}

/// The history of every key of one cluster.
pub struct History {
    /// One link, or [`WAITING_CONNECTIONS`] used in turn when `WAIT`ing.
    links: Vec<PrimaryLink>,
    next_link: std::sync::atomic::AtomicUsize,
    namespace: String,
    cluster: String,
    channel: String,
    settings: HistorySettings,
    append: Script,
    read: Script,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("channel", &self.channel)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl History {
    /// The history of `namespace`/`cluster` in `target`'s primary. Does not
    /// connect yet (the pod starts while Redis is down).
    pub fn new(
        target: RedisTarget,
        namespace: &str,
        cluster: &str,
        settings: HistorySettings,
    ) -> Self {
        History {
            links: (0..if settings.replicas > 0 {
                WAITING_CONNECTIONS
            } else {
                1
            })
                .map(|_| PrimaryLink::new(target.clone(), REDIS_TIMEOUT))
                .collect(),
            next_link: std::sync::atomic::AtomicUsize::new(0),
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
            channel: history_channel(namespace, cluster),
            settings,
            append: Script::new(&format!("{FRESH_EPOCH}{APPEND}")),
            read: Script::new(&format!("{FRESH_EPOCH}{READ}")),
        }
    }

    /// The channel on which stored pushes are announced.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Store a push to `key`; its position once Redis has it.
    pub async fn append(&self, key: &str, message: &Message) -> Result<Position, Error> {
        let (log, pos) = history_keys(&self.namespace, &self.cluster, key);
        let (kind, data): (&str, &[u8]) = match message {
            Message::Text(text) => ("t", text.as_bytes()),
            Message::Binary(bytes) => ("b", bytes),
            other => return Err(Error::History(format!("cannot store a {other:?} frame"))),
        };
        // Script, WAIT and announcement on one connection: WAIT covers
        // what this connection wrote.
        let link = self.link();
        let mut conn = connection(link).await?;
        let value: redis::RedisResult<Value> = self
            .append
            .key(&log)
            .key(pos)
            .arg(new_epoch())
            .arg(self.epoch_keep_ms())
            .arg(millis(self.settings.ttl))
            .arg(self.settings.size)
            .arg(kind)
            .arg(data)
            .invoke_async(&mut conn)
            .await;
        let value = checked(link, value).await?;
        let items = array(value)?;
        let at = match items.as_slice() {
            [epoch, offset] => Position {
                epoch: text(epoch)?,
                offset: number(offset)?,
            },
            _ => return Err(unexpected("append")),
        };
        self.replicated(link, &mut conn, &log).await?;
        let announced: redis::RedisResult<Value> = redis::cmd(conn.publish_command())
            .arg(&self.channel)
            .arg(format!("{} {} {key}", at.epoch, at.offset))
            .query_async(&mut conn)
            .await;
        if let Err(e) = announced {
            // Stored and replicated: the push counts. Only other pods'
            // connections of the key (during a move) wait for the next one.
            tracing::warn!(%key, error = %e, "stored push not announced");
            link.failed().await;
        }
        Ok(at)
    }

    /// With `replicas` > 0: wait until that many replicas have everything
    /// this connection wrote (to the shard of `key`, on a Redis Cluster).
    async fn replicated(
        &self,
        link: &PrimaryLink,
        conn: &mut RedisConnection,
        key: &str,
    ) -> Result<(), Error> {
        if self.settings.replicas == 0 {
            return Ok(());
        }
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.settings.replicas)
            .arg(millis(REPLICATION_TIMEOUT));
        let acknowledged: redis::RedisResult<usize> = conn.query_where(wait, key).await;
        match acknowledged {
            Ok(n) if n >= self.settings.replicas => Ok(()),
            Ok(n) => Err(Error::History(format!(
                "{n} of {} replicas confirmed within {REPLICATION_TIMEOUT:?}",
                self.settings.replicas
            ))),
            Err(e) => {
                link.failed().await;
                Err(Error::History(e.to_string()))
            }
        }
    }

    /// What a client connecting to `key` gets: a fresh start without
    /// `since`, else what it missed after `since`, or why that is gone.
    pub async fn read(&self, key: &str, since: Option<&Position>) -> Result<Opening, Error> {
        let (log, pos) = history_keys(&self.namespace, &self.cluster, key);
        let link = self.link();
        let mut conn = connection(link).await?;
        let value: redis::RedisResult<Value> = self
            .read
            .key(&log)
            .key(pos)
            .arg(new_epoch())
            .arg(self.epoch_keep_ms())
            .arg(since.map_or("", |s| s.epoch.as_str()))
            .arg(since.map_or(0, |s| s.offset))
            .invoke_async(&mut conn)
            .await;
        let value = checked(link, value).await?;
        let opening = opening(value)?;
        // What a read reveals must survive a failover: a position or an
        // entry only a lost primary had would let the new primary hand out
        // the same offsets again. A resume with nothing new reveals nothing
        // (the client already holds that position): no replica to wait for.
        let nothing_new = matches!(&opening, Opening::Resumed(_, stored) if stored.is_empty());
        if !nothing_new {
            self.replicated(link, &mut conn, &log).await?;
        }
        Ok(opening)
    }

    /// The next link in turn.
    fn link(&self) -> &PrimaryLink {
        let n = self
            .next_link
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.links[n % self.links.len()]
    }

    fn epoch_keep_ms(&self) -> u64 {
        millis(self.settings.ttl.max(EPOCH_KEEP))
    }
}

/// The answer of the read script: `status, epoch, last, reason, entries…`.
fn opening(value: Value) -> Result<Opening, Error> {
    let items = array(value)?;
    let [status, epoch, last, reason, entries @ ..] = items.as_slice() else {
        return Err(unexpected("read"));
    };
    let at = Position {
        epoch: text(epoch)?,
        offset: number(last)?,
    };
    match text(status)?.as_str() {
        "start" => Ok(Opening::Start(at)),
        "gone" => {
            let reason = match text(reason)?.as_str() {
                "trimmed" => GoneReason::Trimmed,
                _ => GoneReason::Epoch,
            };
            Ok(Opening::Gone(at, reason))
        }
        "resumed" => {
            let stored = entries
                .chunks(3)
                .map(stored)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Opening::Resumed(at, stored))
        }
        _ => Err(unexpected("read")),
    }
}

async fn connection(link: &PrimaryLink) -> Result<RedisConnection, Error> {
    link.connection()
        .await
        .map_err(|e| Error::History(e.to_string()))
}

/// A failed command drops the link's connection: the next one reconnects
/// to whichever server is the primary by then.
async fn checked(link: &PrimaryLink, answer: redis::RedisResult<Value>) -> Result<Value, Error> {
    match answer {
        Ok(value) => Ok(value),
        Err(e) => {
            link.failed().await;
            Err(Error::History(e.to_string()))
        }
    }
}

/// A new epoch: 64 random bits, 16 hex digits.
fn new_epoch() -> String {
    wsring_core::bearer::random_token()[..16].to_string()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn stored(entry: &[Value]) -> Result<Stored, Error> {
    let [id, kind, data] = entry else {
        return Err(unexpected("read"));
    };
    let id = text(id)?;
    let offset = id
        .strip_suffix("-0")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| Error::History(format!("unexpected stream id {id:?}")))?;
    let data = match data {
        Value::BulkString(bytes) => bytes::Bytes::from(bytes.clone()),
        _ => return Err(unexpected("read")),
    };
    let message = match text(kind)?.as_str() {
        "t" => Message::Text(
            Utf8Bytes::try_from(data)
                .map_err(|_| Error::History("stored text is not UTF-8".into()))?,
        ),
        _ => Message::Binary(data),
    };
    Ok(Stored { offset, message })
}

fn array(value: Value) -> Result<Vec<Value>, Error> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(Error::History(format!("unexpected answer {other:?}"))),
    }
}

fn text(value: &Value) -> Result<String, Error> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone())
            .map_err(|_| Error::History("answer is not UTF-8".into())),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        other => Err(Error::History(format!("unexpected answer {other:?}"))),
    }
}

fn number(value: &Value) -> Result<u64, Error> {
    match value {
        Value::Int(n) => u64::try_from(*n).map_err(|_| unexpected("offset")),
        other => text(other)?.parse().map_err(|_| unexpected("offset")),
    }
}

fn unexpected(what: &str) -> Error {
    Error::History(format!("unexpected answer of the {what} script"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real redis-server (wsring_core::harness); the whole contract of the
    /// two scripts.
    #[tokio::test]
    async fn append_read_trim_and_lose() {
        let redis = wsring_core::harness::RedisServer::start()
            .await
            .expect("redis-server (see README prerequisites)");
        let client = redis::Client::open(redis.url()).unwrap();
        let settings = HistorySettings {
            size: 3,
            ttl: Duration::from_secs(60),
            replicas: 0,
        };
        let history = History::new(RedisTarget::single(client.clone()), "ns", "chat", settings);

        let Opening::Start(start) = history.read("k", None).await.unwrap() else {
            panic!("a fresh key starts");
        };
        assert_eq!(start.offset, 0);
        assert_eq!(start.epoch.len(), 16);

        let mut positions = Vec::new();
        for n in 1..=4 {
            let message = if n == 2 {
                Message::binary(vec![0u8, 0xff])
            } else {
                Message::text(format!("m{n}"))
            };
            positions.push(history.append("k", &message).await.unwrap());
        }
        assert_eq!(
            positions.iter().map(|p| p.offset).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert!(positions.iter().all(|p| p.epoch == start.epoch));

        // After 1: 2..4 are all still there (size 3).
        let Opening::Resumed(at, stored) = history.read("k", Some(&positions[0])).await.unwrap()
        else {
            panic!("resumable");
        };
        assert_eq!(at, positions[3]);
        assert_eq!(
            stored,
            vec![
                Stored {
                    offset: 2,
                    message: Message::binary(vec![0u8, 0xff])
                },
                Stored {
                    offset: 3,
                    message: Message::text("m3")
                },
                Stored {
                    offset: 4,
                    message: Message::text("m4")
                },
            ]
        );
        // Up to date: nothing to replay.
        assert_eq!(
            history.read("k", Some(&positions[3])).await.unwrap(),
            Opening::Resumed(positions[3].clone(), vec![])
        );
        // Before the first kept entry: trimmed.
        let before = Position {
            epoch: start.epoch.clone(),
            offset: 0,
        };
        assert_eq!(
            history.read("k", Some(&before)).await.unwrap(),
            Opening::Gone(positions[3].clone(), GoneReason::Trimmed)
        );
        // Another epoch: gone, the current position given.
        let other = Position {
            epoch: "0123456789abcdef".into(),
            offset: 4,
        };
        assert_eq!(
            history.read("k", Some(&other)).await.unwrap(),
            Opening::Gone(positions[3].clone(), GoneReason::Epoch)
        );
        // A position the stream never reached (writes a failover lost, or a
        // lying client): that client is told to reload; the history stays
        // as it is for everyone else.
        let ahead = Position {
            epoch: start.epoch.clone(),
            offset: 9,
        };
        assert_eq!(
            history.read("k", Some(&ahead)).await.unwrap(),
            Opening::Gone(positions[3].clone(), GoneReason::Epoch)
        );
        assert_eq!(
            history.read("k", Some(&positions[3])).await.unwrap(),
            Opening::Resumed(positions[3].clone(), vec![])
        );
        let next = history.append("k", &Message::text("new")).await.unwrap();
        assert_eq!(
            next,
            Position {
                epoch: start.epoch.clone(),
                offset: 5
            }
        );

        // The stream expired but the epoch stayed: a client that saw
        // everything continues; one that missed a push is told it is trimmed.
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let (log, _) = history_keys("ns", "chat", "k");
        let _: () = redis::cmd("DEL")
            .arg(&log)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            history.read("k", Some(&next)).await.unwrap(),
            Opening::Resumed(next.clone(), vec![])
        );
        let behind = Position {
            epoch: start.epoch.clone(),
            offset: 0,
        };
        assert_eq!(
            history.read("k", Some(&behind)).await.unwrap(),
            Opening::Gone(next.clone(), GoneReason::Trimmed)
        );
        // Everything lost (FLUSHALL): a new epoch.
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
        let Opening::Gone(after_flush, GoneReason::Epoch) =
            history.read("k", Some(&next)).await.unwrap()
        else {
            panic!("lost history is a new epoch");
        };
        assert_ne!(after_flush.epoch, start.epoch);
    }

    #[tokio::test]
    async fn appends_are_announced_in_order_and_expire() {
        let redis = wsring_core::harness::RedisServer::start().await.unwrap();
        let client = redis::Client::open(redis.url()).unwrap();
        let settings = HistorySettings {
            size: 10,
            ttl: Duration::from_millis(300),
            replicas: 0,
        };
        let history = History::new(RedisTarget::single(client.clone()), "ns", "chat", settings);
        let (mut sink, mut stream) = client.get_async_pubsub().await.unwrap().split();
        sink.subscribe(history.channel()).await.unwrap();
        let a = history.append("room 1", &Message::text("a")).await.unwrap();
        let b = history.append("room 1", &Message::text("b")).await.unwrap();
        use futures_util::StreamExt;
        for at in [&a, &b] {
            let message = stream.next().await.unwrap();
            let payload: String = message.get_payload().unwrap();
            assert_eq!(payload, format!("{} {} room 1", at.epoch, at.offset));
        }
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let (log, pos) = history_keys("ns", "chat", "room 1");
        let log_ttl: i64 = redis::cmd("PTTL")
            .arg(&log)
            .query_async(&mut conn)
            .await
            .unwrap();
        let pos_ttl: i64 = redis::cmd("PTTL")
            .arg(&pos)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=300).contains(&log_ttl), "{log_ttl}");
        assert!(
            pos_ttl > 300_000,
            "the epoch outlives the stream: {pos_ttl}"
        );
    }

    #[tokio::test]
    async fn redis_down_is_an_error_not_a_hang() {
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        let settings = HistorySettings {
            size: 10,
            ttl: Duration::from_secs(1),
            replicas: 1,
        };
        let history = History::new(RedisTarget::single(client), "ns", "c", settings);
        let error = history.append("k", &Message::text("x")).await.unwrap_err();
        assert!(matches!(error, Error::History(_)), "{error}");
        assert!(history.read("k", None).await.is_err());
    }

    /// With `replicas: 1` and no replica: a push is stored but refused, and
    /// every read that would reveal it (a start at its offset, a resume
    /// that replays it) is refused too; a resume that reveals nothing new
    /// needs no replica and is answered.
    #[tokio::test]
    async fn reads_wait_for_replicas_only_when_they_reveal_something() {
        let redis = wsring_core::harness::RedisServer::start()
            .await
            .expect("redis-server (see README prerequisites)");
        let client = redis::Client::open(redis.url()).unwrap();
        let unreplicated = |replicas| HistorySettings {
            size: 10,
            ttl: Duration::from_secs(60),
            replicas,
        };
        let target = RedisTarget::single(client);
        let plain = History::new(target.clone(), "ns", "c", unreplicated(0));
        let waiting = History::new(target, "ns", "c", unreplicated(1));
        let first = plain.append("k", &Message::text("one")).await.unwrap();
        let refused = waiting
            .append("k", &Message::text("two"))
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("0 of 1 replicas"), "{refused}");
        assert!(
            waiting.read("k", None).await.is_err(),
            "a start reveals offset 2"
        );
        assert!(
            waiting.read("k", Some(&first)).await.is_err(),
            "a resume after 1 replays the refused push"
        );
        let second = Position {
            epoch: first.epoch.clone(),
            offset: 2,
        };
        assert_eq!(
            waiting.read("k", Some(&second)).await.unwrap(),
            Opening::Resumed(second.clone(), vec![]),
            "nothing new: answered without a replica"
        );
    }
}
