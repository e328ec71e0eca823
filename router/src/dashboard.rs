//! The admin listener's live view: `GET /` (a static page) and
//! `GET /dashboard/state` (what it polls once a second).
//!
//! Read-only and token-free like the probes, but without the token the state
//! names no address: members' `addr` and `admin` are blank (pod addresses are
//! what `GET /ring` protects), and it never names a routing key. The page
//! sends the token it was opened with (`/#token=…`, kept in the URL fragment,
//! never in a request line); in local mode it also drives the launcher's
//! control API, whose URL the launcher passes with `--dashboard-control-url`.
//!
//! What the page needs is computed here from the ring rather than on the page:
//! each owner's share of the hash space, its number of arcs and connections
//! ([`owners`]), and what each ring change moved ([`changes`]). The arcs
//! themselves (thousands with 1024 virtual nodes per pod) only change with the
//! ring, so the page asks for them (`?arcs=1`, the default) only when the ring
//! version it holds is not the current one and otherwise polls with `?arcs=0`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use wsring_core::{Ring, RingSpec};

use crate::resets::ResetEvent;
use crate::state::Shared;

/// The page (no build step, no external assets).
pub const PAGE: &str = include_str!("../assets/dashboard.html");

/// The reset outcome recorded when the router itself closes connections a
/// reset did not end in time: a second event for connections already counted.
const CLOSED_BY_ROUTER: &str = "closed by router";

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

/// One ring member as the dashboard's legend shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OwnerView {
    /// Member name.
    pub name: String,
    /// Share of the hash space it owns, in `0.0..=1.0` (the owners' shares sum to 1).
    pub share: f64,
    /// Arcs it owns: runs of consecutive ring positions with this owner,
    /// counted around the circle (an arc across the top counts once).
    pub arcs: usize,
    /// Open tunnels to it through this router.
    pub connections: usize,
}

/// What one ring change moved, from the recent reset events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RingChange {
    /// Ring version whose change moved the connections.
    pub ring_version: u64,
    /// First event of the change, milliseconds since the Unix epoch.
    pub at: u64,
    /// Last event of the change, milliseconds since the Unix epoch.
    pub last: u64,
    /// Connections the change moved (each counted once).
    pub moved: usize,
    /// Of those, connections the router closed itself at the reset timeout.
    pub closed_by_router: usize,
    /// Moved connections per old owner.
    pub pods: BTreeMap<String, usize>,
}

/// Body of `GET /dashboard/state`.
#[derive(Debug, Serialize)]
pub struct DashboardState {
    /// Router id.
    pub router: String,
    /// Milliseconds since the Unix epoch when the state was taken (the
    /// page dates reset events by the router's clock, not its own).
    pub now: u64,
    /// The ring in use (version 0 and no members before the first one).
    pub ring: RingSpec,
    /// Virtual nodes on the ring (after bounded-load trimming).
    pub points: usize,
    /// Arcs to draw, adjacent arcs of one owner merged; wrapping arcs are
    /// split at the top. Empty when asked with `?arcs=0`.
    pub arcs: Vec<Arc01>,
    /// Share of keys per member.
    pub shares: BTreeMap<String, f64>,
    /// The legend: one entry per member, sorted by name.
    pub owners: Vec<OwnerView>,
    /// Open tunnels per pod (including old owners whose connections a reset
    /// is still moving).
    pub connections: BTreeMap<String, usize>,
    /// Open tunnels per pod with a reset pending (moved by a ring change, not closed yet).
    pub resetting: BTreeMap<String, usize>,
    /// Recent reset events, oldest first.
    pub resets: Vec<ResetEvent>,
    /// What each ring change in [`DashboardState::resets`] moved, newest first.
    pub changes: Vec<RingChange>,
    /// Local-mode control API, if the launcher gave one.
    pub control: Option<String>,
}

