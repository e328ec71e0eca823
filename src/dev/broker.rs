//! The local mode's in-process bus: a minimal Redis-protocol (RESP2) pub/sub broker.
//!
//! When no Redis is given or found, `wsring dev` serves this on loopback and
//! hands its `redis://` URL to the router and pods, so they run exactly the
//! same Redis client code as in a cluster. It speaks only what wsring uses:
//! `PUBLISH`, `SUBSCRIBE`, `UNSUBSCRIBE`, `PING`, and answers `OK` to the
//! connection set-up commands clients send (`CLIENT`, `SELECT`, `AUTH`).
//! Like Redis pub/sub it is at-most-once; nothing is stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Largest command accepted (a reset batch of 10k ids is ~300 KiB).
const MAX_COMMAND_BYTES: usize = 16 * 1024 * 1024;

/// Subscribers per channel: `(client id, sender of encoded frames)`.
type Subscribers = HashMap<Vec<u8>, Vec<(u64, mpsc::UnboundedSender<Bytes>)>>;

/// Shared broker state.
#[derive(Default)]
struct Broker {
    channels: Mutex<Subscribers>,
    next_client: AtomicU64,
}

/// Serve the bus on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let broker = Arc::new(Broker::default());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            let id = broker.next_client.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = client(stream, id, &broker).await {
                tracing::debug!(client = id, error = %e, "bus client ended");
            }
            broker.unsubscribe_all(id);
        });
    }
}

impl Broker {
    fn subscribe(&self, channel: &[u8], id: u64, tx: &mpsc::UnboundedSender<Bytes>) {
        let mut channels = self.channels.lock().expect("bus lock");
        let subs = channels.entry(channel.to_vec()).or_default();
        if !subs.iter().any(|(c, _)| *c == id) {
            subs.push((id, tx.clone()));
        }
    }

    fn unsubscribe(&self, channel: &[u8], id: u64) {
        let mut channels = self.channels.lock().expect("bus lock");
        if let Some(subs) = channels.get_mut(channel) {
            subs.retain(|(c, _)| *c != id);
            if subs.is_empty() {
                channels.remove(channel);
            }
        }
    }

    fn unsubscribe_all(&self, id: u64) {
        let mut channels = self.channels.lock().expect("bus lock");
        channels.retain(|_, subs| {
            subs.retain(|(c, _)| *c != id);
            !subs.is_empty()
        });
    }

    fn publish(&self, channel: &[u8], message: &[u8]) -> usize {
        let frame = Bytes::from(array(&[b"message", channel, message]));
        let channels = self.channels.lock().expect("bus lock");
        channels.get(channel).map_or(0, |subs| {
            subs.iter()
                .filter(|(_, tx)| tx.send(frame.clone()).is_ok())
                .count()
        })
    }
}

/// One client connection: parse commands, answer, forward published messages.
async fn client(stream: TcpStream, id: u64, broker: &Broker) -> std::io::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let write_task = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let mut buf = BytesMut::with_capacity(4096);
    let mut subscribed: Vec<Vec<u8>> = Vec::new();
    let result = loop {
        match parse_command(&buf) {
            Ok(Some((args, used))) => {
                let _ = buf.split_to(used);
                reply(broker, id, &tx, &mut subscribed, args);
                continue;
            }
            Ok(None) if buf.len() > MAX_COMMAND_BYTES => {
                let _ = tx.send(Bytes::from_static(b"-ERR command too large\r\n"));
                break Ok(());
            }
            Ok(None) => {}
            Err(e) => {
                let _ = tx.send(Bytes::from(format!("-ERR protocol error: {e}\r\n")));
                break Ok(());
            }
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
    };
    drop(tx);
    let _ = write_task.await;
    result
}

/// Execute one command, queueing its answer on `tx`.
fn reply(
    broker: &Broker,
    id: u64,
    tx: &mpsc::UnboundedSender<Bytes>,
    subscribed: &mut Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
) {
    let Some(name) = args.first() else {
        return;
    };
    let send = |frame: Vec<u8>| {
        let _ = tx.send(Bytes::from(frame));
    };
    match name.to_ascii_uppercase().as_slice() {
        b"PING" if !subscribed.is_empty() => send(array(&[b"pong", b""])),
        b"PING" => send(b"+PONG\r\n".to_vec()),
        b"CLIENT" | b"SELECT" | b"AUTH" | b"READONLY" => send(b"+OK\r\n".to_vec()),
        b"PUBLISH" if args.len() == 3 => {
            let n = broker.publish(&args[1], &args[2]);
            send(format!(":{n}\r\n").into_bytes());
        }
        b"SUBSCRIBE" if args.len() >= 2 => {
            for channel in &args[1..] {
                broker.subscribe(channel, id, tx);
                if !subscribed.contains(channel) {
                    subscribed.push(channel.clone());
                }
                send(subscription(b"subscribe", channel, subscribed.len()));
            }
        }
        b"UNSUBSCRIBE" => {
            let channels: Vec<Vec<u8>> = if args.len() > 1 {
                args[1..].to_vec()
            } else {
                subscribed.clone()
            };
            for channel in channels {
                broker.unsubscribe(&channel, id);
                subscribed.retain(|c| *c != channel);
                send(subscription(b"unsubscribe", &channel, subscribed.len()));
            }
        }
        other => send(
            format!(
                "-ERR unknown command or wrong arguments '{}' (wsring dev bus: PUBLISH/SUBSCRIBE only)\r\n",
                String::from_utf8_lossy(other)
            )
            .into_bytes(),
        ),
    }
}

