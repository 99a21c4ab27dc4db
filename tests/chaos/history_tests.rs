//! The history format round-trips with the issue's exact field names and order, a history
//! file is checked key by key, and the non-linearizability checks (counter bounds, lost
//! writes, TTL bounds with and without clock skew, the logical clock, stale reads, membership
//! steps) catch the anomalies they exist for.

use serde_json::{json, Value};

use super::checks;
use super::history::{parse_expires_at_ms, read_jsonl, write_files, Extra, Op, OpKind, Record, Status, Workload};
use super::lin::{check_by_key, KeyOutcome};
use super::nemesis::FaultEvent;
use super::plan::FaultKind;
use super::report;
use super::skew::ClockTrace;
use super::workload::FINAL_READER;

#[allow(clippy::too_many_arguments)]
pub(super) fn op(
    w: Workload,
    client: u64,
    kind: OpKind,
    key: &str,
    arg: Value,
    status: Status,
    res: Value,
    t: (u64, u64),
) -> Op {
    Op {
        workload: w,
        rec: Record {
            client,
            node: "http://127.0.0.11:7000".into(),
            op: kind,
            key: key.into(),
            arg,
            status,
            res,
            call: t.0,
            ret: t.1,
        },
        extra: Extra { call_wall_ms: t.0, ret_wall_ms: t.1, ..Extra::default() },
    }
}

#[test]
fn history_lines_use_the_issue_format_exactly() {
    let o = op(Workload::Register, 3, OpKind::Cas, "k", json!([1, 2]), Status::Info, Value::Null, (5, 9));
    let line = serde_json::to_string(&o.rec).unwrap();
    assert_eq!(
        line,
        r#"{"client":3,"node":"http://127.0.0.11:7000","op":"cas","key":"k","arg":[1,2],"status":"info","res":null,"call":5,"ret":9}"#
    );
}

#[test]
fn written_history_reads_back_and_is_checked_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Status::Ok;
    let ops = vec![
        op(Workload::Register, 1, OpKind::Write, "a", json!(1), ok, Value::Null, (0, 10)),
        op(Workload::Register, 2, OpKind::Read, "a", Value::Null, ok, json!(1), (20, 30)),
        op(Workload::Register, 1, OpKind::Write, "b", json!(1), ok, Value::Null, (0, 10)),
        op(Workload::Register, 1, OpKind::Write, "b", json!(2), ok, Value::Null, (20, 30)),
        op(Workload::Register, 2, OpKind::Read, "b", Value::Null, ok, json!(1), (40, 50)),
        op(Workload::Counter, 3, OpKind::Incr, "c", json!(1), Status::Info, Value::Null, (0, 10)),
        op(Workload::Counter, 3, OpKind::Read, "c", Value::Null, ok, json!(1), (20, 30)),
        op(Workload::Ttl, 4, OpKind::Write, "t", json!(9), ok, Value::Null, (0, 10)),
    ];
    write_files(dir.path(), &ops).unwrap();
    let back = read_jsonl(&dir.path().join("history.jsonl")).unwrap();
    assert_eq!(back.len(), 7, "ttl ops go to their own file");
    let ttl = read_jsonl(&dir.path().join("history-ttl.jsonl")).unwrap();
    assert_eq!(ttl.len(), 1);
    let verdicts = check_by_key(&back, 1_000_000).unwrap();
    let outcome = |k: &str| verdicts.iter().find(|v| v.key == k).unwrap().outcome.clone();
    assert!(matches!(outcome("a"), KeyOutcome::Linearizable));
    assert!(matches!(outcome("b"), KeyOutcome::Violation(_)), "stale read of b");
    assert!(matches!(outcome("c"), KeyOutcome::Linearizable), "unknown incr may have applied");
    assert_eq!(verdicts.iter().find(|v| v.key == "c").unwrap().model, "counter");
}

