//! Consistent-hash ring with virtual nodes over pod names.
//!
//! A [`RingSpec`] is the versioned membership document that travels between
//! processes (ConfigMap, `PUT /ring`). A [`Ring`] is the lookup structure built
//! from it: every member gets `vnodes` points at [`hash::vnode_point`]; a key is
//! owned by the member of the first point at or after [`hash::key_point`]
//! (wrapping around). Adding a member therefore moves only keys *to* it, and
//! removing one moves only *its* keys (property-tested below).
//!
//! Optional bounded load (`boundedLoad: c`): after the points are placed, the
//! most loaded member (by share of the hash space) gives up its largest arc to
//! its clockwise neighbour until no member owns more than `c × 1/N` of the
//! space. It is deterministic (every process computes the same ring) but trades
//! some of the minimal-movement guarantee for the bound.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::{hash, Error};

/// Default virtual nodes per member: the smallest power of two that keeps
/// max/mean load ≤ 1.10 for 10 members (see `cargo bench -p wsring-core`).
pub const DEFAULT_VNODES: u32 = 1024;
/// Upper bound on virtual nodes per member (keeps rebuilds and memory bounded).
pub const MAX_VNODES: u32 = 4096;
/// Longest member name accepted: a DNS label-ish pod name.
pub const MAX_MEMBER_NAME: usize = 253;

/// One ring member: a websocket pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Stable pod name (StatefulSet ordinal names): the only input to hashing.
    pub name: String,
    /// `host:port` of the pod's WebSocket listener, where routers tunnel to.
    pub addr: String,
    /// `host:port` of the pod's admin listener (push API); may be empty if unknown.
    #[serde(default)]
    pub admin: String,
}

/// Versioned ring membership: what the operator publishes and routers apply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RingSpec {
    /// Grows only, and only when membership really changes. Routers ignore older versions.
    pub version: u64,
    /// Virtual nodes per member.
    pub vnodes: u32,
    /// Bounded-load factor `c` (> 1.0): no member above `c × mean`. `None` = plain ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounded_load: Option<f64>,
    /// Ring members, kept sorted by name so equal memberships compare equal.
    pub members: Vec<Member>,
}

impl RingSpec {
    /// A validated spec with members sorted by name.
    pub fn new(
        version: u64,
        vnodes: u32,
        bounded_load: Option<f64>,
        mut members: Vec<Member>,
    ) -> Result<Self, Error> {
        members.sort();
        let spec = RingSpec {
            version,
            vnodes,
            bounded_load,
            members,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Parse and validate a ring document (JSON).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let spec: RingSpec =
            serde_json::from_slice(bytes).map_err(|e| Error::MalformedRing(e.to_string()))?;
        RingSpec::new(spec.version, spec.vnodes, spec.bounded_load, spec.members)
    }

    /// The document as JSON (what goes into the ConfigMap and `PUT /ring`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("ring spec always serializes")
    }

    /// Check the rules every process relies on.
    pub fn validate(&self) -> Result<(), Error> {
        if self.vnodes == 0 || self.vnodes > MAX_VNODES {
            return Err(Error::InvalidRing(format!(
                "vnodes must be in 1..={MAX_VNODES}, got {}",
                self.vnodes
            )));
        }
        if let Some(c) = self.bounded_load {
            if !c.is_finite() || c <= 1.0 {
                return Err(Error::InvalidRing(format!(
                    "boundedLoad must be a finite number > 1.0, got {c}"
                )));
            }
        }
        let mut seen = HashSet::new();
        for m in &self.members {
            if m.name.is_empty() || m.name.len() > MAX_MEMBER_NAME {
                return Err(Error::InvalidRing(format!(
                    "member name must be 1..={MAX_MEMBER_NAME} bytes, got {:?}",
                    m.name
                )));
            }
            if m.name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(Error::InvalidRing(format!(
                    "member name {:?} contains whitespace or control characters",
                    m.name
                )));
            }
            if m.addr.is_empty() {
                return Err(Error::InvalidRing(format!(
                    "member {:?} has an empty addr",
                    m.name
                )));
            }
            if !seen.insert(m.name.as_str()) {
                return Err(Error::InvalidRing(format!(
                    "duplicate member name {:?}",
                    m.name
                )));
            }
        }
        Ok(())
    }

    /// True when both specs would build the same ring (version aside).
    pub fn same_layout(&self, other: &RingSpec) -> bool {
        self.vnodes == other.vnodes
            && self.bounded_load == other.bounded_load
            && self.members == other.members
    }

    /// Member names, sorted.
    pub fn member_names(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.name.as_str()).collect()
    }
}

