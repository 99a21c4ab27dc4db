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
//! | `e`    | token id                                   | bincode u64: the token's expiry |
//! | `y`    | expires_at (u64 BE) ++ token id            | empty (token expiry index) |
//! | `r`    | retired node id (u64 BE)                   | empty                      |
//! | `h`    | log index (u64 BE)                         | a watch history record (`history.rs`) |
//! | `l`    | lease id (u64 BE)                          | bincode [`LeaseRecord`]    |
//! | `w`    | expires_at (u64 BE) ++ lease id (u64 BE)   | empty (lease expiry index) |
//! | `a`    | lease id (u64 BE) ++ the attached record's own key (a `d` key) | empty (a lease's keys) |
//! | `k`    | namespace ++ 0x00 ++ user key              | u64 BE: the lease the key is attached to |
//! | `n`    | namespace                                  | u64 BE: leases held in it  |
//! | `o`    | queue kind ++ namespace ++ 0x00 ++ name ++ 0x00 ++ seq (u64 BE) | bincode [`Waiter`]: a lock's waiter or an election's candidate |
//! | `p`    | namespace ++ 0x00 ++ lock name             | u64 BE: nobody holds the lock before this logical-clock ms (a lock delay) |
//! | `v`    | until (u64 BE) ++ namespace ++ 0x00 ++ lock name | empty (lock delay index, for the ticker and the sweep) |
//! | `m`    | meta name                                  | bincode of the meta value  |
//!
//! Namespaces never contain 0x00 and user keys never contain control characters (both are
//! validated at the edge), so the 0x00 separator is unambiguous and a namespace's keys form
//! one contiguous, byte-ordered range.
//!
//! A token's expiry is kept beside its record (`e`, `y`), not in it: [`TokenRecord`] is bincode,
//! which is positional, so a field added to it would make every record written before tokens
//! could expire undecodable. Only tokens that expire have `e` and `y` entries; the index is to
//! tokens what `x` is to keys (the leader's ticker and the `Expire` sweep read it in order).
//!
//! A key's lease is kept beside it (`k`), not in [`StoredItem`], for the same reason: only keys
//! written with a lease have one. `a` lists a lease's keys in one contiguous range, so revoking
//! or expiring a lease finds them without a scan of the namespace.
//!
//! Meta names: `next_lease` (u64: the id the next lease gets), `lease_term` (u64: the Raft
//! term in which every lease was last renewed for a new leader), `last_applied` (`Option<LogId>`), `membership` (`StoredMembership`), `clock`
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
pub const TOKEN_EXPIRY: u8 = b'e';
pub const TOKEN_EXPIRY_INDEX: u8 = b'y';
pub const RETIRED: u8 = b'r';
/// The watch history: index (u64 BE) → a record of the entry's changes (`history.rs`).
pub const HISTORY: u8 = b'h';
pub const LEASE: u8 = b'l';
pub const LEASE_EXPIRY_INDEX: u8 = b'w';
pub const LEASE_ATTACHED: u8 = b'a';
pub const KEY_LEASE: u8 = b'k';
pub const LEASE_COUNT: u8 = b'n';
pub const QUEUE: u8 = b'o';
pub const LOCK_DELAY: u8 = b'p';
pub const LOCK_DELAY_INDEX: u8 = b'v';
pub const META_NEXT_LEASE: &[u8] = b"mnext_lease";
pub const META_LEASE_TERM: &[u8] = b"mlease_term";
// b'm' prefixes the meta keys below.
pub const META_LAST_APPLIED: &[u8] = b"mlast_applied";
pub const META_MEMBERSHIP: &[u8] = b"mmembership";
pub const META_CLOCK: &[u8] = b"mclock";
pub const META_INSTALLING: &[u8] = b"minstalling";
pub const META_FORMAT: &[u8] = b"mformat";
/// Present only while the state machine is closed after a clean close; see `sm/mod.rs`.
pub const META_CLEAN: &[u8] = b"mclean";
/// The last apply's write set but its new history records, written before its keys
/// (`redo.rs`), so an apply that a crash cut short can be finished on open. Local to this
/// replica: never in a snapshot.
pub const META_REDO: &[u8] = b"mredo";
/// The watch history's floor and size (`history::Meta`). Local to this replica.
pub const META_HISTORY: &[u8] = b"mhistory";

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

