//! `--pod-transport http1` (the default): every WebSocket to a pod over a TCP
//! connection of its own. The router dials the pod, sends the upgrade request
//! and, on the pod's 101, takes the TCP stream back from hyper for the
//! tunnel, which splices it with the client's socket directly.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wsring_core::Member;

use super::{driving, refusal, unreachable, within, Accepted};
use crate::Error;

/// Dial `member`, send `request`, and return the pod's 101 with its stream.
/// Everything, connect included, must finish within `timeout`.
pub async fn exchange(
    member: &Member,
    request: Request<Empty<Bytes>>,
    timeout: Duration,
) -> Result<Accepted, Error> {
    within(member, timeout, exchange_inner(member, request)).await
}

async fn exchange_inner(
    member: &Member,
    request: Request<Empty<Bytes>>,
) -> Result<Accepted, Error> {
    let stream = TcpStream::connect(member.addr.as_str())
        .await
        .map_err(|e| unreachable(member, format!("connect: {e}")))?;
    crate::tunnel::tune(&stream);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(member, e.to_string()))?;
    let mut conn = Some(conn.with_upgrades());
    let mut response = driving(sender.send_request(request), &mut conn)
        .await
        .map_err(|e| unreachable(member, e.to_string()))?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refusal(member, response, &mut conn).await);
    }
    let on_upgrade = hyper::upgrade::on(&mut response);
    // The connection future hands the stream to `on_upgrade` and finishes
    // (it may already have done so while the response was delivered).
    if let Some(conn) = conn {
        conn.await.map_err(|e| unreachable(member, e.to_string()))?;
    }
    let upgraded = on_upgrade
        .await
        .map_err(|e| unreachable(member, format!("upgrade: {e}")))?;
    let (parts, _) = response.into_parts();
    Ok(Accepted {
        response: Response::from_parts(parts, ()),
        upgraded,
    })
}
