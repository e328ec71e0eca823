//! The reconciler: one pass makes the cluster's children match the spec and the
//! ring match the ready pods.
//!
//! Order of one pass (ring first, so a membership change reaches the routers
//! after five API round trips rather than after every child apply):
//! 0. the spec check ([`Policy::check`]): a refused spec is reported
//!    (Degraded, Warning event) and nothing is applied;
//! 1. token Secret `NAME-token`: read, or create once if absent;
//! 2. EndpointSlices of `NAME-pods` → members (only the EndpointSlice
//!    controller's slices, only the cluster's own pods: [`crate::membership`]);
//! 3. ring ConfigMap: read the published ring, decide the next (the version moves
//!    only on a real change), apply if different;
//! 4. EndpointSlices of `NAME-router-admin` → `PUT /ring` to routers that lack it;
//! 5. server-side apply of RBAC, Services, StatefulSet, router Deployment,
//!    NetworkPolicies, and the optional Ingress and HTTPRoute (or deletion of
//!    ours when turned off);
//! 6. events for what changed, then the status (only when it differs).
//!
//! Triggers: spec changes of the `WebSocketCluster` (generation predicate, so the
//! operator's own status writes do not loop), changes of owned children, and every
//! EndpointSlice change of its Services.

use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{predicates, reflector, watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use wsring_core::{Member, RingSpec};

use crate::crd::WebSocketCluster;
use crate::error::Error;
use crate::membership::{self, SERVICE_NAME_LABEL};
use crate::metrics::Metrics;
use crate::notify::{Notifier, RouterAcks};
use crate::policy::Policy;
use crate::resources::network_policy::{self, AdminAccess};
use crate::resources::ring_configmap::{self, NextRing};
use crate::resources::{
    httproute, ingress, rbac, router, services, statefulset, token, Names, MANAGER,
};
use crate::status::{self, Observed};

/// Requeue of a converged cluster: a safety net, every real change triggers sooner.
const RESYNC: Duration = Duration::from_secs(300);
/// Requeue while something is still moving or a router missed the ring.
const RETRY: Duration = Duration::from_secs(10);
/// Requeue after a failed reconcile.
const ERROR_RETRY: Duration = Duration::from_secs(15);

/// What every reconcile shares.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Kubernetes events on the clusters.
    pub recorder: Recorder,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// HTTP client for `PUT /ring`.
    pub notifier: Notifier,
    /// Which routers already hold which ring version.
    pub acks: RouterAcks,
    /// What a cluster may ask the operator to create ([`crate::policy`]).
    pub policy: Policy,
    /// Who may reach the admin ports besides the routers; `None`: the
    /// operator creates no NetworkPolicies (`--network-policies=false`).
    pub admin_access: Option<AdminAccess>,
}

impl Context {
    /// A context for the live operator.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        policy: Policy,
        admin_access: Option<AdminAccess>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            notifier: Notifier::default(),
            acks: RouterAcks::default(),
            policy,
            admin_access,
        }
    }
}

/// Reconcile one `WebSocketCluster`: the steps of the module docs, in order.
/// A cluster being deleted is left to the garbage collector; a refused spec
/// is reported and nothing else is done.
pub async fn reconcile(wsc: Arc<WebSocketCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let cluster = Cluster::new(&wsc)?;
    if wsc.meta().deletion_timestamp.is_some() {
        // Children carry controller owner references: the garbage collector removes them.
        ctx.acks.forget(&cluster.key);
        return Ok(Action::await_change());
    }
    if let Err(Error::InvalidSpec(why)) = ctx.policy.check(&wsc) {
        return refuse_spec(&ctx, &cluster, why).await;
    }
    let mut events = Vec::new();
    let token = ensure_token(&ctx, &cluster, &mut events).await?;
    let members = ring_members(&ctx, &cluster).await?;
    let next = publish_ring(&ctx, &cluster, members, &mut events).await?;
    let failures = notify_routers(&ctx, &cluster, &token, &next.ring, &mut events).await?;
    let children = apply_children(&ctx, &cluster).await?;
    let observed = observe(&next, &children, &failures);
    report_status(&ctx, &wsc, events, &observed).await
}

