//! Backup files: checking a downloaded one, and restoring one into a new node's data dir. A backup is a snapshot file (see
//! `sm::snapshot`). Every node of the new cluster is seeded from the same file with the same
//! `--peers`: its state machine holds the backup's data at the backup's log index, its WAL
//! starts right after that index, and the cluster membership is the new one. The nodes then
//! elect a leader and continue the log, so versions keep growing past the backup's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use openraft::{BasicNode, Membership, StoredMembership};

use crate::config::args::{parse_peer_list, Peers};
use crate::config::SmOptions;
use crate::model::types::{NodeId, SnapshotMeta};
use crate::sm::{self, snapshot, StateMachine};
use crate::wal::LogStore;

/// `cairn restore`'s arguments.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The backup file
    #[arg(long)]
    from: PathBuf,
    /// The new node's (empty) data dir
    #[arg(long)]
    data_dir: PathBuf,
    /// The new node's id
    #[arg(long)]
    id: u64,
    /// The new cluster's voters: 1=host:port,2=host:port,3=host:port
    #[arg(long, value_parser = parse_peer_list)]
    peers: Peers,
}

/// `cairn restore`: prints what was restored as JSON, or the error; returns the exit code.
pub fn run_restore(a: &RestoreArgs) -> i32 {
    match restore(&a.from, &a.data_dir, a.id, &a.peers.0) {
        Ok(r) => {
            println!(
                "{{\"dataDir\": {:?}, \"lastIndex\": {}, \"pairs\": {}}}",
                a.data_dir.display().to_string(),
                r.last_index,
                r.pairs
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Checks that `path` is a whole backup (snapshot) file and returns its last log index.
pub fn validate(path: &Path) -> Result<u64, String> {
    let meta = snapshot::validate(path).map_err(|e| e.to_string())?;
    Ok(meta.last_log_id.map(|l| l.index).unwrap_or(0))
}

#[derive(Debug)]
pub struct Restored {
    pub last_index: u64,
    pub pairs: u64,
}

pub fn restore(from: &Path, data_dir: &Path, id: NodeId, peers: &[(NodeId, String)]) -> Result<Restored, String> {
    if !peers.iter().any(|(p, _)| *p == id) {
        return Err(format!("--peers must list this node's id {id}"));
    }
    let meta = snapshot::validate(from).map_err(|e| format!("{}: not a valid backup: {e}", from.display()))?;
    let last = meta.last_log_id.ok_or("the backup holds no applied entries")?;
    if data_dir.exists() && std::fs::read_dir(data_dir).map_err(|e| e.to_string())?.next().is_some() {
        return Err(format!("{} is not empty; restore only into a new data dir", data_dir.display()));
    }
    crate::node::create_data_dir(data_dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(data_dir.join("snapshots")).map_err(|e| e.to_string())?;
    crate::node::write_identity(data_dir, id).map_err(|e| e.to_string())?;

    let voters: BTreeSet<NodeId> = peers.iter().map(|(i, _)| *i).collect();
    let nodes: BTreeMap<NodeId, BasicNode> = peers.iter().map(|(i, a)| (*i, BasicNode::new(a.clone()))).collect();
    let new_meta = SnapshotMeta {
        last_log_id: Some(last),
        last_membership: StoredMembership::new(Some(last), Membership::new(vec![voters], nodes)),
        snapshot_id: format!("restored-{}-{}", last.leader_id, last.index),
    };
    let pairs =
        snapshot::rewrite_meta(from, &sm::current_snapshot_path(data_dir), &new_meta).map_err(|e| e.to_string())?;
    LogStore::seed_purged(&data_dir.join("wal"), last, id).map_err(|e| e.to_string())?;
    // Opening the state machine finds it behind its snapshot and loads it.
    StateMachine::open(data_dir, &SmOptions::default()).map_err(|e| e.to_string())?.reader().flush();
    // Directory entries are durable only once their directory is synced: `current.snap` was
    // never synced in `snapshots/`, and `wal/` and `sm/` are newer than the sync that
    // `write_identity` made of the data dir.
    for dir in [data_dir.join("snapshots"), data_dir.to_path_buf()] {
        crate::fsync::dir(&dir).map_err(|e| e.to_string())?;
    }
    Ok(Restored { last_index: last.index, pairs })
}