#[test]
fn counter_final_value_must_lie_within_acknowledged_and_unknown() {
    let incr = |st, t| op(Workload::Counter, 1, OpKind::Incr, "c", json!(1), st, Value::Null, (t, t + 1));
    let fin =
        |v: i64| op(Workload::Counter, FINAL_READER, OpKind::Read, "c", Value::Null, Status::Ok, json!(v), (99, 100));
    let base = vec![incr(Status::Ok, 0), incr(Status::Ok, 2), incr(Status::Info, 4), incr(Status::Fail, 6)];
    for (v, pass) in [(1, false), (2, true), (3, true), (4, false)] {
        let mut ops = base.clone();
        ops.push(fin(v));
        assert_eq!(checks::counter_bounds(&ops).passed, pass, "final value {v}");
    }
    assert!(!checks::counter_bounds(&base).passed, "no final read is a failure, not a pass");
}

#[test]
fn final_read_must_show_the_last_acknowledged_write() {
    let w = |v: i64, st, t| op(Workload::Stale, 400, OpKind::Write, "s", json!(v), st, Value::Null, (t, t + 1));
    let fin = |v: Value| op(Workload::Stale, FINAL_READER, OpKind::Read, "s", Value::Null, Status::Ok, v, (99, 100));
    let base = vec![w(1, Status::Ok, 0), w(2, Status::Ok, 10), w(3, Status::Info, 20), w(4, Status::Fail, 30)];
    for (seen, pass) in [(json!(2), true), (json!(3), true), (json!(1), false), (json!(4), false), (Value::Null, false)]
    {
        let mut ops = base.clone();
        ops.push(fin(seen.clone()));
        assert_eq!(checks::no_lost_writes(&ops).passed, pass, "final read {seen}");
    }
}

fn ttl_write(v: i64, t: (u64, u64), expires: u64) -> Op {
    let mut o = op(Workload::Ttl, 200, OpKind::Write, "t", json!(v), Status::Ok, Value::Null, t);
    o.extra.expires_at_ms = Some(expires);
    o
}

#[test]
fn ttl_key_may_not_vanish_early_nor_linger_past_the_bound() {
    let read = |res: Value, t: (u64, u64)| op(Workload::Ttl, 300, OpKind::Read, "t", Value::Null, Status::Ok, res, t);
    let w = ttl_write(7, (1_000, 1_010), 3_000);
    let cases = [
        (read(Value::Null, (2_000, 2_010)), false), // gone 990 ms before expiresAt
        (read(Value::Null, (3_500, 3_510)), true),  // gone after expiry
        (read(json!(7), (4_000, 4_010)), true),     // within the bound
        (read(json!(7), (7_000, 7_010)), false),    // 4 s late, no fault nearby
        (read(Value::Null, (500, 510)), true),      // before the write was acknowledged
    ];
    for (r, pass) in cases {
        let what = serde_json::to_string(&r.rec).unwrap();
        assert_eq!(checks::ttl(&[w.clone(), r], &[]).0.passed, pass, "{what}");
    }
    // Lingering right after a fault is reported in the figures but not judged.
    let fault = FaultEvent { end_wall_ms: 5_000, ..FaultEvent::new(FaultKind::PartitionLeader, 0, 2_000) };
    let (res, worst) = checks::ttl(&[w, read(json!(7), (7_000, 7_010))], &[fault]);
    assert!(res.passed);
    assert_eq!(worst, 4_000);
}

fn ttl_read(res: Value, t: (u64, u64)) -> Op {
    op(Workload::Ttl, 300, OpKind::Read, "t", Value::Null, Status::Ok, res, t)
}

/// A clock step on node 2 with these offset writes; `led`: node 2 may have led meanwhile.
fn clock_fault(led: bool, sets: Vec<(u64, i64)>) -> FaultEvent {
    let (start, end) = (sets[0].0, sets.last().unwrap().0);
    let mut f = FaultEvent { end_wall_ms: end, ..FaultEvent::new(FaultKind::Clock, 0, start) };
    f.clock = Some(ClockTrace { node: 2, led, sets });
    f
}