/// The cluster one reconcile works on, with the names every step uses.
struct Cluster<'a> {
    /// The object as the watch delivered it.
    wsc: &'a WebSocketCluster,
    /// Its namespace, where every child lives.
    ns: String,
    /// Its name, the prefix of every child's name.
    name: String,
    /// `NAMESPACE/NAME`: the log field and the key of the router acks.
    key: String,
}

impl<'a> Cluster<'a> {
    /// Fails on an object without a namespace: the CRD is namespaced, so
    /// every stored cluster has one.
    fn new(wsc: &'a WebSocketCluster) -> Result<Self, Error> {
        let ns = wsc
            .namespace()
            .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
        let name = wsc.name_any();
        let key = format!("{ns}/{name}");
        Ok(Cluster { wsc, ns, name, key })
    }
}

/// Step 0, for a spec the operator refuses ([`Policy::check`]): nothing is
/// applied, so nothing half-built runs; the author learns why from the
/// Degraded condition and a Warning event (only when the reason is new, so a
/// resync does not repeat it), and the cluster waits for a spec change.
async fn refuse_spec(ctx: &Context, cluster: &Cluster<'_>, why: String) -> Result<Action, Error> {
    let wsc = cluster.wsc;
    tracing::warn!(cluster = %cluster.key, %why, "invalid spec, nothing applied");
    let reported = wsc.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.reason == "InvalidSpec" && c.message == why)
    });
    let mut events = Vec::new();
    if !reported {
        events.push(warning("InvalidSpec", "Validate", why.clone()));
    }
    let observed = Observed {
        invalid_spec: Some(why),
        ..Observed::default()
    };
    publish(ctx, wsc, events).await;
    write_status(ctx, wsc, &observed).await?;
    Ok(Action::await_change())
}

/// Step 1: the bearer token routers and pods share, read from the Secret
/// `NAME-token`, which is created the first time with a random token and
/// never rewritten here: rotating it is an explicit act ([`token`]).
async fn ensure_token(
    ctx: &Context,
    cluster: &Cluster<'_>,
    events: &mut Vec<Event>,
) -> Result<String, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cluster.ns);
    let name = Names::token_secret(&cluster.name);
    if let Some(secret) = secrets.get_opt(&name).await? {
        return token::read_token(&secret).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "Secret {name} has no usable key {:?}; delete it to have a new token generated",
                token::TOKEN_KEY
            ))
        });
    }
    let fresh = token::generate_token();
    let pp = PostParams {
        field_manager: Some(MANAGER.to_string()),
        ..PostParams::default()
    };
    secrets
        .create(&pp, &token::token_secret(cluster.wsc, &fresh))
        .await?;
    events.push(normal(
        "TokenCreated",
        "CreateToken",
        format!("generated the bearer token in Secret {name}"),
    ));
    Ok(fresh)
}

/// Step 2: the ring members are the ready pods, read from the EndpointSlices
/// of `NAME-pods` (only the EndpointSlice controller's, only this cluster's
/// pods: [`membership::members`]).
async fn ring_members(ctx: &Context, cluster: &Cluster<'_>) -> Result<Vec<Member>, Error> {
    let slices = list_slices(
        &ctx.client,
        &cluster.ns,
        &Names::pods_service(&cluster.name),
    )
    .await?;
    Ok(membership::members(&cluster.name, &slices))
}

/// Step 3: decide the next ring from the published one and write it to the
/// ConfigMap `NAME-ring` when it differs. The version moves only on a real
/// change (and never below the status' `ringVersion`), so a restarted
/// operator writes nothing.
async fn publish_ring(
    ctx: &Context,
    cluster: &Cluster<'_>,
    members: Vec<Member>,
    events: &mut Vec<Event>,
) -> Result<NextRing, Error> {
    let (wsc, ns, name) = (cluster.wsc, &cluster.ns, &cluster.name);
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let existing_cm = cms.get_opt(&Names::ring_configmap(name)).await?;
    let existing = existing_cm.as_ref().and_then(ring_configmap::read_ring);
    let floor = wsc.status.as_ref().map_or(0, |s| s.ring_version);
    let next = ring_configmap::next_ring(existing.as_ref(), floor, wsc, members)?;
    if !ring_configmap::holds(existing_cm.as_ref(), &next.ring) {
        apply(&ctx.client, ns, &ring_configmap::configmap(wsc, &next.ring)).await?;
    }
    ctx.metrics.set_ring_version(ns, name, next.ring.version);
    if next.changed {
        let note = ring_note(&next);
        tracing::info!(cluster = %cluster.key, version = next.ring.version, %note, "ring updated");
        events.push(normal("RingUpdated", "PublishRing", note));
    }
    Ok(next)
}

