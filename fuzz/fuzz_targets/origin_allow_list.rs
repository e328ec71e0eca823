//! The `Origin` allow-list rules (`wsring_core::origin`) on arbitrary input:
//! the first line is an allow-list entry (what an operator types into
//! `--allowed-origins` or `router.allowedOrigins`), the rest an `Origin`
//! header value (what any browser page can send).
//!
//! Properties: parsing and matching never panic; an entry that parses and
//! has no wildcard is itself an origin that it matches (so a valid exact
//! entry can never lock out the very site it names); a wildcard entry never
//! matches its own apex.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsring_core::origin::{Origin, OriginPattern};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (entry, header) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(pattern) = OriginPattern::parse(entry) else {
        return;
    };
    if let Some(origin) = Origin::parse(header) {
        let _ = pattern.matches(&origin);
    }
    match entry.split_once("://*.") {
        None => {
            let own = Origin::parse(entry).expect("a valid exact entry is an origin");
            assert!(pattern.matches(&own), "{entry:?} does not match itself");
        }
        Some((scheme, apex)) => {
            if let Some(apex) = Origin::parse(&format!("{scheme}://{apex}")) {
                assert!(!pattern.matches(&apex), "{entry:?} matches its apex");
            }
        }
    }
});
