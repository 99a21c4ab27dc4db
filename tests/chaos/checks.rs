//! The checks a run's history must pass, besides linearizability (`lin.rs`): counter bounds,
//! no lost acknowledged write, TTL expiry bounds (allowing for injected clock skew, `skew.rs`)
//! and the logical clock behind them, stale-read monotonicity and provenance, membership
//! changes carried through, and unexpected responses. Each returns a `CheckResult` whose
//! detail names the offending ops.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::history::{Op, OpKind, Status, Workload};
use super::lin::{check_by_key, KeyOutcome};
use super::nemesis::FaultEvent;
use super::plan::FaultKind;
use super::skew::Skew;
use super::workload::FINAL_READER;

/// The documented TTL bound: a key disappears within about 2 s after `expiresAt`.
pub const TTL_TICK_BOUND_MS: u64 = 2_000;
/// Scheduling slack on a shared 2-core machine, added to the bound above.
pub const TTL_SLACK_MS: u64 = 1_000;
/// After a fault heals, the expiry tick needs a stable leader again; reads this soon after a
/// fault are not judged against the bound (they are reported in the figures).
pub const TTL_SETTLE_MS: u64 = 5_000;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

impl CheckResult {
    pub(super) fn new(name: &str, problems: Vec<String>, summary: String) -> CheckResult {
        let passed = problems.is_empty();
        let mut detail = summary;
        for p in problems.iter().take(8) {
            detail.push_str("\n  - ");
            detail.push_str(p);
        }
        if problems.len() > 8 {
            detail.push_str(&format!("\n  ... and {} more", problems.len() - 8));
        }
        CheckResult { name: name.to_string(), passed, detail }
    }
}

pub(super) fn line(op: &Op) -> String {
    serde_json::to_string(&op.rec).unwrap_or_default()
}

/// Linearizability of the register and counter histories (final reads included), key by key.
pub fn linearizability(ops: &[Op], workload: Workload, budget: u64) -> CheckResult {
    let records: Vec<_> = ops.iter().filter(|o| o.workload == workload).map(|o| o.rec.clone()).collect();
    let name = format!("linearizable ({})", workload.name());
    let verdicts = match check_by_key(&records, budget) {
        Ok(v) => v,
        Err(e) => return CheckResult::new(&name, vec![format!("history not checkable: {e}")], String::new()),
    };
    let checked: usize = verdicts.iter().map(|v| v.checked).sum();
    let recorded: usize = verdicts.iter().map(|v| v.records).sum();
    let mut problems = Vec::new();
    for v in &verdicts {
        match &v.outcome {
            KeyOutcome::Linearizable => {}
            KeyOutcome::Violation(why) => problems.push(format!("key {} ({} model): {why}", v.key, v.model)),
            KeyOutcome::Unknown(why) => problems.push(format!("key {}: checker gave up (not a pass): {why}", v.key)),
        }
    }
    let summary = format!(
        "{} keys, {checked} of {recorded} operations checked (failed ops and unsuccessful reads left out)",
        verdicts.len()
    );
    CheckResult::new(&name, problems, summary)
}

/// Each counter's final value lies between its acknowledged increments and those plus the
/// unknown ones.
pub fn counter_bounds(ops: &[Op]) -> CheckResult {
    let mut keys: BTreeMap<&str, (i64, i64, Option<&Op>)> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.workload == Workload::Counter) {
        let e = keys.entry(op.rec.key.as_str()).or_default();
        match (op.rec.op, op.rec.status) {
            (OpKind::Incr, Status::Ok) => e.0 += 1,
            (OpKind::Incr, Status::Info) => e.1 += 1,
            (OpKind::Read, Status::Ok) if op.rec.client == FINAL_READER => e.2 = Some(op),
            _ => {}
        }
    }
    let mut problems = Vec::new();
    for (key, (acked, unknown, fin)) in &keys {
        match fin {
            None => problems.push(format!("{key}: no final read succeeded")),
            Some(op) => {
                let v = op.rec.res.as_i64().unwrap_or(0);
                if v < *acked || v > acked + unknown {
                    problems.push(format!(
                        "{key}: final value {v} outside [{acked} acknowledged, {} acknowledged + unknown]",
                        acked + unknown
                    ));
                }
            }
        }
    }
    CheckResult::new("counter bounds", problems, format!("{} counters", keys.len()))
}

