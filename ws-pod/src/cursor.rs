//! A `wsring.v1` connection's place in its key's history, and the frames it
//! is sent: every push exactly once, in offset order, whichever way it came.
//!
//! Pushes reach a connection three ways: with their payload from this pod's
//! push API (the fast path), as an announcement from any pod (a push another
//! pod stored while the routers' rings disagreed), and from the history when
//! the connection opens. The cursor is the last position the client was sent;
//! a push at the next offset is sent at once, one at or before the cursor is a
//! duplicate and dropped, and anything further ahead (a gap, an announcement,
//! a full mailbox) is read from the history after the cursor. An epoch change,
//! or a history that cannot be read, is told to the client as a `g` frame, so
//! a loss is never silent.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::Message;
use wsring_core::resume::{encode, Frame, GoneReason, Position};

use crate::history::{History, Opening, Stored};
use crate::mailbox::CatchUp;
use crate::metrics::{Metrics, OPENING_RESUMED, OPENING_START};

/// The epoch a `g … unavailable` frame names when none could be read: never
/// a real epoch (those are 16 hex digits), so resuming from it is `epoch` gone.
const UNKNOWN_EPOCH: &str = "0";

/// Where one `wsring.v1` connection is in its key's history.
#[derive(Debug)]
pub struct Cursor {
    history: Arc<History>,
    metrics: Arc<Metrics>,
    key: String,
    /// The last position sent; `None` while unknown (the history could not be read).
    at: Option<Position>,
    /// Frames of the opening, sent before anything else.
    opening: Vec<Message>,
}

impl Cursor {
    /// Read where the connection starts (after `since`, if the client gave
    /// one) and prepare the opening frames: `s`, `r` plus what was missed, or `g`.
    pub async fn open(
        history: Arc<History>,
        metrics: Arc<Metrics>,
        key: &str,
        since: Option<&Position>,
    ) -> Cursor {
        let mut cursor = Cursor {
            history,
            metrics,
            key: key.to_string(),
            at: None,
            opening: Vec::new(),
        };
        let opening = cursor.history.read(key, since).await;
        let outcome = match &opening {
            Ok(Opening::Start(_)) => OPENING_START,
            Ok(Opening::Resumed(..)) => OPENING_RESUMED,
            Ok(Opening::Gone(_, reason)) => reason.as_str(),
            Err(_) => GoneReason::Unavailable.as_str(),
        };
        cursor
            .metrics
            .history_openings
            .get_or_create(&[("outcome", outcome)])
            .inc();
        cursor.opening = match opening {
            Ok(Opening::Start(at)) => {
                let frame = control(&Frame::Start(at.clone()));
                cursor.at = Some(at);
                vec![frame]
            }
            Ok(Opening::Resumed(at, stored)) => {
                let from = since.cloned().unwrap_or_else(|| at.clone());
                let mut frames = vec![control(&Frame::Resumed(from))];
                frames.extend(cursor.replay(&at.epoch, stored));
                cursor.at = Some(at);
                frames
            }
            Ok(Opening::Gone(at, reason)) => cursor.gone(at, reason),
            Err(error) => cursor.unavailable(&error),
        };
        cursor
    }