#[test]
fn ttl_bounds_allow_for_a_leaders_clock_skew_and_only_a_leaders() {
    let w = ttl_write(7, (1_000, 1_010), 4_010);
    // 1.8 s early: explained by a leader whose clock ran 2 s ahead, not by a follower's.
    let early = ttl_read(Value::Null, (2_200, 2_210));
    let ahead = |led| clock_fault(led, vec![(1_500, 2_000), (2_500, 0)]);
    assert!(!checks::ttl(&[w.clone(), early.clone()], &[]).0.passed, "no skew: absent too early");
    assert!(checks::ttl(&[w.clone(), early.clone()], &[ahead(true)]).0.passed);
    assert!(!checks::ttl(&[w.clone(), early], &[ahead(false)]).0.passed, "a follower's clock explains nothing");
    // 4.5 s late: explained by a leader whose clock ran 3 s behind, not by a follower's.
    let late = ttl_read(json!(7), (8_500, 8_510));
    let behind = |led| clock_fault(led, vec![(3_000, -3_000), (8_000, 0)]);
    assert!(checks::ttl(&[w.clone(), late.clone()], &[behind(true)]).0.passed);
    assert!(!checks::ttl(&[w.clone(), late.clone()], &[behind(false)]).0.passed, "a clock step is no excuse");
    let longer = ttl_read(json!(7), (11_500, 11_510));
    assert!(!checks::ttl(&[w, longer], &[behind(true)]).0.passed, "7.5 s late is more than 3 s of skew explains");
}

#[test]
fn a_ttl_value_read_as_gone_never_comes_back() {
    let w = ttl_write(7, (0, 10), 1_000);
    let gone = ttl_read(Value::Null, (1_500, 1_510));
    let back = ttl_read(json!(7), (2_000, 2_010));
    assert!(checks::ttl(&[w.clone(), back.clone()], &[]).0.passed, "1 s late is within the bound");
    let res = checks::ttl(&[w.clone(), gone.clone(), back], &[]).0;
    assert!(!res.passed && res.detail.contains("came back"), "{}", res.detail);
    // A read that was in flight while the key expired may see either.
    let overlapping = ttl_read(json!(7), (1_505, 1_600));
    assert!(checks::ttl(&[w, gone, overlapping], &[]).0.passed);
}

#[test]
fn the_logical_clock_never_goes_back_nor_runs_ahead_of_a_leaders_clock() {
    // TTL 1 s: expiresAt less 1 000 is the clock each write was applied at.
    let a = ttl_write(1, (0, 1_000), 1_900);
    let b = ttl_write(2, (1_100, 1_200), 1_800);
    let c = ttl_write(3, (1_100, 1_200), 2_100);
    assert!(checks::ttl_clock(&[a.clone(), c], &[], 1).passed);
    let res = checks::ttl_clock(&[a.clone(), b], &[], 1);
    assert!(!res.passed && res.detail.contains("went back by 100 ms"), "{}", res.detail);
    let concurrent = ttl_write(4, (900, 1_200), 1_800);
    assert!(checks::ttl_clock(&[a, concurrent], &[], 1).passed, "concurrent writes apply in either order");
    // Applied at 4 000 when the true time was at most 1 000.
    let ahead = ttl_write(5, (900, 1_000), 5_000);
    assert!(!checks::ttl_clock(std::slice::from_ref(&ahead), &[], 1).passed);
    let skewed = |led| clock_fault(led, vec![(500, 3_000), (2_000, 0)]);
    assert!(checks::ttl_clock(std::slice::from_ref(&ahead), &[skewed(true)], 1).passed);
    assert!(!checks::ttl_clock(&[ahead], &[skewed(false)], 1).passed, "a follower's clock must not stamp");
}

#[test]
fn a_membership_step_that_was_not_carried_through_fails_the_run() {
    let mut step = FaultEvent::new(FaultKind::Membership, 0, 0);
    step.note = "node 4 joined; node 1 (the leader) removed".into();
    assert!(checks::membership(std::slice::from_ref(&step)).passed);
    step.failure = Some("node 5 was not a voter 60s after it started".into());
    assert!(!checks::membership(&[step]).passed);
}