/// Query of `GET /dashboard/state`.
#[derive(Debug, Default, Deserialize)]
pub struct StateQuery {
    /// `0` or `false`: leave [`DashboardState::arcs`] empty (the page already
    /// has them for this ring version).
    pub arcs: Option<String>,
}

/// `GET /`.
pub async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
}

/// `GET /dashboard/state`; member addresses only with the bearer token.
pub async fn state(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<StateQuery>,
    headers: HeaderMap,
) -> Json<DashboardState> {
    let show_addresses = shared.admin_auth.authorizes(&headers);
    let with_arcs = !matches!(query.arcs.as_deref(), Some("0" | "false"));
    let ring = shared.ring.current();
    let mut connections = BTreeMap::new();
    let mut resetting = BTreeMap::new();
    for conn in shared.registry.snapshot() {
        if conn.reset_pending.is_some() {
            *resetting.entry(conn.pod.clone()).or_insert(0) += 1;
        }
        *connections.entry(conn.pod).or_insert(0) += 1;
    }
    let resets = shared.resets.history();
    Json(DashboardState {
        router: shared.router_id.clone(),
        now: std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        ring: ring.as_ref().map_or_else(
            || RingSpec {
                version: 0,
                vnodes: wsring_core::ring::DEFAULT_VNODES,
                bounded_load: None,
                members: Vec::new(),
            },
            |r| {
                let mut spec = r.spec().clone();
                if !show_addresses {
                    for member in &mut spec.members {
                        member.addr.clear();
                        member.admin.clear();
                    }
                }
                spec
            },
        ),
        points: ring.as_ref().map_or(0, |r| r.point_count()),
        arcs: match &ring {
            Some(r) if with_arcs => arcs(r),
            _ => Vec::new(),
        },
        shares: ring
            .as_ref()
            .map(|r| {
                r.shares()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
            })
            .unwrap_or_default(),
        owners: ring
            .as_deref()
            .map(|r| owners(r, &connections))
            .unwrap_or_default(),
        connections,
        resetting,
        changes: changes(&resets),
        resets,
        control: shared.dashboard_control.clone(),
    })
}

/// The legend: each member's share of the hash space, its arcs (runs of
/// consecutive ring positions it owns, around the circle) and its connections
/// (from `connections`, open tunnels per pod), sorted by name.
pub fn owners(ring: &Ring, connections: &BTreeMap<String, usize>) -> Vec<OwnerView> {
    let mut arcs: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, _, member) in runs(ring) {
        *arcs.entry(member).or_insert(0) += 1;
    }
    ring.shares()
        .into_iter()
        .map(|(name, share)| OwnerView {
            name: name.to_string(),
            share,
            arcs: arcs.get(name).copied().unwrap_or(0),
            connections: connections.get(name).copied().unwrap_or(0),
        })
        .collect()
}

/// The ring's arcs `(start, end]` around the circle, one per run of
/// consecutive positions with one owner: [`Ring::arcs`], whose list starts
/// over at the first point, with its last arc and its first merged when they
/// have one owner (one arc across the top). A lone owner's arc has `start == end`.
fn runs(ring: &Ring) -> Vec<(u64, u64, &str)> {
    let mut runs = ring.arcs();
    if runs.len() > 1 && runs[0].2 == runs[runs.len() - 1].2 {
        let last = runs.pop().expect("more than one");
        runs[0].0 = last.0;
    }
    runs
}

