//! State shared by the public listener, the admin API and the ring sources,
//! and the two operations that must be atomic with respect to each other:
//! routing a connection and applying a new ring.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::task::TaskTracker;
use wsring_core::{Member, Ring, RingSpec};

use crate::bus::Publisher;
use crate::config::{Config, Resolved};
use crate::key::KeyExtractor;
use crate::metrics::Metrics;
use crate::origin::OriginPolicy;
use crate::push::PushClient;
use crate::registry::{Registration, Registry};
use crate::resets::Resets;
use crate::ring_state::{decide, Decision, RingState};
use crate::Error;

/// Everything the router's tasks share (behind one `Arc`).
#[derive(Debug)]
pub struct Shared {
    /// Prefix of connection ids, sender of reset messages.
    pub router_id: String,
    /// Bearer token of the admin API's mutating endpoints.
    pub token: String,
    /// Where routing keys come from.
    pub keys: KeyExtractor,
    /// Which browser origins may open connections (`--allowed-origins`).
    pub origins: OriginPolicy,
    /// The ring in use.
    pub ring: RingState,
    /// Serialises ring updates: version check, swap and moved-connection scan.
    apply_lock: Mutex<()>,
    /// Live tunnels.
    pub registry: Arc<Registry>,
    /// Reset publishing and the reset timeout.
    pub resets: Arc<Resets>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// HTTP client for the push API.
    pub push: PushClient,
    /// Every connection and tunnel task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Limit for the whole upgrade handshake (client headers and pod answer).
    pub handshake_timeout: Duration,
    /// Set when shutdown starts: `/readyz` turns 503.
    pub draining: std::sync::atomic::AtomicBool,
    /// Local-mode control API shown by the dashboard.
    pub dashboard_control: Option<String>,
    /// The pods' HTTP/2 connections with `--pod-transport h2`; `None` for HTTP/1.1.
    pub h2_pods: Option<crate::pod_h2::H2Pods>,
}

/// A routed connection: where it goes and its registration.
#[derive(Debug)]
pub struct Route {
    /// Owner pod.
    pub member: Member,
    /// Ring version used for the decision.
    pub ring_version: u64,
    /// The connection's registry entry (deregistered on drop).
    pub registration: Registration,
}

/// Answer of a ring update (`PUT /ring` body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ApplyOutcome {
    /// The ring was replaced.
    Applied {
        /// Always true (wire form `{"applied": true, ...}`).
        applied: bool,
        /// New ring version.
        version: u64,
        /// Connections of this router whose owner changed.
        moved: usize,
        /// Reset messages scheduled (one per old owner).
        #[serde(rename = "resetBatches")]
        reset_batches: usize,
    },
    /// Same version, same content: nothing happened.
    Unchanged {
        /// Always false.
        applied: bool,
    },
}

impl Shared {
    /// Assemble the shared state from the configuration; `publisher` is the
    /// Redis connection, if one is configured.
    pub(crate) fn new(config: &Config, resolved: Resolved, publisher: Option<Publisher>) -> Self {
        let metrics = Arc::new(Metrics::new());
        let registry = Arc::new(Registry::new(
            resolved.router_id.clone(),
            metrics.active_connections.clone(),
        ));
        let resets = Arc::new(Resets::new(
            publisher,
            &config.cluster,
            &resolved.router_id,
            config.reset_timeout(),
            registry.clone(),
            metrics.clone(),
        ));
        let h2_pods = (config.pod_transport == crate::config::PodTransport::H2)
            .then(|| crate::pod_h2::H2Pods::new(metrics.pod_connections.clone()));
        Shared {
            push: PushClient::new(resolved.token.clone(), config.handshake_timeout()),
            router_id: resolved.router_id,
            token: resolved.token,
            keys: KeyExtractor::new(config.key_source, &config.key_name, config.max_key_bytes),
            origins: resolved.origins,
            ring: RingState::default(),
            apply_lock: Mutex::new(()),
            registry,
            resets,
            metrics,
            tasks: TaskTracker::new(),
            handshake_timeout: config.handshake_timeout(),
            draining: Default::default(),
            dashboard_control: config.dashboard_control_url.clone(),
            h2_pods,
        }
    }

    /// Pick the owner of `key` and register the connection, atomically with
    /// respect to ring changes (see [`RingState::with_current`]).
    pub fn route(&self, key: &str) -> Result<Route, Error> {
        self.ring.with_current(|ring| {
            let ring = ring.ok_or(Error::EmptyRing)?;
            let member = ring.owner(key).ok_or(Error::EmptyRing)?.clone();
            let registration = self.registry.register(key, &member.name, ring.version());
            Ok(Route {
                member,
                ring_version: ring.version(),
                registration,
            })
        })
    }

    /// Offer a ring from `source` (`api`, `file`, `configmap`, ...): apply it if
    /// the version rules allow, then reset the connections it moved.
    pub fn apply_ring(&self, spec: RingSpec, source: &'static str) -> Result<ApplyOutcome, Error> {
        let result = self.apply_ring_inner(spec);
        let outcome = match &result {
            Ok(ApplyOutcome::Applied { .. }) => "applied",
            Ok(ApplyOutcome::Unchanged { .. }) => "unchanged",
            Err(Error::RingConflict { .. }) => "conflict",
            Err(_) => "invalid",
        };
        self.metrics
            .ring_updates
            .get_or_create(&[("source", source), ("outcome", outcome)])
            .inc();
        match &result {
            Ok(ApplyOutcome::Applied {
                version,
                moved,
                reset_batches,
                ..
            }) => tracing::info!(source, version, moved, reset_batches, "ring applied"),
            Ok(ApplyOutcome::Unchanged { .. }) => {
                tracing::debug!(source, "ring unchanged")
            }
            Err(error) => tracing::warn!(source, %error, "ring refused"),
        }
        result
    }

    fn apply_ring_inner(&self, spec: RingSpec) -> Result<ApplyOutcome, Error> {
        // Building can take a few milliseconds for big rings: do it before locking.
        let ring = Arc::new(Ring::build(spec)?);
        let _serialised = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.ring.current();
        match decide(current.as_deref().map(Ring::spec), ring.spec())? {
            Decision::Unchanged => return Ok(ApplyOutcome::Unchanged { applied: false }),
            Decision::Apply => {}
        }
        self.ring.replace(ring.clone());
        if let Some(pods) = &self.h2_pods {
            pods.prune(ring.members());
        }
        self.metrics.ring_version.set(ring.version() as i64);
        self.metrics.ring_members.set(ring.members().len() as i64);
        // After the swap every connection routed with an older ring is in the
        // registry (routing holds the ring's read lock while registering).
        let batches = self.registry.mark_moved(&ring);
        let moved = batches.iter().map(|b| b.ids.len()).sum();
        let reset_batches = batches.len();
        self.resets.dispatch(ring.version(), batches);
        Ok(ApplyOutcome::Applied {
            applied: true,
            version: ring.version(),
            moved,
            reset_batches,
        })
    }

    /// True once a ring with at least one member is loaded.
    pub fn ready(&self) -> bool {
        self.ring
            .current()
            .is_some_and(|ring| !ring.members().is_empty())
    }
}