/// Single-writer keys (stale workload): after every fault healed, a strong read returns the
/// last acknowledged write or a write whose outcome was unknown — never an older
/// acknowledged value, a failed write, or nothing.
pub fn no_lost_writes(ops: &[Op]) -> CheckResult {
    let mut keys: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.workload == Workload::Stale) {
        if op.rec.op == OpKind::Write || op.rec.client == FINAL_READER {
            keys.entry(op.rec.key.as_str()).or_default().push(op);
        }
    }
    let mut problems = Vec::new();
    let mut acked_total = 0;
    for (key, list) in &keys {
        let writes: Vec<&&Op> = list.iter().filter(|o| o.rec.op == OpKind::Write).collect();
        let acked: Vec<&&Op> = writes.iter().copied().filter(|o| o.is_ok()).collect();
        acked_total += acked.len();
        let last_acked = acked.iter().max_by_key(|o| o.rec.call);
        let Some(fin) = list.iter().find(|o| o.rec.op == OpKind::Read && o.is_ok()) else {
            problems.push(format!("{key}: no final read succeeded"));
            continue;
        };
        let seen = &fin.rec.res;
        let explained = match last_acked {
            Some(w) if w.rec.arg == *seen => true,
            _ => writes.iter().any(|w| w.rec.status == Status::Info && w.rec.arg == *seen),
        };
        let no_write_at_all = seen.is_null() && last_acked.is_none();
        if !explained && !no_write_at_all {
            let last = last_acked.map(|w| line(w)).unwrap_or_else(|| "none".into());
            problems.push(format!("{key}: final read returned {seen}, but the last acknowledged write was {last}"));
        }
    }
    let summary = format!("{} keys, {acked_total} acknowledged writes", keys.len());
    CheckResult::new("no lost acknowledged write", problems, summary)
}

/// Whether any fault that can hold up the expiry tick (everything but a clock step, whose
/// effect the skew bounds account for) was active, or healed less than the settle time ago,
/// in `[from, to]`.
fn fault_near(faults: &[FaultEvent], from_ms: u64, to_ms: u64) -> bool {
    faults
        .iter()
        .filter(|f| f.kind != FaultKind::Clock)
        .any(|f| f.start_wall_ms <= to_ms && f.end_wall_ms + TTL_SETTLE_MS >= from_ms)
}

/// TTL keys never disappear before `expiresAt` (less how far a leader's clock ran ahead of the
/// true time, `Skew::ahead_at`), once read as gone never come back, and, away from faults, are
/// gone within the documented bound after `expiresAt` (plus how far a leader's clock ran
/// behind, `Skew::behind_within`). Returns the check and the worst lateness seen (ms).
pub fn ttl(ops: &[Op], faults: &[FaultEvent]) -> (CheckResult, u64) {
    let skew = Skew::of(faults);
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.workload == Workload::Ttl) {
        by_key.entry(op.rec.key.as_str()).or_default().push(op);
    }
    let mut problems = Vec::new();
    let mut worst_late = 0u64;
    let mut judged = 0;
    for (key, list) in &by_key {
        let acked: Vec<&&Op> =
            list.iter().filter(|o| o.rec.op == OpKind::Write && o.is_ok() && o.extra.expires_at_ms.is_some()).collect();
        let write_of: HashMap<String, &&Op> = acked.iter().map(|w| (w.rec.arg.to_string(), *w)).collect();
        let reads: Vec<&&Op> = list.iter().filter(|o| o.rec.op == OpKind::Read && o.is_ok()).collect();
        for r in &reads {
            judged += 1;
            if r.rec.res.is_null() {
                // The latest write acknowledged before this read began must not have expired.
                let before = acked.iter().filter(|w| w.rec.ret <= r.rec.call).max_by_key(|w| w.rec.ret);
                if let Some(w) = before {
                    let exp = w.extra.expires_at_ms.unwrap_or(0);
                    let ahead = skew.ahead_at(r.extra.ret_wall_ms);
                    if r.extra.ret_wall_ms + ahead + 5 < exp {
                        problems.push(format!(
                            "{key}: key absent {} ms before its expiresAt (a leader's clock was at most {ahead} ms ahead); write {} then read {}",
                            exp - r.extra.ret_wall_ms,
                            line(w),
                            line(r)
                        ));
                    }
                }
            } else if let Some(w) = write_of.get(&r.rec.res.to_string()) {
                let exp = w.extra.expires_at_ms.unwrap_or(0);
                let late = r.extra.call_wall_ms.saturating_sub(exp);
                worst_late = worst_late.max(late);
                let quiet = !fault_near(faults, exp.saturating_sub(TTL_SLACK_MS), r.extra.call_wall_ms);
                let behind = skew.behind_within(exp.saturating_sub(TTL_SLACK_MS), r.extra.call_wall_ms);
                if late > TTL_TICK_BOUND_MS + TTL_SLACK_MS + behind && quiet {
                    problems.push(format!(
                        "{key}: value read {late} ms after its expiresAt (a leader's clock was at most {behind} ms behind): {}",
                        line(r)
                    ));
                }
                // Gone for good: an acknowledged value, once a read that began after its write
                // returned found the key absent, never comes back (values are unique).
                let gone =
                    reads.iter().find(|a| a.rec.res.is_null() && a.rec.call > w.rec.ret && a.rec.ret < r.rec.call);
                if let Some(a) = gone {
                    problems.push(format!(
                        "{key}: value came back after the key was read as absent: write {} then read {} then read {}",
                        line(w),
                        line(a),
                        line(r)
                    ));
                }
            }
        }
    }
    let (ahead, behind) = skew.extremes();
    let summary = format!(
        "{judged} reads judged; worst read after expiresAt: {worst_late} ms (bound {TTL_TICK_BOUND_MS} ms + {TTL_SLACK_MS} ms slack, judged away from faults); leader clock skew allowed for: up to {ahead} ms ahead, {behind} ms behind"
    );
    (CheckResult::new("ttl expiry", problems, summary), worst_late)
}

