//! The state machine's sled layout, the only owner of its keys and values. Everything lives in
//! one sled tree, split by a one-byte prefix, because a sled `Batch` is atomic only within one
//! tree and sled's transactional trees cannot scan (the expiry index must be scanned):
//!
//! | prefix | key                               | value                          |
//! |--------|-----------------------------------|--------------------------------|
//! | `d`    | user key bytes                    | bincode [`StoredItem`]         |
//! | `x`    | expires_at (u64 BE) ++ user key   | empty (the expiry index)       |
//! | `m`    | meta name                         | bincode of the meta value      |
//!
//! Meta names: `last_applied` (`Option<LogId>`), `membership` (`StoredMembership`), `clock`
//! (u64 logical ms), `installing` (present while a snapshot is being loaded), `format` (u32).

use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 1;

pub const DATA: u8 = b'd';
pub const EXPIRY: u8 = b'x';
pub const META: u8 = b'm';

pub const META_LAST_APPLIED: &[u8] = b"mlast_applied";
pub const META_MEMBERSHIP: &[u8] = b"mmembership";
pub const META_CLOCK: &[u8] = b"mclock";
pub const META_INSTALLING: &[u8] = b"minstalling";
pub const META_FORMAT: &[u8] = b"mformat";

/// A key's value as stored; the user key is the sled key itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredItem {
    /// JSON text.
    pub value: String,
    pub version: u64,
    pub expires_at: Option<u64>,
}

impl StoredItem {
    /// Expired items are absent to every reader, even before an `Expire` entry deletes them.
    pub fn is_live(&self, clock_ms: u64) -> bool {
        self.expires_at.is_none_or(|t| t > clock_ms)
    }
}

pub fn data_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(DATA);
    k.extend_from_slice(key.as_bytes());
    k
}

pub fn expiry_key(expires_at: u64, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.push(EXPIRY);
    k.extend_from_slice(&expires_at.to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// Splits an expiry-index key into (expires_at, user key).
pub fn parse_expiry_key(k: &[u8]) -> Option<(u64, &str)> {
    if k.len() < 9 || k[0] != EXPIRY {
        return None;
    }
    let at = u64::from_be_bytes(k[1..9].try_into().ok()?);
    Some((at, std::str::from_utf8(&k[9..]).ok()?))
}

/// Exclusive upper bound of index keys with `expires_at <= clock`.
pub fn expiry_upper_bound(clock: u64) -> Vec<u8> {
    match clock.checked_add(1) {
        Some(c) => {
            let mut k = vec![EXPIRY];
            k.extend_from_slice(&c.to_be_bytes());
            k
        }
        None => vec![EXPIRY + 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keys_sort_by_time_then_key_and_parse_back() {
        let a = expiry_key(5, "b");
        let b = expiry_key(6, "a");
        assert!(a < b);
        assert_eq!(parse_expiry_key(&a), Some((5, "b")));
        assert!(a < expiry_upper_bound(5));
        assert!(b >= expiry_upper_bound(5));
    }
}
