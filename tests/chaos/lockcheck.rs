//! The lock workload's checks (`lock.rs` records the history). A fenced write is a write of
//! `LOCK_KEY` carrying a token (`extra.token`); it is acknowledged when the server answered
//! 200, and its `version` is the log index of the entry that applied it, which totally orders
//! the applied writes. "Evidence that token T held" at a moment is an acknowledged fenced write
//! or lock acquisition with token T that returned before that moment.
//!
//! - **lock writes in token order**: the acknowledged fenced writes, ordered by version, have
//!   non-decreasing tokens (two with the same version and different tokens would be two
//!   holders in one entry); each acknowledged write has a version.
//! - **lock nothing accepted after a higher token**: no fenced write or acquisition with token
//!   t is acknowledged when it began after evidence that a token above t held (the real-time
//!   form of "no write from a holder is accepted after a higher token has written"; the
//!   version form is the order check above).
//! - **lock stale holder fenced**: every write of a holder that stopped renewing and slept past
//!   its TTL (`stale_holder`), begun after evidence that a higher token held, was not
//!   acknowledged.
//! - **lock final read**: the final strong read of `LOCK_KEY` returns the last acknowledged
//!   write (by version), or a write whose outcome was unknown with a token at least as high,
//!   at a version at least as high; never a refused write or an older acknowledged one.

use serde_json::Value;

use super::checks::{line, CheckResult};
use super::history::{Op, OpKind, Status, Workload};
use super::lock::LOCK_KEY;
use super::workload::FINAL_READER;

fn fenced_writes(ops: &[Op]) -> impl Iterator<Item = &Op> {
    ops.iter().filter(|o| {
        o.workload == Workload::Lock
            && o.rec.op == OpKind::Write
            && o.rec.key == LOCK_KEY
            && o.rec.client != FINAL_READER
            && o.extra.token.is_some()
    })
}

/// Evidence of holders: (return time, token) of acknowledged fenced writes and acquisitions,
/// sorted by return, with the highest token among the first i+1 and the op that showed it.
struct Evidence<'a> {
    rets: Vec<u64>,
    best: Vec<(u64, &'a Op)>,
}

