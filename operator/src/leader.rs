//! Lease-based leader election (`coordination.k8s.io/v1`), so only one operator
//! replica reconciles at a time. kube 5 ships none, so this is the client-go
//! algorithm in small: take the Lease when it is free or expired, renew it well
//! before it expires, use `resourceVersion` (replace) so two candidates can never
//! both win, and step down (exit) when renewal keeps failing.

use std::time::Duration;

use futures::Future;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::Api;

use crate::error::Error;

/// Name of the Lease (in the operator's namespace).
pub const LEASE_NAME: &str = "wsring-operator";

/// Timings, as in client-go's defaults.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// The leader gives up if it could not renew for this long (< lease_duration).
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it (or the holder let it expire): take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a valid Lease.
    Wait {
        /// The current leader.
        holder: String,
    },
}

/// Decide from the Lease spec, our identity and the time.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == identity {
        return Decision::Renew;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let last = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match last {
        Some(last) if last + duration > now => Decision::Wait { holder },
        _ => Decision::Acquire,
    }
}

/// The Lease spec after our decision.
pub fn next_spec(
    previous: Option<&LeaseSpec>,
    identity: &str,
    timing: &Timing,
    now: Timestamp,
) -> LeaseSpec {
    let renewing = previous.and_then(|p| p.holder_identity.as_deref()) == Some(identity);
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(i32::try_from(timing.lease_duration.as_secs()).unwrap_or(15)),
        acquire_time: if renewing {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if renewing || previous.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

/// One candidate for the Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    identity: String,
    timing: Timing,
}

impl LeaderElector {
    /// A candidate named `identity` (the pod name) for the Lease in `api`'s namespace.
    pub fn new(api: Api<Lease>, identity: String, timing: Timing) -> Self {
        LeaderElector {
            api,
            identity,
            timing,
        }
    }

    /// One attempt: true when we hold the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(LEASE_NAME).await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        match decide(spec, &self.identity, now) {
            Decision::Wait { .. } => Ok(false),
            decision => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(LEASE_NAME.to_string()),
                        resource_version: current
                            .as_ref()
                            .and_then(|l| l.metadata.resource_version.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(next_spec(spec, &self.identity, &self.timing, now)),
                };
                let result = match current {
                    None => self.api.create(&PostParams::default(), &lease).await,
                    Some(_) => {
                        self.api
                            .replace(LEASE_NAME, &PostParams::default(), &lease)
                            .await
                    }
                };
                match result {
                    Ok(_) => {
                        if decision == Decision::Acquire {
                            tracing::info!(identity = %self.identity, "became leader");
                        }
                        Ok(true)
                    }
                    // Another candidate wrote first: not ours this round.
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Give the Lease up (on graceful shutdown) so a standby takes over at once.
    pub async fn release(&self) -> Result<(), Error> {
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }

    /// Wait for leadership, run `work` while renewing; returns when `work` ends
    /// (Lease released) or with an error when leadership was lost.
    pub async fn run<F>(self, work: F, shutdown: impl Future<Output = ()>) -> Result<(), Error>
    where
        F: Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => tracing::debug!("standing by, another replica leads"),
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(self.timing.retry_period) => {}
            }
        }
        let renew = async {
            let mut last_renewal = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(self.timing.retry_period).await;
                match self.try_acquire_or_renew().await {
                    Ok(true) => last_renewal = tokio::time::Instant::now(),
                    Ok(false) => return Error::Leader("another replica took the lease".into()),
                    Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
                }
                if last_renewal.elapsed() > self.timing.renew_deadline {
                    return Error::Leader(format!(
                        "could not renew the lease for {:?}",
                        self.timing.renew_deadline
                    ));
                }
            }
        };
        tokio::select! {
            _ = work => {
                if let Err(e) = self.release().await {
                    tracing::warn!(error = %e, "could not release the lease");
                }
                Ok(())
            }
            lost = renew => Err(lost),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(at(0))),
            renew_time: Some(MicroTime(at(renewed))),
            lease_transitions: Some(2),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn free_or_missing_lease_is_acquired() {
        assert_eq!(decide(None, "me", at(0)), Decision::Acquire);
        let free = LeaseSpec::default();
        assert_eq!(decide(Some(&free), "me", at(0)), Decision::Acquire);
    }

    #[test]
    fn valid_foreign_lease_is_respected_until_it_expires() {
        let lease = held_by("other", 10);
        assert_eq!(
            decide(Some(&lease), "me", at(24)),
            Decision::Wait {
                holder: "other".into()
            }
        );
        assert_eq!(decide(Some(&lease), "me", at(26)), Decision::Acquire);
    }

    #[test]
    fn own_lease_is_renewed() {
        assert_eq!(
            decide(Some(&held_by("me", 0)), "me", at(100)),
            Decision::Renew
        );
    }

    #[test]
    fn takeover_counts_a_transition_renewal_does_not() {
        let timing = Timing::default();
        let taken = next_spec(Some(&held_by("other", 0)), "me", &timing, at(30));
        assert_eq!(taken.lease_transitions, Some(3));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(30))));
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        let renewed = next_spec(Some(&held_by("me", 0)), "me", &timing, at(30));
        assert_eq!(renewed.lease_transitions, Some(2));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(30))));
    }

    mod api {
        //! `try_acquire_or_renew` against a mocked API server.
        use super::*;
        use http::{Method, Request, Response};
        use kube::client::Body;
        use kube::Client;
        use serde_json::{json, Value};
        use tower_test::mock::{self, Handle};

        const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/wsring-operator";

        fn elector() -> (LeaderElector, Handle<Request<Body>, Response<Body>>) {
            let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
            let api = Api::namespaced(Client::new(service, "ops"), "ops");
            (
                LeaderElector::new(api, "me".into(), Timing::default()),
                handle,
            )
        }

        async fn expect(
            handle: &mut Handle<Request<Body>, Response<Body>>,
            method: Method,
            uri: &str,
            status: u16,
            answer: Value,
        ) -> Value {
            let (request, send) = handle.next_request().await.expect("a call");
            assert_eq!(
                (request.method(), request.uri().to_string()),
                (&method, uri.to_string())
            );
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
            body
        }

        fn lease(holder: &str, renewed: Timestamp) -> Value {
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": LEASE_NAME, "namespace": "ops", "resourceVersion": "42"},
                   "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 1,
                            "acquireTime": MicroTime(renewed), "renewTime": MicroTime(renewed)}})
        }

        #[tokio::test]
        async fn missing_lease_is_created() {
            let (elector, mut handle) = elector();
            let server = tokio::spawn(async move {
                let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
                expect(&mut handle, Method::GET, PATH, 404, not_found).await;
                let created = expect(
                    &mut handle,
                    Method::POST,
                    "/apis/coordination.k8s.io/v1/namespaces/ops/leases?",
                    201,
                    lease("me", Timestamp::now()),
                )
                .await;
                assert_eq!(created["spec"]["holderIdentity"], "me");
                assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
            });
            assert!(elector.try_acquire_or_renew().await.unwrap());
            server.await.unwrap();
        }

        #[tokio::test]
        async fn valid_foreign_lease_is_not_touched() {
            let (elector, mut handle) = elector();
            let server = tokio::spawn(async move {
                expect(
                    &mut handle,
                    Method::GET,
                    PATH,
                    200,
                    lease("other", Timestamp::now()),
                )
                .await;
            });
            assert!(!elector.try_acquire_or_renew().await.unwrap());
            server.await.unwrap();
        }

        #[tokio::test]
        async fn expired_lease_is_taken_with_its_resource_version() {
            let (elector, mut handle) = elector();
            let server = tokio::spawn(async move {
                let old = Timestamp::now() - SignedDuration::from_secs(60);
                expect(&mut handle, Method::GET, PATH, 200, lease("other", old)).await;
                let replaced = expect(
                    &mut handle,
                    Method::PUT,
                    &format!("{PATH}?"),
                    200,
                    lease("me", Timestamp::now()),
                )
                .await;
                assert_eq!(replaced["metadata"]["resourceVersion"], "42");
                assert_eq!(replaced["spec"]["holderIdentity"], "me");
                assert_eq!(replaced["spec"]["leaseTransitions"], 2);
            });
            assert!(elector.try_acquire_or_renew().await.unwrap());
            server.await.unwrap();
        }

        #[tokio::test]
        async fn losing_the_write_race_is_not_an_error() {
            let (elector, mut handle) = elector();
            let server = tokio::spawn(async move {
                let old = Timestamp::now() - SignedDuration::from_secs(60);
                expect(&mut handle, Method::GET, PATH, 200, lease("other", old)).await;
                let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409});
                expect(&mut handle, Method::PUT, &format!("{PATH}?"), 409, conflict).await;
            });
            assert!(!elector.try_acquire_or_renew().await.unwrap());
            server.await.unwrap();
        }
    }
}