/// Step 4: `PUT /ring` to every ready router (EndpointSlices of
/// `NAME-router-admin`) that has not acknowledged this version, so a
/// membership change reaches them now rather than when their ConfigMap watch
/// fires. A failed router does not fail the reconcile (the watch still brings
/// it the ring): it is counted, logged, reported in a Warning event and
/// returned, so the status says so and the cluster is retried soon.
async fn notify_routers(
    ctx: &Context,
    cluster: &Cluster<'_>,
    token: &str,
    ring: &RingSpec,
    events: &mut Vec<Event>,
) -> Result<Vec<Error>, Error> {
    let router_slices = list_slices(
        &ctx.client,
        &cluster.ns,
        &Names::router_admin_service(&cluster.name),
    )
    .await?;
    let routers = membership::routers(&cluster.name, &router_slices);
    let failures = ctx
        .notifier
        .notify_all(&ctx.acks, &cluster.key, &routers, token, ring)
        .await;
    if !failures.is_empty() {
        for e in &failures {
            ctx.metrics.notify_failures.inc();
            tracing::warn!(cluster = %cluster.key, error = %e, "router notification failed");
        }
        let note = failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        events.push(warning("RouterNotifyFailed", "NotifyRouters", note));
    }
    Ok(failures)
}

/// The applied children the status reads, as the API server stored them.
struct AppliedChildren {
    /// The pods' StatefulSet: how many pods exist.
    statefulset: StatefulSet,
    /// The router Deployment: how many routers are ready.
    deployment: Deployment,
}

/// Step 5: server-side apply of every child, after the ring so a membership
/// change is not held up by them: RBAC, Services, the StatefulSet, the router
/// Deployment, then the optional children (NetworkPolicies, Ingress,
/// HTTPRoute), each applied or, when turned off, deleted if it is ours.
async fn apply_children(ctx: &Context, cluster: &Cluster<'_>) -> Result<AppliedChildren, Error> {
    let (client, wsc, ns, name) = (&ctx.client, cluster.wsc, &cluster.ns, &cluster.name);
    apply(client, ns, &rbac::service_account(wsc)).await?;
    apply(client, ns, &rbac::role(wsc)).await?;
    apply(client, ns, &rbac::role_binding(wsc)).await?;
    apply(client, ns, &services::pods_service(wsc)).await?;
    let statefulset = apply(client, ns, &statefulset::statefulset(wsc)).await?;
    apply(client, ns, &services::router_service(wsc)).await?;
    apply(client, ns, &services::router_admin_service(wsc)).await?;
    let deployment = apply(client, ns, &router::deployment(wsc)).await?;
    let access = ctx.admin_access.as_ref();
    let policies = [
        (
            Names::pods_service(name),
            access.map(|a| network_policy::pods_policy(wsc, a)),
        ),
        (
            Names::router(name),
            access.map(|a| network_policy::router_policy(wsc, a)),
        ),
    ];
    for (policy_name, policy) in policies {
        apply_or_remove(client, wsc, ns, &policy_name, policy).await?;
    }
    apply_or_remove(client, wsc, ns, name, ingress::ingress(wsc)).await?;
    apply_or_remove(client, wsc, ns, name, httproute::http_route(wsc)).await?;
    Ok(AppliedChildren {
        statefulset,
        deployment,
    })
}

/// What this pass saw, as the status needs it: the pods and ready routers as
/// stored, the published ring, and the routers that did not take it.
fn observe(next: &NextRing, children: &AppliedChildren, failures: &[Error]) -> Observed {
    Observed {
        pods: children
            .statefulset
            .status
            .as_ref()
            .map_or(0, |s| s.replicas),
        members: next
            .ring
            .member_names()
            .iter()
            .map(|n| n.to_string())
            .collect(),
        ring_version: next.ring.version,
        routers_ready: children
            .deployment
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        notify_failures: failures
            .iter()
            .map(|e| match e {
                Error::Notify { router, .. } => router.clone(),
                other => other.to_string(),
            })
            .collect(),
        invalid_spec: None,
    }
}

