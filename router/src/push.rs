//! Push API forwarding: deliver a message to the connections of one key, or to all.
//!
//! The router knows which pod owns a key; the pod knows its connections. So
//! `POST /v1/keys/{key}/messages` is forwarded to the owner's admin listener
//! and `POST /v1/broadcast` to every member's, with the same bearer token and
//! content type, and the pods' `delivered` counts are summed.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use wsring_core::protocol::encode_key;
use wsring_core::{Member, Ring};

use crate::Error;

/// Largest pod answer read (they are tiny JSON documents).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Answer of `POST /v1/keys/{key}/messages`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPushAnswer {
    /// Owner pod.
    pub pod: String,
    /// Connections the pod delivered the message to.
    pub delivered: u64,
    /// With history on: the push's offset in the key's stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// With history on: the stream's epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// Answer of `POST /v1/broadcast`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastAnswer {
    /// Connections reached, summed over pods.
    pub delivered: u64,
    /// Pods that accepted the broadcast.
    pub pods: usize,
    /// Pods that could not be reached or refused (omitted when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

/// What a pod answers to a push (the position only with history on).
#[derive(Deserialize)]
struct PodAnswer {
    delivered: u64,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    epoch: Option<String>,
}

/// HTTP client for the pods' admin listeners.
#[derive(Clone, Debug)]
pub struct PushClient {
    http: Client<HttpConnector, Full<Bytes>>,
    bearer: HeaderValue,
    timeout: Duration,
}

impl PushClient {
    /// A client presenting `token` to the pods, giving each pod `timeout` to answer.
    pub fn new(token: String, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let mut bearer = HeaderValue::try_from(format!("Bearer {token}"))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
        bearer.set_sensitive(true);
        PushClient {
            http: Client::builder(TokioExecutor::new()).build(connector),
            bearer,
            timeout,
        }
    }

    /// Forward a message for `key` to its owner on `ring`.
    pub async fn to_key(
        &self,
        ring: &Ring,
        key: &str,
        content_type: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<KeyPushAnswer, Error> {
        let member = ring.owner(key).ok_or(Error::EmptyRing)?;
        let path = format!("/v1/keys/{}/messages", encode_key(key));
        let answer = self.post(member, &path, content_type, body).await?;
        Ok(KeyPushAnswer {
            pod: member.name.clone(),
            delivered: answer.delivered,
            offset: answer.offset,
            epoch: answer.epoch,
        })
    }

    /// Forward a message to every member of `ring`, concurrently.
    pub async fn broadcast(
        &self,
        ring: &Ring,
        content_type: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<BroadcastAnswer, Error> {
        if ring.members().is_empty() {
            return Err(Error::EmptyRing);
        }
        let sends = ring.members().iter().map(|member| {
            let body = body.clone();
            async move {
                let result = self.post(member, "/v1/broadcast", content_type, body).await;
                (member, result)
            }
        });
        let mut answer = BroadcastAnswer {
            delivered: 0,
            pods: 0,
            failed: Vec::new(),
        };
        let mut last_error = None;
        for (member, result) in futures_util::future::join_all(sends).await {
            match result {
                Ok(pod) => {
                    answer.delivered += pod.delivered;
                    answer.pods += 1;
                }
                Err(error) => {
                    tracing::warn!(pod = %member.name, %error, "broadcast to pod failed");
                    answer.failed.push(member.name.clone());
                    last_error = Some(error);
                }
            }
        }
        match last_error {
            Some(error) if answer.pods == 0 => Err(error),
            _ => Ok(answer),
        }
    }

    /// POST to `member`'s admin listener; returns the pod's answer.
    async fn post(
        &self,
        member: &Member,
        path: &str,
        content_type: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<PodAnswer, Error> {
        let unreachable = |detail: String| Error::PodUnreachable {
            pod: member.name.clone(),
            addr: member.admin.clone(),
            detail,
        };
        if member.admin.is_empty() {
            return Err(Error::Unavailable(format!(
                "pod {} has no admin address in the ring",
                member.name
            )));
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}{path}", member.admin))
            .header(AUTHORIZATION, self.bearer.clone())
            .body(Full::new(body))
            .map_err(|e| unreachable(format!("bad admin address: {e}")))?;
        if let Some(content_type) = content_type {
            request
                .headers_mut()
                .insert(CONTENT_TYPE, content_type.clone());
        }
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Error::PodTimeout {
                pod: member.name.clone(),
                timeout_ms: self.timeout.as_millis() as u64,
            })??;
        if !status.is_success() {
            return Err(Error::PodRejected {
                pod: member.name.clone(),
                // The caller's input problems (400, 413, ...) and a push the
                // pod could not store (503: retry) pass through; the pod
                // refusing the router itself or failing is a gateway error.
                status: match status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => StatusCode::BAD_GATEWAY,
                    s if s.is_client_error() => s,
                    StatusCode::SERVICE_UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::BAD_GATEWAY,
                },
                body: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        let answer: PodAnswer = serde_json::from_slice(&body).map_err(|e| {
            unreachable(format!(
                "unexpected answer {:?}: {e}",
                String::from_utf8_lossy(&body)
            ))
        })?;
        Ok(answer)
    }
}