/// Whether something expiring at `expires_at` is still there at `clock_ms`: the one rule for
/// keys and tokens alike.
pub fn live_at(expires_at: Option<u64>, clock_ms: u64) -> bool {
    expires_at.is_none_or(|t| t > clock_ms)
}

impl StoredItem {
    /// Expired items are absent to every reader, even before an `Expire` entry deletes them.
    pub fn is_live(&self, clock_ms: u64) -> bool {
        live_at(self.expires_at, clock_ms)
    }
}

/// A lease as stored. Its id is its sled key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeaseRecord {
    pub namespace: String,
    pub ttl_ms: u64,
    /// Absolute expiry in logical-clock milliseconds; every keepalive moves it.
    pub expires_at: u64,
}

impl LeaseRecord {
    pub fn is_live(&self, clock_ms: u64) -> bool {
        live_at(Some(self.expires_at), clock_ms)
    }
}

/// A lock's waiter or an election's candidate, queued under its lock or election in order of
/// arrival; the first one whose lease is live holds it. Its key's `seq` (the log index of the
/// entry that queued it) is the fencing token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Waiter {
    pub lease: u64,
    /// JSON text: an election candidate's value (`null` for a lock's waiter).
    pub value: String,
    /// A lock's delay after this waiter's lease ends while it holds (0: none).
    pub lock_delay_ms: u64,
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
    /// Absolute expiry in logical-clock milliseconds. Not part of the record's bincode (see the
    /// module comment): stored under `e`, and filled in by whoever reads the record.
    #[serde(skip)]
    pub expires_at: Option<u64>,
}

impl TokenRecord {
    /// Expired tokens are absent to every reader, even before an `Expire` entry deletes them,
    /// exactly like keys.
    pub fn is_live(&self, clock_ms: u64) -> bool {
        live_at(self.expires_at, clock_ms)
    }
}

/// Reads token `id` with its expiry through `get`: the live tree for readers, the overlay for
/// apply. Expired tokens are returned too; callers judge [`TokenRecord::is_live`].
pub fn read_token<V, E>(id: &str, get: impl Fn(&[u8]) -> Result<Option<V>, E>) -> Result<Option<TokenRecord>, E>
where
    V: AsRef<[u8]>,
    E: From<crate::codec::CodecError>,
{
    match get(&token_key(id))? {
        Some(raw) => decode_token(id, raw.as_ref(), get).map(Some),
        None => Ok(None),
    }
}

/// Decodes token `id`'s record `raw` (the value under its `t` key) and reads its expiry
/// through `get`.
pub fn decode_token<V, E>(id: &str, raw: &[u8], get: impl Fn(&[u8]) -> Result<Option<V>, E>) -> Result<TokenRecord, E>
where
    V: AsRef<[u8]>,
    E: From<crate::codec::CodecError>,
{
    let mut rec: TokenRecord = crate::codec::decode(raw)?;
    rec.expires_at = read_token_expiry(id, get)?;
    Ok(rec)
}

/// Token `id`'s expiry (its `e` entry) through `get`; `None` for a token that never expires.
pub fn read_token_expiry<V, E>(id: &str, get: impl Fn(&[u8]) -> Result<Option<V>, E>) -> Result<Option<u64>, E>
where
    V: AsRef<[u8]>,
    E: From<crate::codec::CodecError>,
{
    match get(&token_expiry_key(id))? {
        Some(at) => Ok(Some(crate::codec::decode(at.as_ref())?)),
        None => Ok(None),
    }
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
    if k.first() != Some(&EXPIRY) {
        return None;
    }
    let at = index_time(k)?;
    let (ns, key) = split_ns(&k[9..])?;
    Some((at, ns, key))
}