/// Group reset events (oldest first) by ring version, newest change first.
///
/// A batch shows up as one event when it was published (or could not be) and,
/// if connections outlived the reset timeout, once more as `closed by router`:
/// those count toward [`RingChange::closed_by_router`], not again toward
/// [`RingChange::moved`]. The exception is a batch whose first event the
/// history no longer holds: then its `closed by router` event is all there is.
pub fn changes(resets: &[ResetEvent]) -> Vec<RingChange> {
    let mut by_version: BTreeMap<u64, RingChange> = BTreeMap::new();
    // Connections announced per (version, old owner) not yet matched by a close.
    let mut announced: BTreeMap<(u64, &str), usize> = BTreeMap::new();
    for event in resets {
        let change = by_version
            .entry(event.ring_version)
            .or_insert_with(|| RingChange {
                ring_version: event.ring_version,
                at: event.at,
                last: event.at,
                ..RingChange::default()
            });
        change.at = change.at.min(event.at);
        change.last = change.last.max(event.at);
        let key = (event.ring_version, event.pod.as_str());
        if event.outcome == CLOSED_BY_ROUTER {
            change.closed_by_router += event.connections;
            // Only what no earlier event of this old owner already counted.
            let uncovered = announced.entry(key).or_insert(0);
            let covered = event.connections.min(*uncovered);
            *uncovered -= covered;
            let extra = event.connections - covered;
            change.moved += extra;
            *change.pods.entry(event.pod.clone()).or_insert(0) += extra;
        } else {
            *announced.entry(key).or_insert(0) += event.connections;
            change.moved += event.connections;
            *change.pods.entry(event.pod.clone()).or_insert(0) += event.connections;
        }
    }
    by_version.into_values().rev().collect()
}