    /// The opening frames (empty once taken).
    pub fn take_opening(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.opening)
    }

    /// The frames for a push stored at `at` that reached this connection
    /// with its payload.
    pub async fn push(&mut self, at: Position, message: Message) -> Vec<Message> {
        match &self.at {
            None => {
                let frame = push_frame(&at, &message);
                self.at = Some(at);
                vec![frame]
            }
            Some(current) if current.epoch != at.epoch => self.new_epoch(at.epoch).await,
            Some(current) if at.offset <= current.offset => Vec::new(),
            Some(current) if at.offset == current.offset + 1 => {
                let frame = push_frame(&at, &message);
                self.at = Some(at);
                vec![frame]
            }
            Some(_) => self.read_on().await,
        }
    }

    /// The frames for a catch-up: whatever the history holds after the cursor.
    pub async fn catch_up(&mut self, catch_up: CatchUp) -> Vec<Message> {
        match (&self.at, catch_up) {
            (Some(current), CatchUp::UpTo(at)) if current.epoch != at.epoch => {
                self.new_epoch(at.epoch).await
            }
            (Some(current), CatchUp::UpTo(at)) if at.offset <= current.offset => Vec::new(),
            (None, CatchUp::UpTo(at)) => {
                // Unknown cursor: from just before the announced push.
                self.at = Some(Position {
                    epoch: at.epoch,
                    offset: at.offset.saturating_sub(1),
                });
                self.read_on().await
            }
            _ => self.read_on().await,
        }
    }

    /// Everything after the cursor, from the history.
    async fn read_on(&mut self) -> Vec<Message> {
        let since = self.at.clone();
        match self.history.read(&self.key, since.as_ref()).await {
            Ok(Opening::Resumed(at, stored)) => {
                let frames = self.replay(&at.epoch, stored);
                self.at = Some(at);
                frames
            }
            Ok(Opening::Start(at)) => {
                self.at = Some(at);
                Vec::new()
            }
            Ok(Opening::Gone(at, reason)) => self.gone(at, reason),
            Err(error) => self.unavailable(&error),
        }
    }

    /// The key's epoch changed while connected: its history was lost. Tell
    /// the client, then send the new epoch's pushes from its start.
    async fn new_epoch(&mut self, epoch: String) -> Vec<Message> {
        let start = Position { epoch, offset: 0 };
        let mut frames = vec![control(&Frame::Gone(start.clone(), GoneReason::Epoch))];
        self.at = Some(start);
        frames.extend(self.read_on().await);
        frames
    }

    fn replay(&self, epoch: &str, stored: Vec<Stored>) -> Vec<Message> {
        self.metrics.history_replayed.inc_by(stored.len() as u64);
        stored
            .into_iter()
            .map(|s| {
                let at = Position {
                    epoch: epoch.to_string(),
                    offset: s.offset,
                };
                push_frame(&at, &s.message)
            })
            .collect()
    }

    fn gone(&mut self, at: Position, reason: GoneReason) -> Vec<Message> {
        let frame = control(&Frame::Gone(at.clone(), reason));
        self.at = Some(at);
        vec![frame]
    }

    fn unavailable(&mut self, error: &crate::Error) -> Vec<Message> {
        self.metrics.history_errors.inc();
        tracing::warn!(key = %self.key, %error, "history unreadable; telling the client it is gone");
        self.at = None;
        let at = Position {
            epoch: UNKNOWN_EPOCH.to_string(),
            offset: 0,
        };
        vec![control(&Frame::Gone(at, GoneReason::Unavailable))]
    }
}

/// An app frame under `wsring.v1`: `m\n` before the app's bytes, same type.
pub fn app_frame(message: Message) -> Message {
    match message {
        Message::Text(text) => text_frame(encode(&Frame::App(text.as_bytes()))),
        Message::Binary(bytes) => Message::Binary(encode(&Frame::App(&bytes)).into()),
        other => other,
    }
}

/// A pushed message at `at`: `p <epoch> <offset>\n` before it, same type.
fn push_frame(at: &Position, message: &Message) -> Message {
    match message {
        Message::Text(text) => text_frame(encode(&Frame::Push(at.clone(), text.as_bytes()))),
        Message::Binary(bytes) => Message::Binary(encode(&Frame::Push(at.clone(), bytes)).into()),
        other => other.clone(),
    }
}

/// `s`, `r` and `g` frames are text.
fn control(frame: &Frame<'_>) -> Message {
    text_frame(encode(frame))
}

fn text_frame(bytes: Vec<u8>) -> Message {
    // The header is ASCII and the body was UTF-8 text: still UTF-8.
    match String::from_utf8(bytes) {
        Ok(text) => Message::Text(text.into()),
        Err(e) => Message::Binary(e.into_bytes().into()),
    }
}
