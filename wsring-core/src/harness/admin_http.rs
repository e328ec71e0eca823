//! The one HTTP/1 client for the admin, push and control APIs on loopback:
//! what local mode, the benchmarks, the soak and every test suite use to
//! call the router, the pods and the `wsring dev` control API.
//!
//! A call is built and sent like
//! `client.get(url).bearer(token).send().await`; the answer is read whole
//! (admin answers are small) into an [`AdminResponse`]. The client keeps
//! connections alive; a caller that wants one connection per call makes a
//! fresh client per call.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

use crate::Error;

pub use hyper::{HeaderMap, Method, StatusCode};

/// Plain-HTTP client with keep-alive; clones share its connections.
#[derive(Clone)]
pub struct AdminClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for AdminClient {
    fn default() -> Self {
        Self::new()
    }
}

impl AdminClient {
    /// A client for loopback calls (no TLS: admin listeners are plain HTTP).
    pub fn new() -> Self {
        AdminClient {
            inner: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// A `method url` call, sent with [`AdminRequest::send`].
    pub fn request(&self, method: Method, url: impl Into<String>) -> AdminRequest<'_> {
        AdminRequest {
            client: self,
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A `GET url` call.
    pub fn get(&self, url: impl Into<String>) -> AdminRequest<'_> {
        self.request(Method::GET, url)
    }

    /// A `POST url` call.
    pub fn post(&self, url: impl Into<String>) -> AdminRequest<'_> {
        self.request(Method::POST, url)
    }

    /// A `PUT url` call.
    pub fn put(&self, url: impl Into<String>) -> AdminRequest<'_> {
        self.request(Method::PUT, url)
    }
}

/// One call being built: headers and body, then [`AdminRequest::send`].
pub struct AdminRequest<'a> {
    client: &'a AdminClient,
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl AdminRequest<'_> {
    /// `authorization: Bearer TOKEN`, the one scheme of every wsring API.
    pub fn bearer(self, token: &str) -> Self {
        self.header(AUTHORIZATION.as_str(), format!("Bearer {token}"))
    }

    /// Any header, sent as given (tests send odd ones on purpose).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The body, sent without a content type unless one is set as a header.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body with `content-type: application/json`.
    pub fn json(self, body: impl Into<String>) -> Self {
        self.header(CONTENT_TYPE.as_str(), "application/json")
            .body(body.into())
    }

    /// Send it and read the whole answer; an error means no answer at all
    /// (nothing listening, connection cut, malformed request).
    pub async fn send(self) -> Result<AdminResponse, Error> {
        let AdminRequest {
            client,
            method,
            url,
            headers,
            body,
        } = self;
        let call = format!("{method} {url}");
        let failed = |reason: String| Error::AdminCall {
            call: call.clone(),
            reason,
        };
        let mut request = Request::builder().method(method).uri(url);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| failed(e.to_string()))?;
        let response = client
            .inner
            .request(request)
            .await
            .map_err(|e| failed(with_causes(&e)))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| failed(e.to_string()))?
            .to_bytes();
        Ok(AdminResponse {
            call,
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// An error with its causes: hyper's own message ("client error
/// (Connect)") alone does not say what went wrong.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    // Bounded: error chains are a handful of links deep.
    for _ in 0..8 {
        let Some(next) = cause else { break };
        text.push_str(&format!(": {next}"));
        cause = next.source();
    }
    text
}

/// A whole answer: status, headers and body.
#[derive(Debug, Clone)]
pub struct AdminResponse {
    /// `METHOD URL`, for error messages.
    call: String,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl AdminResponse {
    /// The status code (compares with plain numbers: `status() == 200`).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The answer's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The raw body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced), for messages and metrics.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| Error::AdminCall {
            call: self.call.clone(),
            reason: format!("the answer is not the expected JSON: {e}"),
        })
    }

    /// The body as JSON if it is JSON, else as a JSON string of its text:
    /// one value to assert on whatever the endpoint answers.
    pub fn json_or_text(&self) -> serde_json::Value {
        self.json()
            .unwrap_or_else(|_| serde_json::Value::String(self.text()))
    }
}