/// The ring's arcs as fractions, one per run of consecutive positions with
/// one owner, sorted by start: the arc across the top is split in two (the
/// first and the last), and a lone member's full circle in two halves (SVG
/// cannot draw a closed arc).
pub fn arcs(ring: &Ring) -> Vec<Arc01> {
    const SPACE: f64 = 18_446_744_073_709_551_616.0;
    let arc = |start: f64, end: f64, member: &str| Arc01 {
        start,
        end,
        member: member.to_string(),
    };
    let mut out = Vec::new();
    let mut across_top = None;
    for (start, end, member) in runs(ring) {
        let (s, e) = (start as f64 / SPACE, end as f64 / SPACE);
        if start == end {
            out.push(arc(0.0, 0.5, member));
            out.push(arc(0.5, 1.0, member));
        } else if start < end {
            out.push(arc(s, e, member));
        } else {
            across_top = Some((s, e, member));
        }
    }
    if let Some((s, e, member)) = across_top {
        if e > 0.0 {
            out.insert(0, arc(0.0, e, member));
        }
        if s < 1.0 {
            out.push(arc(s, 1.0, member));
        }
    }
    // Runs come sorted by start; the one across the top is now split at both ends.
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(names: &[&str]) -> Ring {
        wsring_core::testkit::ring(1, 16, names)
    }

    fn event(
        at: u64,
        ring_version: u64,
        pod: &str,
        connections: usize,
        outcome: &'static str,
    ) -> ResetEvent {
        ResetEvent {
            at,
            ring_version,
            pod: pod.to_string(),
            connections,
            outcome,
        }
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

    #[test]
    fn adjacent_arcs_have_different_owners() {
        let ring = wsring_core::testkit::ring(1, 1024, &["pod-0", "pod-1", "pod-2"]);
        let arcs = arcs(&ring);
        // Merged: far fewer arcs than virtual nodes, and no two neighbours
        // with one owner except where the top splits an arc.
        assert!(arcs.len() < ring.point_count(), "{} arcs", arcs.len());
        assert_eq!(arcs[0].start, 0.0);
        assert_eq!(arcs[arcs.len() - 1].end, 1.0);
        for pair in arcs.windows(2) {
            assert_ne!(pair[0].member, pair[1].member, "merged: {pair:?}");
            assert_eq!(pair[0].end, pair[1].start, "contiguous: {pair:?}");
        }
    }

    #[test]
    fn owners_shares_sum_to_one_and_match_lookups() {
        let names = ["pod-0", "pod-1", "pod-2", "pod-3"];
        let ring = wsring_core::testkit::ring(7, 1024, &names);
        let connections = BTreeMap::from([("pod-1".to_string(), 5), ("gone".to_string(), 2)]);
        let owners = owners(&ring, &connections);
        assert_eq!(
            owners.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            names
        );
        let total: f64 = owners.iter().map(|o| o.share).sum();
        assert!((total - 1.0).abs() < 1e-9, "shares sum to {total}");

        // The share is the fraction of keys the ring sends to the member.
        const SAMPLES: usize = 40_000;
        let mut hits: BTreeMap<String, usize> = BTreeMap::new();
        for i in 0..SAMPLES {
            let owner = ring.owner(&format!("user-{i}")).unwrap();
            *hits.entry(owner.name.clone()).or_insert(0) += 1;
        }
        for owner in &owners {
            let sampled = hits[&owner.name] as f64 / SAMPLES as f64;
            // Binomial standard deviation at p = 0.25 is about 0.0022.
            assert!(
                (sampled - owner.share).abs() < 0.012,
                "{}: share {} but {} of sampled keys",
                owner.name,
                owner.share,
                sampled
            );
        }

        // Arcs counted around the circle: the drawn arcs, less the splits at the top.
        let drawn = arcs(&ring);
        let split_at_top =
            usize::from(drawn.first().map(|a| &a.member) == drawn.last().map(|a| &a.member));
        let counted: usize = owners.iter().map(|o| o.arcs).sum();
        assert_eq!(counted, drawn.len() - split_at_top);
        assert!(owners.iter().all(|o| o.arcs > 0));

        // Connections: only members, zero when none.
        let by_name: BTreeMap<_, _> = owners
            .iter()
            .map(|o| (o.name.as_str(), o.connections))
            .collect();
        assert_eq!(by_name["pod-1"], 5);
        assert_eq!(by_name["pod-0"], 0);
        assert!(!by_name.contains_key("gone"));
    }

    #[test]
    fn a_lone_member_owns_everything_in_one_arc() {
        let ring = ring(&["solo"]);
        let owners = owners(&ring, &BTreeMap::new());
        assert_eq!(owners.len(), 1);
        assert!((owners[0].share - 1.0).abs() < 1e-9);
        assert_eq!(owners[0].arcs, 1);
    }

    #[test]
    fn changes_count_each_moved_connection_once_newest_first() {
        let resets = [
            event(1_000, 4, "pod-0", 3, "published"),
            event(1_010, 4, "pod-1", 2, "published"),
            // The router closes, at the timeout, one connection pod-0 left open.
            event(6_000, 4, "pod-0", 1, CLOSED_BY_ROUTER),
            event(9_000, 5, "pod-2", 4, "no subscriber"),
            event(14_000, 5, "pod-2", 4, CLOSED_BY_ROUTER),
        ];
        let changes = changes(&resets);
        assert_eq!(
            changes,
            vec![
                RingChange {
                    ring_version: 5,
                    at: 9_000,
                    last: 14_000,
                    moved: 4,
                    closed_by_router: 4,
                    pods: BTreeMap::from([("pod-2".to_string(), 4)]),
                },
                RingChange {
                    ring_version: 4,
                    at: 1_000,
                    last: 6_000,
                    moved: 5,
                    closed_by_router: 1,
                    pods: BTreeMap::from([("pod-0".to_string(), 3), ("pod-1".to_string(), 2)]),
                },
            ]
        );
    }

    #[test]
    fn a_close_whose_announcement_was_dropped_still_counts() {
        // The history keeps the newest events only: a change may start with
        // the router's close.
        let resets = [
            event(6_000, 4, "pod-0", 2, CLOSED_BY_ROUTER),
            event(6_001, 4, "pod-0", 1, CLOSED_BY_ROUTER),
            event(7_000, 5, "pod-1", 1, "no redis"),
            event(12_000, 5, "pod-1", 1, CLOSED_BY_ROUTER),
        ];
        let changes = changes(&resets);
        assert_eq!(changes[1].moved, 3);
        assert_eq!(changes[1].closed_by_router, 3);
        assert_eq!(changes[0].moved, 1);
        assert_eq!(changes[0].closed_by_router, 1);
        assert!(super::changes(&[]).is_empty());
    }
}