/// Lookup structure built from a [`RingSpec`]. Immutable: a new membership builds a new ring.
#[derive(Clone, Debug)]
pub struct Ring {
    spec: RingSpec,
    /// Sorted `(point, member index)`; one entry per surviving virtual node.
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// Build the ring: place every virtual node, then apply bounded load if asked.
    pub fn build(spec: RingSpec) -> Result<Self, Error> {
        spec.validate()?;
        let mut points: Vec<(u64, u32)> =
            Vec::with_capacity(spec.members.len() * spec.vnodes as usize);
        for (index, member) in spec.members.iter().enumerate() {
            for v in 0..spec.vnodes {
                points.push((hash::vnode_point(&member.name, v), index as u32));
            }
        }
        // Members are sorted by name, so on a (vanishingly rare) point collision
        // the member with the smaller name keeps the point in every process.
        points.sort_unstable();
        points.dedup_by_key(|p| p.0);
        if let Some(c) = spec.bounded_load {
            points = bound_load(points, spec.members.len(), c);
        }
        Ok(Ring { spec, points })
    }

    /// The membership this ring was built from.
    pub fn spec(&self) -> &RingSpec {
        &self.spec
    }

    /// Version of the membership.
    pub fn version(&self) -> u64 {
        self.spec.version
    }

    /// Members, sorted by name.
    pub fn members(&self) -> &[Member] {
        &self.spec.members
    }

    /// Number of virtual nodes on the ring (after bounded-load trimming).
    pub fn point_count(&self) -> usize {
        self.points.len()
    }

    /// The member owning `key`, or `None` for an empty ring.
    pub fn owner(&self, key: &str) -> Option<&Member> {
        self.owner_of_point(hash::key_point(key))
    }

    /// The member owning hash position `point`.
    pub fn owner_of_point(&self, point: u64) -> Option<&Member> {
        if self.points.is_empty() {
            return None;
        }
        let i = self.points.partition_point(|p| p.0 < point);
        let (_, member) = self.points[if i == self.points.len() { 0 } else { i }];
        Some(&self.spec.members[member as usize])
    }

    /// Member by name.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.spec.members.iter().find(|m| m.name == name)
    }

    /// Share of the hash space owned by each member (sums to 1.0): what the dashboard draws.
    pub fn shares(&self) -> BTreeMap<&str, f64> {
        let mut shares: BTreeMap<&str, f64> = self
            .spec
            .members
            .iter()
            .map(|m| (m.name.as_str(), 0.0))
            .collect();
        for (j, arc) in arcs(&self.points).into_iter().enumerate() {
            let name = self.spec.members[self.points[j].1 as usize].name.as_str();
            *shares.get_mut(name).expect("member exists") += arc as f64 / SPACE;
        }
        shares
    }

    /// Arcs of the ring as `(start, end, member name)`, for drawing: the arc
    /// `(start, end]` belongs to the member. Adjacent arcs of one member are merged.
    pub fn arcs(&self) -> Vec<(u64, u64, &str)> {
        let mut out: Vec<(u64, u64, &str)> = Vec::new();
        let n = self.points.len();
        for j in 0..n {
            let start = self.points[(j + n - 1) % n].0;
            let (end, m) = self.points[j];
            let name = self.spec.members[m as usize].name.as_str();
            match out.last_mut() {
                Some(last) if last.2 == name && j > 0 => last.1 = end,
                _ => out.push((start, end, name)),
            }
        }
        out
    }
}

/// Size of the hash space as a float, for shares.
const SPACE: f64 = 18_446_744_073_709_551_616.0;

/// Length of the arc ending at each point (the keys it owns), in the point order.
/// A single point owns the whole space, reported as `u64::MAX`.
fn arcs(points: &[(u64, u32)]) -> Vec<u64> {
    let n = points.len();
    if n == 1 {
        return vec![u64::MAX];
    }
    (0..n)
        .map(|j| points[j].0.wrapping_sub(points[(j + n - 1) % n].0))
        .collect()
}