/// Exclusive upper bound of the keys of the time index `prefix` ([`EXPIRY`] or
/// [`TOKEN_EXPIRY_INDEX`]) with `expires_at <= clock`.
pub fn expiry_upper_bound(prefix: u8, clock: u64) -> Vec<u8> {
    match clock.checked_add(1) {
        Some(c) => {
            let mut k = vec![prefix];
            k.extend_from_slice(&c.to_be_bytes());
            k
        }
        None => vec![prefix + 1],
    }
}

/// The expiry time a time-index key (either index) starts with.
pub fn index_time(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.get(1..9)?.try_into().ok()?))
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

fn prefixed(prefix: u8, id: &str) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(id.as_bytes());
    k
}

pub fn token_key(id: &str) -> Vec<u8> {
    prefixed(TOKEN, id)
}

pub fn token_expiry_key(id: &str) -> Vec<u8> {
    prefixed(TOKEN_EXPIRY, id)
}

pub fn token_index_key(expires_at: u64, id: &str) -> Vec<u8> {
    let mut k = vec![TOKEN_EXPIRY_INDEX];
    k.extend_from_slice(&expires_at.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// The token id of a token-expiry-index key.
pub fn parse_token_index_key(k: &[u8]) -> Option<&str> {
    if k.first() != Some(&TOKEN_EXPIRY_INDEX) {
        return None;
    }
    std::str::from_utf8(k.get(9..)?).ok()
}

fn with_id(prefix: u8, id: u64) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub fn lease_key(id: u64) -> Vec<u8> {
    with_id(LEASE, id)
}

/// The lease id of a lease key.
pub fn parse_lease_key(k: &[u8]) -> Option<u64> {
    if k.first() != Some(&LEASE) {
        return None;
    }
    Some(u64::from_be_bytes(k.get(1..9)?.try_into().ok()?))
}

pub fn lease_index_key(expires_at: u64, id: u64) -> Vec<u8> {
    let mut k = with_id(LEASE_EXPIRY_INDEX, expires_at);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The lease id of a lease-expiry-index key.
pub fn parse_lease_index_key(k: &[u8]) -> Option<u64> {
    if k.first() != Some(&LEASE_EXPIRY_INDEX) {
        return None;
    }
    Some(u64::from_be_bytes(k.get(9..17)?.try_into().ok()?))
}

/// The entry listing `target` (another sled key of this tree) among lease `id`'s records.
pub fn attached_key(id: u64, target: &[u8]) -> Vec<u8> {
    let mut k = with_id(LEASE_ATTACHED, id);
    k.extend_from_slice(target);
    k
}

/// The range of lease `id`'s attachment entries.
pub fn attached_range(id: u64) -> (Vec<u8>, Vec<u8>) {
    let hi = id.checked_add(1).map_or_else(|| vec![LEASE_ATTACHED + 1], |next| with_id(LEASE_ATTACHED, next));
    (with_id(LEASE_ATTACHED, id), hi)
}

/// The attached record's key from an attachment entry.
pub fn attached_target(k: &[u8]) -> Option<&[u8]> {
    k.strip_prefix(&[LEASE_ATTACHED])?.get(8..)
}

pub fn key_lease_key(ns: &str, key: &str) -> Vec<u8> {
    with_ns(&[KEY_LEASE], ns, key)
}

pub fn lease_count_key(ns: &str) -> Vec<u8> {
    let mut k = vec![LEASE_COUNT];
    k.extend_from_slice(ns.as_bytes());
    k
}

/// The key prefix of one lock's or election's queue: `kind` tells the two apart.
pub fn queue_prefix(kind: u8, ns: &str, name: &str) -> Vec<u8> {
    let mut k = with_ns(&[QUEUE, kind], ns, name);
    k.push(0);
    k
}

pub fn waiter_key(kind: u8, ns: &str, name: &str, seq: u64) -> Vec<u8> {
    let mut k = queue_prefix(kind, ns, name);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Splits a waiter key into (kind, namespace, name, seq).
pub fn parse_waiter_key(k: &[u8]) -> Option<(u8, &str, &str, u64)> {
    let rest = k.strip_prefix(&[QUEUE])?;
    let (&kind, rest) = rest.split_first()?;
    let (head, seq) = rest.split_at(rest.len().checked_sub(9)?);
    if seq[0] != 0 {
        return None;
    }
    let (ns, name) = split_ns(head)?;
    Some((kind, ns, name, u64::from_be_bytes(seq[1..].try_into().ok()?)))
}

pub fn lock_delay_key(ns: &str, name: &str) -> Vec<u8> {
    with_ns(&[LOCK_DELAY], ns, name)
}

pub fn lock_delay_index_key(until: u64, ns: &str, name: &str) -> Vec<u8> {
    let mut p = vec![LOCK_DELAY_INDEX];
    p.extend_from_slice(&until.to_be_bytes());
    with_ns(&p, ns, name)
}

/// Splits a lock-delay index key into (until, namespace, lock name).
pub fn parse_lock_delay_index_key(k: &[u8]) -> Option<(u64, &str, &str)> {
    if k.first() != Some(&LOCK_DELAY_INDEX) {
        return None;
    }
    let (ns, name) = split_ns(k.get(9..)?)?;
    Some((index_time(k)?, ns, name))
}

/// The range of one queue's waiter keys: its prefix ends in the 0x00 after the name, so the
/// same prefix ending in 0x01 bounds every seq exactly.
pub fn queue_range(kind: u8, ns: &str, name: &str) -> (Vec<u8>, Vec<u8>) {
    let lo = queue_prefix(kind, ns, name);
    let mut hi = lo.clone();
    if let Some(last) = hi.last_mut() {
        *last = 1;
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiter_keys_sort_by_seq_within_their_queue_and_parse_back() {
        let a = waiter_key(b'l', "ns", "job", 9);
        let b = waiter_key(b'l', "ns", "job", 10);
        let other = waiter_key(b'l', "ns", "job2", 1);
        let (p, end) = queue_range(b'l', "ns", "job");
        assert!(a < b && a.starts_with(&p) && b.starts_with(&p) && !other.starts_with(&p));
        assert!(p < a && waiter_key(b'l', "ns", "job", u64::MAX) < end && other > end);
        assert_eq!(parse_waiter_key(&b), Some((b'l', "ns", "job", 10)));
        assert_eq!(parse_waiter_key(&data_key("ns", "job")), None);
    }

    #[test]
    fn expiry_keys_sort_by_time_then_key_and_parse_back() {
        let a = expiry_key(5, "ns", "b");
        let b = expiry_key(6, "ns", "a");
        assert!(a < b);
        assert_eq!(parse_expiry_key(&a), Some((5, "ns", "b")));
        assert!(a < expiry_upper_bound(EXPIRY, 5));
        assert!(b >= expiry_upper_bound(EXPIRY, 5));
        assert_eq!(index_time(&a), Some(5));
    }

    #[test]
    fn token_index_keys_sort_by_time_and_parse_back() {
        let a = token_index_key(5, "ffff");
        let b = token_index_key(6, "0000");
        assert!(a < b && b < expiry_upper_bound(TOKEN_EXPIRY_INDEX, 6));
        assert!(a < expiry_upper_bound(TOKEN_EXPIRY_INDEX, 5) && b >= expiry_upper_bound(TOKEN_EXPIRY_INDEX, 5));
        assert_eq!((index_time(&b), parse_token_index_key(&b)), (Some(6), Some("0000")));
        assert_eq!(parse_token_index_key(&expiry_key(5, "ns", "k")), None);
    }

    /// Token records written before tokens could expire are read unchanged, and records are
    /// still written in that layout: the expiry is not part of it. The bytes are bincode's
    /// standard encoding of (namespace "ns", hash [1, 2, 3], perms 3, created_ms 1000).
    #[test]
    fn token_records_keep_their_layout() {
        let old: &[u8] = &[2, b'n', b's', 3, 1, 2, 3, 3, 251, 0xe8, 0x03];
        let rec: TokenRecord = crate::codec::decode(old).unwrap();
        let want =
            TokenRecord { namespace: "ns".into(), hash: vec![1, 2, 3], perms: 3, created_ms: 1000, expires_at: None };
        assert_eq!(rec, want);
        let expiring = TokenRecord { expires_at: Some(5), ..want };
        assert_eq!(crate::codec::encode(&expiring).unwrap(), old);
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
