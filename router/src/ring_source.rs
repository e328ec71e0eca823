//! Ring sources besides `PUT /ring`: a mounted file and a watched ConfigMap.
//!
//! The operator notifies routers with `PUT /ring`; these sources make sure a
//! lost notification cannot leave a router on a stale ring. Everything goes
//! through [`Shared::apply_ring`], so duplicates and stale versions from any
//! mix of sources are ignored by the same version rules.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use wsring_core::RingSpec;

use crate::state::Shared;
use crate::Error;

/// How often the ring file is re-read.
pub const FILE_POLL: Duration = Duration::from_secs(1);
/// Key of the ring document in the ConfigMap.
pub const CONFIGMAP_KEY: &str = "ring.json";

/// Offer the ring in `bytes` (from `source`); failures are logged and counted, never fatal.
fn offer(shared: &Shared, bytes: &[u8], source: &'static str) {
    match RingSpec::parse(bytes) {
        Ok(spec) => {
            // Outcome is logged and counted by apply_ring.
            let _ = shared.apply_ring(spec, source);
        }
        Err(error) => {
            shared
                .metrics
                .ring_updates
                .get_or_create(&[("source", source), ("outcome", "invalid")])
                .inc();
            tracing::warn!(source, %error, "ignoring unusable ring document");
        }
    }
}

/// Poll `path` every [`FILE_POLL`] and offer its content whenever it changed.
///
/// Contents are compared, not inodes or mtimes: a Kubernetes ConfigMap volume
/// updates by swapping a symlink, and a rewritten file may keep its mtime.
pub async fn watch_file(shared: Arc<Shared>, path: PathBuf) {
    let mut last: Option<Vec<u8>> = None;
    let mut reported_missing = false;
    let mut tick = tokio::time::interval(FILE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tokio::fs::read(&path).await {
            Ok(bytes) if last.as_deref() != Some(bytes.as_slice()) => {
                reported_missing = false;
                offer(&shared, &bytes, "file");
                last = Some(bytes);
            }
            Ok(_) => {}
            Err(error) if !reported_missing => {
                reported_missing = true;
                tracing::warn!(path = %path.display(), %error, "cannot read the ring file");
            }
            Err(_) => {}
        }
    }
}

/// A Kubernetes client and the namespace to watch (`POD_NAMESPACE`, else the client's default).
pub async fn kube_client() -> Result<(Client, String), Error> {
    let client = Client::try_default().await?;
    let namespace = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string());
    Ok((client, namespace))
}

/// Watch ConfigMap `name` in `namespace` and offer its `ring.json` on every change.
/// Watch errors are retried with the kube runtime's backoff; this never returns.
pub async fn watch_configmap(shared: Arc<Shared>, client: Client, namespace: String, name: String) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    tracing::info!(%namespace, %name, "watching the ring ConfigMap");
    while let Some(event) = events.next().await {
        match event {
            Ok(configmap) => match configmap.data.as_ref().and_then(|d| d.get(CONFIGMAP_KEY)) {
                Some(document) => offer(&shared, document.as_bytes(), "configmap"),
                None => tracing::warn!(%name, "the ring ConfigMap has no {CONFIGMAP_KEY}"),
            },
            Err(error) => tracing::warn!(%name, %error, "ring ConfigMap watch failed; retrying"),
        }
    }
}
