//! The ring ConfigMap `NAME-ring` (key `ring.json`, a [`RingSpec`] document) and
//! the rule for its version: it grows only, and only when the layout (members,
//! virtual nodes, bounded load) really changes. The version already published is
//! read back from the ConfigMap, so an operator restart bumps nothing; the status'
//! `ringVersion` is a floor, so a deleted ConfigMap never restarts at 1 (routers
//! would refuse the older version).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use wsring_core::{Member, RingSpec};

use super::{child_meta, Component, Names};
use crate::crd::WebSocketCluster;
use crate::error::Error;

/// Key of the ring document inside the ConfigMap.
pub const RING_KEY: &str = "ring.json";

/// The ring the operator wants to publish, and whether it differs from the published one.
#[derive(Clone, Debug, PartialEq)]
pub struct NextRing {
    /// The document to publish (version already decided).
    pub ring: RingSpec,
    /// True when the layout changed, i.e. the version was bumped.
    pub changed: bool,
    /// Members added and removed compared with the published ring (names).
    pub added: Vec<String>,
    /// See `added`.
    pub removed: Vec<String>,
}

/// Decide the next ring from the published one (`existing`), the version floor
/// (status `ringVersion`) and the desired layout.
pub fn next_ring(
    existing: Option<&RingSpec>,
    floor: u64,
    wsc: &WebSocketCluster,
    members: Vec<Member>,
) -> Result<NextRing, Error> {
    let desired = RingSpec::new(
        0,
        wsc.spec.routing.virtual_nodes,
        wsc.spec.routing.bounded_load,
        members,
    )
    .map_err(|e| Error::InvalidSpec(e.to_string()))?;
    let (added, removed) = diff(existing, &desired);
    match existing {
        Some(old) if old.same_layout(&desired) && old.version >= floor => Ok(NextRing {
            ring: RingSpec {
                version: old.version,
                ..desired
            },
            changed: false,
            added,
            removed,
        }),
        _ => {
            let base = existing.map_or(0, |r| r.version).max(floor);
            Ok(NextRing {
                ring: RingSpec {
                    version: base + 1,
                    ..desired
                },
                changed: true,
                added,
                removed,
            })
        }
    }
}

fn diff(existing: Option<&RingSpec>, desired: &RingSpec) -> (Vec<String>, Vec<String>) {
    let old: Vec<&str> = existing.map(|r| r.member_names()).unwrap_or_default();
    let new = desired.member_names();
    let added = new
        .iter()
        .filter(|n| !old.contains(n))
        .map(|n| n.to_string())
        .collect();
    let removed = old
        .iter()
        .filter(|n| !new.contains(n))
        .map(|n| n.to_string())
        .collect();
    (added, removed)
}

/// The desired ConfigMap holding `ring`.
pub fn configmap(wsc: &WebSocketCluster, ring: &RingSpec) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(
            wsc,
            Names::ring_configmap(&wsc.name_any()),
            Component::Router,
        ),
        data: Some(BTreeMap::from([(RING_KEY.to_string(), ring.to_json())])),
        ..ConfigMap::default()
    }
}

/// The ring published in an existing ConfigMap; `None` if absent or unreadable
/// (then the status' version is the floor of the next one).
pub fn read_ring(cm: &ConfigMap) -> Option<RingSpec> {
    let json = cm.data.as_ref()?.get(RING_KEY)?;
    RingSpec::parse(json.as_bytes()).ok()
}

/// True when the ConfigMap already holds exactly this document.
pub fn holds(cm: Option<&ConfigMap>, ring: &RingSpec) -> bool {
    cm.and_then(|cm| cm.data.as_ref())
        .and_then(|d| d.get(RING_KEY))
        .is_some_and(|json| *json == ring.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::member;

    fn wsc() -> WebSocketCluster {
        WebSocketCluster::test()
    }

    #[test]
    fn first_ring_is_version_one() {
        let next = next_ring(None, 0, &wsc(), vec![member(0)]).unwrap();
        assert_eq!(next.ring.version, 1);
        assert!(next.changed);
        assert_eq!(next.added, ["chat-0"]);
    }

    #[test]
    fn same_layout_keeps_the_version_whatever_the_member_order() {
        let old = RingSpec::new(7, 1024, None, vec![member(0), member(1)]).unwrap();
        let next = next_ring(Some(&old), 7, &wsc(), vec![member(1), member(0)]).unwrap();
        assert_eq!(next.ring, old);
        assert!(!next.changed);
    }

    #[test]
    fn membership_change_bumps_by_one() {
        let old = RingSpec::new(7, 1024, None, vec![member(0), member(1)]).unwrap();
        let next = next_ring(Some(&old), 7, &wsc(), vec![member(0)]).unwrap();
        assert_eq!(next.ring.version, 8);
        assert!(next.changed);
        assert_eq!(next.removed, ["chat-1"]);
    }

    #[test]
    fn address_change_is_a_change() {
        let old = RingSpec::new(3, 1024, None, vec![member(0)]).unwrap();
        let mut moved = member(0);
        moved.addr = "10.244.9.9:8081".into();
        let next = next_ring(Some(&old), 3, &wsc(), vec![moved]).unwrap();
        assert_eq!(next.ring.version, 4);
        assert!(next.added.is_empty() && next.removed.is_empty());
    }

    #[test]
    fn vnodes_or_bounded_load_change_bumps() {
        let old = RingSpec::new(2, 1024, None, vec![member(0)]).unwrap();
        let mut c = wsc();
        c.spec.routing.virtual_nodes = 2048;
        assert_eq!(
            next_ring(Some(&old), 2, &c, vec![member(0)])
                .unwrap()
                .ring
                .version,
            3
        );
        let mut c = wsc();
        c.spec.routing.bounded_load = Some(1.25);
        let next = next_ring(Some(&old), 2, &c, vec![member(0)]).unwrap();
        assert_eq!(next.ring.version, 3);
        assert_eq!(next.ring.bounded_load, Some(1.25));
    }

    #[test]
    fn status_version_is_a_floor_when_the_configmap_was_lost() {
        let next = next_ring(None, 41, &wsc(), vec![member(0)]).unwrap();
        assert_eq!(next.ring.version, 42);
        // An older ConfigMap than the status says was published: move past both.
        let old = RingSpec::new(5, 1024, None, vec![member(0)]).unwrap();
        let next = next_ring(Some(&old), 41, &wsc(), vec![member(0)]).unwrap();
        assert_eq!(next.ring.version, 42);
    }

    #[test]
    fn configmap_round_trips() {
        let ring = RingSpec::new(9, 1024, None, vec![member(0), member(1)]).unwrap();
        let cm = configmap(&wsc(), &ring);
        assert_eq!(cm.metadata.name.as_deref(), Some("chat-ring"));
        assert_eq!(read_ring(&cm), Some(ring.clone()));
        assert!(holds(Some(&cm), &ring));
        assert!(!holds(None, &ring));
    }

    #[test]
    fn unreadable_configmap_reads_as_none() {
        let cm = ConfigMap {
            data: Some(BTreeMap::from([(RING_KEY.to_string(), "{".to_string())])),
            ..ConfigMap::default()
        };
        assert_eq!(read_ring(&cm), None);
    }
}