/// Trim virtual nodes until no member owns more than `c / members` of the space.
///
/// Works on a doubly linked list over the sorted points; each step removes the
/// largest arc of the currently most loaded member, handing it to the next
/// point clockwise. Stops when the bound holds or the top member has one point left.
fn bound_load(points: Vec<(u64, u32)>, members: usize, c: f64) -> Vec<(u64, u32)> {
    let n = points.len();
    if members < 2 || n < 2 {
        return points;
    }
    let cap = (c / members as f64 * SPACE) as u128;
    let mut prev: Vec<usize> = (0..n).map(|j| (j + n - 1) % n).collect();
    let mut next: Vec<usize> = (0..n).map(|j| (j + 1) % n).collect();
    let mut alive = vec![true; n];
    let mut owned: Vec<Vec<usize>> = vec![Vec::new(); members];
    let mut share = vec![0u128; members];
    let arc_of = |j: usize, prev: &[usize]| points[j].0.wrapping_sub(points[prev[j]].0) as u128;
    for (j, &(_, member)) in points.iter().enumerate() {
        owned[member as usize].push(j);
        share[member as usize] += arc_of(j, &prev);
    }
    loop {
        let (top, top_share) = share
            .iter()
            .enumerate()
            .max_by_key(|(i, s)| (**s, std::cmp::Reverse(*i)))
            .map(|(i, s)| (i, *s))
            .expect("at least two members");
        if top_share <= cap || owned[top].len() <= 1 {
            break;
        }
        // Only an arc whose clockwise neighbour belongs to another member
        // actually lowers the top member's share.
        // Prefer the largest arc the receiver can take without crossing the
        // bound; failing that, the one leaving the receiver least loaded.
        let candidate = |j: usize| {
            let receiver = points[next[j]].1 as usize;
            let after = share[receiver] + arc_of(j, &prev);
            (
                after <= cap,
                if after <= cap {
                    arc_of(j, &prev)
                } else {
                    u128::MAX - after
                },
                std::cmp::Reverse(j),
            )
        };
        let Some((pos, &j)) = owned[top]
            .iter()
            .enumerate()
            .filter(|(_, &j)| points[next[j]].1 as usize != top)
            .max_by_key(|(_, &j)| candidate(j))
        else {
            break;
        };
        let arc = arc_of(j, &prev);
        owned[top].swap_remove(pos);
        alive[j] = false;
        let (p, q) = (prev[j], next[j]);
        next[p] = q;
        prev[q] = p;
        share[top] -= arc;
        share[points[q].1 as usize] += arc;
    }
    points
        .into_iter()
        .zip(alive)
        .filter_map(|(p, keep)| keep.then_some(p))
        .collect()
}

