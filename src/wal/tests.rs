//! WAL tests: reopen recovers exactly what was made durable, a torn tail is cut (the space a
//! segment is zeroed ahead by is not), a failed write
//! stops the writer, truncate and purge survive a reopen, and the whole store passes openraft's
//! storage suite.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};
use tempfile::TempDir;

use super::{segment, LogStore};
use crate::model::command::{Command, Condition, Proposal};
use crate::model::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::sm::{SmOptions, StateMachine};

fn entry(index: u64) -> Entry {
    let cmd = Command::Set {
        ns: "default".into(),
        key: format!("k{index}"),
        value: index.to_string(),
        ttl_ms: None,
        cond: Condition::None,
    };
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal { now_ms: index, limits: Default::default(), cmds: vec![cmd].into() }),
    }
}

/// Appends and waits until the writer reports the entries durable.
async fn append_durable(store: &mut LogStore, entries: Vec<Entry>) {
    store.blocking_append(entries).await.unwrap();
}

async fn indexes(store: &mut LogStore) -> Vec<u64> {
    store.try_get_log_entries(0..u64::MAX).await.unwrap().iter().map(|e| e.log_id.index).collect()
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

#[tokio::test]
async fn reopen_recovers_entries_and_vote() {
    let dir = TempDir::new().unwrap();
    {
        let mut s = LogStore::open(dir.path()).unwrap();
        append_durable(&mut s, (1..=5).map(entry).collect()).await;
        append_durable(&mut s, (6..=8).map(entry).collect()).await;
        s.save_vote(&Vote::new(3, 2)).await.unwrap();
    }
    let mut s = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut s).await, (1..=8).collect::<Vec<_>>());
    assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
    let got = s.try_get_log_entries(4..5).await.unwrap();
    assert_eq!(got, vec![entry(4)]);
}

/// Where the records of the last segment end (the file goes on with zeros).
fn records_end(s: &LogStore) -> u64 {
    s.writer.segments.values().next_back().expect("a segment").len
}

/// A WAL in `dir` holding entries 1 to 4, closed; returns where its records end.
async fn four_entries_in(dir: &Path) -> u64 {
    let mut s = LogStore::open(dir).unwrap();
    append_durable(&mut s, (1..=4).map(entry).collect()).await;
    records_end(&s)
}

#[tokio::test]
async fn torn_tail_is_truncated_and_appends_continue() {
    let dir = TempDir::new().unwrap();
    let len = four_entries_in(dir.path()).await;
    let seg = last_segment(dir.path());
    // A crash mid-write: the last record loses its final bytes, and garbage follows.
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    {
        let mut s = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut s).await, vec![1, 2, 3]);
        append_durable(&mut s, vec![entry(4), entry(5)]).await;
    }
    let mut f = OpenOptions::new().append(true).open(last_segment(dir.path())).unwrap();
    f.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    drop(f);
    let mut s = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut s).await, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn segments_are_zeroed_ahead_and_read_back_whole_without_a_cut() {
    let dir = TempDir::new().unwrap();
    let len = {
        let mut s = LogStore::open(dir.path()).unwrap();
        append_durable(&mut s, (1..=3).map(entry).collect()).await;
        append_durable(&mut s, (4..=5).map(entry).collect()).await;
        records_end(&s)
    };
    let seg = last_segment(dir.path());
    let bytes = std::fs::read(&seg).unwrap();
    assert_eq!(bytes.len() as u64, segment::ZERO_AHEAD, "the segment is zeroed ahead of its records");
    assert!(bytes[len as usize..].iter().all(|&b| b == 0));
    let mut s = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut s).await, (1..=5).collect::<Vec<_>>());
    // The zeros were taken for space, not for a torn tail: nothing was cut, and the next
    // append goes right after the records.
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), segment::ZERO_AHEAD);
    assert_eq!(records_end(&s), len);
    append_durable(&mut s, vec![entry(6)]).await;
    drop(s);
    let mut s = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut s).await, (1..=6).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_record_torn_inside_the_zeroed_space_is_cut() {
    let dir = TempDir::new().unwrap();
    let len = four_entries_in(dir.path()).await;
    // The last record's second half never reached the disk: zeros, as the file held before.
    let seg = last_segment(dir.path());
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(&[0; 6], len - 6).unwrap();
    drop(f);
    let mut s = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut s).await, vec![1, 2, 3]);
    append_durable(&mut s, vec![entry(4), entry(5)]).await;
    drop(s);
    let mut s = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut s).await, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn a_sealed_segment_keeps_no_zeros_and_a_zeroed_one_is_still_read() {
    let dir = TempDir::new().unwrap();
    {
        let mut s = LogStore::open(dir.path()).unwrap();
        append_durable(&mut s, (1..=5).map(entry).collect()).await;
    }
    {
        // Restarted with smaller segments: the first one, zeroed ahead for the larger size,
        // is sealed at once, well before its zeros end.
        let mut s = LogStore::open_with(dir.path(), 4096).unwrap();
        for i in 6..=300 {
            append_durable(&mut s, vec![entry(i)]).await;
        }
        assert!(s.writer.segments.len() > 2, "{} segments", s.writer.segments.len());
        for seg in s.writer.segments.values().rev().skip(1) {
            assert_eq!(std::fs::metadata(&seg.path).unwrap().len(), seg.len, "{}", seg.path.display());
        }
    }
    // A sealed segment with zeros after its records (none is written so, but zeros are never
    // damage) reads back whole.
    let first = dir.path().join(format!("{:020}.seg", 1));
    let mut f = OpenOptions::new().append(true).open(&first).unwrap();
    f.write_all(&[0; 100]).unwrap();
    drop(f);
    let mut s = LogStore::open_with(dir.path(), 4096).unwrap();
    assert_eq!(indexes(&mut s).await, (1..=300).collect::<Vec<_>>());
}