/// Step 6: the events of this pass, then the status (written only when it
/// differs, so an unchanged cluster costs no write). A settled cluster whose
/// routers all took the ring waits for the resync; anything still moving, or
/// a router that missed the ring, is looked at again soon.
async fn report_status(
    ctx: &Context,
    wsc: &WebSocketCluster,
    events: Vec<Event>,
    observed: &Observed,
) -> Result<Action, Error> {
    publish(ctx, wsc, events).await;
    let settled = write_status(ctx, wsc, observed).await?;
    // `notify_failures` has one entry per router that missed the ring (`observe`).
    Ok(if settled && observed.notify_failures.is_empty() {
        Action::requeue(RESYNC)
    } else {
        Action::requeue(RETRY)
    })
}

/// Count the failure and retry later; the error is already in the controller's log line.
pub fn error_policy(wsc: Arc<WebSocketCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %wsc.name_any(), %error, "reconcile failed");
    ctx.metrics.reconcile_failed(error);
    Action::requeue(ERROR_RETRY)
}

/// What a child kind must be for [`apply`] and [`apply_or_remove`]: a
/// namespaced Kubernetes object that travels as JSON.
trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Serialize
    + DeserializeOwned
    + Clone
    + std::fmt::Debug
{
}

impl<K> Child for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug
{
}

/// An optional child `name` (NetworkPolicy, Ingress, HTTPRoute): apply the
/// desired one, or, when it is no longer asked for, delete the existing
/// object if this cluster owns it (someone else's object of that name stays).
/// A kind the API server does not serve (Gateway API CRDs not installed) reads
/// as absent; asking for it then fails the apply with the API server's answer.
async fn apply_or_remove<K>(
    client: &Client,
    wsc: &WebSocketCluster,
    ns: &str,
    name: &str,
    desired: Option<K>,
) -> Result<(), Error>
where
    K: Child,
{
    if let Some(desired) = desired {
        apply(client, ns, &desired).await?;
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let Some(existing) = api.get_opt(name).await? else {
        return Ok(());
    };
    let ours = existing
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == wsc.uid().as_ref());
    if ours {
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: existing.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        api.delete(&existing.name_any(), &dp).await?;
    }
    Ok(())
}

/// Server-side apply of one namespaced child; returns the object as stored.
async fn apply<K>(client: &Client, ns: &str, obj: &K) -> Result<K, Error>
where
    K: Child,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingObjectKey("metadata.name"))?;
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

async fn list_slices(
    client: &Client,
    ns: &str,
    service: &str,
) -> Result<Vec<EndpointSlice>, Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={service}"));
    Ok(api.list(&lp).await?.items)
}

/// Apply the status if it differs from the stored one. Returns true when the
/// cluster is settled (Ready and not Progressing).
async fn write_status(
    ctx: &Context,
    wsc: &WebSocketCluster,
    observed: &Observed,
) -> Result<bool, Error> {
    let now = Time(Timestamp::now());
    let status = status::desired_status(wsc, observed, &now);
    let settled = status.conditions.iter().all(|c| match c.type_.as_str() {
        "Ready" => c.status == "True",
        _ => c.status == "False",
    });
    if wsc.status.as_ref() == Some(&status) {
        return Ok(settled);
    }
    let api: Api<WebSocketCluster> =
        Api::namespaced(ctx.client.clone(), &wsc.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": WebSocketCluster::api_version(&()),
        "kind": WebSocketCluster::kind(&()),
        "status": status,
    });
    api.patch_status(
        &wsc.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(settled)
}

async fn publish(ctx: &Context, wsc: &WebSocketCluster, events: Vec<Event>) {
    let reference = wsc.object_ref(&());
    for event in events {
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(cluster = %wsc.name_any(), reason = %event.reason, error = %e, "could not publish event");
        }
    }
}

fn ring_note(next: &ring_configmap::NextRing) -> String {
    let mut note = format!(
        "ring version {}: {} members",
        next.ring.version,
        next.ring.members.len()
    );
    if !next.added.is_empty() {
        note.push_str(&format!(", added {}", next.added.join(",")));
    }
    if !next.removed.is_empty() {
        note.push_str(&format!(", removed {}", next.removed.join(",")));
    }
    note
}

fn normal(reason: &str, action: &str, note: String) -> Event {
    Event {
        type_: EventType::Normal,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    }
}

