//! The private key space: records a dialect keeps for itself (KVdb's bucket lookups, policies
//! and data) that no client can address through any API.
//!
//! Every surface refuses keys and namespaces containing control characters, so a key or a
//! namespace that starts with [`MARK`] (U+0001) can only be written by Cairn's own code. The
//! state machine relies on this in two places: a scan whose prefix is not private skips the
//! private keys of its namespace, and a private namespace has no key quota (its records are
//! bounded by the quota of the namespace they belong to; see `api/dialects/kvdb/bucket.rs`).

/// The first character of every private key and private namespace.
pub const MARK: char = '\u{1}';

/// Whether `s` (a key, a scan prefix or a namespace) is in the private space.
pub fn is_private(s: &str) -> bool {
    s.starts_with(MARK)
}

/// `{MARK}{owner}/{rest}`: a private key (or namespace) owned by one dialect.
pub fn key(owner: &str, rest: &str) -> String {
    format!("{MARK}{owner}/{rest}")
}

/// The smallest user key above every private key: a scan that must not see private keys starts
/// here. Keys never start with U+0000 (a control character), so nothing public sorts lower.
pub const FIRST_PUBLIC: &str = "\u{2}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_keys_sort_below_every_public_key() {
        let k = key("kvdb", "bucket/abc");
        assert!(is_private(&k) && !is_private("kvdb/x") && !is_private(""));
        assert!(k.as_str() < FIRST_PUBLIC);
        // The lowest key a client can write is a space (U+0020): control characters are refused.
        assert!(FIRST_PUBLIC < " ");
    }
}
