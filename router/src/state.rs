//! State shared by the public listener, the admin API and the ring sources,
//! and the two operations that must be atomic with respect to each other:
//! routing a connection and applying a new ring.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio_util::task::TaskTracker;
use wsring_core::bearer_guard::BearerGuard;
use wsring_core::shutdown::Shutdown;
use wsring_core::{Member, Ring, RingSpec};

use crate::config::{Config, Settings};
use crate::key::KeyExtractor;
use crate::metrics::Metrics;
use crate::origin::OriginPolicy;
use crate::pod_link::PodLink;
use crate::publisher::Publisher;
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
    /// The bearer check of the admin API's protected endpoints.
    pub admin_auth: BearerGuard,
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
    /// Not ready (`/readyz` turns 503), then draining (the public listener closes).
    pub shutdown: Shutdown,
    /// Local-mode control API shown by the dashboard.
    pub dashboard_control: Option<String>,
    /// How upgrades reach the owner pods (`--pod-transport`).
    pub pod_link: PodLink,
    /// Signs the headers forwarded to pods with the cluster token.
    pub router_auth: wsring_core::router_auth::RouterAuth,
    /// Caps on open client connections.
    pub limits: Arc<wsring_core::conn_limit::ConnectionLimits>,
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
    pub(crate) fn new(config: &Config, settings: Settings, publisher: Option<Publisher>) -> Self {
        let metrics = Arc::new(Metrics::new());
        let registry = Arc::new(Registry::new(
            settings.router_id.clone(),
            metrics.active_connections.clone(),
        ));
        let resets = Arc::new(Resets::new(
            publisher,
            (&config.cluster.namespace, &config.cluster.name),
            &settings.router_id,
            config.reset_timeout(),
            registry.clone(),
            metrics.clone(),
        ));
        let pod_link = PodLink::new(config.pod_transport, metrics.pod_connections.clone());
        Shared {
            push: PushClient::new(settings.token.clone(), config.handshake_timeout()),
            router_auth: wsring_core::router_auth::RouterAuth::new(&settings.token),
            limits: config.connection_limits(),
            router_id: settings.router_id,
            admin_auth: BearerGuard::new(&settings.token, Error::unauthorized_response),
            keys: KeyExtractor::new(config.key_source, &config.key_name, config.max_key_bytes),
            origins: settings.origins,
            ring: RingState::default(),
            apply_lock: Mutex::new(()),
            registry,
            resets,
            metrics,
            tasks: TaskTracker::new(),
            handshake_timeout: config.handshake_timeout(),
            shutdown: Shutdown::new(),
            dashboard_control: config.dashboard_control_url.clone(),
            pod_link,
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
        self.pod_link.prune(ring.members());
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
