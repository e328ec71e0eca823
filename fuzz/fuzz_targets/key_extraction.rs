//! Router key extraction on arbitrary upgrade requests, for every key source.
//!
//! Input: byte 0 picks the key source, byte 1 the key name, byte 2 the
//! `--max-key-bytes` limit; the rest is an HTTP request head, parsed with
//! httparse as hyper does. Properties: extraction never panics, and every key
//! it accepts passes `wsring_core::key::check_key` (the rule ws-pod applies too)
//! with the same limit.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use libfuzzer_sys::fuzz_target;
use wsring_core::key::check_key;
use wsring_router::key::KeyExtractor;
use wsring_router::KeySource;

const SOURCES: [KeySource; 4] = [
    KeySource::Query,
    KeySource::Header,
    KeySource::Path,
    KeySource::Cookie,
];
const NAMES: [&str; 4] = ["key", "x-key", "rooms", ""];
const LIMITS: [usize; 4] = [1, 4, 16, 256];

fuzz_target!(|data: &[u8]| {
    let [source, name, limit, head @ ..] = data else {
        return;
    };
    let source = SOURCES[usize::from(*source) % SOURCES.len()];
    let name = NAMES[usize::from(*name) % NAMES.len()];
    if name.is_empty() && source != KeySource::Path {
        return; // only `path` accepts an empty name (last segment); clap refuses the rest
    }
    let limit = LIMITS[usize::from(*limit) % LIMITS.len()];

    let mut raw_headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut raw_headers);
    let Ok(httparse::Status::Complete(_)) = request.parse(head) else {
        return;
    };
    // hyper refuses requests whose target is not a valid URI: so does this.
    let Some(Ok(uri)) = request.path.map(Uri::try_from) else {
        return;
    };
    let mut headers = HeaderMap::new();
    for header in request.headers.iter() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) {
            headers.append(name, value);
        }
    }

    let extractor = KeyExtractor::new(source, name, limit);
    if let Ok(key) = extractor.extract(&uri, &headers) {
        if let Err(e) = check_key(&key, limit) {
            panic!("accepted key {key:?} fails check_key({limit}): {e}");
        }
    }
});