/// The replicated logical clock, as each acknowledged TTL write shows it (`expiresAt` less the
/// TTL is the clock the write was applied at): it never goes back (a write that began after
/// another returned saw a clock at least as late), and it is never ahead of the true time by
/// more than a leader's clock was (`Skew::ahead_at`; 0 without clock faults). A follower's
/// clock must play no part.
pub fn ttl_clock(ops: &[Op], faults: &[FaultEvent], ttl_s: u64) -> CheckResult {
    let skew = Skew::of(faults);
    let mut writes: Vec<(&Op, u64)> = ops
        .iter()
        .filter(|o| o.workload == Workload::Ttl && o.rec.op == OpKind::Write && o.is_ok())
        .filter_map(|o| Some((o, o.extra.expires_at_ms?.checked_sub(ttl_s * 1_000)?)))
        .collect();
    writes.sort_by_key(|(o, _)| o.rec.ret);
    let mut problems = Vec::new();
    // Latest clock among the writes returned so far, and the write that showed it.
    let mut prefix: Vec<(u64, &Op)> = Vec::with_capacity(writes.len());
    for &(o, c) in &writes {
        let best = match prefix.last() {
            Some(&(pc, po)) if pc >= c => (pc, po),
            _ => (c, o),
        };
        prefix.push(best);
    }
    for &(o, c) in &writes {
        let ahead = skew.ahead_at(o.extra.ret_wall_ms);
        if c > o.extra.ret_wall_ms + ahead + 5 {
            problems.push(format!(
                "clock {} ms ahead of the true time when the write returned (a leader's clock was at most {ahead} ms ahead): {}",
                c - o.extra.ret_wall_ms,
                line(o)
            ));
        }
        let before = writes.partition_point(|(w, _)| w.rec.ret < o.rec.call);
        if let Some(&(pc, po)) = before.checked_sub(1).map(|i| &prefix[i]) {
            if c < pc {
                problems.push(format!("clock went back by {} ms: write {} then write {}", pc - c, line(po), line(o)));
            }
        }
    }
    let summary = format!("{} acknowledged writes show the clock", writes.len());
    CheckResult::new("ttl clock never back, never ahead of a leader's", problems, summary)
}

