//! `ws-pod probe`: one WebSocket round trip, for `helm test` and readiness checks.
//!
//! Connects (through a router or straight to a pod), sends one text frame, waits
//! for the same text to come back and closes normally. The pod that answered is
//! reported from the `x-wsring-pod` header of the 101 answer.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wsring_core::protocol::HEADER_POD;

use crate::Error;

/// Flags of `ws-pod probe`.
#[derive(Clone, Debug, Args)]
pub struct ProbeArgs {
    /// WebSocket URL to probe, e.g. `ws://chat/?key=probe`.
    #[arg(long)]
    pub url: String,

    /// Give up after this long (connect, round trip and close together).
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

/// What a successful probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// The `x-wsring-pod` header of the 101 answer (absent if nothing added one).
    pub pod: Option<String>,
    /// Time from connect to the echoed frame.
    pub round_trip: Duration,
}

/// Run the probe; every failure names the step that failed.
pub async fn probe(args: &ProbeArgs) -> Result<ProbeReport, Error> {
    let timeout = Duration::from_millis(args.timeout_ms);
    tokio::time::timeout(timeout, round_trip(&args.url))
        .await
        .map_err(|_| Error::Probe(format!("no echo from {} within {timeout:?}", args.url)))?
}

async fn round_trip(url: &str) -> Result<ProbeReport, Error> {
    let started = Instant::now();
    let (mut ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| Error::Probe(format!("cannot open a WebSocket to {url}: {e}")))?;
    let pod = response
        .headers()
        .get(HEADER_POD)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let text = format!("wsring-probe {nonce}");
    ws.send(Message::text(text.as_str()))
        .await
        .map_err(|e| Error::Probe(format!("cannot send the probe frame: {e}")))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(got))) if got.as_str() == text => break,
            // An app may send other frames first (a greeting, a push): keep waiting.
            Some(Ok(Message::Close(frame))) => {
                return Err(Error::Probe(format!(
                    "the server closed before echoing: {frame:?}"
                )))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(Error::Probe(format!("connection failed: {e}"))),
            None => {
                return Err(Error::Probe(
                    "the server ended the connection before echoing".into(),
                ))
            }
        }
    }
    let round_trip = started.elapsed();
    // A polite close; the probe already succeeded, so a failure here does not matter.
    let _ = ws.close(None).await;
    while let Some(Ok(_)) = ws.next().await {}
    Ok(ProbeReport { pod, round_trip })
}
