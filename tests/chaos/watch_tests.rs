//! Every watch check accepts a good history and rejects a hand-made bad one: a gap, a
//! duplicate, a reordered id, a split entry, a progress past an undelivered change, an
//! acknowledged write missing, an unknown write seen by one watcher only, a resume nobody
//! served.

use serde_json::{json, Value};

use super::checks::CheckResult;
use super::history::{Extra, Op, OpKind, Record, Status, Workload};
use super::watch::{Change, Conn, EventKind, Reference, WatchEvent, WatcherLog};
use super::watchcheck;

fn set(key: &str, value: i64, version: u64) -> Change {
    Change { op: "set".into(), key: key.into(), version, value: json!(value) }
}

/// Entries 11 (a=1), 12 (b=2, c=3: one batch), 14 (d=4), 15 (e=5); the history is (10, 17].
fn reference() -> Reference {
    let mut r = Reference { node: "n1".into(), after: 10, end: 17, entries: Default::default() };
    r.entries.insert(11, vec![set("a", 1, 11)]);
    r.entries.insert(12, vec![set("b", 2, 12), set("c", 3, 12)]);
    r.entries.insert(14, vec![set("d", 4, 14)]);
    r.entries.insert(15, vec![set("e", 5, 15)]);
    r
}

fn change(conn: usize, id: u64, r: &Reference) -> WatchEvent {
    WatchEvent { conn, kind: EventKind::Change, id: Some(id), index: Some(id), changes: r.entries[&id].clone() }
}

fn progress(conn: usize, id: u64) -> WatchEvent {
    WatchEvent { conn, kind: EventKind::Progress, id: Some(id), index: Some(id), changes: Vec::new() }
}

fn conn(after: Option<u64>, answer: &str) -> Conn {
    Conn { node: "n1".into(), after, answer: answer.into(), compacted_index: None, end: "eof".into() }
}

/// A watcher that starts at 10, gets 11 and 12, loses its stream, resumes after 12 on another
/// node (after one refused attempt), and gets 14, 15 and a progress at 17.
fn good(watcher: usize) -> WatcherLog {
    let r = reference();
    WatcherLog {
        watcher,
        prefix: String::new(),
        conns: vec![conn(None, "stream"), conn(Some(12), "transport: refused"), conn(Some(12), "stream")],
        events: vec![
            progress(0, 10),
            change(0, 11, &r),
            change(0, 12, &r),
            change(2, 14, &r),
            change(2, 15, &r),
            progress(2, 17),
        ],
    }
}

fn write(status: Status, pairs: Value, version: Option<u64>) -> Op {
    Op {
        workload: Workload::Watch,
        rec: Record {
            client: 600,
            node: "n1".into(),
            op: OpKind::Write,
            key: "k".into(),
            arg: pairs,
            status,
            res: Value::Null,
            call: 0,
            ret: 1,
        },
        extra: Extra { version, ..Extra::default() },
    }
}

fn ops() -> Vec<Op> {
    vec![
        write(Status::Ok, json!([["a", 1]]), Some(11)),
        write(Status::Ok, json!([["b", 2], ["c", 3]]), Some(12)),
        write(Status::Info, json!([["d", 4]]), None),
        write(Status::Ok, json!([["e", 5]]), Some(15)),
        write(Status::Info, json!([["f", 6]]), None),
        write(Status::Fail, json!([["g", 7]]), None),
    ]
}

fn verdicts(logs: &[WatcherLog], ops: &[Op]) -> Vec<CheckResult> {
    watchcheck::all(logs, &reference(), ops)
}

/// The names of the checks that failed.
fn failed(logs: &[WatcherLog], ops: &[Op]) -> Vec<String> {
    verdicts(logs, ops).into_iter().filter(|c| !c.passed).map(|c| c.name).collect()
}

fn fails(logs: &[WatcherLog], ops: &[Op], check: &str) {
    let bad = failed(logs, ops);
    assert!(bad.iter().any(|n| n == check), "{check} should fail, failed: {bad:?}");
}

#[test]
fn a_good_history_passes_every_watch_check() {
    let logs = vec![good(0), good(1)];
    for c in verdicts(&logs, &ops()) {
        assert!(c.passed, "{}: {}", c.name, c.detail);
    }
    assert_eq!(watchcheck::range(&logs[0]), Some((10, 17)));
}

#[test]
fn a_watcher_that_starts_late_is_judged_only_on_its_range() {
    let r = reference();
    let late = WatcherLog {
        watcher: 2,
        prefix: String::new(),
        conns: vec![conn(None, "stream")],
        events: vec![progress(0, 13), change(0, 14, &r), change(0, 15, &r)],
    };
    assert!(failed(&[good(0), late], &ops()).is_empty());
}

#[test]
fn a_gap_fails_reliable_and_bookmarkable() {
    let mut w = good(0);
    w.events.retain(|e| e.id != Some(14));
    // 14 was an unknown write: it landed, so one watcher without it fails that check too.
    let logs = vec![good(1), w];
    fails(&logs, &ops(), "watch reliable");
    fails(&logs, &ops(), "watch bookmarkable");
    fails(&logs, &ops(), "watch unknown writes all or none");
}