/// Segments a purge covers are deleted off openraft's task, so not by the time `purge`
/// returns, but soon; and if a crash comes first, the next open deletes them.
#[tokio::test]
async fn purged_segments_are_deleted_in_the_background_or_by_the_next_open() {
    let segments = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
            .count()
    };
    let dir = TempDir::new().unwrap();
    let mut s = LogStore::open_with(dir.path(), 4096).unwrap();
    for i in 1..=300 {
        append_durable(&mut s, vec![entry(i)]).await;
    }
    let before = segments(dir.path());
    assert_eq!(before, s.writer.segments.len());
    assert!(before >= 3, "{before} segments");
    s.purge(entry(250).log_id).await.unwrap();
    assert_eq!(indexes(&mut s).await, (251..=300).collect::<Vec<_>>());
    let left = s.writer.segments.len();
    assert!(left < before, "{left} of {before} segments left in the writer");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while segments(dir.path()) > left {
        assert!(std::time::Instant::now() < deadline, "{} segment files still there", segments(dir.path()));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    drop(s);
    // A purge whose deletions a crash cut short: a covered segment file is still there.
    let stale = dir.path().join(format!("{:020}.seg", 1));
    std::fs::write(&stale, b"").unwrap();
    let mut s = LogStore::open_with(dir.path(), 4096).unwrap();
    assert_eq!(indexes(&mut s).await, (251..=300).collect::<Vec<_>>());
    assert!(!stale.exists(), "the open left a purged segment behind");
}

#[tokio::test]
async fn a_failed_segment_write_breaks_the_writer_for_good() {
    let dir = TempDir::new().unwrap();
    let mut s = LogStore::open(dir.path()).unwrap();
    append_durable(&mut s, (1..=3).map(entry).collect()).await;
    let seg = last_segment(dir.path());
    // A handle the write fails on, as a full or broken disk would fail it.
    s.writer.active = Some(std::fs::File::open(&seg).unwrap());
    assert!(s.writer.append(&[entry(4)]).is_err());
    // With a good handle back, the writer still refuses: how much of the failed write reached
    // the file is unknown, and an append behind it could land after a torn record.
    s.writer.active = Some(OpenOptions::new().append(true).open(&seg).unwrap());
    assert!(s.writer.append(&[entry(4)]).is_err(), "an append after a failed write must be refused");
    assert!(s.writer.sync().is_err(), "a sync after a failed write must be refused");
    drop(s);
    let mut s = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut s).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn corrupt_sealed_segment_is_refused() {
    let dir = TempDir::new().unwrap();
    {
        let mut s = LogStore::open(dir.path()).unwrap();
        append_durable(&mut s, (1..=3).map(entry).collect()).await;
    }
    // A second segment makes the first one sealed.
    std::fs::write(dir.path().join(format!("{:020}.seg", 4)), b"").unwrap();
    let seg = dir.path().join(format!("{:020}.seg", 1));
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    assert!(LogStore::open(dir.path()).is_err());
}

#[tokio::test]
async fn truncate_and_purge_survive_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let mut s = LogStore::open(dir.path()).unwrap();
        append_durable(&mut s, (1..=10).map(entry).collect()).await;
        s.truncate(entry(7).log_id).await.unwrap();
        assert_eq!(indexes(&mut s).await, (1..=6).collect::<Vec<_>>());
        s.purge(entry(3).log_id).await.unwrap();
        assert_eq!(indexes(&mut s).await, vec![4, 5, 6]);
        append_durable(&mut s, vec![entry(7)]).await;
    }
    let mut s = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut s).await, vec![4, 5, 6, 7]);
    let st = s.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(entry(3).log_id));
    assert_eq!(st.last_log_id, Some(entry(7).log_id));
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = TempDir::new().expect("tempdir");
        let log = LogStore::open(&dir.path().join("wal")).expect("open wal");
        let sm = StateMachine::open(dir.path(), &SmOptions::default()).expect("open sm");
        Ok((dir, log, sm))
    }
}