/// `*3 $kind $channel :count`, the answer to (un)subscribe.
fn subscription(kind: &[u8], channel: &[u8], count: usize) -> Vec<u8> {
    let mut out = format!("*3\r\n${}\r\n", kind.len()).into_bytes();
    out.extend_from_slice(kind);
    out.extend_from_slice(format!("\r\n${}\r\n", channel.len()).as_bytes());
    out.extend_from_slice(channel);
    out.extend_from_slice(format!("\r\n:{count}\r\n").as_bytes());
    out
}

/// A RESP array of bulk strings.
fn array(items: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for item in items {
        out.extend_from_slice(format!("${}\r\n", item.len()).as_bytes());
        out.extend_from_slice(item);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A parsed command (its arguments) and how many bytes of the buffer it used.
type Parsed = (Vec<Vec<u8>>, usize);

/// Parse one command (RESP array of bulk strings, or an inline command) from
/// the front of `buf`: `Ok(None)` when more bytes are needed.
fn parse_command(buf: &[u8]) -> Result<Option<Parsed>, String> {
    let Some(line_end) = find_crlf(buf, 0) else {
        return Ok(None);
    };
    if buf.first() != Some(&b'*') {
        let line = String::from_utf8_lossy(&buf[..line_end]);
        let args = line
            .split_whitespace()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        return Ok(Some((args, line_end + 2)));
    }
    let count = parse_len(&buf[1..line_end])?;
    let mut pos = line_end + 2;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(end) = find_crlf(buf, pos) else {
            return Ok(None);
        };
        if buf[pos] != b'$' {
            return Err(format!("expected bulk string, got {:?}", buf[pos] as char));
        }
        let len = parse_len(&buf[pos + 1..end])?;
        if len > MAX_COMMAND_BYTES {
            return Err("bulk string too large".into());
        }
        let start = end + 2;
        if buf.len() < start + len + 2 {
            return Ok(None);
        }
        if &buf[start + len..start + len + 2] != b"\r\n" {
            return Err("bulk string not terminated by CRLF".into());
        }
        args.push(buf[start..start + len].to_vec());
        pos = start + len + 2;
    }
    Ok(Some((args, pos)))
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn parse_len(digits: &[u8]) -> Result<usize, String> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad length {:?}", String::from_utf8_lossy(digits)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arrays_and_waits_for_more_bytes() {
        let cmd = array(&[b"PUBLISH", b"ch", b"hello"]);
        let (args, used) = parse_command(&cmd).unwrap().unwrap();
        assert_eq!(
            args,
            vec![b"PUBLISH".to_vec(), b"ch".to_vec(), b"hello".to_vec()]
        );
        assert_eq!(used, cmd.len());
        for cut in 0..cmd.len() {
            assert_eq!(parse_command(&cmd[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn parses_inline_commands_and_rejects_garbage() {
        let (args, used) = parse_command(b"PING\r\n").unwrap().unwrap();
        assert_eq!((args, used), (vec![b"PING".to_vec()], 6));
        assert!(parse_command(b"*x\r\n").is_err());
        assert!(parse_command(b"*1\r\n+nope\r\n").is_err());
        assert!(parse_command(b"*1\r\n$2\r\nabc\r\n").is_err());
    }

    /// The real `redis` client (the one router and pods use) talks to the bus.
    #[tokio::test]
    async fn redis_client_publishes_and_subscribes_through_the_bus() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(listener));
        let client = redis::Client::open(url).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe("wsring:dev:pod:p0").await.unwrap();
        let mut publisher = client.get_multiplexed_async_connection().await.unwrap();
        let receivers: usize = redis::cmd("PUBLISH")
            .arg("wsring:dev:pod:p0")
            .arg("reset!")
            .query_async(&mut publisher)
            .await
            .unwrap();
        assert_eq!(receivers, 1);
        let none: usize = redis::cmd("PUBLISH")
            .arg("wsring:dev:pod:other")
            .arg("x")
            .query_async(&mut publisher)
            .await
            .unwrap();
        assert_eq!(none, 0);
        use futures_util::StreamExt;
        let msg = pubsub.on_message().next().await.unwrap();
        assert_eq!(msg.get_channel_name(), "wsring:dev:pod:p0");
        assert_eq!(msg.get_payload::<String>().unwrap(), "reset!");
    }
}
