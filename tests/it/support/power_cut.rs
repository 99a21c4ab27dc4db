//! A simulated power cut: after a node was SIGKILLed (its page cache, and so every byte it
//! wrote, survives that), cut its data dir back to what its fsync ledger says was durable, as
//! if the machine had lost power at that instant. The node writes the ledger itself when it
//! runs with `CAIRN_TEST_POWERLOSS_LEDGER` (`src/fsync.rs` owns the format and says what each
//! record vouches for). What this models and what it cannot is in docs/operations.md, "Power
//! loss: what the simulation covers".
//!
//! The rules, for every entry under the data dir (the data dir itself is taken as durable):
//! - an entry survives only if the last sync of its directory listed its name or its file
//!   (identity: device, inode and birth time). A file renamed after that sync survives under
//!   its new name: the rename reached the disk, one of the two outcomes a real disk allows;
//! - a directory with no sync in the ledger loses every entry: this is what happens to sled's
//!   files, since sled never syncs through Cairn;
//! - a surviving file is cut to the length its last sync vouched for, or to nothing if it was
//!   never synced.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde_json::Value;

/// What a cut did, for the test to report and assert on.
#[derive(Debug, Default)]
pub struct Cut {
    /// Entries removed because no directory sync had made them durable.
    pub removed: Vec<PathBuf>,
    /// Files cut back: path, length found, length kept.
    pub truncated: Vec<(PathBuf, u64, u64)>,
    /// Files found shorter than their last sync vouched for (cut back after it without a sync
    /// since): a power cut could bring those bytes back, and the simulation cannot.
    pub shorter_than_synced: Vec<PathBuf>,
}

impl Cut {
    pub fn bytes_cut(&self) -> u64 {
        self.truncated.iter().map(|(_, found, kept)| found - kept).sum()
    }

    /// One line for the test's output, paths relative to `data_dir`.
    pub fn summary(&self, data_dir: &Path) -> String {
        let rel = |p: &PathBuf| p.strip_prefix(data_dir).unwrap_or(p).display().to_string();
        let removed: Vec<String> = self.removed.iter().map(rel).collect();
        let cut: Vec<String> =
            self.truncated.iter().map(|(p, found, kept)| format!("{} {found}→{kept}", rel(p))).collect();
        format!(
            "removed [{}]; cut back [{}]; {} files shorter than synced",
            removed.join(", "),
            cut.join(", "),
            self.shorter_than_synced.len()
        )
    }
}

/// Order of records: a later process's records are newer than all of an earlier one's; within
/// a process, the sync that started later (its `seq`) describes the file or directory.
type Order = (u64, u64);

/// What the ledger says is durable: per file identity its length, per directory identity the
/// entries it held (name → identity), each from its newest sync.
#[derive(Default)]
struct Durable {
    files: HashMap<String, (Order, u64)>,
    dirs: HashMap<String, (Order, HashMap<String, String>)>,
}

impl Durable {
    fn read(ledger: &Path) -> Durable {
        let text = fs::read_to_string(ledger).unwrap_or_else(|e| panic!("read ledger {}: {e}", ledger.display()));
        // A line without its newline was being written when the process died: the sync it
        // describes had not returned, so nothing relied on it.
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        let mut durable = Durable::default();
        let mut process = 0;
        for line in complete.lines().filter(|l| !l.is_empty()) {
            let record: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("ledger line {line:?}: {e}"));
            if record.get("process").is_some() {
                process += 1;
                continue;
            }
            let order = (process, record["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {line:?}")));
            if let Some(id) = record["file"].as_str() {
                let len = record["len"].as_u64().unwrap_or_else(|| panic!("no len in {line:?}"));
                let slot = durable.files.entry(id.to_string()).or_insert((order, len));
                if order >= slot.0 {
                    *slot = (order, len);
                }
            } else if let Some(id) = record["dir"].as_str() {
                let entries: HashMap<String, String> = record["entries"]
                    .as_object()
                    .unwrap_or_else(|| panic!("no entries in {line:?}"))
                    .iter()
                    .map(|(name, id)| (name.clone(), id.as_str().unwrap_or_default().to_string()))
                    .collect();
                let slot = durable.dirs.entry(id.to_string()).or_insert((order, HashMap::new()));
                if order >= slot.0 {
                    *slot = (order, entries);
                }
            } else {
                panic!("unknown ledger record {line:?}");
            }
        }
        durable
    }
}

/// The same identity `src/fsync.rs` records: `<dev>:<ino>:<birth ns, or ->`.
fn identity(meta: &fs::Metadata) -> String {
    let born = meta.created().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    match born {
        Some(d) => format!("{}:{}:{}", meta.dev(), meta.ino(), d.as_nanos()),
        None => format!("{}:{}:-", meta.dev(), meta.ino()),
    }
}

fn metadata(path: &Path) -> fs::Metadata {
    fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
}

/// Cuts `data_dir` back to what `ledger` says was durable. Every process writing into it must
/// be dead: the cut is the power going off.
pub fn power_cut(data_dir: &Path, ledger: &Path) -> Cut {
    let durable = Durable::read(ledger);
    let mut cut = Cut::default();
    cut_dir(data_dir, &durable, &mut cut);
    cut
}

