//! The ring this router routes with, and the version rules for replacing it.
//!
//! Rings arrive from several sources (`PUT /ring`, the ring file, the ConfigMap
//! watch) in any order and possibly more than once. [`decide`] is the one rule
//! for all of them: a newer version is applied, the same version with the same
//! layout is a no-op, anything else conflicts. Readers take an `Arc<Ring>`
//! snapshot and never block an update for long.

use std::sync::{Arc, RwLock};

use wsring_core::{Ring, RingSpec};

use crate::Error;

/// What to do with an offered ring, given the current one.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Newer (or first): replace the current ring.
    Apply,
    /// Same version, same layout: nothing to do (a repeated notification).
    Unchanged,
}

/// The version rule: newer applies, equal-and-identical is ignored, older or
/// equal-but-different conflicts.
pub fn decide(current: Option<&RingSpec>, offered: &RingSpec) -> Result<Decision, Error> {
    let Some(current) = current else {
        return Ok(Decision::Apply);
    };
    if offered.version > current.version {
        Ok(Decision::Apply)
    } else if offered.version < current.version {
        Err(Error::RingConflict {
            current: current.version,
            offered: offered.version,
            reason: "older version",
        })
    } else if offered.same_layout(current) {
        Ok(Decision::Unchanged)
    } else {
        Err(Error::RingConflict {
            current: current.version,
            offered: offered.version,
            reason: "same version, different content",
        })
    }
}

/// The current ring (none until the first one is applied).
#[derive(Debug, Default)]
pub struct RingState {
    current: RwLock<Option<Arc<Ring>>>,
}

impl RingState {
    /// Snapshot of the current ring, if any.
    pub fn current(&self) -> Option<Arc<Ring>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Run `f` with the current ring while no replacement can happen.
    ///
    /// Routing decides the owner *and* registers the connection inside `f`, so
    /// a concurrent ring change either sees the registered connection or the
    /// connection was routed with the new ring: none slips between the two.
    pub fn with_current<T>(&self, f: impl FnOnce(Option<&Arc<Ring>>) -> T) -> T {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        f(guard.as_ref())
    }

    /// Replace the ring (the caller has applied [`decide`] under its own update lock).
    pub fn replace(&self, ring: Arc<Ring>) -> Option<Arc<Ring>> {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        guard.replace(ring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(version: u64, names: &[&str]) -> RingSpec {
        wsring_core::testkit::ring_spec(version, 16, names)
    }

    #[test]
    fn first_ring_is_always_applied() {
        assert_eq!(decide(None, &spec(0, &[])).unwrap(), Decision::Apply);
        assert_eq!(decide(None, &spec(9, &["a"])).unwrap(), Decision::Apply);
    }

    #[test]
    fn newer_versions_apply_even_with_the_same_layout() {
        let current = spec(3, &["a", "b"]);
        assert_eq!(
            decide(Some(&current), &spec(4, &["a", "b", "c"])).unwrap(),
            Decision::Apply
        );
        assert_eq!(
            decide(Some(&current), &spec(4, &["a", "b"])).unwrap(),
            Decision::Apply
        );
    }

    #[test]
    fn same_version_same_content_is_a_no_op() {
        let current = spec(3, &["a", "b"]);
        assert_eq!(
            decide(Some(&current), &spec(3, &["b", "a"])).unwrap(),
            Decision::Unchanged
        );
    }

    #[test]
    fn older_or_divergent_versions_conflict() {
        let current = spec(3, &["a", "b"]);
        let older = decide(Some(&current), &spec(2, &["a", "b", "c"])).unwrap_err();
        assert!(matches!(
            older,
            Error::RingConflict {
                current: 3,
                offered: 2,
                reason: "older version"
            }
        ));
        let divergent = decide(Some(&current), &spec(3, &["a"])).unwrap_err();
        assert!(matches!(
            divergent,
            Error::RingConflict {
                reason: "same version, different content",
                ..
            }
        ));
        assert_eq!(divergent.status(), http::StatusCode::CONFLICT);
    }

    #[test]
    fn state_replaces_and_snapshots() {
        let state = RingState::default();
        assert!(state.current().is_none());
        let ring = Arc::new(Ring::build(spec(1, &["a"])).unwrap());
        assert!(state.replace(ring).is_none());
        let snapshot = state.current().unwrap();
        let ring2 = Arc::new(Ring::build(spec(2, &["a", "b"])).unwrap());
        assert_eq!(state.replace(ring2).unwrap().version(), 1);
        assert_eq!(snapshot.version(), 1, "old snapshots stay valid");
        assert_eq!(state.with_current(|r| r.unwrap().version()), 2);
    }
}
