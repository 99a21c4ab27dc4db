//! The checks a run's history must pass, besides linearizability (`lin.rs`): counter bounds,
//! no lost acknowledged write, TTL expiry bounds, stale-read monotonicity and provenance, and
//! unexpected responses. Each returns a `CheckResult` whose detail names the offending ops.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::history::{Op, OpKind, Status, Workload};
use super::lin::{check_by_key, KeyOutcome};
use super::nemesis::FaultEvent;
use super::plan::FaultKind;
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
    fn new(name: &str, problems: Vec<String>, summary: String) -> CheckResult {
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

fn line(op: &Op) -> String {
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

/// Whether any fault was active (or healed less than the settle time ago) in `[from, to]`.
fn fault_near(faults: &[FaultEvent], from_ms: u64, to_ms: u64) -> bool {
    faults.iter().any(|f| f.start_wall_ms <= to_ms && f.end_wall_ms + TTL_SETTLE_MS >= from_ms)
}

/// TTL keys never disappear before `expiresAt` and, away from faults, are gone within the
/// documented bound after it. Returns the check and the worst lateness seen (ms).
pub fn ttl(ops: &[Op], faults: &[FaultEvent]) -> (CheckResult, u64) {
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
        let expiry_of: HashMap<String, u64> =
            acked.iter().map(|w| (w.rec.arg.to_string(), w.extra.expires_at_ms.unwrap_or(0))).collect();
        for r in list.iter().filter(|o| o.rec.op == OpKind::Read && o.is_ok()) {
            judged += 1;
            if r.rec.res.is_null() {
                // The latest write acknowledged before this read began must not have expired.
                let before = acked.iter().filter(|w| w.rec.ret <= r.rec.call).max_by_key(|w| w.rec.ret);
                if let Some(w) = before {
                    let exp = w.extra.expires_at_ms.unwrap_or(0);
                    if r.extra.ret_wall_ms + 5 < exp {
                        problems.push(format!(
                            "{key}: key absent {} ms before its expiresAt; write {} then read {}",
                            exp - r.extra.ret_wall_ms,
                            line(w),
                            line(r)
                        ));
                    }
                }
            } else if let Some(&exp) = expiry_of.get(&r.rec.res.to_string()) {
                let late = r.extra.call_wall_ms.saturating_sub(exp);
                worst_late = worst_late.max(late);
                let quiet = !fault_near(faults, exp.saturating_sub(TTL_SLACK_MS), r.extra.call_wall_ms);
                if late > TTL_TICK_BOUND_MS + TTL_SLACK_MS && quiet {
                    problems.push(format!("{key}: value read {late} ms after its expiresAt: {}", line(r)));
                }
            }
        }
    }
    let summary = format!(
        "{judged} reads judged; worst read after expiresAt: {worst_late} ms (bound {TTL_TICK_BOUND_MS} ms + {TTL_SLACK_MS} ms slack, judged away from faults)"
    );
    (CheckResult::new("ttl expiry", problems, summary), worst_late)
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

/// Responses the API contract does not allow for these requests: a write refused as
/// malformed, a 500 storage error, or a value of the wrong type.
pub fn unexpected_responses(ops: &[Op]) -> CheckResult {
    let mut problems = Vec::new();
    for op in ops {
        let err = op.extra.error.as_deref().unwrap_or("");
        let bad_status = err.starts_with("HTTP 4") && !err.starts_with("HTTP 404") && !err.contains("value_mismatch");
        let storage = err.starts_with("HTTP 500");
        let wrong_type = op.is_ok()
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
