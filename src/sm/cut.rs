//! A consistent cut of the tree for a snapshot build that runs beside applies.
//!
//! sled has no point-in-time view, and a snapshot of 1M keys takes seconds to write; pausing
//! applies for that long stalls every write in the cluster (all nodes snapshot at about the
//! same index). Instead, the build scans the live tree while applies go on, and apply keeps
//! the *pre-image* of every key it is about to change that the scan has not passed yet:
//!
//! - the scan, for each key it reads, takes the recorded pre-image if there is one (the value
//!   at the cut, or absent), else the value it read, which is then the value at the cut;
//! - keys the scan has passed are never recorded again, because their cut value is out;
//! - pre-images left over at the end belong to keys the scan never saw (deleted after the
//!   cut) and are written out then.
//!
//! One mutex orders the two sides: apply records before it writes, and the scan advances its
//! position and consults the record in one step, so whichever comes first, the scan emits
//! the value as of the cut.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use sled::IVec;

#[derive(Default)]
struct State {
    /// The last key the scan has handled; keys at or before it are done.
    position: Option<Vec<u8>>,
    /// First pre-image of each key changed after the cut and ahead of the scan
    /// (`None`: the key did not exist at the cut).
    before: HashMap<Vec<u8>, Option<IVec>>,
}

#[derive(Default)]
pub struct Cut {
    state: Mutex<State>,
    finished: AtomicBool,
}

impl Cut {
    /// Whether apply still has to record pre-images for this cut.
    pub fn is_active(&self) -> bool {
        !self.finished.load(Ordering::Acquire)
    }

    /// Called by apply with the keys of a batch, *before* the batch is written.
    pub fn record<'k>(&self, tree: &sled::Tree, keys: impl Iterator<Item = &'k [u8]>) -> sled::Result<()> {
        let mut st = self.state.lock().expect("cut lock");
        for k in keys {
            if st.position.as_deref().is_some_and(|p| k <= p) || st.before.contains_key(k) {
                continue;
            }
            let pre = tree.get(k)?;
            st.before.insert(k.to_vec(), pre);
        }
        Ok(())
    }

    /// Called by the scan for each key it reads from the live tree, in key order: returns the
    /// value to write for the cut, or `None` if the key did not exist then.
    pub fn resolve(&self, key: &[u8], live: IVec) -> Option<IVec> {
        let mut st = self.state.lock().expect("cut lock");
        st.position = Some(key.to_vec());
        match st.before.remove(key) {
            Some(pre) => pre,
            None => Some(live),
        }
    }

    /// Ends recording and returns the pre-images of keys the scan never met: keys that existed
    /// at the cut but were deleted before the scan reached them.
    pub fn finish(&self) -> Vec<(Vec<u8>, IVec)> {
        let mut st = self.state.lock().expect("cut lock");
        self.finished.store(true, Ordering::Release);
        let mut rest: Vec<(Vec<u8>, IVec)> =
            std::mem::take(&mut st.before).into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        rest.sort();
        rest
    }
}

/// The tree as of the cut, in two parts: the live scan passed through [`Cut::resolve`], then
/// the keys deleted ahead of it ([`Cut::finish`]). Recording ends when the scan does.
pub fn scan<'a>(cut: &'a Cut, tree: &sled::Tree) -> impl Iterator<Item = sled::Result<(IVec, IVec)>> + 'a {
    let mut live = tree.iter();
    let mut rest: Option<std::vec::IntoIter<(Vec<u8>, IVec)>> = None;
    std::iter::from_fn(move || loop {
        if let Some(rest) = &mut rest {
            return rest.next().map(|(k, v)| Ok((IVec::from(k), v)));
        }
        match live.next() {
            Some(Ok((k, v))) => {
                if let Some(v) = cut.resolve(&k, v) {
                    return Some(Ok((k, v)));
                }
            }
            Some(Err(e)) => return Some(Err(e)),
            None => rest = Some(cut.finish().into_iter()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> sled::Tree {
        sled::Config::new().temporary(true).open().unwrap().open_tree("t").unwrap()
    }

    fn put(t: &sled::Tree, cut: &Cut, k: &str, v: Option<&str>) {
        cut.record(t, std::iter::once(k.as_bytes())).unwrap();
        match v {
            Some(v) => t.insert(k, v).unwrap(),
            None => t.remove(k).unwrap(),
        };
    }

    /// Emulates a scan interleaved with writes at chosen points and returns what it emits.
    fn scan_with(t: &sled::Tree, cut: &Cut, mut between: impl FnMut(usize)) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut i = 0;
        let mut last: Option<Vec<u8>> = None;
        loop {
            between(i);
            i += 1;
            let next = match &last {
                None => t.iter().next(),
                Some(l) => {
                    t.range::<&[u8], _>((std::ops::Bound::Excluded(l.as_slice()), std::ops::Bound::Unbounded)).next()
                }
            };
            let Some(kv) = next else { break };
            let (k, v) = kv.unwrap();
            if let Some(v) = cut.resolve(&k, v) {
                out.push((String::from_utf8(k.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap()));
            }
            last = Some(k.to_vec());
        }
        for (k, v) in cut.finish() {
            out.push((String::from_utf8(k).unwrap(), String::from_utf8(v.to_vec()).unwrap()));
        }
        out.sort();
        out
    }

    #[test]
    fn the_scan_emits_the_state_at_the_cut_whatever_changes_during_it() {
        let t = tree();
        for k in ["a", "b", "c", "d", "e"] {
            t.insert(k, format!("{k}0").as_bytes()).unwrap();
        }
        let cut = Cut::default();
        let got = scan_with(&t, &cut, |step| match step {
            0 => put(&t, &cut, "c", Some("c1")),  // changed ahead of the scan
            1 => put(&t, &cut, "a", Some("a1")),  // changed behind the scan
            2 => put(&t, &cut, "e", None),        // deleted ahead of the scan
            3 => put(&t, &cut, "bb", Some("n")),  // created ahead of the scan
            4 => put(&t, &cut, "c", Some("c2")),  // changed twice
            5 => put(&t, &cut, "0", Some("new")), // created behind the scan
            _ => {}
        });
        let want: Vec<(String, String)> =
            ["a", "b", "c", "d", "e"].iter().map(|k| (k.to_string(), format!("{k}0"))).collect();
        assert_eq!(got, want);
        assert!(!cut.is_active());
    }

    #[test]
    fn a_key_deleted_and_recreated_ahead_of_the_scan_keeps_its_cut_value() {
        let t = tree();
        t.insert("k", "old").unwrap();
        t.insert("z", "z").unwrap();
        let cut = Cut::default();
        let got = scan_with(&t, &cut, |step| {
            if step == 0 {
                put(&t, &cut, "k", None);
                put(&t, &cut, "k", Some("new"));
            }
        });
        assert_eq!(got, vec![("k".to_string(), "old".to_string()), ("z".to_string(), "z".to_string())]);
    }
}