/// Stale (follower) reads: per node and key, versions never go backwards; every value read
/// was written (by a write not reported as failed) and not before that write was issued.
pub fn stale_reads(ops: &[Op], faults: &[FaultEvent], urls: &[String]) -> CheckResult {
    let mut writes: HashMap<(&str, String), &Op> = HashMap::new();
    for op in ops.iter().filter(|o| matches!(o.workload, Workload::Stale | Workload::Ttl)) {
        if op.rec.op == OpKind::Write {
            writes.insert((op.rec.key.as_str(), op.rec.arg.to_string()), op);
        }
    }
    let mut problems = Vec::new();
    let mut last: HashMap<(&str, &str), &Op> = HashMap::new();
    let mut reads: Vec<&Op> = ops
        .iter()
        .filter(|o| matches!(o.workload, Workload::Stale | Workload::Ttl) && o.rec.op == OpKind::Read && o.is_ok())
        .collect();
    reads.sort_by_key(|o| o.rec.call);
    for r in &reads {
        let key = r.rec.key.as_str();
        if !r.rec.res.is_null() {
            match writes.get(&(key, r.rec.res.to_string())) {
                None => problems.push(format!("value never written by anyone: {}", line(r))),
                Some(w) if w.rec.status == Status::Fail => problems.push(format!(
                    "read a write that was reported as failed ({}): {} <- {}",
                    w.extra.error.clone().unwrap_or_default(),
                    line(r),
                    line(w)
                )),
                Some(w) if w.rec.call > r.rec.ret => {
                    problems.push(format!("read a value before it was written: {} <- {}", line(r), line(w)))
                }
                _ => {}
            }
        }
        // TTL keys legitimately disappear; monotonicity is judged on the stale keys only.
        if r.workload != Workload::Stale {
            continue;
        }
        let node = r.rec.node.as_str();
        if let Some(prev) = last.get(&(node, key)) {
            let (pv, cv) = (prev.extra.version.unwrap_or(0), r.extra.version.unwrap_or(0));
            if cv < pv {
                let id = urls.iter().position(|u| u == node).map(|i| i as u64 + 1);
                let restarted = faults.iter().any(|f| {
                    matches!(f.kind, FaultKind::KillRandom | FaultKind::KillLeader | FaultKind::KillAll)
                        && id.is_some_and(|id| f.targets.contains(&id))
                        && f.end_ns >= prev.rec.ret
                        && f.start_ns <= r.rec.call
                });
                let note = if restarted { " (the node was killed and restarted in between)" } else { "" };
                problems.push(format!(
                    "{node} {key}: version went backwards from {pv} to {cv}{note}: {} then {}",
                    line(prev),
                    line(r)
                ));
            }
        }
        last.insert((node, key), r);
    }
    CheckResult::new("stale reads monotonic and written", problems, format!("{} successful reads", reads.len()))
}

/// Every membership step was carried through: the new node was promoted and the chosen voter
/// removed, each within its deadline (`reconfig.rs`).
pub fn membership(faults: &[FaultEvent]) -> CheckResult {
    let steps: Vec<&FaultEvent> = faults.iter().filter(|f| f.kind == FaultKind::Membership).collect();
    let problems: Vec<String> = steps.iter().filter_map(|f| f.failure.clone()).collect();
    let summary = format!(
        "{} membership steps: {}",
        steps.len(),
        steps.iter().map(|f| f.note.as_str()).collect::<Vec<_>>().join("; ")
    );
    CheckResult::new("membership changes complete", problems, summary)
}

/// The refusals the lock workload runs into by design: a fenced write refused, a wait that ran
/// out, a lease that expired before its keepalive (or lock request, or revoke), a release of a
/// token no longer queued.
fn expected_lock_refusal(op: OpKind, err: &str) -> bool {
    match op {
        OpKind::Write => err == "HTTP 409 fenced",
        OpKind::Acquire => err == "HTTP 409 lock_held" || err == "HTTP 404 lease_not_found",
        OpKind::Keepalive | OpKind::Revoke => err == "HTTP 404 lease_not_found",
        OpKind::Release => err == "HTTP 404 not_found",
        _ => false,
    }
}

/// Responses the API contract does not allow for these requests: a write refused as
/// malformed, a 500 storage error, or a value of the wrong type (the lock workload's expected
/// refusals aside).
pub fn unexpected_responses(ops: &[Op]) -> CheckResult {
    let mut problems = Vec::new();
    for op in ops {
        let err = op.extra.error.as_deref().unwrap_or("");
        if op.workload == Workload::Lock && expected_lock_refusal(op.rec.op, err) {
            continue;
        }
        let bad_status = err.starts_with("HTTP 4") && !err.starts_with("HTTP 404") && !err.contains("value_mismatch");
        let storage = err.starts_with("HTTP 500");
        // The lock workload writes objects.
        let wrong_type = op.is_ok()
            && op.workload != Workload::Lock
            && matches!(op.rec.op, OpKind::Read | OpKind::Incr)
            && !(op.rec.res.is_null() || op.rec.res.is_i64() || op.rec.res.is_boolean());
        let write_404 = err.starts_with("HTTP 404") && op.rec.op != OpKind::Read;
        if bad_status || storage || wrong_type || write_404 {
            problems.push(format!("{err}: {}", line(op)));
        }
    }
    let res_values = ops.iter().filter(|o| o.rec.res != Value::Null).count();
    CheckResult::new("no unexpected responses", problems, format!("{res_values} results inspected"))
}
