//! The admin listener's live view: `GET /` (a static page) and
//! `GET /dashboard/state` (what it polls once a second).
//!
//! Read-only and token-free like the other admin reads; in local mode the page
//! also drives the launcher's control API, whose URL the launcher passes with
//! `--dashboard-control-url` (the token never reaches the router: the page
//! keeps it in the URL fragment).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use wsring_core::{Ring, RingSpec};

use crate::resets::ResetEvent;
use crate::state::Shared;

/// The page (no build step, no external assets).
pub const PAGE: &str = include_str!("../assets/dashboard.html");

/// An arc of the ring as fractions of the circle, clockwise from the top: `[start, end)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Arc01 {
    /// Start, in `0.0..1.0`.
    pub start: f64,
    /// End, in `start..=1.0`.
    pub end: f64,
    /// Owner.
    pub member: String,
}

/// Body of `GET /dashboard/state`.
#[derive(Debug, Serialize)]
pub struct DashboardState {
    /// Router id.
    pub router: String,
    /// The ring in use (version 0 and no members before the first one).
    pub ring: RingSpec,
    /// Arcs to draw; wrapping arcs are split at the top.
    pub arcs: Vec<Arc01>,
    /// Share of keys per member.
    pub shares: BTreeMap<String, f64>,
    /// Open tunnels per pod.
    pub connections: BTreeMap<String, usize>,
    /// Recent reset events, oldest first.
    pub resets: Vec<ResetEvent>,
    /// Local-mode control API, if the launcher gave one.
    pub control: Option<String>,
}

/// `GET /`.
pub async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
}

/// `GET /dashboard/state`.
pub async fn state(State(shared): State<Arc<Shared>>) -> Json<DashboardState> {
    let ring = shared.ring.current();
    let mut connections = BTreeMap::new();
    for conn in shared.registry.snapshot() {
        *connections.entry(conn.pod).or_insert(0) += 1;
    }
    Json(DashboardState {
        router: shared.router_id.clone(),
        ring: ring.as_ref().map_or_else(
            || RingSpec {
                version: 0,
                vnodes: wsring_core::ring::DEFAULT_VNODES,
                bounded_load: None,
                members: Vec::new(),
            },
            |r| r.spec().clone(),
        ),
        arcs: ring.as_deref().map(arcs).unwrap_or_default(),
        shares: ring
            .as_ref()
            .map(|r| {
                r.shares()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
            })
            .unwrap_or_default(),
        connections,
        resets: shared.resets.history(),
        control: shared.dashboard_control.clone(),
    })
}

/// The ring's arcs as fractions; an arc crossing the top is split in two,
/// and a lone member's full circle in two halves (SVG cannot draw a closed arc).
pub fn arcs(ring: &Ring) -> Vec<Arc01> {
    const SPACE: f64 = 18_446_744_073_709_551_616.0;
    let mut out = Vec::new();
    let mut push = |start: f64, end: f64, member: &str| {
        if end > start {
            out.push(Arc01 {
                start,
                end,
                member: member.to_string(),
            });
        }
    };
    for (start, end, member) in ring.arcs() {
        let (s, e) = (start as f64 / SPACE, end as f64 / SPACE);
        if start == end {
            push(0.0, 0.5, member);
            push(0.5, 1.0, member);
        } else if start < end {
            push(s, e, member);
        } else {
            push(s, 1.0, member);
            push(0.0, e, member);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(names: &[&str]) -> Ring {
        wsring_core::testkit::ring(1, 16, names)
    }

    #[test]
    fn arcs_cover_the_circle_once() {
        for names in [&["solo"][..], &["a", "b", "c"][..]] {
            let arcs = arcs(&ring(names));
            let total: f64 = arcs.iter().map(|a| a.end - a.start).sum();
            assert!((total - 1.0).abs() < 1e-9, "{names:?}: {total}");
            assert!(arcs
                .iter()
                .all(|a| 0.0 <= a.start && a.end <= 1.0 && a.start < a.end));
        }
    }
}
