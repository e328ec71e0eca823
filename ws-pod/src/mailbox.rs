//! The control channel into one connection task: pushed frames, a close order,
//! and for `wsring.v1` connections the positions of pushes to catch up on.
//!
//! Anything outside the connection task (the Redis subscriber, the push API, a
//! launcher) talks to it only through its [`Mailbox`]; the task itself is the one
//! writer of its socket, so pushed frames are interleaved with the app's frames in
//! order and never written concurrently.
//!
//! Why not a tokio mpsc channel: an idle connection must cost next to nothing, and a
//! bounded channel allocates a block of slots up front. An empty `VecDeque` does not
//! allocate, and the close order needs its own slot anyway, so that a full queue of
//! pushes can never delay or drop a reset. For the same reason a positioned push
//! that finds the queue full is not dropped: it raises the catch-up slot, and
//! the connection reads what it missed from the key's history instead.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use wsring_core::resume::Position;

/// Most frames queued for one connection that has not written them yet (a slow reader).
pub const MAX_QUEUED_MESSAGES: usize = 256;
/// Most payload bytes queued for one connection; further pushes are refused.
pub const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;

/// Why the connection must close: the close frame it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseOrder {
    /// WebSocket close code (4001 ring moved, 1001 going away, ...).
    pub code: u16,
    /// Close reason text (at most 123 bytes).
    pub reason: &'static str,
}

/// What the connection task must do next.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Close the client connection with this code and reason.
    Close(CloseOrder),
    /// Write this frame to the client.
    Push(Message),
    /// Write this push, stored at this position, to a `wsring.v1` client.
    Positioned(Position, Message),
    /// Read from the key's history whatever the client has not seen yet.
    CatchUp(CatchUp),
}

/// How far a `wsring.v1` connection must catch up from the key's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// At least up to this position (a push stored by this or another pod).
    UpTo(Position),
    /// Whatever is there (notifications may have been missed, e.g. while the
    /// Redis subscription was down).
    Everything,
}

impl CatchUp {
    /// One slot holds the wider of two catch-ups (the later position: the
    /// pods announce a key's pushes in stream order).
    fn merge(self, other: CatchUp) -> CatchUp {
        match (self, other) {
            (CatchUp::Everything, _) | (_, CatchUp::Everything) => CatchUp::Everything,
            (CatchUp::UpTo(_), later) => later,
        }
    }
}

#[derive(Debug, PartialEq)]
enum Queued {
    Plain(Message),
    Positioned(Position, Message),
}

impl Queued {
    fn len(&self) -> usize {
        match self {
            Queued::Plain(m) | Queued::Positioned(_, m) => m.len(),
        }
    }
}

/// Why a push was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushRefused {
    /// The connection is closing; the frame would never be written.
    Closing,
    /// The client is not reading fast enough: the queue is at its limit.
    Full,
}

#[derive(Debug, Default)]
struct State {
    close: Option<CloseOrder>,
    pushes: VecDeque<Queued>,
    queued_bytes: usize,
    catch_up: Option<CatchUp>,
}

/// One connection's inbox; shared between the registry (senders) and the connection task.
#[derive(Debug, Default)]
pub struct Mailbox {
    state: Mutex<State>,
    /// Wakes the connection task; a permit is kept if it is not waiting, so no wake-up is lost.
    notify: Notify,
}

impl Mailbox {
    /// An empty mailbox (no allocation until something is pushed).
    pub fn new() -> Self {
        Self::default()
    }

    /// Order the connection closed. The first order wins; returns whether this one was it,
    /// so duplicate resets are counted once and change nothing.
    pub fn close(&self, code: u16, reason: &'static str) -> bool {
        let mut state = self.lock();
        if state.close.is_some() {
            return false;
        }
        state.close = Some(CloseOrder { code, reason });
        state.pushes.clear();
        state.queued_bytes = 0;
        state.catch_up = None;
        drop(state);
        self.notify.notify_one();
        true
    }

    /// Queue one frame for the client.
    pub fn push(&self, message: Message) -> Result<(), PushRefused> {
        self.enqueue(Queued::Plain(message))
    }

    /// Queue a push stored at `at` for a `wsring.v1` client. A full queue
    /// does not refuse it: the connection catches up from the history.
    pub fn push_positioned(&self, at: Position, message: Message) -> Result<(), PushRefused> {
        match self.enqueue(Queued::Positioned(at.clone(), message)) {
            Err(PushRefused::Full) => {
                self.catch_up(CatchUp::UpTo(at));
                Ok(())
            }
            other => other,
        }
    }

    /// Ask a `wsring.v1` connection to read what it missed from the history;
    /// ignored once a close is ordered.
    pub fn catch_up(&self, catch_up: CatchUp) {
        let mut state = self.lock();
        if state.close.is_some() {
            return;
        }
        state.catch_up = Some(match state.catch_up.take() {
            Some(pending) => pending.merge(catch_up),
            None => catch_up,
        });
        drop(state);
        self.notify.notify_one();
    }

