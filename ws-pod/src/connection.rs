//! One client connection after the upgrade: relay frames between the client and
//! the app, obey close orders, and end every connection with a proper close frame.
//!
//! [`relay`] is generic over the client (`Stream + Sink` of tungstenite messages)
//! and the app (a sink and a stream of messages), so the same code runs over TCP
//! in production and over in-memory streams in the tests below. The built-in echo
//! app and an upstream app connection only differ in the halves passed in (see
//! [`crate::app`]).
//!
//! Both directions run concurrently inside the connection's one task: a client
//! that stops reading cannot stop its own messages from reaching the app, and a
//! slow app cannot keep a reset or a drain from closing the client. The task is
//! the only writer of the client socket, so pushed frames and the app's frames go
//! out in the order they were queued.
//!
//! What tungstenite does for us, and we rely on: it answers pings, reassembles
//! fragments, checks UTF-8 of text messages and close reasons, enforces the size
//! limits, refuses invalid close codes with 1002, and echoes a client's close
//! frame. What it leaves to us: sending a close frame after a read error (1002,
//! 1007, 1009), and bounding every close handshake in time.

use std::fmt::Display;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use wsring_core::protocol::{
    CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_INVALID_PAYLOAD, CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG, CLOSE_TRY_AGAIN_LATER, CLOSE_TRY_AGAIN_LATER_REASON,
};
use wsring_core::resume::Position;

use crate::cursor::{app_frame, Cursor};
use crate::mailbox::{CatchUp, CloseOrder, Command, Mailbox};
use crate::metrics::{TIMEOUT_IDLE, TIMEOUT_UNFINISHED_MESSAGE};
use crate::watch::{is_message_timeout, Deadlines};

/// How long a close handshake (ours or the app's) may take before the socket is dropped.
pub const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Close reason sent with 1001 when the pod drains.
pub const DRAINING_REASON: &str = "pod shutting down";

/// Control-frame payloads are at most 125 bytes; 2 of them are the code.
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// How a relayed connection ended: what the logs and metrics report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The client started the close handshake with this code (tungstenite answered it).
    ClientClosed(Option<u16>),
    /// The client vanished without a close handshake (reset, EOF, I/O error).
    ClientGone,
    /// The client broke the protocol or a limit; it was closed with this code (1002, 1007, 1009).
    ClientRefused(u16),
    /// A close order from the mailbox (a reset: 4001) was carried out with this code.
    Ordered(u16),
    /// A deadline passed (`idle`: 1001, `unfinished_message`: 1008).
    TimedOut(&'static str),
    /// The pod is draining: closed with 1001.
    Draining,
    /// The app closed; its close code was passed on to the client.
    AppClosed(Option<u16>),
    /// The app failed or vanished: the client was closed with 1011.
    AppFailed,
    /// The app could not be reached at all: the client was closed with 1011.
    AppUnreachable,
}

/// What the client is sent besides the app's frames as they are.
#[derive(Debug)]
pub enum Outbound {
    /// Frames as the app and the push API made them.
    Plain,
    /// `wsring.v1`: app frames marked, pushes positioned, each exactly once.
    V1(Box<Cursor>),
}

impl Outbound {
    /// Frames sent before anything else (a `wsring.v1` opening).
    fn opening(&mut self) -> Batch {
        match self {
            Outbound::Plain => Batch::none(),
            Outbound::V1(cursor) => Batch::many(cursor.take_opening()),
        }
    }

    /// An app frame as the client gets it.
    fn app(&self, message: Message) -> Message {
        match self {
            Outbound::Plain => message,
            Outbound::V1(_) => app_frame(message),
        }
    }

    /// A push stored at `at` (only `wsring.v1` connections are sent these);
    /// an unreadable history is the close order 1013.
    async fn positioned(&mut self, at: Position, message: Message) -> Result<Batch, CloseOrder> {
        match self {
            Outbound::Plain => Ok(Batch::one(message)),
            Outbound::V1(cursor) => cursor
                .push(at, message)
                .await
                .map(Batch::many)
                .map_err(|_| try_again_later()),
        }
    }

    /// What the history holds beyond the cursor.
    async fn catch_up(&mut self, catch_up: CatchUp) -> Result<Batch, CloseOrder> {
        match self {
            Outbound::Plain => Ok(Batch::none()),
            Outbound::V1(cursor) => cursor
                .catch_up(catch_up)
                .await
                .map(Batch::many)
                .map_err(|_| try_again_later()),
        }
    }
}

