//! `RingSpec::parse` on arbitrary bytes (a ConfigMap or `PUT /ring` body).
//!
//! Properties: parsing never panics; a spec that parses builds a `Ring`
//! (validation and building agree), whose lookups have an owner exactly when
//! there are members.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsring_core::{Ring, RingSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = RingSpec::parse(data) else {
        return;
    };
    let has_members = !spec.members.is_empty();
    let ring = match Ring::build(spec) {
        Ok(ring) => ring,
        Err(e) => panic!("a spec that parsed does not build: {e}"),
    };
    for key in ["", "alice", "room/42"] {
        assert_eq!(ring.owner(key).is_some(), has_members, "{key:?}");
    }
});