#[test]
fn passes_openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}

/// The state machine keeps what it applied across a reopen (sled flushed at shutdown).
#[tokio::test]
async fn state_machine_reports_applied_state_after_reopen() {
    let dir = TempDir::new().unwrap();
    {
        let mut sm = StateMachine::open(dir.path(), &SmOptions::default()).unwrap();
        sm.apply((1..=3).map(entry)).await.unwrap();
        sm.reader().flush();
    }
    let mut sm = StateMachine::open(dir.path(), &SmOptions::default()).unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(entry(3).log_id));
    assert_eq!(sm.reader().get("default", "k2").unwrap().map(|i| i.value), Some("2".to_string()));
}

const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// A store for node 1 with its own appends pipelined, holding a committed vote for `leader`.
async fn pipelined(dir: &Path, leader: u64) -> (LogStore, super::DurableWatch) {
    let mut s = LogStore::open(dir).unwrap();
    s.pipeline_own_appends(1).unwrap();
    s.save_vote(&Vote::new_committed(2, leader)).await.unwrap();
    let durable = s.durability();
    (s, durable)
}

#[tokio::test]
async fn the_leaders_own_appends_become_durable_behind_the_flush_report() {
    let dir = TempDir::new().unwrap();
    let (mut s, durable) = pipelined(dir.path(), 1).await;
    append_durable(&mut s, (1..=5).map(entry).collect()).await;
    tokio::time::timeout(DEADLINE, durable.wait_for(5)).await.expect("synced in time").unwrap();
    assert_eq!(durable.cap(Some(entry(5).log_id)), Some(entry(5).log_id));
    // A truncate withdraws what it removes, and the commit sent to followers drops with it.
    s.truncate(entry(4).log_id).await.unwrap();
    assert_eq!(durable.cap(Some(entry(5).log_id)), Some(entry(3).log_id));
    assert_eq!(durable.cap(Some(entry(2).log_id)), Some(entry(2).log_id));
    assert_eq!(durable.cap(None), None);
    drop(s);
    let s = LogStore::open(dir.path()).unwrap();
    assert_eq!(s.last_log_id(), Some(entry(3).log_id));
}

#[tokio::test]
async fn a_followers_appends_are_durable_when_reported() {
    let dir = TempDir::new().unwrap();
    // Following node 9's leadership: nothing is reported flushed before its fsync.
    let (mut s, durable) = pipelined(dir.path(), 9).await;
    append_durable(&mut s, (1..=3).map(entry).collect()).await;
    assert_eq!(durable.cap(Some(entry(3).log_id)), Some(entry(3).log_id), "durable at once");
}

#[tokio::test]
async fn apply_waits_until_its_entries_are_durable() {
    let dir = TempDir::new().unwrap();
    let (mut s, durable) = pipelined(&dir.path().join("wal"), 1).await;
    append_durable(&mut s, (1..=5).map(entry).collect()).await;
    tokio::time::timeout(DEADLINE, durable.wait_for(5)).await.expect("synced in time").unwrap();
    // After a truncate at 4, entries 4 and 5 are not vouched for until written again.
    s.truncate(entry(4).log_id).await.unwrap();
    let mut sm = StateMachine::open(dir.path(), &SmOptions::default()).unwrap();
    sm.wait_for_wal(durable);
    sm.apply((1..=3).map(entry)).await.unwrap();
    {
        let apply = sm.apply((4..=5).map(entry));
        tokio::pin!(apply);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(200), &mut apply).await;
        assert!(waited.is_err(), "applied entries that are not durable");
        // Entry 4 and 5 arrive again, from a new leader: synced before being reported.
        s.save_vote(&Vote::new_committed(3, 9)).await.unwrap();
        append_durable(&mut s, (4..=5).map(entry).collect()).await;
        tokio::time::timeout(DEADLINE, apply).await.expect("applied once durable").unwrap();
    }
    assert_eq!(sm.reader().get("default", "k5").unwrap().map(|i| i.value), Some("5".to_string()));
}

#[tokio::test]
async fn a_restarted_leader_hands_openraft_its_vote_uncommitted_so_it_never_resumes_its_term() {
    let dir = TempDir::new().unwrap();
    {
        let (mut s, _) = pipelined(dir.path(), 1).await;
        append_durable(&mut s, (1..=3).map(entry).collect()).await;
    }
    let mut s = LogStore::open(dir.path()).unwrap();
    s.pipeline_own_appends(1).unwrap();
    assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(2, 1)), "same term and candidate, not committed");
    // Another node's leadership is kept as it is: that leader may still be running.
    let mut s = LogStore::open(dir.path()).unwrap();
    s.pipeline_own_appends(2).unwrap();
    assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new_committed(2, 1)));
}