/// The close of a `wsring.v1` connection whose history cannot be read.
fn try_again_later() -> CloseOrder {
    CloseOrder {
        code: CLOSE_TRY_AGAIN_LATER,
        reason: CLOSE_TRY_AGAIN_LATER_REASON,
    }
}

/// Frames to send in order; one frame (the common case) without a `Vec`.
enum Batch {
    One(Option<Message>),
    Many(std::vec::IntoIter<Message>),
}

impl Batch {
    fn none() -> Self {
        Batch::One(None)
    }

    fn one(message: Message) -> Self {
        Batch::One(Some(message))
    }

    fn many(messages: Vec<Message>) -> Self {
        Batch::Many(messages.into_iter())
    }
}

impl Iterator for Batch {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        match self {
            Batch::One(message) => message.take(),
            Batch::Many(messages) => messages.next(),
        }
    }
}

/// Why the two directions stopped; decided first, carried out afterwards.
enum Stop {
    Idle,
    ClientClose(Option<CloseFrame>),
    ClientError(WsError),
    ClientGone,
    Ordered(CloseOrder),
    Draining,
    AppClose(Option<CloseFrame>),
    AppFailed(String),
}

/// Relay messages between `client` and the app until either side ends, a close is
/// ordered through `mailbox`, or `shutdown` fires; then close both sides properly.
///
/// `app_tx`/`app_rx` are the app's halves: for the echo app a loopback channel, for
/// an upstream app the two halves of a WebSocket client connection. Only text and
/// binary messages are relayed; pings are answered hop by hop.
pub async fn relay<C, T, R, E>(
    client: &mut C,
    mut app_tx: T,
    mut app_rx: R,
    outbound: &mut Outbound,
    mailbox: &Mailbox,
    shutdown: &CancellationToken,
    deadlines: &Deadlines,
) -> Ending
where
    C: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
    T: Sink<Message> + Unpin,
    T::Error: Display,
    R: Stream<Item = Result<Message, E>> + Unpin,
    E: Display,
{
    let (mut client_tx, mut client_rx) = client.split();

    let stop = {
        let inbound = async {
            loop {
                let next = match deadlines.idle {
                    Some(idle) => match tokio::time::timeout(idle, client_rx.next()).await {
                        Ok(next) => next,
                        Err(_) => return Stop::Idle,
                    },
                    None => client_rx.next().await,
                };
                match next {
                    Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                        deadlines.message_done();
                        if let Err(e) = app_tx.send(message).await {
                            return Stop::AppFailed(format!("cannot send to the app: {e}"));
                        }
                    }
                    Some(Ok(Message::Close(frame))) => return Stop::ClientClose(frame),
                    // tungstenite queues the pong itself; pongs and raw frames need nothing.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                        deadlines.message_done();
                    }
                    Some(Err(e)) => return Stop::ClientError(e),
                    None => return Stop::ClientGone,
                }
            }
        };
        let outbound = async {
            let mut batch = outbound.opening();
            loop {
                for message in batch {
                    // A client that does not read must not delay a close order.
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return Stop::Draining,
                        order = mailbox.closed() => return Stop::Ordered(order),
                        sent = client_tx.send(message) => if sent.is_err() {
                            return Stop::ClientGone;
                        },
                    }
                }
                batch = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return Stop::Draining,
                    command = mailbox.recv() => match command {
                        Command::Close(order) => return Stop::Ordered(order),
                        Command::Push(message) => Batch::one(message),
                        // Boxed, both: a history read is short-lived, and
                        // inline its Redis round trip would be part of every
                        // idle connection's task (4.5 and 4.3 KiB futures, by
                        // `-Zprint-type-sizes`).
                        Command::Positioned(at, message) => match Box::pin(outbound.positioned(at, message)).await {
                            Ok(batch) => batch,
                            Err(order) => return Stop::Ordered(order),
                        },
                        Command::CatchUp(catch_up) => match Box::pin(outbound.catch_up(catch_up)).await {
                            Ok(batch) => batch,
                            Err(order) => return Stop::Ordered(order),
                        },
                    },
                    next = app_rx.next() => match next {
                        Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                            Batch::one(outbound.app(message))
                        }
                        Some(Ok(Message::Close(frame))) => return Stop::AppClose(frame),
                        Some(Ok(_)) => Batch::none(),
                        Some(Err(e)) => return Stop::AppFailed(e.to_string()),
                        None => return Stop::AppFailed("the app ended without a close frame".into()),
                    },
                };
            }
        };
        tokio::select! {
            stop = inbound => stop,
            stop = outbound => stop,
        }
    };

    // Boxed: the closing phase is short-lived, and inline it would enlarge every
    // idle connection's task by the size of its timers and joins.
    Box::pin(finish(
        stop,
        &mut client_tx,
        &mut client_rx,
        &mut app_tx,
        &mut app_rx,
    ))
    .await
}

