//! The change history that watches read (docs/api.md, "Watch"): one record per applied entry
//! that changed a client key, under `h` ++ index (u64 BE), with its byte format owned here.
//!
//! Records are written in the apply's own write set, so they land (and survive a crash, through
//! the redo record) exactly with the changes they describe, and a watcher on any node sees the
//! same records under the same ids: they come from apply, never from append. They describe this
//! replica's history, not the replicated state, so a snapshot leaves them out. A node that
//! installs a snapshot has no records below it: the install raises the compacted index to the
//! snapshot's index, and no watch is ever served across that hole.
//!
//! `compacted` is the history's floor: the records of every entry in `(compacted, applied]` are
//! there (an entry without a record changed no client key). Retention moves it up, by entries,
//! bytes or age, a bounded number of records per apply run.

use serde::{Deserialize, Serialize};

use super::keys;
use crate::codec::{self, CodecError};

/// What one change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Set,
    Increment,
    Delete,
    /// Removed by the TTL sweep.
    Expire,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Set => "set",
            Op::Increment => "increment",
            Op::Delete => "delete",
            Op::Expire => "expire",
        }
    }
}

/// One key's change in one entry. `version` is the entry's index (what a read of the key then
/// reports for a set or an increment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub op: Op,
    pub ns: String,
    pub key: String,
    pub version: u64,
    /// JSON text; `None` for deletes and expiries.
    pub value: Option<String>,
    pub expires_at: Option<u64>,
}

/// The stored record of one entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The logical clock when the entry was applied (for retention by age).
    pub at_ms: u64,
    pub changes: Vec<Change>,
}

/// The history's floor and size, under the meta key `history`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub compacted: u64,
    pub bytes: u64,
}

/// How much history a node keeps (`--watch-history-*`, plain data in `config`).
pub use crate::config::WatchRetention as Retention;

/// Whether the oldest record (`index`, `at_ms`, with `meta` before it goes) must go, with
/// `applied` the newest index and `clock` the logical time. A bound of `0` is no bound.
pub fn drops(r: &Retention, index: u64, at_ms: u64, meta: &Meta, applied: u64, clock: u64) -> bool {
    (r.entries > 0 && index + r.entries <= applied)
        || (r.bytes > 0 && meta.bytes > r.bytes)
        || (r.age_ms > 0 && at_ms.saturating_add(r.age_ms) < clock)
}

/// The floor the entry bound alone sets.
pub fn entry_floor(r: &Retention, applied: u64) -> u64 {
    if r.entries == 0 {
        0
    } else {
        applied.saturating_sub(r.entries)
    }
}

/// At most this many records go per apply run, so one run never does unbounded work (a lower
/// limit set at a restart is reached over a few runs).
pub const PRUNE_PER_RUN: usize = 4_096;

pub fn key(index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(keys::HISTORY);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub fn parse_key(k: &[u8]) -> Option<u64> {
    match k {
        [keys::HISTORY, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// The key range of records after `index`.
pub fn range_after(index: u64) -> (Vec<u8>, Vec<u8>) {
    (key(index.saturating_add(1)), vec![keys::HISTORY + 1])
}

pub fn is_history_key(k: &[u8]) -> bool {
    k.first() == Some(&keys::HISTORY)
}

pub fn encode(r: &Record) -> Result<Vec<u8>, CodecError> {
    codec::encode(r)
}

pub fn decode(b: &[u8]) -> Result<Record, CodecError> {
    codec::decode(b)
}

/// A record's `at_ms` alone (its first field), without decoding its changes: retention looks
/// at the oldest record on every apply run.
pub fn at_ms(b: &[u8]) -> Result<u64, CodecError> {
    codec::decode_prefix(b)
}

pub fn encode_meta(m: &Meta) -> Result<Vec<u8>, CodecError> {
    codec::encode(m)
}

pub fn decode_meta(b: &[u8]) -> Result<Meta, CodecError> {
    codec::decode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_records_time_reads_without_its_changes() {
        let change = Change {
            op: Op::Set,
            ns: "n".into(),
            key: "k".into(),
            version: 7,
            value: Some("1".into()),
            expires_at: None,
        };
        let r = Record { at_ms: 1_234_567, changes: vec![change] };
        assert_eq!(at_ms(&encode(&r).unwrap()).unwrap(), 1_234_567);
    }

    #[test]
    fn keys_sort_by_index_and_parse_back() {
        let ks: Vec<_> = [0u64, 1, 255, 256, u64::MAX - 1].iter().map(|&i| key(i)).collect();
        let mut sorted = ks.clone();
        sorted.sort();
        assert_eq!(ks, sorted);
        for (k, i) in ks.iter().zip([0u64, 1, 255, 256, u64::MAX - 1]) {
            assert_eq!(parse_key(k), Some(i));
        }
        let (lo, hi) = range_after(255);
        assert!(lo.as_slice() > key(255).as_slice() && lo == key(256) && hi.as_slice() > key(u64::MAX).as_slice());
        assert_eq!(parse_key(b"d"), None);
    }

    #[test]
    fn retention_drops_by_entries_bytes_and_age() {
        let r = Retention { entries: 10, bytes: 1_000, age_ms: 60_000 };
        let small = Meta { compacted: 0, bytes: 500 };
        assert!(!drops(&r, 91, 100_000, &small, 100, 100_000));
        assert!(drops(&r, 90, 100_000, &small, 100, 100_000), "10 entries kept: 91..=100");
        assert!(drops(&r, 99, 100_000, &Meta { compacted: 0, bytes: 1_001 }, 100, 100_000));
        assert!(drops(&r, 99, 39_999, &small, 100, 100_000));
        assert!(!drops(&r, 99, 40_000, &small, 100, 100_000));
        let none = Retention { entries: 0, bytes: 0, age_ms: 0 };
        assert!(!drops(&none, 1, 0, &Meta { compacted: 0, bytes: u64::MAX }, u64::MAX, u64::MAX));
        assert_eq!(entry_floor(&r, 100), 90);
        assert_eq!(entry_floor(&none, 100), 0);
    }
}