#[test]
fn stale_reads_never_go_backwards_and_only_see_written_values() {
    let w = |v: i64, st| op(Workload::Stale, 400, OpKind::Write, "s", json!(v), st, Value::Null, (0, 5));
    let r = |v: i64, version: u64, t: u64| {
        let mut o = op(Workload::Stale, 500, OpKind::Read, "s", Value::Null, Status::Ok, json!(v), (t, t + 1));
        o.extra.version = Some(version);
        o
    };
    let urls = vec!["http://127.0.0.11:7000".to_string()];
    let good = vec![w(1, Status::Ok), w(2, Status::Ok), r(1, 10, 10), r(2, 12, 20), r(2, 12, 30)];
    assert!(checks::stale_reads(&good, &[], &urls).passed);
    let backwards = vec![w(1, Status::Ok), w(2, Status::Ok), r(2, 12, 10), r(1, 10, 20)];
    assert!(!checks::stale_reads(&backwards, &[], &urls).passed);
    let invented = vec![w(1, Status::Ok), r(5, 10, 10)];
    assert!(!checks::stale_reads(&invented, &[], &urls).passed);
    let failed_write_seen = vec![w(1, Status::Fail), r(1, 10, 10)];
    assert!(!checks::stale_reads(&failed_write_seen, &[], &urls).passed);
}

#[test]
fn a_500_or_a_refused_valid_write_is_unexpected() {
    let mut o = op(Workload::Register, 1, OpKind::Write, "a", json!(1), Status::Info, Value::Null, (0, 1));
    assert!(checks::unexpected_responses(std::slice::from_ref(&o)).passed);
    o.extra.error = Some("HTTP 500 storage_error".into());
    assert!(!checks::unexpected_responses(std::slice::from_ref(&o)).passed);
    o.extra.error = Some("HTTP 400 invalid_json".into());
    assert!(!checks::unexpected_responses(std::slice::from_ref(&o)).passed);
    o.extra.error = Some("HTTP 503 no_leader".into());
    assert!(checks::unexpected_responses(std::slice::from_ref(&o)).passed);
}

#[test]
fn expires_at_parses_to_unix_milliseconds() {
    assert_eq!(parse_expires_at_ms("1970-01-01T00:00:00.000Z"), Some(0));
    assert_eq!(parse_expires_at_ms("2026-11-23T15:00:00.123Z"), Some(1_795_446_000_123));
    assert_eq!(parse_expires_at_ms("2000-02-29T23:59:59Z"), Some(951_868_799_000));
    assert_eq!(parse_expires_at_ms("2026-11-23T15:00:00.5Z"), Some(1_795_446_000_500));
    assert_eq!(parse_expires_at_ms("2026-11-23 15:00:00Z"), None);
    assert_eq!(parse_expires_at_ms("2026-11-23T15:00:00.123"), None);
}

/// A partitioned leader's last write, acknowledged just after the cut, is not the next
/// leader's first: the figure skips writes the old leader served before the heal, and counts
/// every successful write after a kill.
#[test]
fn leader_fault_figure_counts_the_first_write_a_new_leader_served() {
    let write = |client, served_by, t: (u64, u64)| {
        let mut o = op(Workload::Register, client, OpKind::Write, "k", json!(client), Status::Ok, Value::Null, t);
        o.extra.served_by = Some(served_by);
        o
    };
    let ms = 1_000_000;
    let ops = vec![
        write(1, 3, (1_010 * ms, 1_013 * ms)),
        write(2, 1, (1_020 * ms, 2_700 * ms)),
        write(3, 2, (1_030 * ms, 1_800 * ms)),
    ];
    let cut = |kind| {
        let mut f = FaultEvent { end_ns: 5_000 * ms, ..FaultEvent::new(kind, 1_000 * ms, 0) };
        f.targets = vec![3];
        f.leader_fault = true;
        f
    };
    let figure = |kind| report::availability(&ops, &[cut(kind)], 9_000 * ms).leader_fault_to_write_ms;
    assert_eq!(figure(FaultKind::PartitionLeader), vec![(FaultKind::PartitionLeader, Some(800))]);
    assert_eq!(figure(FaultKind::Pause), vec![(FaultKind::Pause, Some(800))]);
    // A killed leader serves nothing after the kill; whatever succeeded first counts.
    assert_eq!(figure(FaultKind::KillLeader), vec![(FaultKind::KillLeader, Some(13))]);
}