/// Carry out the close that `stop` calls for, on both sides, each step bounded in time.
async fn finish<CT, CR, T, R, E>(
    stop: Stop,
    client_tx: &mut CT,
    client_rx: &mut CR,
    app_tx: &mut T,
    app_rx: &mut R,
) -> Ending
where
    CT: Sink<Message> + Unpin,
    CR: Stream<Item = Result<Message, WsError>> + Unpin,
    T: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    match stop {
        Stop::Idle => {
            let frame = close_frame(CLOSE_GOING_AWAY, "idle timeout");
            close_both(client_tx, client_rx, app_tx, app_rx, frame).await;
            Ending::TimedOut(TIMEOUT_IDLE)
        }
        Stop::ClientError(WsError::Io(error)) if is_message_timeout(&error) => {
            tracing::debug!(%error, "closing a client that did not finish its message");
            let close = close_frame(CLOSE_POLICY_VIOLATION, &error.to_string());
            close_failed_client(client_tx, app_tx, app_rx, close).await;
            Ending::TimedOut(TIMEOUT_UNFINISHED_MESSAGE)
        }
        Stop::ClientClose(frame) => {
            let code = frame.as_ref().map(|f| u16::from(f.code));
            // Reading on flushes tungstenite's queued echo of the close and sees the end.
            let client_done = drain_until_end(client_rx);
            let app_done = close_app(app_tx, app_rx, frame);
            tokio::join!(client_done, app_done);
            Ending::ClientClosed(code)
        }
        Stop::ClientGone => {
            client_went_away(app_tx, app_rx).await;
            Ending::ClientGone
        }
        Stop::ClientError(error) => match refusal(&error) {
            Some((code, reason)) => {
                tracing::debug!(%error, code, "refusing client frame");
                close_failed_client(client_tx, app_tx, app_rx, close_frame(code, &reason)).await;
                Ending::ClientRefused(code)
            }
            None => {
                tracing::debug!(%error, "client connection lost");
                client_went_away(app_tx, app_rx).await;
                Ending::ClientGone
            }
        },
        Stop::Ordered(order) => {
            let frame = close_frame(order.code, order.reason);
            close_both(client_tx, client_rx, app_tx, app_rx, frame).await;
            Ending::Ordered(order.code)
        }
        Stop::Draining => {
            let frame = close_frame(CLOSE_GOING_AWAY, DRAINING_REASON);
            close_both(client_tx, client_rx, app_tx, app_rx, frame).await;
            Ending::Draining
        }
        Stop::AppClose(frame) => {
            let code = frame.as_ref().map(|f| u16::from(f.code));
            // Reading the app on flushes tungstenite's reply to its close.
            let client_done = close_client(client_tx, client_rx, frame);
            let app_done = drain_until_end(app_rx);
            tokio::join!(client_done, app_done);
            Ending::AppClosed(code)
        }
        Stop::AppFailed(why) => {
            tracing::warn!(%why, "upstream app failed; closing the client with 1011");
            let frame = close_frame(CLOSE_INTERNAL_ERROR, "upstream app failed");
            close_client(client_tx, client_rx, frame).await;
            Ending::AppFailed
        }
    }
}

/// Close the client and the app with the same frame, both at once: the pod
/// ends the connection (idle timeout, close order, draining).
async fn close_both<CT, CR, T, R, E>(
    client_tx: &mut CT,
    client_rx: &mut CR,
    app_tx: &mut T,
    app_rx: &mut R,
    frame: Option<CloseFrame>,
) where
    CT: Sink<Message> + Unpin,
    CR: Stream<Item = Result<Message, WsError>> + Unpin,
    T: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let client_done = close_client(client_tx, client_rx, frame.clone());
    let app_done = close_app(app_tx, app_rx, frame);
    tokio::join!(client_done, app_done);
}