    fn enqueue(&self, queued: Queued) -> Result<(), PushRefused> {
        let mut state = self.lock();
        if state.close.is_some() {
            return Err(PushRefused::Closing);
        }
        let len = queued.len();
        if state.pushes.len() >= MAX_QUEUED_MESSAGES
            || state.queued_bytes.saturating_add(len) > MAX_QUEUED_BYTES
        {
            return Err(PushRefused::Full);
        }
        state.pushes.push_back(queued);
        state.queued_bytes += len;
        drop(state);
        self.notify.notify_one();
        Ok(())
    }

    /// Whether a close was ordered.
    pub fn is_closing(&self) -> bool {
        self.lock().close.is_some()
    }

    /// The next command: a close order before any queued push, queued pushes
    /// before a catch-up.
    ///
    /// Cancel-safe: nothing is taken out of the mailbox until this returns, so it can
    /// be one branch of a `select!`.
    pub async fn recv(&self) -> Command {
        loop {
            if let Some(command) = self.try_recv() {
                return command;
            }
            self.notify.notified().await;
        }
    }

    /// Resolves once a close is ordered, leaving queued pushes where they are.
    ///
    /// Cancel-safe, like [`Mailbox::recv`]; the two are never awaited at the same time
    /// (a wake-up taken here for a push is harmless: `recv` looks at the queue first).
    pub async fn closed(&self) -> CloseOrder {
        loop {
            if let Some(order) = self.lock().close.clone() {
                return order;
            }
            self.notify.notified().await;
        }
    }

    fn try_recv(&self) -> Option<Command> {
        let mut state = self.lock();
        if let Some(order) = &state.close {
            return Some(Command::Close(order.clone()));
        }
        let Some(queued) = state.pushes.pop_front() else {
            return state.catch_up.take().map(Command::CatchUp);
        };
        state.queued_bytes -= queued.len();
        if state.pushes.is_empty() {
            // A burst of pushes must not pin its peak capacity on an idle connection.
            state.pushes = VecDeque::new();
        }
        Some(match queued {
            Queued::Plain(message) => Command::Push(message),
            Queued::Positioned(at, message) => Command::Positioned(at, message),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is one step.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pushes_come_out_in_order_and_close_jumps_the_queue() {
        let mailbox = Mailbox::new();
        mailbox.push(Message::text("a")).unwrap();
        mailbox.push(Message::binary(vec![1u8])).unwrap();
        assert_eq!(mailbox.recv().await, Command::Push(Message::text("a")));
        assert!(mailbox.close(4001, "moved"));
        assert!(!mailbox.close(1001, "later"), "the first order wins");
        let order = CloseOrder {
            code: 4001,
            reason: "moved",
        };
        assert_eq!(mailbox.recv().await, Command::Close(order));
        assert_eq!(
            mailbox.push(Message::text("late")),
            Err(PushRefused::Closing)
        );
    }

    #[tokio::test]
    async fn a_wake_up_before_waiting_is_not_lost() {
        let mailbox = std::sync::Arc::new(Mailbox::new());
        let waiter = tokio::spawn({
            let mailbox = mailbox.clone();
            async move { mailbox.recv().await }
        });
        mailbox.push(Message::text("x")).unwrap();
        assert_eq!(waiter.await.unwrap(), Command::Push(Message::text("x")));
    }

    fn at(offset: u64) -> Position {
        Position {
            epoch: "e".into(),
            offset,
        }
    }

    #[tokio::test]
    async fn a_full_queue_turns_positioned_pushes_into_one_catch_up() {
        let mailbox = Mailbox::new();
        for n in 1..=MAX_QUEUED_MESSAGES as u64 {
            mailbox.push_positioned(at(n), Message::text("x")).unwrap();
        }
        let over = MAX_QUEUED_MESSAGES as u64;
        mailbox
            .push_positioned(at(over + 1), Message::text("x"))
            .unwrap();
        mailbox
            .push_positioned(at(over + 2), Message::text("x"))
            .unwrap();
        for n in 1..=over {
            assert_eq!(
                mailbox.recv().await,
                Command::Positioned(at(n), Message::text("x"))
            );
        }
        assert_eq!(
            mailbox.recv().await,
            Command::CatchUp(CatchUp::UpTo(at(over + 2))),
            "the catch-up comes after the queue, at the latest position"
        );
        mailbox.catch_up(CatchUp::UpTo(at(1)));
        mailbox.catch_up(CatchUp::Everything);
        mailbox.catch_up(CatchUp::UpTo(at(9)));
        assert_eq!(mailbox.recv().await, Command::CatchUp(CatchUp::Everything));
        assert!(mailbox.close(4001, "moved"));
        mailbox.catch_up(CatchUp::Everything);
        assert!(matches!(mailbox.recv().await, Command::Close(_)));
        assert_eq!(
            mailbox.push_positioned(at(1), Message::text("x")),
            Err(PushRefused::Closing)
        );
    }

    #[test]
    fn a_slow_reader_gets_a_bounded_queue() {
        let mailbox = Mailbox::new();
        for _ in 0..MAX_QUEUED_MESSAGES {
            mailbox.push(Message::text("x")).unwrap();
        }
        assert_eq!(mailbox.push(Message::text("x")), Err(PushRefused::Full));
        let big = Mailbox::new();
        assert_eq!(
            big.push(Message::binary(vec![0u8; MAX_QUEUED_BYTES + 1])),
            Err(PushRefused::Full)
        );
    }
}
