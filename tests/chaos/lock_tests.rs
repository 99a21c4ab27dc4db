//! The lock workload's checks accept a good history and catch each anomaly they exist for:
//! a lower token applied after a higher one, two holders in one entry, a write or acquisition
//! accepted after a higher token held, a stale holder's write accepted, a final read of an
//! older or refused write. Also: the lock workload's expected refusals are not "unexpected
//! responses", and its history file carries the token.

use serde_json::{json, Value};

use super::checks;
use super::history::{write_files, Op, OpKind, Status, Workload};
use super::lock::{self, LOCK_KEY, LOCK_NAME};
use super::lockcheck;
use super::workload::FINAL_READER;

fn op(client: u64, kind: OpKind, key: &str, arg: Value, status: Status, t: (u64, u64)) -> Op {
    super::history_tests::op(Workload::Lock, client, kind, key, arg, status, Value::Null, t)
}

fn value(client: u64, token: u64, seq: u64) -> Value {
    json!({ "token": token, "seq": seq, "client": client })
}

/// A fenced write: acknowledged (with `version`), refused (409 fenced) or unknown.
fn write(client: u64, token: u64, seq: u64, status: Status, version: Option<u64>, t: (u64, u64)) -> Op {
    let mut o = op(client, OpKind::Write, LOCK_KEY, value(client, token, seq), status, t);
    o.extra.token = Some(token);
    o.extra.version = version;
    o.extra.error = match status {
        Status::Ok => None,
        Status::Fail => Some("HTTP 409 fenced".into()),
        Status::Info => Some("HTTP 504 unknown_outcome".into()),
    };
    o
}

fn ok(client: u64, token: u64, seq: u64, version: u64, t: (u64, u64)) -> Op {
    write(client, token, seq, Status::Ok, Some(version), t)
}

fn acquire(client: u64, token: u64, t: (u64, u64)) -> Op {
    let mut o = op(client, OpKind::Acquire, LOCK_NAME, json!("1"), Status::Ok, t);
    o.rec.res = json!(token);
    o.extra.token = Some(token);
    o
}

fn stale(mut o: Op) -> Op {
    o.extra.stale_holder = true;
    o
}

fn final_read(res: Value, version: u64) -> Op {
    let mut o = op(FINAL_READER, OpKind::Read, LOCK_KEY, Value::Null, Status::Ok, (1_000, 1_001));
    o.rec.res = res;
    o.extra.version = Some(version);
    o
}

/// Two holders one after the other, the second refusing the first's stale write.
fn good() -> Vec<Op> {
    vec![
        acquire(700, 5, (0, 1)),
        ok(700, 5, 1, 6, (2, 3)),
        ok(700, 5, 2, 7, (4, 5)),
        acquire(701, 8, (1, 10)),
        ok(701, 8, 1, 11, (12, 13)),
        stale(write(700, 5, 3, Status::Fail, None, (14, 15))),
        write(701, 8, 2, Status::Info, None, (16, 20)),
        final_read(value(701, 8, 1), 11),
    ]
}

fn assert_pass(c: &checks::CheckResult) {
    assert!(c.passed, "{}: {}", c.name, c.detail);
}

fn assert_fail(c: &checks::CheckResult, needle: &str) {
    assert!(!c.passed, "{} should fail: {}", c.name, c.detail);
    assert!(c.detail.contains(needle), "{}: expected {needle:?} in {}", c.name, c.detail);
}

#[test]
fn a_good_lock_history_passes_every_check() {
    let ops = good();
    for c in lockcheck::all(&ops) {
        assert_pass(&c);
    }
    assert_pass(&checks::unexpected_responses(&ops));
    let s = lock::stats(&ops);
    assert_eq!((s.acquisitions, s.holders, s.writes_ok, s.writes_fenced, s.writes_unknown), (2, 2, 3, 1, 1));
    assert_eq!((s.stale_attempts, s.stale_refused, s.stale_judged), (1, 1, 1));
}

#[test]
fn token_order_catches_a_lower_token_applied_after_a_higher_one() {
    let mut ops = good();
    // Holder 5 writes again, applied after holder 8's write.
    ops.push(ok(700, 5, 9, 12, (12, 14)));
    assert_fail(&lockcheck::token_order(&ops), "token 5 applied at version 12 after token 8");
}

#[test]
fn token_order_catches_two_holders_in_one_entry_and_a_missing_version() {
    let mut ops = good();
    ops.push(ok(702, 9, 1, 11, (12, 13)));
    assert_fail(&lockcheck::token_order(&ops), "both applied at version 11");
    let mut ops = good();
    ops.push(write(701, 8, 7, Status::Ok, None, (12, 13)));
    assert_fail(&lockcheck::token_order(&ops), "without a version");
}