#[test]
fn a_duplicate_fails_unique_and_acknowledged_exactly_once() {
    let r = reference();
    let mut w = good(0);
    w.events.insert(3, change(2, 12, &r));
    let logs = vec![w];
    fails(&logs, &ops(), "watch unique");
    fails(&logs, &ops(), "watch acknowledged writes exactly once");
    fails(&logs, &ops(), "watch ordered");
}

#[test]
fn a_reordered_id_fails_ordered_only() {
    let mut w = good(0);
    w.events.swap(3, 4);
    assert_eq!(failed(&[w], &ops()), vec!["watch ordered".to_string()]);
}

#[test]
fn a_split_entry_fails_atomic() {
    let mut w = good(0);
    w.events[2].changes = vec![set("b", 2, 12)];
    let mut rest = w.events[2].clone();
    rest.changes = vec![set("c", 3, 12)];
    w.events.insert(3, rest);
    fails(&[w.clone()], &ops(), "watch atomic");
    // Only the first half, no second event: still not atomic, and the batch never arrived whole.
    w.events.remove(3);
    fails(&[w.clone()], &ops(), "watch atomic");
    fails(&[w], &ops(), "watch acknowledged writes exactly once");
    // An index that disagrees with the event id.
    let mut w = good(0);
    w.events[1].index = Some(12);
    fails(&[w], &ops(), "watch atomic");
}

#[test]
fn a_progress_past_an_undelivered_change_fails_bookmarkable() {
    let mut w = good(0);
    // A progress at 13 between 11 and 12: it promised 12 was delivered.
    w.events.insert(2, progress(0, 13));
    fails(&[w], &ops(), "watch bookmarkable");
    // A progress at 14 just before the connection ends, before 14 arrived (the resume after it
    // then skips 14): the same lie, seen through the missing change.
    let r = reference();
    let w = WatcherLog {
        watcher: 0,
        prefix: String::new(),
        conns: vec![conn(None, "stream"), conn(Some(14), "stream")],
        events: vec![progress(0, 10), change(0, 11, &r), change(0, 12, &r), progress(0, 14), change(1, 15, &r)],
    };
    let bad = failed(&[w], &ops());
    assert!(bad.contains(&"watch bookmarkable".to_string()) && bad.contains(&"watch reliable".to_string()), "{bad:?}");
}

#[test]
fn an_acknowledged_write_missing_fails_acknowledged_exactly_once() {
    let mut w = good(0);
    w.events.retain(|e| e.id != Some(15));
    fails(&[w], &ops(), "watch acknowledged writes exactly once");
    // Missing from the reference itself (every watcher lost it the same way).
    let mut r = reference();
    r.entries.remove(&15);
    let mut w = good(0);
    w.events.retain(|e| e.id != Some(15));
    let c = watchcheck::acknowledged(&[w], &r, &ops());
    assert!(!c.passed, "{}", c.detail);
}

#[test]
fn an_unknown_write_seen_by_some_watchers_only_fails() {
    // f=6 never took effect per the reference, but one watcher saw it at 13.
    let mut w = good(0);
    w.events.insert(
        3,
        WatchEvent { conn: 2, kind: EventKind::Change, id: Some(13), index: Some(13), changes: vec![set("f", 6, 13)] },
    );
    let logs = vec![good(1), w];
    fails(&logs, &ops(), "watch unknown writes all or none");
    fails(&logs, &ops(), "watch atomic");
    // A failed write found in the reference.
    let mut r = reference();
    r.entries.insert(16, vec![set("g", 7, 16)]);
    let c = watchcheck::unknown(&[good(0)], &r, &ops());
    assert!(!c.passed, "{}", c.detail);
}

#[test]
fn a_resume_that_no_node_served_or_that_skipped_ahead_fails_resumable() {
    let mut w = good(0);
    w.conns[1].answer = "http 410".into();
    assert!(failed(&[w.clone()], &ops()).is_empty(), "a 410 another node then served is legal");
    w.conns[2].answer = "http 410".into();
    w.events.retain(|e| e.conn != 2);
    fails(&[w], &ops(), "watch resumable");
    let mut w = good(0);
    w.conns[2].after = Some(13);
    fails(&[w], &ops(), "watch resumable");
}

#[test]
fn a_watcher_on_a_narrower_prefix_is_judged_on_its_view_of_the_reference() {
    // Entry 12 is a batch of b and c; a watcher on "c" sees only c=3 at 12, and progress
    // past the entries that do not concern it.
    let r = reference();
    let view = r.view("c");
    let narrow = WatcherLog {
        watcher: 2,
        prefix: "c".into(),
        conns: vec![conn(None, "stream"), conn(Some(13), "stream")],
        events: vec![progress(0, 10), change(0, 12, &view), progress(0, 13), progress(1, 17)],
    };
    assert!(
        failed(&[good(0), narrow.clone()], &ops()).is_empty(),
        "{:?}",
        failed(std::slice::from_ref(&narrow), &ops())
    );
    // Receiving the whole batch, b included, is not what a watch on "c" gets.
    let mut whole = narrow.clone();
    whole.events[1] = change(0, 12, &r);
    fails(&[whole], &ops(), "watch atomic");
    // Missing c=3 fails as for any watcher.
    let mut gap = narrow;
    gap.events.remove(1);
    fails(&[gap], &ops(), "watch reliable");
}
