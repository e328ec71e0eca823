//! `ControlMessage::parse` on arbitrary bytes (what a pod reads from Redis).
//!
//! Properties: parsing never panics, and a parsed message survives the round
//! trip through its wire form unchanged: `parse(to_json(m)) == m`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsring_core::protocol::ControlMessage;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = ControlMessage::parse(data) {
        let json = message.to_json();
        match ControlMessage::parse(json.as_bytes()) {
            Ok(again) => assert_eq!(again, message, "round trip changed {json}"),
            Err(e) => panic!("re-parsing our own {json} failed: {e}"),
        }
    }
});