/// After a client read error that deserves an answer: send the client `close`
/// and end (its stream is unusable after the error, so no answer is read),
/// and tell the app the client connection failed.
async fn close_failed_client<CT, T, R, E>(
    client_tx: &mut CT,
    app_tx: &mut T,
    app_rx: &mut R,
    close: Option<CloseFrame>,
) where
    CT: Sink<Message> + Unpin,
    T: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let client_done = bounded(client_tx.send(Message::Close(close)));
    let app_done = close_app(
        app_tx,
        app_rx,
        close_frame(CLOSE_GOING_AWAY, "client connection failed"),
    );
    tokio::join!(client_done, app_done);
}

/// The client is gone with nobody to answer: only the app is told.
async fn client_went_away<T, R, E>(app_tx: &mut T, app_rx: &mut R)
where
    T: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    close_app(
        app_tx,
        app_rx,
        close_frame(CLOSE_GOING_AWAY, "client went away"),
    )
    .await;
}

/// Close a client that never reached [`relay`] (e.g. its upstream app is unreachable):
/// send the close frame and wait, bounded, for the client's answer.
pub async fn close_unrelayed<C>(client: &mut C, code: u16, reason: &str)
where
    C: Stream<Item = Result<Message, WsError>> + Sink<Message, Error = WsError> + Unpin,
{
    let (mut tx, mut rx) = client.split();
    close_client(&mut tx, &mut rx, close_frame(code, reason)).await;
}

/// A close frame with the reason cut (at a character boundary) to what fits a control frame.
pub fn close_frame(code: u16, reason: &str) -> Option<CloseFrame> {
    let mut end = reason.len().min(MAX_CLOSE_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason[..end].to_string().into(),
    })
}

/// The close code (and reason) that answers a client read error, or `None` when the
/// client is simply gone and there is nobody to tell.
fn refusal(error: &WsError) -> Option<(u16, String)> {
    match error {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => Some((
            CLOSE_TOO_BIG,
            format!("message too big: {size} bytes, limit {max_size}"),
        )),
        WsError::Capacity(other) => Some((CLOSE_TOO_BIG, other.to_string())),
        WsError::Utf8(_) => Some((
            CLOSE_INVALID_PAYLOAD,
            "invalid UTF-8 in a text message".into(),
        )),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(problem) => Some((CLOSE_PROTOCOL_ERROR, problem.to_string())),
        WsError::AttackAttempt => Some((CLOSE_POLICY_VIOLATION, "policy violation".into())),
        _ => None,
    }
}

/// Send our close frame and read (discarding) until the client's answer ends the stream.
async fn close_client<T, R>(tx: &mut T, rx: &mut R, frame: Option<CloseFrame>)
where
    T: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, WsError>> + Unpin,
{
    bounded(async {
        if tx.send(Message::Close(frame)).await.is_ok() {
            drain_until_end_unbounded(rx).await;
        }
    })
    .await;
}

/// Tell the app the client is gone and wait, bounded, for its answer. Reading
/// concurrently also frees the echo loopback, whose one slot may hold an echo
/// nobody will write anymore.
async fn close_app<T, R, E>(tx: &mut T, rx: &mut R, frame: Option<CloseFrame>)
where
    T: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let send = async {
        let _ = tx.send(Message::Close(frame)).await;
    };
    let answer = async {
        while let Some(Ok(message)) = rx.next().await {
            if message.is_close() {
                break;
            }
        }
    };
    bounded(async { tokio::join!(send, answer) }).await;
}

/// Read (discarding) until the stream ends or fails, bounded in time.
async fn drain_until_end<R, E>(rx: &mut R)
where
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    bounded(drain_until_end_unbounded(rx)).await;
}

async fn drain_until_end_unbounded<R, E>(rx: &mut R)
where
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    while let Some(Ok(_)) = rx.next().await {}
}

