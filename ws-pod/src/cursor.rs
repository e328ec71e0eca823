//! A `wsring.v1` connection's place in its key's history, and the frames it
//! is sent: every push exactly once, in offset order, whichever way it came.
//!
//! Pushes reach a connection three ways: with their payload from this pod's
//! push API (the fast path), as an announcement from any pod (a push another
//! pod stored while the routers' rings disagreed), and from the history when
//! the connection opens. The cursor is the last position the client was sent;
//! a push at the next offset is sent at once, one at or before the cursor is a
//! duplicate and dropped, and anything further ahead (a gap, an announcement,
//! a full mailbox) is read from the history after the cursor. An epoch change
//! is told to the client as a `g` frame, so a loss is never silent. A history
//! that cannot be read (Redis down or failing over) is retried for about 3 s
//! ([`READ_RETRIES`]); then the connection is closed with 1013 and the client
//! resumes from its own position later: nothing skipped, nothing to reload.

use std::sync::Arc;
use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;
use wsring_core::resume::{encode, Frame, GoneReason, Position};

use crate::history::{History, Opening, Stored};
use crate::mailbox::CatchUp;
use crate::metrics::{Metrics, OPENING_RESUMED, OPENING_START, OPENING_UNAVAILABLE};

/// Waits between the attempts to read the history: 3.1 s in all, longer than
/// a Sentinel failover takes to promote a replica.
pub const READ_RETRIES: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1600),
];

/// The history could not be read, even after [`READ_RETRIES`]: close the
/// connection with 1013 so the client resumes later from its own position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unavailable;

/// Where one `wsring.v1` connection is in its key's history.
#[derive(Debug)]
pub struct Cursor {
    history: Arc<History>,
    metrics: Arc<Metrics>,
    key: String,
    /// The last position the client was sent (or told, by `s`, `r`, `g`).
    at: Position,
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
    ) -> Result<Cursor, Unavailable> {
        let opening = read(&history, &metrics, key, since).await;
        let outcome = match &opening {
            Ok(Opening::Start(_)) => OPENING_START,
            Ok(Opening::Resumed(..)) => OPENING_RESUMED,
            Ok(Opening::Gone(_, reason)) => reason.as_str(),
            Err(Unavailable) => OPENING_UNAVAILABLE,
        };
        metrics
            .history_openings
            .get_or_create(&[("outcome", outcome)])
            .inc();
        let (at, frames) = match opening? {
            Opening::Start(at) => {
                let frames = vec![control(&Frame::Start(at.clone()))];
                (at, frames)
            }
            Opening::Resumed(at, stored) => {
                let from = since.cloned().unwrap_or_else(|| at.clone());
                let mut frames = vec![control(&Frame::Resumed(from))];
                frames.extend(replay(&metrics, &at.epoch, stored));
                (at, frames)
            }
            Opening::Gone(at, reason) => {
                let frames = vec![control(&Frame::Gone(at.clone(), reason))];
                (at, frames)
            }
        };
        Ok(Cursor {
            history,
            metrics,
            key: key.to_string(),
            at,
            opening: frames,
        })
    }

    /// The opening frames (empty once taken).
    pub fn take_opening(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.opening)
    }

    /// The frames for a push stored at `at` that reached this connection
    /// with its payload.
    pub async fn push(
        &mut self,
        at: Position,
        message: Message,
    ) -> Result<Vec<Message>, Unavailable> {
        if at.epoch != self.at.epoch {
            return self.new_epoch(at.epoch).await;
        }
        if at.offset <= self.at.offset {
            return Ok(Vec::new());
        }
        if at.offset == self.at.offset + 1 {
            let frame = push_frame(&at, &message);
            self.at = at;
            return Ok(vec![frame]);
        }
        self.read_on().await
    }

    /// The frames for a catch-up: whatever the history holds after the cursor.
    pub async fn catch_up(&mut self, catch_up: CatchUp) -> Result<Vec<Message>, Unavailable> {
        match catch_up {
            CatchUp::UpTo(at) if at.epoch != self.at.epoch => self.new_epoch(at.epoch).await,
            CatchUp::UpTo(at) if at.offset <= self.at.offset => Ok(Vec::new()),
            _ => self.read_on().await,
        }
    }

    /// Everything after the cursor, from the history.
    async fn read_on(&mut self) -> Result<Vec<Message>, Unavailable> {
        match read(&self.history, &self.metrics, &self.key, Some(&self.at)).await? {
            Opening::Resumed(at, stored) => {
                let frames = replay(&self.metrics, &at.epoch, stored);
                self.at = at;
                Ok(frames)
            }
            Opening::Start(at) => {
                self.at = at;
                Ok(Vec::new())
            }
            Opening::Gone(at, reason) => {
                let frame = control(&Frame::Gone(at.clone(), reason));
                self.at = at;
                Ok(vec![frame])
            }
        }
    }

    /// The key's epoch changed while connected: its history was lost. Tell
    /// the client, then send the new epoch's pushes from its start.
    async fn new_epoch(&mut self, epoch: String) -> Result<Vec<Message>, Unavailable> {
        let start = Position { epoch, offset: 0 };
        let mut frames = vec![control(&Frame::Gone(start.clone(), GoneReason::Epoch))];
        self.at = start;
        frames.extend(self.read_on().await?);
        Ok(frames)
    }
}

/// Read the history, retrying per [`READ_RETRIES`].
async fn read(
    history: &History,
    metrics: &Metrics,
    key: &str,
    since: Option<&Position>,
) -> Result<Opening, Unavailable> {
    let mut waits = READ_RETRIES.iter();
    loop {
        match history.read(key, since).await {
            Ok(opening) => return Ok(opening),
            Err(error) => {
                metrics.history_errors.inc();
                let Some(wait) = waits.next() else {
                    tracing::warn!(%key, %error, "history unreadable; closing with 1013 to resume later");
                    return Err(Unavailable);
                };
                tracing::debug!(%key, %error, retry_in = ?wait, "history read failed");
                tokio::time::sleep(*wait).await;
            }
        }
    }
}

fn replay(metrics: &Metrics, epoch: &str, stored: Vec<Stored>) -> Vec<Message> {
    metrics.history_replayed.inc_by(stored.len() as u64);
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