fn warning(reason: &str, action: &str, note: String) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Run the controller until `shutdown` resolves (in-flight reconciles finish first).
pub async fn run(
    client: Client,
    namespace: Option<String>,
    metrics: Arc<Metrics>,
    (policy, admin_access): (Policy, Option<AdminAccess>),
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ns = namespace.as_deref();
    let ctx = Arc::new(Context::new(client.clone(), metrics, policy, admin_access));
    let (reader, writer) = reflector::store();
    let clusters = watcher(
        scoped::<WebSocketCluster>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(writer)
    .applied_objects()
    .predicate_filter(predicates::generation, Default::default());
    let ours =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"));

    Controller::for_stream(clusters, reader)
        .owns(scoped::<StatefulSet>(&client, ns), ours.clone())
        .owns(scoped::<Deployment>(&client, ns), ours.clone())
        .owns(scoped::<Service>(&client, ns), ours.clone())
        .owns(scoped::<ConfigMap>(&client, ns), ours.clone())
        .watches(scoped::<EndpointSlice>(&client, ns), ours, |slice| {
            membership::cluster_for_slice(&slice)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(cluster = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile did not complete"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    //! `ApiServerVerifier` scenarios: every API call of one reconcile, in order,
    //! with method, path and body asserted (see `fixtures`).

    use super::*;
    use crate::crd::KeySource;
    use crate::fixtures::{
        members, pod_slice, run_scenario, sts_status, time, ApiServerVerifier, Applied,
        EndpointFixture, Existing, FakeRouter, Received,
    };
    use crate::resources::httproute::HTTPRoute;
    use futures::FutureExt;
    use k8s_openapi::api::networking::v1::Ingress;
    use wsring_core::RingSpec;

    fn ring(version: u64, n: usize) -> RingSpec {
        RingSpec::new(version, 1024, None, members(n)).unwrap()
    }

    /// A cluster whose last reconcile published `ring` with everything ready.
    fn settled(replicas: i32, published: &RingSpec) -> WebSocketCluster {
        let wsc = WebSocketCluster::test().with_replicas(replicas);
        let observed = Observed {
            pods: replicas,
            members: published
                .member_names()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ring_version: published.version,
            routers_ready: 2,
            ..Observed::default()
        };
        let status = status::desired_status(&wsc, &observed, &time(0));
        wsc.with_status(status)
    }

    fn cond<'a>(s: &'a crate::crd::WebSocketClusterStatus, t: &str) -> (&'a str, &'a str) {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[tokio::test]
    async fn create_makes_token_ring_children_and_status() {
        let wsc = WebSocketCluster::test().with_replicas(3);
        let w = wsc.clone();
        let (action, (token, ring, applied, status)) = run_scenario(wsc, move |mut api| {
            async move {
                let token = api.token_created().await;
                api.pod_slices(&[]).await;
                api.ring_configmap(None).await;
                let ring = api.ring_applied().await;
                api.router_slices(&[]).await;
                let applied = api.children_applied(&w, sts_status(0, 0), 0).await;
                api.no_ingress_or_route().await;
                api.events(&["TokenCreated", "RingUpdated"]).await;
                let status = api.status_applied(&w).await;
                (api, (token, ring, applied, status))
            }
            .boxed()
        })
        .await;
        assert_eq!(action.unwrap(), Action::requeue(RETRY));
        assert_eq!(token.len(), 64);
        assert_eq!(
            (ring.version, ring.vnodes, ring.members.len()),
            (1, 1024, 0)
        );
        assert_eq!(applied.statefulset.spec.replicas, Some(3));
        assert_eq!(applied.deployment.spec.replicas, Some(2));
        assert_eq!(status.ring_version, 1);
        assert_eq!(status.ready_replicas, 0);
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(cond(&status, "Ready"), ("False", "MembersNotReady"));
        assert_eq!(cond(&status, "Progressing"), ("True", "ScalingUp"));
        assert_eq!(cond(&status, "Degraded"), ("False", "AsExpected"));
    }

    /// What one ring-changing reconcile produced.
    struct RingChange {
        action: Result<Action, Error>,
        ring: RingSpec,
        applied: Applied,
        events: Vec<serde_json::Value>,
        status: crate::crd::WebSocketClusterStatus,
        /// What a real HTTP router received.
        router_got: Received,
    }

    /// A reconcile of `wsc` over `existing` (plus one real HTTP router) that
    /// publishes a new ring: the API calls every ring change makes, in order
    /// (token, pod slices, ring ConfigMap, router slices, children, ingress,
    /// one RingUpdated event, status), and what the router received.
    async fn ring_change(wsc: WebSocketCluster, existing: Existing) -> RingChange {
        let router = FakeRouter::start().await;
        let existing = existing.with_router(router.port());
        let w = wsc.clone();
        let (action, (ring, applied, events, status)) = run_scenario(wsc, move |mut api| {
            async move {
                let (ring, applied) = api.ring_replaced(&w, &existing).await;
                api.no_ingress_or_route().await;
                let events = api.events(&["RingUpdated"]).await;
                let status = api.status_applied(&w).await;
                (api, (ring, applied, events, status))
            }
            .boxed()
        })
        .await;
        RingChange {
            action,
            ring,
            applied,
            events,
            status,
            router_got: router.received().await,
        }
    }

    /// A settled cluster with `published` (on 3 pods) scaled to `replicas`,
    /// all ready.
    async fn scale_to(replicas: i32, published: RingSpec) -> RingChange {
        let wsc = settled(3, &published)
            .with_replicas(replicas)
            .with_generation(2);
        ring_change(wsc, Existing::ready(replicas as usize, &published)).await
    }

    #[tokio::test]
    async fn scale_up_publishes_a_new_ring_and_notifies_the_router() {
        let s = scale_to(4, ring(3, 3)).await;
        assert_eq!(s.action.unwrap(), Action::requeue(RESYNC));
        assert_eq!(s.ring.version, 4);
        assert_eq!(
            s.ring.member_names(),
            ["chat-0", "chat-1", "chat-2", "chat-3"]
        );
        assert_eq!(s.ring.members[3].addr, "10.244.0.13:8081");
        assert_eq!(s.ring.members[3].admin, "10.244.0.13:9091");
        assert_eq!(
            s.events[0]["note"],
            "ring version 4: 4 members, added chat-3"
        );
        assert_eq!(s.router_got.ring, s.ring);
        assert_eq!(s.router_got.authorization, "Bearer s3cret");
        assert_eq!(s.status.ring_version, 4);
        assert_eq!(s.status.ready_replicas, 4);
        assert_eq!(s.status.observed_generation, Some(2));
        assert_eq!(cond(&s.status, "Ready"), ("True", "AllMembersReady"));
    }

    #[tokio::test]
    async fn scale_down_removes_the_member_and_bumps_once() {
        let s = scale_to(2, ring(4, 3)).await;
        assert_eq!(s.action.unwrap(), Action::requeue(RESYNC));
        assert_eq!(s.ring.version, 5);
        assert_eq!(s.ring.member_names(), ["chat-0", "chat-1"]);
        assert_eq!(
            s.events[0]["note"],
            "ring version 5: 2 members, removed chat-2"
        );
        assert_eq!(s.router_got.ring.version, 5);
        assert_eq!(s.status.members, ["chat-0", "chat-1"]);
        assert_eq!(cond(&s.status, "Ready"), ("True", "AllMembersReady"));
    }

    #[tokio::test]
    async fn pod_not_ready_leaves_the_ring() {
        let published = ring(2, 3);
        let slice = pod_slice(
            "chat",
            &[
                EndpointFixture::ready(0),
                EndpointFixture::not_ready(1),
                EndpointFixture::ready(2),
            ],
        );
        let existing = Existing {
            pods: slice,
            statefulset: sts_status(3, 2),
            ..Existing::ready(3, &published)
        };
        let c = ring_change(settled(3, &published), existing).await;
        assert_eq!(c.action.unwrap(), Action::requeue(RETRY));
        assert_eq!(c.ring.version, 3);
        assert_eq!(c.ring.member_names(), ["chat-0", "chat-2"]);
        assert_eq!(c.router_got.ring, c.ring);
        assert_eq!(c.status.ready_replicas, 2);
        assert_eq!(c.status.replicas, 3);
        assert_eq!(cond(&c.status, "Ready"), ("False", "MembersNotReady"));
        assert_eq!(cond(&c.status, "Progressing"), ("True", "PodsNotReady"));
    }

    #[tokio::test]
    async fn spec_change_reapplies_children_and_bumps_only_for_ring_shape() {
        let published = ring(6, 3);
        let mut wsc = settled(3, &published).with_generation(3);
        wsc.spec.routing.virtual_nodes = 2048;
        wsc.spec.routing.key.from = KeySource::Header;
        wsc.spec.routing.key.name = "x-user".into();
        let c = ring_change(wsc, Existing::ready(3, &published)).await;
        assert_eq!(c.action.unwrap(), Action::requeue(RESYNC));
        assert_eq!((c.ring.version, c.ring.vnodes), (7, 2048));
        assert_eq!(c.router_got.ring.vnodes, 2048);
        let env = c.applied.deployment.spec.template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let source = env.iter().find(|e| e.name == "WSRING_KEY_SOURCE").unwrap();
        assert_eq!(source.value.as_deref(), Some("header"));
        assert_eq!(c.status.observed_generation, Some(3));
    }

    #[tokio::test]
    async fn operator_restart_bumps_nothing_and_writes_nothing() {
        // A fresh Context is a restarted operator: it reads the published ring back.
        let router = FakeRouter::start().await;
        let published = ring(7, 3);
        let wsc = settled(3, &published);
        let w = wsc.clone();
        let existing = Existing::ready(3, &published).with_router(router.port());
        let (action, ()) = run_scenario(wsc, move |mut api| {
            async move {
                api.ring_kept(&w, &existing).await;
                api.no_ingress_or_route().await;
                // No ConfigMap apply, no event, no status write.
                (api, ())
            }
            .boxed()
        })
        .await;
        assert_eq!(action.unwrap(), Action::requeue(RESYNC));
        // The router is told once (this process never saw it acknowledge v7).
        assert_eq!(router.received().await.ring.version, 7);
    }

    #[tokio::test]
    async fn deleted_cluster_is_left_to_the_garbage_collector() {
        let wsc = settled(3, &ring(2, 3)).deleting();
        let (action, ()) = run_scenario(wsc, |api| async move { (api, ()) }.boxed()).await;
        assert_eq!(action.unwrap(), Action::await_change());
    }

    #[tokio::test]
    async fn invalid_spec_is_reported_not_applied() {
        let mut wsc = settled(3, &ring(2, 3)).with_generation(2);
        wsc.spec.routing.virtual_nodes = 5000; // past the schema (e.g. CRD without validation)
        let w = wsc.clone();
        let (action, (events, status)) = run_scenario(wsc, move |mut api| {
            async move {
                let events = api.events(&["InvalidSpec"]).await;
                let status = api.status_applied(&w).await;
                (api, (events, status))
            }
            .boxed()
        })
        .await;
        assert_eq!(action.unwrap(), Action::await_change());
        assert_eq!(events[0]["type"], "Warning");
        assert_eq!(cond(&status, "Degraded"), ("True", "InvalidSpec"));
        assert_eq!(status.ring_version, 2, "the published ring stays");

        // Reconciled again (a child changed): already reported, nothing to say or write.
        let mut again = settled(3, &ring(2, 3))
            .with_generation(2)
            .with_status(status);
        again.spec.routing.virtual_nodes = 5000;
        let (action, ()) = run_scenario(again, |api| async move { (api, ()) }.boxed()).await;
        assert_eq!(action.unwrap(), Action::await_change());
    }

    #[tokio::test]
    async fn unreachable_router_is_degraded_and_retried_soon() {
        let closed_port = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port() as i32
        };
        let published = ring(2, 3);
        let wsc = settled(3, &published);
        let w = wsc.clone();
        let existing = Existing::ready(3, &published).with_router(closed_port);
        let (action, (events, status)) = run_scenario(wsc, move |mut api| {
            async move {
                api.ring_kept(&w, &existing).await;
                api.no_ingress_or_route().await;
                let events = api.events(&["RouterNotifyFailed"]).await;
                let status = api.status_applied(&w).await;
                (api, (events, status))
            }
            .boxed()
        })
        .await;
        assert_eq!(action.unwrap(), Action::requeue(RETRY));
        assert_eq!(events[0]["type"], "Warning");
        assert_eq!(cond(&status, "Degraded"), ("True", "RouterNotifyFailed"));
        assert_eq!(cond(&status, "Ready"), ("True", "AllMembersReady"));
    }

    /// What a reconcile does with the optional edge children, Ingress first.
    #[derive(Clone, Copy, Debug)]
    enum EdgeCalls {
        /// The Ingress applied, no HTTPRoute.
        IngressApplied,
        /// Our Ingress deleted, no HTTPRoute.
        IngressDeleted,
        /// No Ingress, the HTTPRoute applied.
        RouteApplied,
        /// No Ingress, our HTTPRoute deleted.
        RouteDeleted,
        /// No Ingress, the HTTPRoute apply answered 404 for the whole kind.
        RouteKindNotServed,
    }

    /// What the edge calls returned: the applied Ingress or HTTPRoute.
    #[derive(Default)]
    struct EdgeSeen {
        ingress: Option<Ingress>,
        route: Option<HTTPRoute>,
    }

    /// A reconcile of a settled one-pod cluster, its spec changed by `spec`,
    /// that keeps its ring, with the `edge` calls after the children.
    async fn edge_reconcile(
        spec: impl FnOnce(WebSocketCluster) -> WebSocketCluster,
        edge: EdgeCalls,
    ) -> (Result<Action, Error>, EdgeSeen) {
        let published = ring(2, 1);
        let existing = Existing::ready(1, &published);
        let wsc = spec(settled(1, &published));
        let w = wsc.clone();
        run_scenario(wsc, move |mut api| {
            async move {
                api.ring_kept(&w, &existing).await;
                let seen = play_edge(&mut api, &w, edge).await;
                (api, seen)
            }
            .boxed()
        })
        .await
    }

    /// The API server's side of `edge`.
    async fn play_edge(
        api: &mut ApiServerVerifier,
        wsc: &WebSocketCluster,
        edge: EdgeCalls,
    ) -> EdgeSeen {
        let mut seen = EdgeSeen::default();
        match edge {
            EdgeCalls::IngressApplied => seen.ingress = Some(api.ingress_applied(wsc).await),
            EdgeCalls::IngressDeleted => api.ingress_deleted(wsc).await,
            _ => api.ingress_absent().await,
        }
        match edge {
            EdgeCalls::RouteApplied => seen.route = Some(api.route_applied(wsc).await),
            EdgeCalls::RouteDeleted => api.route_deleted(wsc).await,
            EdgeCalls::RouteKindNotServed => api.route_kind_not_served(wsc).await,
            _ => api.route_absent().await,
        }
        seen
    }

    #[tokio::test]
    async fn ingress_is_applied_when_enabled_and_deleted_when_disabled() {
        let enabled =
            |wsc: WebSocketCluster| wsc.with_ingress("chat.example.com", Some("chat-tls"));
        let (_, seen) = edge_reconcile(enabled, EdgeCalls::IngressApplied).await;
        let tls = seen.ingress.unwrap().spec.unwrap().tls.unwrap();
        assert_eq!(tls[0].secret_name.as_deref(), Some("chat-tls"));

        let (action, _) = edge_reconcile(|wsc| wsc, EdgeCalls::IngressDeleted).await;
        assert_eq!(action.unwrap(), Action::requeue(RESYNC));
    }

    #[tokio::test]
    async fn route_is_applied_with_a_gateway_and_deleted_without() {
        let gateway = |wsc: WebSocketCluster| wsc.with_gateway("public", Some("infra"));
        let (_, seen) = edge_reconcile(gateway, EdgeCalls::RouteApplied).await;
        let route = seen.route.unwrap();
        assert_eq!(route.spec.parent_refs[0].name, "public");
        assert_eq!(route.spec.rules[0].backend_refs[0].name, "chat");

        let (action, _) = edge_reconcile(|wsc| wsc, EdgeCalls::RouteDeleted).await;
        assert_eq!(action.unwrap(), Action::requeue(RESYNC));
    }

    /// Without the Gateway API CRDs the apply of an HTTPRoute is a 404 for the
    /// whole kind: the reconcile fails with the API server's answer (and is
    /// retried), it does not pretend the route exists.
    #[tokio::test]
    async fn route_without_gateway_api_installed_fails_the_reconcile() {
        let gateway = |wsc: WebSocketCluster| wsc.with_gateway("public", None);
        let (action, _) = edge_reconcile(gateway, EdgeCalls::RouteKindNotServed).await;
        let err = action.unwrap_err();
        assert!(
            err.to_string()
                .contains("could not find the requested resource"),
            "{err}"
        );
    }
}