/// Group the connections whose owner changed under `new`, by their *old* owner.
///
/// `connections` yields `(connection id, routing key, current owner name)`.
/// The result maps each old owner to the ids it must reset: one batch per pod.
pub fn moved_connections<'a, I>(connections: I, new: &Ring) -> BTreeMap<String, Vec<String>>
where
    I: IntoIterator<Item = (&'a str, &'a str, &'a str)>,
{
    let mut batches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, key, owner) in connections {
        let new_owner = new.owner(key).map(|m| m.name.as_str());
        if new_owner != Some(owner) {
            batches
                .entry(owner.to_string())
                .or_default()
                .push(id.to_string());
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(name: &str) -> Member {
        Member {
            name: name.to_string(),
            addr: format!("{name}:8081"),
            admin: format!("{name}:9091"),
        }
    }

    fn ring(names: &[String], vnodes: u32) -> Ring {
        let members = names.iter().map(|n| member(n)).collect();
        Ring::build(RingSpec::new(1, vnodes, None, members).unwrap()).unwrap()
    }

    fn pods(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("pod-{i}")).collect()
    }

    #[test]
    fn empty_ring_owns_nothing() {
        assert!(ring(&[], 16).owner("k").is_none());
    }

    #[test]
    fn single_member_owns_everything() {
        let r = ring(&pods(1), 4);
        for k in ["a", "b", "c"] {
            assert_eq!(r.owner(k).unwrap().name, "pod-0");
        }
        assert!((r.shares()["pod-0"] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn member_order_does_not_change_the_ring() {
        let a = ring(&["b".into(), "a".into(), "c".into()], 64);
        let b = ring(&["c".into(), "a".into(), "b".into()], 64);
        for i in 0..1000 {
            let k = format!("key-{i}");
            assert_eq!(a.owner(&k), b.owner(&k));
        }
    }

    #[test]
    fn shares_sum_to_one_and_arcs_cover_the_space() {
        let r = ring(&pods(5), 32);
        let total: f64 = r.shares().values().sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        let arcs = r.arcs();
        let covered: f64 = arcs
            .iter()
            .map(|(s, e, _)| e.wrapping_sub(*s) as f64 / SPACE)
            .sum();
        assert!((covered - 1.0).abs() < 1e-6, "{covered}");
    }

    #[test]
    fn validation_rejects_bad_specs() {
        let dup = RingSpec::new(1, 8, None, vec![member("a"), member("a")]);
        assert!(matches!(dup, Err(Error::InvalidRing(m)) if m.contains("duplicate")));
        assert!(RingSpec::new(1, 0, None, vec![]).is_err());
        assert!(RingSpec::new(1, MAX_VNODES + 1, None, vec![]).is_err());
        assert!(RingSpec::new(1, 8, Some(1.0), vec![]).is_err());
        assert!(RingSpec::new(1, 8, Some(f64::NAN), vec![]).is_err());
        assert!(RingSpec::new(1, 8, None, vec![member("")]).is_err());
        assert!(RingSpec::new(1, 8, None, vec![member("a b")]).is_err());
        let no_addr = Member {
            addr: String::new(),
            ..member("a")
        };
        assert!(RingSpec::new(1, 8, None, vec![no_addr]).is_err());
    }

    #[test]
    fn parse_round_trips_and_reports_malformed_input() {
        let spec = RingSpec::new(3, 16, Some(1.25), vec![member("b"), member("a")]).unwrap();
        let parsed = RingSpec::parse(spec.to_json().as_bytes()).unwrap();
        assert_eq!(parsed, spec);
        assert_eq!(parsed.member_names(), vec!["a", "b"]);
        assert!(matches!(
            RingSpec::parse(b"{not json"),
            Err(Error::MalformedRing(_))
        ));
        assert!(matches!(
            RingSpec::parse(br#"{"version":-1,"vnodes":1,"members":[]}"#),
            Err(Error::MalformedRing(_))
        ));
        assert!(matches!(
            RingSpec::parse(br#"{"version":1,"vnodes":0,"members":[]}"#),
            Err(Error::InvalidRing(_))
        ));
    }

    #[test]
    fn bounded_load_keeps_every_member_under_the_bound() {
        let names = pods(10);
        let members: Vec<Member> = names.iter().map(|n| member(n)).collect();
        let c = 1.25;
        let bounded = Ring::build(RingSpec::new(1, 16, Some(c), members).unwrap()).unwrap();
        let max = bounded.shares().values().cloned().fold(0.0, f64::max);
        assert!(max <= c / 10.0 + 1e-9, "max share {max}");
        let plain_max = ring(&names, 16)
            .shares()
            .values()
            .cloned()
            .fold(0.0, f64::max);
        assert!(plain_max > max, "16 vnodes alone should exceed the bound");
    }

    #[test]
    fn moved_connections_are_batched_by_old_owner() {
        let before = ring(&pods(3), 64);
        let after = ring(&pods(4), 64);
        let keys: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
        let ids: Vec<String> = (0..2000).map(|i| format!("c{i}")).collect();
        let conns: Vec<(&str, &str, &str)> = keys
            .iter()
            .zip(&ids)
            .map(|(k, id)| {
                (
                    id.as_str(),
                    k.as_str(),
                    before.owner(k).unwrap().name.as_str(),
                )
            })
            .collect();
        let batches = moved_connections(conns.iter().copied(), &after);
        let moved: usize = batches.values().map(Vec::len).sum();
        let expected = keys
            .iter()
            .filter(|k| before.owner(k) != after.owner(k))
            .count();
        assert_eq!(moved, expected);
        assert!(moved > 0);
        assert!(!batches.contains_key("pod-3"), "nothing was on the new pod");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn adding_a_member_moves_keys_only_to_it(n in 1usize..12, vnodes in 1u32..96, seed in 0u64..1_000_000) {
            let names: Vec<String> = (0..n).map(|i| format!("m{seed}-{i}")).collect();
            let before = ring(&names, vnodes);
            let mut grown = names.clone();
            grown.push(format!("new-{seed}"));
            let after = ring(&grown, vnodes);
            for i in 0..500 {
                let k = format!("{seed}/{i}");
                let (a, b) = (&before.owner(&k).unwrap().name, &after.owner(&k).unwrap().name);
                prop_assert!(a == b || *b == format!("new-{seed}"), "{k}: {a} -> {b}");
            }
        }

        #[test]
        fn removing_a_member_moves_only_its_keys(n in 2usize..12, vnodes in 1u32..96, seed in 0u64..1_000_000, gone in 0usize..12) {
            let names: Vec<String> = (0..n).map(|i| format!("m{seed}-{i}")).collect();
            let removed = names[gone % n].clone();
            let before = ring(&names, vnodes);
            let shrunk: Vec<String> = names.iter().filter(|m| **m != removed).cloned().collect();
            let after = ring(&shrunk, vnodes);
            for i in 0..500 {
                let k = format!("{seed}/{i}");
                let (a, b) = (&before.owner(&k).unwrap().name, &after.owner(&k).unwrap().name);
                prop_assert!(a == b || *a == removed, "{k}: {a} -> {b}");
            }
        }
    }
}