#[test]
fn no_write_after_higher_catches_a_write_begun_after_a_higher_token_wrote() {
    // Versions in token order, so only the real-time rule sees it: token 5's write began at
    // 14, after token 8's write returned at 13, and was still acknowledged.
    let ops = vec![ok(701, 8, 1, 11, (12, 13)), ok(700, 5, 1, 10, (14, 15))];
    assert_pass(&lockcheck::token_order(&ops));
    assert_fail(&lockcheck::no_write_after_higher(&ops), "token 5 acknowledged, begun after token 8");
    // Overlapping in time: no verdict from real time.
    let ops = vec![ok(701, 8, 1, 11, (12, 16)), ok(700, 5, 1, 10, (14, 15))];
    assert_pass(&lockcheck::no_write_after_higher(&ops));
}

#[test]
fn no_write_after_higher_catches_a_write_or_acquisition_after_a_higher_acquisition() {
    let ops = vec![acquire(701, 8, (0, 5)), ok(700, 5, 1, 10, (6, 7))];
    assert_fail(&lockcheck::no_write_after_higher(&ops), "token 5 acknowledged, begun after token 8");
    let ops = vec![acquire(701, 8, (0, 5)), acquire(700, 5, (6, 7))];
    assert_fail(&lockcheck::no_write_after_higher(&ops), "Acquire with token 5");
}

#[test]
fn stale_holder_check_catches_a_paused_holders_write_accepted() {
    let mut ops = good();
    // The stale write (token 5, begun at 14 after token 8's write returned at 13) succeeds.
    ops[5] = stale(ok(700, 5, 3, 14, (14, 15)));
    assert_fail(&lockcheck::stale_holder_fenced(&ops), "stale holder's write with token 5 acknowledged");
    // The same write begun before any higher token was seen is not judged.
    let ops = vec![acquire(700, 5, (0, 1)), stale(ok(700, 5, 3, 14, (2, 3))), acquire(701, 8, (1, 10))];
    let c = lockcheck::stale_holder_fenced(&ops);
    assert_pass(&c);
    assert!(c.detail.contains("0 begun after a higher token held"), "{}", c.detail);
    // Judged and refused.
    let c = lockcheck::stale_holder_fenced(&good());
    assert!(c.detail.contains("1 begun after a higher token held: 1 refused as fenced"), "{}", c.detail);
}

#[test]
fn final_read_catches_an_older_or_refused_value_and_a_missing_read() {
    let ok_ops = good();
    // An older acknowledged value.
    let mut ops = ok_ops.clone();
    *ops.last_mut().unwrap() = final_read(value(700, 5, 2), 7);
    assert_fail(&lockcheck::final_read(&ops), "final read returned");
    // The refused stale write's value.
    let mut ops = ok_ops.clone();
    *ops.last_mut().unwrap() = final_read(value(700, 5, 3), 12);
    assert_fail(&lockcheck::final_read(&ops), "final read returned");
    // Nothing.
    let mut ops = ok_ops.clone();
    *ops.last_mut().unwrap() = final_read(Value::Null, 0);
    assert_fail(&lockcheck::final_read(&ops), "final read returned null");
    // No final read at all.
    let mut ops = ok_ops.clone();
    ops.pop();
    assert_fail(&lockcheck::final_read(&ops), "no final read succeeded");
    // The unknown write of the latest holder, applied after its acknowledged one: fine.
    let mut ops = ok_ops;
    *ops.last_mut().unwrap() = final_read(value(701, 8, 2), 13);
    assert_pass(&lockcheck::final_read(&ops));
    // ... but not at a version before the last acknowledged write.
    *ops.last_mut().unwrap() = final_read(value(701, 8, 2), 9);
    assert_fail(&lockcheck::final_read(&ops), "final read returned");
}

#[test]
fn lock_refusals_are_expected_but_not_elsewhere() {
    let mut fenced_register = write(1, 5, 1, Status::Fail, None, (0, 1));
    fenced_register.workload = Workload::Register;
    assert_fail(&checks::unexpected_responses(&[fenced_register]), "HTTP 409 fenced");
    let mut bad = op(700, OpKind::Release, LOCK_NAME, json!(5), Status::Fail, (0, 1));
    bad.extra.error = Some("HTTP 400 invalid_id".into());
    assert_fail(&checks::unexpected_responses(&[bad]), "HTTP 400 invalid_id");
    let mut held = op(700, OpKind::Acquire, LOCK_NAME, json!("1"), Status::Fail, (0, 1));
    held.extra.error = Some("HTTP 409 lock_held".into());
    assert_pass(&checks::unexpected_responses(&[held]));
}

#[test]
fn the_lock_history_file_carries_tokens_and_stale_marks() {
    let dir = std::env::temp_dir().join(format!("cairn-lock-history-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    write_files(&dir, &good()).unwrap();
    let text = std::fs::read_to_string(dir.join("history-lock.jsonl")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 8);
    assert!(lines.iter().all(|l| l["workload"] == "lock"));
    let stale: Vec<&Value> = lines.iter().filter(|l| l["stale_holder"] == true).collect();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0]["token"], 5);
    assert_eq!(stale[0]["op"], "write");
}
