//! A tiny HTTP/1 client for the launcher and benchmarks: JSON calls to the
//! router's and pods' admin listeners on loopback.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Plain-HTTP client with keep-alive.
pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// A client for loopback admin calls.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Send `method url` with an optional bearer token and body; return status and body.
pub async fn call(
    client: &HttpClient,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<String>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let res = client.request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
