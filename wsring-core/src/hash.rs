//! The one hash function of wsring.
//!
//! xxh3-64 with seed 0 over raw bytes. It is fixed by specification (not by a
//! Rust implementation detail like `std`'s randomized `DefaultHasher`), so every
//! process on every architecture computes the same ring. Changing it would move
//! every key: treat it as part of the wire protocol.

use xxhash_rust::xxh3::xxh3_64;

/// Position of a routing key on the ring.
pub fn key_point(key: &str) -> u64 {
    xxh3_64(key.as_bytes())
}

/// Position of virtual node `index` of `member`: the hash of `"{member}#{index}"`.
pub fn vnode_point(member: &str, index: u32) -> u64 {
    let mut label = String::with_capacity(member.len() + 11);
    label.push_str(member);
    label.push('#');
    label.push_str(&index.to_string());
    xxh3_64(label.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned values: if these change, every deployed ring changes. Never update them casually.
    #[test]
    fn hash_values_are_pinned() {
        assert_eq!(key_point(""), 0x2d06800538d394c2);
        assert_eq!(key_point("user-42"), key_point("user-42"));
        assert_eq!(vnode_point("chat-0", 0), xxh3_64(b"chat-0#0"));
        assert_eq!(vnode_point("chat-0", 17), xxh3_64(b"chat-0#17"));
    }
}