impl<'a> Evidence<'a> {
    fn of(ops: &'a [Op]) -> Evidence<'a> {
        let mut list: Vec<(u64, u64, &Op)> = ops
            .iter()
            .filter(|o| o.workload == Workload::Lock && o.is_ok() && o.rec.client != FINAL_READER)
            .filter(|o| matches!(o.rec.op, OpKind::Acquire | OpKind::Write))
            .filter_map(|o| Some((o.rec.ret, o.extra.token?, o)))
            .collect();
        list.sort_by_key(|(ret, _, _)| *ret);
        let mut best: Vec<(u64, &Op)> = Vec::with_capacity(list.len());
        for &(_, t, o) in &list {
            let b = match best.last() {
                Some(&(bt, bo)) if bt >= t => (bt, bo),
                _ => (t, o),
            };
            best.push(b);
        }
        Evidence { rets: list.iter().map(|(r, _, _)| *r).collect(), best }
    }

    /// The highest token with evidence that returned strictly before `at`, and its op.
    fn highest_before(&self, at: u64) -> Option<(u64, &'a Op)> {
        let n = self.rets.partition_point(|&r| r < at);
        n.checked_sub(1).map(|i| self.best[i])
    }
}

/// Acknowledged fenced writes, ordered by version, carry non-decreasing tokens.
pub fn token_order(ops: &[Op]) -> CheckResult {
    let mut problems = Vec::new();
    let mut acked: Vec<(u64, u64, &Op)> = Vec::new();
    for o in fenced_writes(ops).filter(|o| o.is_ok()) {
        match o.extra.version {
            Some(v) => acked.push((v, o.extra.token.unwrap_or(0), o)),
            None => problems.push(format!("acknowledged fenced write without a version: {}", line(o))),
        }
    }
    acked.sort_by_key(|(v, t, _)| (*v, *t));
    for pair in acked.windows(2) {
        let ((v1, t1, o1), (v2, t2, o2)) = (pair[0], pair[1]);
        if t2 < t1 {
            problems.push(format!(
                "token {t2} applied at version {v2} after token {t1} at version {v1}: {} then {}",
                line(o1),
                line(o2)
            ));
        } else if v1 == v2 && t1 != t2 {
            problems.push(format!("tokens {t1} and {t2} both applied at version {v1}: {} and {}", line(o1), line(o2)));
        }
    }
    let holders: std::collections::BTreeSet<u64> = acked.iter().map(|(_, t, _)| *t).collect();
    let summary = format!("{} acknowledged fenced writes from {} holders", acked.len(), holders.len());
    CheckResult::new("lock writes in token order", problems, summary)
}

/// No fenced write or acquisition with token t is acknowledged when it began after a higher
/// token was seen holding.
pub fn no_write_after_higher(ops: &[Op]) -> CheckResult {
    let ev = Evidence::of(ops);
    let mut problems = Vec::new();
    let mut judged = 0;
    let subjects = ops.iter().filter(|o| {
        o.workload == Workload::Lock
            && o.is_ok()
            && o.rec.client != FINAL_READER
            && matches!(o.rec.op, OpKind::Acquire | OpKind::Write)
    });
    for o in subjects {
        let Some(t) = o.extra.token else { continue };
        judged += 1;
        if let Some((high, by)) = ev.highest_before(o.rec.call) {
            if high > t {
                problems.push(format!(
                    "{:?} with token {t} acknowledged, begun after token {high} was seen holding: {} after {}",
                    o.rec.op,
                    line(o),
                    line(by)
                ));
            }
        }
    }
    let summary = format!("{judged} acknowledged fenced writes and acquisitions judged");
    CheckResult::new("lock nothing accepted after a higher token", problems, summary)
}

/// Stale-holder writes begun after a higher token was seen holding.
fn stale_after_higher(ops: &[Op]) -> Vec<(&Op, u64, &Op)> {
    let ev = Evidence::of(ops);
    fenced_writes(ops)
        .filter(|o| o.extra.stale_holder)
        .filter_map(|o| {
            let (high, by) = ev.highest_before(o.rec.call)?;
            (high > o.extra.token.unwrap_or(0)).then_some((o, high, by))
        })
        .collect()
}

/// How many stale-holder writes the stale check judges.
pub fn stale_judged(ops: &[Op]) -> usize {
    stale_after_higher(ops).len()
}

/// A holder paused past its lease cannot write once a higher token holds.
pub fn stale_holder_fenced(ops: &[Op]) -> CheckResult {
    let all = fenced_writes(ops).filter(|o| o.extra.stale_holder).count();
    let judged = stale_after_higher(ops);
    let mut problems = Vec::new();
    let (mut unknown, mut fenced) = (0, 0);
    for (o, high, by) in &judged {
        match o.rec.status {
            Status::Ok => problems.push(format!(
                "stale holder's write with token {} acknowledged after token {high} was seen holding: {} after {}",
                o.extra.token.unwrap_or(0),
                line(o),
                line(by)
            )),
            Status::Info => unknown += 1,
            Status::Fail if super::lock::is_fenced(o) => fenced += 1,
            Status::Fail => {}
        }
    }
    let summary = format!(
        "{all} stale-holder writes, {} begun after a higher token held: {fenced} refused as fenced, {unknown} unknown, {} failed otherwise (no leader, node down)",
        judged.len(),
        judged.len() - fenced - unknown - problems.len()
    );
    CheckResult::new("lock stale holder fenced", problems, summary)
}

/// The final strong read of `LOCK_KEY` shows the last acknowledged fenced write, or a later
/// unknown one.
pub fn final_read(ops: &[Op]) -> CheckResult {
    let writes: Vec<&Op> = fenced_writes(ops).collect();
    let last = writes.iter().filter(|o| o.is_ok()).max_by_key(|o| o.extra.version.unwrap_or(0));
    let fin = ops.iter().find(|o| {
        o.workload == Workload::Lock
            && o.rec.client == FINAL_READER
            && o.rec.op == OpKind::Read
            && o.rec.key == LOCK_KEY
            && o.is_ok()
    });
    let mut problems = Vec::new();
    let summary;
    match fin {
        None if writes.is_empty() => summary = "no fenced write was attempted".to_string(),
        None => {
            summary = String::new();
            problems.push(format!("{LOCK_KEY}: no final read succeeded"));
        }
        Some(fin) => {
            let seen = &fin.rec.res;
            let seen_version = fin.extra.version.unwrap_or(0);
            let (last_token, last_version) =
                last.map(|w| (w.extra.token.unwrap_or(0), w.extra.version.unwrap_or(0))).unwrap_or((0, 0));
            let is_last = last.is_some_and(|w| w.rec.arg == *seen);
            let unknown = writes.iter().find(|w| w.rec.status == Status::Info && w.rec.arg == *seen);
            let later_unknown = unknown.is_some_and(|w| {
                w.extra.token.unwrap_or(0) >= last_token && (last.is_none() || seen_version > last_version)
            });
            let nothing = seen.is_null() && last.is_none();
            if !(is_last || later_unknown || nothing) {
                let last_line = last.map(|w| line(w)).unwrap_or_else(|| "none".into());
                let origin = writes.iter().find(|w| w.rec.arg == *seen).map(|w| line(w));
                problems.push(format!(
                    "{LOCK_KEY}: final read returned {seen} at version {seen_version} (written by {}), but the last acknowledged write was {last_line}",
                    origin.unwrap_or_else(|| "no recorded write".into())
                ));
            } else if is_last && seen_version != last_version && last_version != 0 {
                problems.push(format!(
                    "{LOCK_KEY}: final read returned the last acknowledged value at version {seen_version}, but it was acknowledged at version {last_version}"
                ));
            }
            summary = format!(
                "final value {} at version {seen_version}; last acknowledged write token {last_token} at version {last_version}",
                if seen == &Value::Null { "absent".to_string() } else { seen.to_string() }
            );
        }
    }
    CheckResult::new("lock final read", problems, summary)
}

/// Every lock check.
pub fn all(ops: &[Op]) -> Vec<CheckResult> {
    vec![token_order(ops), no_write_after_higher(ops), stale_holder_fenced(ops), final_read(ops)]
}
