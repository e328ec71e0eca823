//! Pushing a new ring to the routers: `PUT http://IP:9090/ring` with the bearer
//! token, to every ready router that has not yet acknowledged this version.
//!
//! Notification is the fast path only: routers also watch the ring ConfigMap, so
//! a failed or lost push delays a router, it never leaves it stale. Failures are
//! reported (log, Warning event, metric) and retried on the next reconcile.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use wsring_core::RingSpec;

use crate::error::Error;

/// How long one router may take to answer `PUT /ring`.
const PUT_TIMEOUT: Duration = Duration::from_secs(2);
/// Acknowledgements of clusters not reconciled for this long are dropped
/// (deleted clusters; live ones are requeued every few minutes).
const ACK_TTL: Duration = Duration::from_secs(3600);

/// What a router answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterAnswer {
    /// The router switched to this ring.
    Applied,
    /// The router already had this exact ring.
    AlreadyCurrent,
}

/// HTTP client for router admin endpoints (plain HTTP inside the cluster network).
#[derive(Clone)]
pub struct Notifier {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Notifier {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(PUT_TIMEOUT));
        Notifier {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

#[derive(Deserialize)]
struct PutAnswer {
    applied: bool,
}

impl Notifier {
    /// `PUT /ring` to one router.
    pub async fn put_ring(
        &self,
        router: &str,
        token: &str,
        ring_json: &str,
    ) -> Result<RouterAnswer, Error> {
        let fail = |reason: String| Error::Notify {
            router: router.to_string(),
            reason,
        };
        let request = Request::builder()
            .method(Method::PUT)
            .uri(format!("http://{router}/ring"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(ring_json.to_string())))
            .map_err(|e| fail(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            Ok::<_, Error>((status, body))
        };
        let (status, body) = tokio::time::timeout(PUT_TIMEOUT, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {PUT_TIMEOUT:?}")))??;
        match status {
            StatusCode::OK => {
                let answer: PutAnswer = serde_json::from_slice(&body)
                    .map_err(|e| fail(format!("unreadable answer: {e}")))?;
                Ok(if answer.applied {
                    RouterAnswer::Applied
                } else {
                    RouterAnswer::AlreadyCurrent
                })
            }
            other => Err(fail(format!(
                "HTTP {other}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))),
        }
    }

    /// Push `ring` to every router in `routers` not yet acknowledged at its
    /// version, concurrently. Returns the failures (the rest are acknowledged).
    pub async fn notify_all(
        &self,
        acks: &RouterAcks,
        cluster: &str,
        routers: &[String],
        token: &str,
        ring: &RingSpec,
    ) -> Vec<Error> {
        let pending = acks.pending(cluster, ring.version, routers);
        if pending.is_empty() {
            return Vec::new();
        }
        let json = ring.to_json();
        let results = join_all(pending.iter().map(|r| self.put_ring(r, token, &json))).await;
        let mut failures = Vec::new();
        for (router, result) in pending.into_iter().zip(results) {
            match result {
                Ok(answer) => {
                    tracing::debug!(%router, version = ring.version, ?answer, "router has the ring");
                    acks.ack(cluster, ring.version, router);
                }
                Err(e) => failures.push(e),
            }
        }
        failures
    }
}

/// Which routers acknowledged which ring version, per cluster. In memory only:
/// after an operator restart every router is pushed once more and answers
/// "already current", which is cheap.
#[derive(Default)]
pub struct RouterAcks {
    clusters: Mutex<HashMap<String, ClusterAcks>>,
}

struct ClusterAcks {
    version: u64,
    routers: BTreeSet<String>,
    touched: Instant,
}

impl RouterAcks {
    /// Routers of `routers` that have not acknowledged `version`.
    pub fn pending(&self, cluster: &str, version: u64, routers: &[String]) -> Vec<String> {
        let mut clusters = self.clusters.lock().expect("acks lock");
        let now = Instant::now();
        clusters.retain(|_, c| now.duration_since(c.touched) < ACK_TTL);
        let entry = clusters
            .entry(cluster.to_string())
            .or_insert_with(|| ClusterAcks {
                version,
                routers: BTreeSet::new(),
                touched: now,
            });
        entry.touched = now;
        if entry.version != version {
            entry.version = version;
            entry.routers.clear();
        }
        // Routers that left are forgotten, so one coming back at the same address is pushed again.
        entry.routers.retain(|r| routers.contains(r));
        routers
            .iter()
            .filter(|r| !entry.routers.contains(*r))
            .cloned()
            .collect()
    }

    /// Record that `router` holds `version`.
    pub fn ack(&self, cluster: &str, version: u64, router: String) {
        let mut clusters = self.clusters.lock().expect("acks lock");
        if let Some(entry) = clusters.get_mut(cluster) {
            if entry.version == version {
                entry.routers.insert(router);
            }
        }
    }

    /// Drop a deleted cluster.
    pub fn forget(&self, cluster: &str) {
        self.clusters.lock().expect("acks lock").remove(cluster);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{member, FakeRouter};

    fn routers(addrs: &[&str]) -> Vec<String> {
        addrs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn acked_routers_are_not_pushed_again_until_the_version_moves() {
        let acks = RouterAcks::default();
        let all = routers(&["a:9090", "b:9090"]);
        assert_eq!(acks.pending("ns/c", 3, &all), all);
        acks.ack("ns/c", 3, "a:9090".into());
        assert_eq!(acks.pending("ns/c", 3, &all), routers(&["b:9090"]));
        assert_eq!(acks.pending("ns/c", 4, &all), all);
        acks.ack("ns/c", 4, "a:9090".into());
        acks.ack("ns/c", 4, "b:9090".into());
        assert!(acks.pending("ns/c", 4, &all).is_empty());
        // A router that disappears and comes back is pushed again.
        assert!(acks.pending("ns/c", 4, &routers(&["a:9090"])).is_empty());
        assert_eq!(acks.pending("ns/c", 4, &all), routers(&["b:9090"]));
        acks.forget("ns/c");
        assert_eq!(acks.pending("ns/c", 4, &all), all);
    }

    #[tokio::test]
    async fn put_ring_sends_bearer_token_and_document() {
        let router = FakeRouter::start().await;
        let ring = RingSpec::new(5, 1024, None, vec![member(0)]).unwrap();
        let answer = Notifier::default()
            .put_ring(&router.addr, "s3cret", &ring.to_json())
            .await
            .unwrap();
        assert_eq!(answer, RouterAnswer::Applied);
        let got = router.received().await;
        assert_eq!(got.authorization, "Bearer s3cret");
        assert_eq!(got.ring, ring);
        // Same version again: the fake answers like the router, {"applied": false}.
        let answer = Notifier::default()
            .put_ring(&router.addr, "s3cret", &ring.to_json())
            .await
            .unwrap();
        assert_eq!(answer, RouterAnswer::AlreadyCurrent);
    }

    #[tokio::test]
    async fn refused_and_unreachable_routers_are_failures() {
        let router = FakeRouter::start().await;
        let ring = RingSpec::new(5, 1024, None, vec![member(0)]).unwrap();
        let err = Notifier::default()
            .put_ring(&router.addr, "wrong", &ring.to_json())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
        let closed = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().to_string()
        };
        let acks = RouterAcks::default();
        let failures = Notifier::default()
            .notify_all(
                &acks,
                "ns/c",
                &[closed.clone(), router.addr.clone()],
                "s3cret",
                &ring,
            )
            .await;
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].metric_label(), "notify");
        assert_eq!(
            acks.pending("ns/c", 5, &[closed.clone(), router.addr.clone()]),
            [closed]
        );
    }
}
