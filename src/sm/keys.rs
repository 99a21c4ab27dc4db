//! The state machine's sled layout, the only owner of its keys and values. Everything lives in
//! one sled tree, split by a one-byte prefix, because a sled `Batch` is atomic only within one
//! tree and sled's transactional trees cannot scan (the expiry index must be scanned):
//!
//! | prefix | key                                        | value                      |
//! |--------|--------------------------------------------|----------------------------|
//! | `d`    | namespace ++ 0x00 ++ user key              | bincode [`StoredItem`]     |
//! | `x`    | expires_at (u64 BE) ++ namespace ++ 0x00 ++ user key | empty (expiry index) |
//! | `c`    | namespace                                  | u64 BE: keys stored in it  |
//! | `t`    | token id                                   | bincode [`TokenRecord`]    |
//! | `r`    | retired node id (u64 BE)                   | empty                      |
//! | `m`    | meta name                                  | bincode of the meta value  |
//!
//! Namespaces never contain 0x00 and user keys never contain control characters (both are
//! validated at the edge), so the 0x00 separator is unambiguous and a namespace's keys form
//! one contiguous, byte-ordered range.
//!
//! Meta names: `last_applied` (`Option<LogId>`), `membership` (`StoredMembership`), `clock`
//! (u64 logical ms), `installing` (written by older builds while a snapshot was loaded into the
//! live tree; still honoured on open), `format` (u32), `clean` (empty; written by a clean close,
//! removed on open).
//!
//! The tree holding all this is named `sm` at first. Installing a snapshot loads it into a fresh
//! tree `sm.<n+1>` and then switches over, so the db's default tree records the live tree's name
//! under [`LIVE_TREE`]; any other `sm*` tree found on open is a leftover of an install that did
//! not finish and is dropped.

use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 2;

pub const DATA: u8 = b'd';
pub const EXPIRY: u8 = b'x';
pub const COUNT: u8 = b'c';
pub const TOKEN: u8 = b't';
pub const RETIRED: u8 = b'r';
// b'm' prefixes the meta keys below.
pub const META_LAST_APPLIED: &[u8] = b"mlast_applied";
pub const META_MEMBERSHIP: &[u8] = b"mmembership";
pub const META_CLOCK: &[u8] = b"mclock";
pub const META_INSTALLING: &[u8] = b"minstalling";
pub const META_FORMAT: &[u8] = b"mformat";
/// Present only while the state machine is closed after a clean close; see `sm/mod.rs`.
pub const META_CLEAN: &[u8] = b"mclean";

/// Key in the db's default tree naming the live state tree (absent: [`FIRST_TREE`]).
pub const LIVE_TREE: &[u8] = b"live_tree";
pub const FIRST_TREE: &[u8] = b"sm";

/// Whether `name` is one of the state trees (the live one or an install's leftover).
pub fn is_state_tree(name: &[u8]) -> bool {
    name == FIRST_TREE
        || name.strip_prefix(b"sm.").is_some_and(|n| std::str::from_utf8(n).is_ok_and(|n| n.parse::<u64>().is_ok()))
}

/// The name of the tree the next install loads into: `sm` → `sm.1` → `sm.2` …
pub fn next_state_tree(current: &[u8]) -> Vec<u8> {
    let n = current
        .strip_prefix(b"sm.")
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    format!("sm.{}", n + 1).into_bytes()
}

/// A key's value as stored; namespace and user key are the sled key itself.
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

/// An access token as stored: only a hash of its secret is kept.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenRecord {
    pub namespace: String,
    /// SHA-256 of the secret.
    pub hash: Vec<u8>,
    /// Permission bits, see `crate::model::command::perm`.
    pub perms: u8,
    pub created_ms: u64,
}

fn with_ns(prefix: &[u8], ns: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + ns.len() + 1 + key.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

pub fn data_key(ns: &str, key: &str) -> Vec<u8> {
    with_ns(&[DATA], ns, key)
}

/// Splits a data key into (namespace, user key).
pub fn parse_data_key(k: &[u8]) -> Option<(&str, &str)> {
    split_ns(k.strip_prefix(&[DATA])?)
}

fn split_ns(rest: &[u8]) -> Option<(&str, &str)> {
    let sep = rest.iter().position(|b| *b == 0)?;
    Some((std::str::from_utf8(&rest[..sep]).ok()?, std::str::from_utf8(&rest[sep + 1..]).ok()?))
}

pub fn expiry_key(expires_at: u64, ns: &str, key: &str) -> Vec<u8> {
    let mut p = vec![EXPIRY];
    p.extend_from_slice(&expires_at.to_be_bytes());
    with_ns(&p, ns, key)
}

/// Splits an expiry-index key into (expires_at, namespace, user key).
pub fn parse_expiry_key(k: &[u8]) -> Option<(u64, &str, &str)> {
    if k.len() < 9 || k[0] != EXPIRY {
        return None;
    }
    let at = u64::from_be_bytes(k[1..9].try_into().ok()?);
    let (ns, key) = split_ns(&k[9..])?;
    Some((at, ns, key))
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

pub fn count_key(ns: &str) -> Vec<u8> {
    let mut k = vec![COUNT];
    k.extend_from_slice(ns.as_bytes());
    k
}

pub fn encode_count(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

pub fn decode_count(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

pub fn retired_key(id: u64) -> Vec<u8> {
    let mut k = vec![RETIRED];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub fn token_key(id: &str) -> Vec<u8> {
    let mut k = vec![TOKEN];
    k.extend_from_slice(id.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_keys_sort_by_time_then_key_and_parse_back() {
        let a = expiry_key(5, "ns", "b");
        let b = expiry_key(6, "ns", "a");
        assert!(a < b);
        assert_eq!(parse_expiry_key(&a), Some((5, "ns", "b")));
        assert!(a < expiry_upper_bound(5));
        assert!(b >= expiry_upper_bound(5));
    }

    #[test]
    fn state_trees_are_named_in_sequence() {
        assert_eq!(next_state_tree(FIRST_TREE), b"sm.1");
        assert_eq!(next_state_tree(b"sm.41"), b"sm.42");
        assert!(is_state_tree(b"sm") && is_state_tree(b"sm.7"));
        assert!(!is_state_tree(b"__sled__default") && !is_state_tree(b"sm.x") && !is_state_tree(b"smx"));
    }

    #[test]
    fn namespaces_are_disjoint_contiguous_ranges() {
        // "a" must not see "ab"'s keys even though "a" is a byte prefix of "ab".
        let in_a = data_key("a", "zzz");
        let in_ab = data_key("ab", "");
        let a_prefix = data_key("a", "");
        assert!(in_a.starts_with(&a_prefix));
        assert!(!in_ab.starts_with(&a_prefix));
        assert_eq!(parse_data_key(&data_key("ns", "k/1")), Some(("ns", "k/1")));
    }
}
