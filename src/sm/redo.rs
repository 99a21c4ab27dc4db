//! How an apply run's changes reach sled, and the redo record that lets an open finish a run a
//! crash cut short. This module owns the order of the writes and the record's byte format.
//!
//! A run is written as single-key operations, in this order (`Writes::write_to`):
//! 1. the watch history records the run adds (`h` ++ index, all above the applied index until
//!    step 3 moves it);
//! 2. the redo record (`META_REDO`): every other key of the run with its final value or its
//!    removal;
//! 3. those keys, `META_LAST_APPLIED` among them.
//!
//! sled recovers a prefix of a process's writes after a crash (`sm/mod.rs`, `finish_redo`).
//! A prefix that ends in step 1 leaves records above the applied index, which no reader looks
//! at (`SmReader::history_after` stops at the applied index, snapshots leave records out) and
//! which the re-apply of the same committed entries overwrites with the same bytes. A prefix
//! that ends in step 3 is finished from the record. The history records are left out of the
//! record because they are most of its bytes (each carries the values it describes), and
//! step 1 already has them on disk whenever the record is.
//!
//! Record format: the byte `0xFF`, then per key `[u32 LE length][key]` and either `0` (remove)
//! or `1 [u32 LE length][value]`. Records written before this format are the bincode encoding of
//! the whole map, whose first byte (a varint length) is never `0xFF`; they are still read.
//! Keys and values are copied as they are: bincode's serde mode encodes a `Vec<u8>` one
//! element at a time, which showed in put profiles.

use std::collections::BTreeMap;

use super::history;
use super::keys;
use crate::codec::{self, CodecError};

const RAW: u8 = 0xFF;

/// The tree changes of one apply run.
pub struct Writes {
    /// New history records: step 1.
    records: Vec<(Vec<u8>, Vec<u8>)>,
    /// Everything else: the redo record's content, step 3.
    rest: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Writes {
    /// Splits an apply's overlay into the two parts.
    pub(super) fn new(all: BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> Writes {
        let mut records = Vec::new();
        let mut rest = BTreeMap::new();
        for (k, v) in all {
            match v {
                Some(v) if history::is_history_key(&k) => records.push((k, v)),
                v => {
                    rest.insert(k, v);
                }
            }
        }
        Writes { records, rest }
    }

    /// Every key the run sets or removes.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.records.iter().map(|(k, _)| k.as_slice()).chain(self.rest.keys().map(Vec::as_slice))
    }

    /// The redo record: every key of step 3 with its final value or removal. Rewriting it is
    /// idempotent, which is what lets an open finish a run of which sled kept only a prefix.
    pub fn redo_record(&self) -> Vec<u8> {
        let size: usize = self.rest.iter().map(|(k, v)| 9 + k.len() + v.as_ref().map_or(0, Vec::len)).sum();
        let mut out = Vec::with_capacity(1 + size);
        out.push(RAW);
        for (k, v) in &self.rest {
            put_bytes(&mut out, k);
            match v {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    put_bytes(&mut out, v);
                }
            }
        }
        out
    }

    /// The writes a redo record describes (either format), to finish them.
    pub fn from_redo_record(bytes: &[u8]) -> Result<Writes, CodecError> {
        let rest = match bytes.split_first() {
            Some((&RAW, mut r)) => {
                let mut rest = BTreeMap::new();
                while !r.is_empty() {
                    let k = take_bytes(&mut r)?;
                    let v = match take(&mut r, 1)? {
                        [0] => None,
                        [1] => Some(take_bytes(&mut r)?),
                        _ => return Err(CodecError::new("redo record: bad change tag")),
                    };
                    rest.insert(k, v);
                }
                rest
            }
            _ => codec::decode(bytes)?,
        };
        Ok(Writes { records: Vec::new(), rest })
    }

    /// Writes the run in the order of the module's doc. Deliberately single-key operations and
    /// not a sled `Batch`: every batch makes sled write out its IO buffer twice, through its
    /// thread pool (`pin_log`), which cost a node about 30% of its CPU under load. Readers are
    /// kept from seeing part of a run by the caller's lock, and crashes by the order, not by
    /// sled.
    pub fn write_to(&self, tree: &sled::Tree) -> sled::Result<()> {
        self.write_first(tree, usize::MAX)
    }

    /// Writes the first `n` single-key operations of [`Writes::write_to`]: what a crash after
    /// them leaves (tests), or all of them.
    pub(super) fn write_first(&self, tree: &sled::Tree, n: usize) -> sled::Result<()> {
        // Slices, not owned values: sled copies each value into its own buffer either way.
        let record = self.redo_record();
        let steps = self
            .records
            .iter()
            .map(|(k, v)| (k.as_slice(), Some(v.as_slice())))
            .chain(std::iter::once((keys::META_REDO, Some(record.as_slice()))))
            .chain(self.rest.iter().map(|(k, v)| (k.as_slice(), v.as_deref())));
        for (k, v) in steps.take(n) {
            match v {
                Some(v) => tree.insert(k, v).map(drop)?,
                None => tree.remove(k).map(drop)?,
            }
        }
        Ok(())
    }

    /// Which single-key operation of [`Writes::write_to`] writes the redo record (from 0).
    #[cfg(test)]
    pub(super) fn record_step(&self) -> usize {
        self.records.len()
    }

    /// How many single-key operations [`Writes::write_to`] makes.
    #[cfg(test)]
    pub(super) fn steps(&self) -> usize {
        self.records.len() + 1 + self.rest.len()
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], CodecError> {
    if r.len() < n {
        return Err(CodecError::new("redo record: cut short"));
    }
    let (head, tail) = r.split_at(n);
    *r = tail;
    Ok(head)
}

fn take_bytes(r: &mut &[u8]) -> Result<Vec<u8>, CodecError> {
    let len = u32::from_le_bytes(take(r, 4)?.try_into().expect("4 bytes"));
    Ok(take(r, len as usize)?.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        BTreeMap::from([
            (b"dkey".to_vec(), Some(vec![0u8; 300])),
            (b"gone".to_vec(), None),
            (history::key(7), Some(b"record".to_vec())),
            (history::key(3), None),
            (b"mclock".to_vec(), Some((0..=255u8).collect())),
        ])
    }

    #[test]
    fn the_record_holds_every_change_but_new_history_records() {
        let w = Writes::new(sample());
        let back = Writes::from_redo_record(&w.redo_record()).unwrap();
        let mut want = sample();
        want.remove(&history::key(7));
        assert_eq!(back.rest, want);
        assert!(back.records.is_empty());
        assert_eq!(w.keys().count(), 5);
        assert_eq!(w.steps(), 6);
    }

    #[test]
    fn a_record_in_the_bincode_format_is_still_read() {
        let old = codec::encode(&sample()).unwrap();
        assert_ne!(old[0], RAW);
        assert_eq!(Writes::from_redo_record(&old).unwrap().rest, sample());
    }

    #[test]
    fn a_cut_or_garbled_record_is_an_error() {
        let raw = Writes::new(sample()).redo_record();
        for cut in 2..raw.len() {
            // Every cut inside a change fails; a cut between changes reads fewer changes.
            if let Ok(w) = Writes::from_redo_record(&raw[..cut]) {
                assert!(w.rest.len() < 4, "a cut record read whole at {cut}");
            }
        }
        let mut bad = raw.clone();
        bad[1 + 4 + 4] = 7;
        assert!(Writes::from_redo_record(&bad).is_err());
    }
}