fn cut_dir(dir: &Path, durable: &Durable, cut: &mut Cut) {
    let listing = durable.dirs.get(&identity(&metadata(dir))).map(|(_, entries)| entries);
    let listed_ids: HashSet<&String> = listing.into_iter().flat_map(|l| l.values()).collect();
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap_or_else(|e| panic!("list {}: {e}", dir.display())).path())
        .collect();
    entries.sort();
    for path in entries {
        let meta = metadata(&path);
        let id = identity(&meta);
        let name = path.file_name().expect("an entry has a name").to_string_lossy().into_owned();
        let survives = listing.is_some_and(|l| l.contains_key(&name)) || listed_ids.contains(&id);
        if !survives {
            let removed = if meta.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            removed.unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
            cut.removed.push(path);
        } else if meta.is_dir() {
            cut_dir(&path, durable, cut);
        } else if meta.is_file() {
            let synced = durable.files.get(&id).map_or(0, |(_, len)| *len);
            if meta.len() > synced {
                let file = fs::OpenOptions::new().write(true).open(&path);
                file.and_then(|f| f.set_len(synced)).unwrap_or_else(|e| panic!("cut {}: {e}", path.display()));
                cut.truncated.push((path, meta.len(), synced));
            } else if meta.len() < synced {
                cut.shorter_than_synced.push(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The cut's rules on hand-made ledgers, in the format `src/fsync.rs` writes.

    use super::*;
    use serde_json::json;
    use std::io::Write;

    struct Ledger {
        path: PathBuf,
        seq: u64,
    }

    impl Ledger {
        fn new(dir: &Path) -> Ledger {
            let ledger = Ledger { path: dir.join("ledger"), seq: 0 };
            ledger.line(json!({ "process": 1 }));
            ledger
        }

        fn line(&self, record: Value) {
            let mut f = fs::OpenOptions::new().create(true).append(true).open(&self.path).unwrap();
            writeln!(f, "{record}").unwrap();
        }

        fn file(&mut self, path: &Path) {
            let meta = metadata(path);
            self.seq += 1;
            self.line(json!({ "seq": self.seq, "file": identity(&meta), "len": meta.len(), "path": path }));
        }

        fn dir(&mut self, path: &Path) {
            let entries: serde_json::Map<String, Value> = fs::read_dir(path)
                .unwrap()
                .map(|e| e.unwrap())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), json!(identity(&metadata(&e.path())))))
                .collect();
            self.seq += 1;
            self.line(json!({ "seq": self.seq, "dir": identity(&metadata(path)), "path": path, "entries": entries }));
        }
    }

    fn data_dir() -> (tempfile::TempDir, PathBuf, Ledger) {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fs::create_dir(&data).unwrap();
        let ledger = Ledger::new(tmp.path());
        (tmp, data, ledger)
    }

    fn append(path: &Path, bytes: &[u8]) {
        fs::OpenOptions::new().create(true).append(true).open(path).unwrap().write_all(bytes).unwrap();
    }

    #[test]
    fn a_file_is_cut_back_to_its_last_sync_and_a_never_synced_one_to_nothing() {
        let (_tmp, data, mut ledger) = data_dir();
        let (synced, unsynced) = (data.join("synced"), data.join("unsynced"));
        append(&synced, b"durable");
        append(&unsynced, b"lost");
        ledger.file(&synced);
        ledger.dir(&data);
        append(&synced, b" and lost");
        let cut = power_cut(&data, &ledger.path);
        assert_eq!(fs::read(&synced).unwrap(), b"durable");
        assert_eq!(fs::read(&unsynced).unwrap(), b"");
        assert_eq!(cut.bytes_cut(), 13);
    }

    #[test]
    fn an_entry_made_after_its_directory_was_synced_is_removed_and_an_unsynced_directory_is_emptied() {
        let (_tmp, data, mut ledger) = data_dir();
        let sm = data.join("sm");
        fs::create_dir(&sm).unwrap();
        append(&sm.join("db"), b"sled");
        ledger.file(&sm.join("db"));
        ledger.dir(&data);
        append(&data.join("late"), b"x");
        ledger.file(&data.join("late"));
        let cut = power_cut(&data, &ledger.path);
        assert!(!data.join("late").exists(), "created after the directory's last sync");
        assert!(sm.exists() && !sm.join("db").exists(), "sm/ is listed; its own entries never were");
        assert_eq!(cut.removed.len(), 2);
    }

    #[test]
    fn a_synced_file_renamed_over_another_keeps_its_new_name() {
        let (_tmp, data, mut ledger) = data_dir();
        append(&data.join("meta"), b"old");
        ledger.file(&data.join("meta"));
        ledger.dir(&data);
        append(&data.join("meta.tmp"), b"new");
        ledger.file(&data.join("meta.tmp"));
        fs::rename(data.join("meta.tmp"), data.join("meta")).unwrap();
        power_cut(&data, &ledger.path);
        assert_eq!(fs::read(data.join("meta")).unwrap(), b"new");
    }

    #[test]
    fn the_sync_that_started_last_describes_a_file_whatever_order_its_records_came_in() {
        let (_tmp, data, mut ledger) = data_dir();
        let f = data.join("seg");
        append(&f, b"0123456789");
        ledger.dir(&data);
        let id = identity(&metadata(&f));
        // Two syncs in one process: seq 8 (10 bytes) finished before seq 7 (4 bytes).
        ledger.line(json!({ "seq": 8, "file": id, "len": 10, "path": f }));
        ledger.line(json!({ "seq": 7, "file": id, "len": 4, "path": f }));
        power_cut(&data, &ledger.path);
        assert_eq!(fs::read(&f).unwrap().len(), 10);
        // A later process's first sync is newer than anything before it.
        ledger.line(json!({ "process": 2 }));
        ledger.line(json!({ "seq": 0, "file": id, "len": 6, "path": f }));
        power_cut(&data, &ledger.path);
        assert_eq!(fs::read(&f).unwrap().len(), 6);
    }
}