/// Run a step of a close handshake for at most [`CLOSE_HANDSHAKE_TIMEOUT`]; a peer that
/// does not answer in time is dropped.
async fn bounded<F: std::future::Future>(step: F) {
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, step).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{echo, EchoSink, EchoStream};
    use futures_channel::mpsc;
    use std::convert::Infallible;
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
    use tokio_tungstenite::WebSocketStream;
    use wsring_core::protocol::{CLOSE_RING_MOVED, CLOSE_RING_MOVED_REASON};

    type Ws = WebSocketStream<DuplexStream>;

    /// A server-side stream for the relay and the client talking to it, in memory.
    async fn pair(max_message_bytes: usize) -> (Ws, Ws) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let config = WebSocketConfig::default()
            .max_message_size(Some(max_message_bytes))
            .max_frame_size(Some(max_message_bytes));
        let server = WebSocketStream::from_raw_socket(a, Role::Server, Some(config)).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (server, client)
    }

    /// The two halves of an app as the relay sees them: the echo app's types,
    /// so a scripted app ([`fake_app`]) runs through the same [`spawn_relay`].
    type App = (EchoSink, EchoStream);

    /// Run the relay between `server` and `app` in the background.
    fn spawn_relay(
        mut server: Ws,
        (tx, rx): App,
        mut outbound: Outbound,
        mailbox: std::sync::Arc<Mailbox>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<Ending> {
        tokio::spawn(async move {
            relay(
                &mut server,
                tx,
                rx,
                &mut outbound,
                &mailbox,
                &shutdown,
                &Deadlines::default(),
            )
            .await
        })
    }

    /// A client talking to a relay running in the background, and the relay's handles.
    struct Relay {
        client: Ws,
        mailbox: std::sync::Arc<Mailbox>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<Ending>,
    }

    /// `app` relayed in the background, refusing messages over `max_message_bytes`.
    async fn start_relay(max_message_bytes: usize, app: App) -> Relay {
        let (server, client) = pair(max_message_bytes).await;
        let (mailbox, shutdown) = setup();
        let task = spawn_relay(
            server,
            app,
            Outbound::Plain,
            mailbox.clone(),
            shutdown.clone(),
        );
        Relay {
            client,
            mailbox,
            shutdown,
            task,
        }
    }

    /// Next message the client receives (pongs skipped).
    async fn recv(client: &mut Ws) -> Message {
        loop {
            match client.next().await.expect("stream open").expect("no error") {
                Message::Pong(_) => continue,
                message => return message,
            }
        }
    }

    fn close_code(message: &Message) -> (u16, String) {
        match message {
            Message::Close(Some(frame)) => (u16::from(frame.code), frame.reason.to_string()),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    async fn expect_close(client: &mut Ws) -> (u16, String) {
        loop {
            let message = recv(client).await;
            if message.is_close() {
                return close_code(&message);
            }
        }
    }

    fn setup() -> (std::sync::Arc<Mailbox>, CancellationToken) {
        (
            std::sync::Arc::new(Mailbox::new()),
            CancellationToken::new(),
        )
    }

    #[tokio::test]
    async fn echo_returns_text_and_binary_unchanged_and_answers_pings() {
        let Relay {
            mut client, task, ..
        } = start_relay(1024, echo()).await;
        client.send(Message::text("héllo")).await.unwrap();
        assert_eq!(recv(&mut client).await, Message::text("héllo"));
        client
            .send(Message::binary(vec![0u8, 1, 255]))
            .await
            .unwrap();
        assert_eq!(recv(&mut client).await, Message::binary(vec![0u8, 1, 255]));
        client
            .send(Message::Ping(b"p".to_vec().into()))
            .await
            .unwrap();
        match client.next().await.unwrap().unwrap() {
            Message::Pong(payload) => assert_eq!(&payload[..], b"p"),
            other => panic!("expected a pong, got {other:?}"),
        }
        client.close(close_frame(1000, "bye")).await.unwrap();
        assert_eq!(expect_close(&mut client).await, (1000, "bye".into()));
        assert!(client.next().await.is_none(), "server ends the connection");
        assert_eq!(task.await.unwrap(), Ending::ClientClosed(Some(1000)));
    }

    #[tokio::test]
    async fn fragmented_messages_are_reassembled() {
        let Relay { mut client, .. } = start_relay(1024, echo()).await;
        let first = Frame::message(b"frag".to_vec(), OpCode::Data(Data::Text), false);
        let last = Frame::message(b"mented".to_vec(), OpCode::Data(Data::Continue), true);
        client.send(Message::Frame(first)).await.unwrap();
        client.send(Message::Frame(last)).await.unwrap();
        assert_eq!(recv(&mut client).await, Message::text("fragmented"));
    }

    #[tokio::test]
    async fn bad_frames_are_refused_with_their_close_code() {
        let invalid_utf8 = Frame::message(vec![0xce, 0xba, 0xff], OpCode::Data(Data::Text), true);
        let reserved_opcode = Frame::message(b"x".to_vec(), OpCode::Data(Data::Reserved(3)), true);
        for (frame, code) in [(invalid_utf8, 1007), (reserved_opcode, 1002)] {
            let Relay {
                mut client, task, ..
            } = start_relay(1024, echo()).await;
            client.send(Message::Frame(frame)).await.unwrap();
            assert_eq!(expect_close(&mut client).await.0, code);
            assert_eq!(task.await.unwrap(), Ending::ClientRefused(code));
        }
    }

    #[tokio::test]
    async fn invalid_close_codes_are_answered_with_1002() {
        let Relay {
            mut client, task, ..
        } = start_relay(1024, echo()).await;
        let close = Frame::close(Some(CloseFrame {
            code: CloseCode::from(1005),
            reason: "".into(),
        }));
        client.send(Message::Frame(close)).await.unwrap();
        assert_eq!(expect_close(&mut client).await.0, 1002);
        assert!(matches!(task.await.unwrap(), Ending::ClientClosed(_)));
    }

    #[tokio::test]
    async fn oversize_messages_close_with_1009() {
        let Relay {
            mut client, task, ..
        } = start_relay(16, echo()).await;
        client.send(Message::text("small")).await.unwrap();
        assert_eq!(recv(&mut client).await, Message::text("small"));
        client.send(Message::binary(vec![7u8; 17])).await.unwrap();
        let (code, reason) = expect_close(&mut client).await;
        assert_eq!(code, 1009);
        assert!(reason.contains("17"), "{reason}");
        assert_eq!(task.await.unwrap(), Ending::ClientRefused(1009));
    }

    #[tokio::test]
    async fn oversize_fragmented_messages_close_with_1009() {
        let Relay {
            mut client, task, ..
        } = start_relay(16, echo()).await;
        for (op, fin) in [
            (Data::Binary, false),
            (Data::Continue, false),
            (Data::Continue, true),
        ] {
            let frame = Frame::message(vec![1u8; 8], OpCode::Data(op), fin);
            if client.send(Message::Frame(frame)).await.is_err() {
                break;
            }
        }
        assert_eq!(expect_close(&mut client).await.0, 1009);
        assert_eq!(task.await.unwrap(), Ending::ClientRefused(1009));
    }

    #[tokio::test]
    async fn a_reset_order_closes_with_4001() {
        let Relay {
            mut client,
            mailbox,
            task,
            ..
        } = start_relay(1024, echo()).await;
        client.send(Message::text("before")).await.unwrap();
        assert_eq!(recv(&mut client).await, Message::text("before"));
        mailbox.close(CLOSE_RING_MOVED, CLOSE_RING_MOVED_REASON);
        assert_eq!(
            expect_close(&mut client).await,
            (CLOSE_RING_MOVED, CLOSE_RING_MOVED_REASON.to_string())
        );
        assert!(client.next().await.is_none());
        assert_eq!(task.await.unwrap(), Ending::Ordered(CLOSE_RING_MOVED));
    }

    #[tokio::test]
    async fn draining_closes_with_1001() {
        let Relay {
            mut client,
            shutdown,
            task,
            ..
        } = start_relay(1024, echo()).await;
        shutdown.cancel();
        assert_eq!(
            expect_close(&mut client).await,
            (1001, DRAINING_REASON.to_string())
        );
        assert!(client.next().await.is_none());
        assert_eq!(task.await.unwrap(), Ending::Draining);
    }

    #[tokio::test]
    async fn pushes_are_written_in_order_with_the_app_frames() {
        let (server, mut client) = pair(1024).await;
        let (mailbox, shutdown) = setup();
        for text in ["p1", "p2"] {
            mailbox.push(Message::text(text)).unwrap();
        }
        let _task = spawn_relay(server, echo(), Outbound::Plain, mailbox.clone(), shutdown);
        client.send(Message::text("e1")).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(recv(&mut client).await);
        }
        assert_eq!(
            got,
            [
                Message::text("p1"),
                Message::text("p2"),
                Message::text("e1")
            ]
        );
        mailbox.push(Message::binary(vec![9u8])).unwrap();
        assert_eq!(recv(&mut client).await, Message::binary(vec![9u8]));
    }

    /// `wsring.v1` over a real Redis: the opening, marked app frames, and
    /// every stored push exactly once and in order whichever way it arrives
    /// (fast path, duplicate, gap, announcement, new epoch).
    #[tokio::test]
    async fn v1_sends_every_push_once_in_order() {
        use crate::cursor::Cursor;
        use crate::history::{History, HistorySettings};
        use crate::mailbox::CatchUp;
        use crate::metrics::Metrics;
        use wsring_core::resume::{decode, Frame, GoneReason};

        let redis = wsring_core::harness::RedisServer::start().await.unwrap();
        let client_redis = redis::Client::open(redis.url()).unwrap();
        let settings = HistorySettings {
            size: 100,
            ttl: std::time::Duration::from_secs(60),
            replicas: 0,
        };
        let history = std::sync::Arc::new(History::new(
            wsring_core::redis_target::RedisTarget::single(client_redis.clone()),
            "ns",
            "c",
            settings,
        ));
        let text = |m: Message| match m {
            Message::Text(t) => t.to_string(),
            other => panic!("expected text, got {other:?}"),
        };
        let header = |m: Message| {
            let t = text(m);
            match decode(t.as_bytes()).unwrap() {
                Frame::Push(at, body) => {
                    format!("p{} {}", at.offset, String::from_utf8_lossy(body))
                }
                Frame::App(body) => format!("m {}", String::from_utf8_lossy(body)),
                Frame::Start(at) => format!("s{}", at.offset),
                Frame::Resumed(at) => format!("r{}", at.offset),
                Frame::Gone(at, reason) => format!("g{} {}", at.offset, reason.as_str()),
            }
        };

        let first = history.append("k", &Message::text("one")).await.unwrap();
        let metrics = std::sync::Arc::new(Metrics::new());
        let cursor = Cursor::open(history.clone(), metrics.clone(), "k", None)
            .await
            .expect("redis is up");
        let (server, mut client) = pair(1024).await;
        let (mailbox, shutdown) = setup();
        let _task = spawn_relay(
            server,
            echo(),
            Outbound::V1(Box::new(cursor)),
            mailbox.clone(),
            shutdown,
        );
        assert_eq!(header(recv(&mut client).await), "s1", "live after offset 1");
        client.send(Message::text("hi")).await.unwrap();
        assert_eq!(header(recv(&mut client).await), "m hi");

        // Fast path, then the same push again (its announcement): once.
        let second = history.append("k", &Message::text("two")).await.unwrap();
        mailbox
            .push_positioned(second.clone(), Message::text("two"))
            .unwrap();
        mailbox
            .push_positioned(second.clone(), Message::text("two"))
            .unwrap();
        mailbox.catch_up(CatchUp::UpTo(second.clone()));
        assert_eq!(header(recv(&mut client).await), "p2 two");
        // Stored by another pod (never delivered here) and then a later fast
        // push: the gap is read from the history, in order.
        history.append("k", &Message::text("three")).await.unwrap();
        let fourth = history.append("k", &Message::text("four")).await.unwrap();
        mailbox
            .push_positioned(fourth, Message::text("four"))
            .unwrap();
        assert_eq!(header(recv(&mut client).await), "p3 three");
        assert_eq!(header(recv(&mut client).await), "p4 four");
        // Only an announcement: read from the history.
        let fifth = history.append("k", &Message::text("five")).await.unwrap();
        mailbox.catch_up(CatchUp::UpTo(fifth));
        assert_eq!(header(recv(&mut client).await), "p5 five");
        assert_eq!(
            metrics.history_replayed.get(),
            3,
            "3 and 4 after the gap, 5 announced"
        );

        // The history lost (FLUSHALL) while connected: told, then the new epoch from its start.
        let mut conn = client_redis
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
        let renewed = history.append("k", &Message::text("six")).await.unwrap();
        assert_ne!(renewed.epoch, first.epoch);
        mailbox
            .push_positioned(renewed.clone(), Message::text("six"))
            .unwrap();
        let gone = text(recv(&mut client).await);
        assert_eq!(
            decode(gone.as_bytes()).unwrap(),
            Frame::Gone(
                wsring_core::resume::Position {
                    epoch: renewed.epoch.clone(),
                    offset: 0
                },
                GoneReason::Epoch
            )
        );
        assert_eq!(header(recv(&mut client).await), "p1 six");
        // Binary pushes stay binary, with the same header.
        let bin = history
            .append("k", &Message::binary(vec![0u8, 1]))
            .await
            .unwrap();
        mailbox
            .push_positioned(bin.clone(), Message::binary(vec![0u8, 1]))
            .unwrap();
        let mut expected = format!("p {} 2\n", bin.epoch).into_bytes();
        expected.extend([0u8, 1]);
        assert_eq!(recv(&mut client).await, Message::binary(expected));
    }

    /// Redis gone mid-connection: the catch-up is retried for ~3 s, then the
    /// client is closed with 1013 (resume later), not told to reload.
    #[tokio::test]
    async fn v1_closes_with_1013_when_the_history_stays_unreadable() {
        use crate::cursor::Cursor;
        use crate::history::{History, HistorySettings};
        use crate::mailbox::CatchUp;
        use crate::metrics::Metrics;

        let mut redis = wsring_core::harness::RedisServer::start().await.unwrap();
        let settings = HistorySettings {
            size: 10,
            ttl: std::time::Duration::from_secs(60),
            replicas: 0,
        };
        let history = std::sync::Arc::new(History::new(
            wsring_core::redis_target::RedisTarget::single(
                redis::Client::open(redis.url()).unwrap(),
            ),
            "ns",
            "c",
            settings,
        ));
        let metrics = std::sync::Arc::new(Metrics::new());
        let cursor = Cursor::open(history, metrics.clone(), "k", None)
            .await
            .unwrap();
        let (server, mut client) = pair(1024).await;
        let (mailbox, shutdown) = setup();
        let task = spawn_relay(
            server,
            echo(),
            Outbound::V1(Box::new(cursor)),
            mailbox.clone(),
            shutdown,
        );
        assert!(matches!(recv(&mut client).await, Message::Text(t) if t.starts_with("s ")));
        redis.stop();
        mailbox.catch_up(CatchUp::Everything);
        assert_eq!(
            expect_close(&mut client).await,
            (1013, CLOSE_TRY_AGAIN_LATER_REASON.to_string())
        );
        assert_eq!(task.await.unwrap(), Ending::Ordered(1013));
        assert_eq!(metrics.history_errors.get(), 6, "one try and five retries");
    }

    /// A scripted app: the test reads what the relay sent it and feeds what it answers.
    fn fake_app() -> (App, mpsc::Receiver<Message>, mpsc::Sender<Message>) {
        let (to_app, from_relay) = mpsc::channel(8);
        let (to_relay, from_app) = mpsc::channel(8);
        let rx = from_app.map(Ok as fn(Message) -> Result<Message, Infallible>);
        ((to_app, rx), from_relay, to_relay)
    }

    #[tokio::test]
    async fn the_app_close_is_passed_to_the_client() {
        let (app, mut seen_by_app, mut app_says) = fake_app();
        let Relay {
            mut client, task, ..
        } = start_relay(1024, app).await;
        client.send(Message::text("to app")).await.unwrap();
        assert_eq!(seen_by_app.next().await, Some(Message::text("to app")));
        app_says.send(Message::text("from app")).await.unwrap();
        assert_eq!(recv(&mut client).await, Message::text("from app"));
        app_says
            .send(Message::Close(close_frame(4000, "app says bye")))
            .await
            .unwrap();
        drop(app_says); // like a real app, which ends its side after the close
        assert_eq!(
            expect_close(&mut client).await,
            (4000, "app says bye".into())
        );
        assert!(
            client.next().await.is_none(),
            "our answer completes the handshake"
        );
        assert_eq!(task.await.unwrap(), Ending::AppClosed(Some(4000)));
    }

    #[tokio::test]
    async fn the_client_close_is_passed_to_the_app() {
        let (app, mut seen_by_app, app_says) = fake_app();
        let Relay {
            mut client, task, ..
        } = start_relay(1024, app).await;
        client.close(close_frame(1000, "done")).await.unwrap();
        assert_eq!(
            seen_by_app.next().await,
            Some(Message::Close(close_frame(1000, "done")))
        );
        drop(app_says);
        assert_eq!(task.await.unwrap(), Ending::ClientClosed(Some(1000)));
    }

    #[tokio::test]
    async fn an_app_that_vanishes_closes_the_client_with_1011() {
        let (app, _seen_by_app, app_says) = fake_app();
        let Relay {
            mut client, task, ..
        } = start_relay(1024, app).await;
        drop(app_says);
        assert_eq!(expect_close(&mut client).await.0, 1011);
        assert!(client.next().await.is_none());
        assert_eq!(task.await.unwrap(), Ending::AppFailed);
    }

    #[test]
    fn close_reasons_are_cut_to_fit_a_control_frame() {
        let long = "é".repeat(100);
        let frame = close_frame(1011, &long).unwrap();
        assert!(frame.reason.len() <= MAX_CLOSE_REASON_BYTES);
        assert!(long.starts_with(frame.reason.as_str()));
    }
}
