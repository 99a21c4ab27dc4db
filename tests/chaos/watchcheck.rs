//! The watch guarantees (docs/testing.md, "Watch guarantees"), named as in etcd's robustness
//! suite: each check compares what every watcher received (`watch::WatcherLog`) with the
//! reference history read after the finale (`watch::Reference`) and the batch writes of the
//! watch workload; a watcher on a narrower prefix is compared with the reference's view of
//! that prefix (`Reference::view`). A watcher's *range* is `(start, end]`: from the progress id its fresh watch
//! began at to the last id (change or progress) it received.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checks::CheckResult;
use super::history::{Op, Status, Workload};
use super::watch::{Change, EventKind, Reference, WatcherLog};

/// The range a watcher covers, `(start, end]`; `None` if it received no event with an id.
pub fn range(w: &WatcherLog) -> Option<(u64, u64)> {
    let first = w.events.iter().find(|e| e.id.is_some())?;
    let id = first.id?;
    let start = if first.kind == EventKind::Progress { id } else { id.saturating_sub(1) };
    let end = w.events.iter().filter_map(|e| e.id).max()?;
    Some((start, end))
}

fn changes(w: &WatcherLog) -> impl Iterator<Item = (usize, u64, &Vec<Change>)> {
    w.events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == EventKind::Change)
        .filter_map(|(j, e)| e.id.map(|id| (j, id, &e.changes)))
}

/// ordered: the ids a watcher receives (changes and progress, across all its connections)
/// strictly increase.
pub fn ordered(logs: &[WatcherLog]) -> CheckResult {
    let mut problems = Vec::new();
    let mut n = 0;
    for w in logs {
        let mut prev: Option<u64> = None;
        for e in w.events.iter().filter(|e| matches!(e.kind, EventKind::Change | EventKind::Progress)) {
            let Some(id) = e.id else {
                problems.push(format!("watcher {}: a {:?} event without an id", w.watcher, e.kind));
                continue;
            };
            n += 1;
            if let Some(p) = prev.filter(|p| id <= *p) {
                problems.push(format!("watcher {}: id {id} after {p} (connection {})", w.watcher, e.conn));
            }
            prev = Some(prev.map_or(id, |p| p.max(id)));
        }
    }
    CheckResult::new("watch ordered", problems, format!("{n} ids over {} watchers", logs.len()))
}

/// unique: no watcher receives the same change id twice.
pub fn unique(logs: &[WatcherLog]) -> CheckResult {
    let mut problems = Vec::new();
    for w in logs {
        let mut seen = BTreeMap::new();
        for (_, id, _) in changes(w) {
            *seen.entry(id).or_insert(0) += 1;
        }
        for (id, n) in seen.into_iter().filter(|(_, n)| *n > 1) {
            problems.push(format!("watcher {}: change {id} received {n} times", w.watcher));
        }
    }
    CheckResult::new("watch unique", problems, format!("{} watchers", logs.len()))
}

/// atomic: each change event is one whole entry: its `data.index` is its id, and its changes
/// are exactly the reference entry's at that index (no change split off or added).
pub fn atomic(logs: &[WatcherLog], r: &Reference) -> CheckResult {
    let mut problems = Vec::new();
    let mut n = 0;
    for w in logs {
        let r = &r.view(&w.prefix);
        for e in w.events.iter().filter(|e| e.kind == EventKind::Change) {
            let Some(id) = e.id else { continue };
            n += 1;
            if e.index != Some(id) {
                problems.push(format!("watcher {}: event id {id} carries index {:?}", w.watcher, e.index));
            }
            if id <= r.after || id > r.end {
                problems
                    .push(format!("watcher {}: change {id} outside the reference ({}, {}]", w.watcher, r.after, r.end));
                continue;
            }
            match r.entries.get(&id) {
                None => problems
                    .push(format!("watcher {}: change {id}, but entry {id} has no change under the prefix", w.watcher)),
                Some(want) if *want != e.changes => problems.push(format!(
                    "watcher {}: entry {id} received as {:?}, the reference has {:?}",
                    w.watcher, e.changes, want
                )),
                Some(_) => {}
            }
        }
    }
    CheckResult::new("watch atomic", problems, format!("{n} change events against the reference from {}", r.node))
}

/// reliable: within its range, a watcher received every change id the reference has.
pub fn reliable(logs: &[WatcherLog], r: &Reference) -> CheckResult {
    let mut problems = Vec::new();
    let mut covered = 0;
    for w in logs {
        let Some((start, end)) = range(w) else { continue };
        let r = &r.view(&w.prefix);
        if start < r.after || end > r.end {
            problems.push(format!(
                "watcher {}: range ({start}, {end}] not inside the reference ({}, {}]",
                w.watcher, r.after, r.end
            ));
        }
        let got: BTreeSet<u64> = changes(w).map(|(_, id, _)| id).collect();
        let missing: Vec<u64> =
            r.entries.range(start + 1..=end).map(|(id, _)| *id).filter(|id| !got.contains(id)).collect();
        covered += r.entries.range(start + 1..=end).count();
        if !missing.is_empty() {
            problems.push(format!(
                "watcher {}: {} of the reference's entries in ({start}, {end}] never arrived: {:?}",
                w.watcher,
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        }
    }
    CheckResult::new("watch reliable", problems, format!("{covered} reference entries inside watchers' ranges"))
}

/// resumable: every reconnect resumed from the last id received (the harness's own rule), and
/// every resume point some node refused (410, or `compacted` mid-stream) was later served from
/// the same point by another node: no watcher had to skip ahead.
pub fn resumable(logs: &[WatcherLog]) -> CheckResult {
    let mut problems = Vec::new();
    let mut resumes = 0;
    for w in logs {
        let mut last: Option<u64> = None;
        let mut events = w.events.iter().peekable();
        for (k, c) in w.conns.iter().enumerate() {
            while let Some(e) = events.next_if(|e| e.conn < k) {
                if matches!(e.kind, EventKind::Change | EventKind::Progress) && e.id.is_some() {
                    last = e.id;
                }
            }
            if c.after != last {
                problems.push(format!(
                    "watcher {}: connection {k} resumed after {:?}, last id was {last:?}",
                    w.watcher, c.after
                ));
            }
            if c.after.is_some() && c.streamed() {
                resumes += 1;
            }
            let refused = c.answer == "http 410" || c.end == "compacted";
            let from = if c.end == "compacted" {
                w.events
                    .iter()
                    .filter(|e| e.conn == k && e.kind != EventKind::Compacted)
                    .filter_map(|e| e.id)
                    .max()
                    .or(c.after)
            } else {
                c.after
            };
            if refused {
                let served = w.conns[k + 1..].iter().any(|d| d.after == from && d.streamed());
                if !served {
                    problems.push(format!(
                        "watcher {}: {} refused the resume after {from:?} ({}, compactedIndex {:?}) and no node served it later",
                        w.watcher, c.node, if c.end == "compacted" { "event compacted" } else { "410" }, c.compacted_index
                    ));
                }
            }
        }
    }
    CheckResult::new("watch resumable", problems, format!("{resumes} resumed streams"))
}

/// bookmarkable: a progress id P never passes an undelivered change: no change with id ≤ P
/// arrives after it on the same watcher, and every reference entry in (start, P] arrived
/// before it.
pub fn bookmarkable(logs: &[WatcherLog], r: &Reference) -> CheckResult {
    let mut problems = Vec::new();
    let mut n = 0;
    for w in logs {
        let Some((start, _)) = range(w) else { continue };
        let r = &r.view(&w.prefix);
        let mut got = BTreeSet::new();
        for (j, e) in w.events.iter().enumerate() {
            match (e.kind, e.id) {
                (EventKind::Change, Some(id)) => {
                    got.insert(id);
                }
                (EventKind::Progress, Some(p)) => {
                    n += 1;
                    if let Some(late) =
                        w.events[j + 1..].iter().find(|l| l.kind == EventKind::Change && l.id.is_some_and(|id| id <= p))
                    {
                        problems
                            .push(format!("watcher {}: change {:?} arrived after progress {p}", w.watcher, late.id));
                    }
                    let lo = start.max(r.after) + 1;
                    if lo <= p {
                        let missing: Vec<u64> =
                            r.entries.range(lo..=p).map(|(id, _)| *id).filter(|id| !got.contains(id)).collect();
                        if !missing.is_empty() {
                            problems.push(format!(
                                "watcher {}: progress {p} before changes {:?} arrived",
                                w.watcher,
                                &missing[..missing.len().min(10)]
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    CheckResult::new("watch bookmarkable", problems, format!("{n} progress events"))
}

/// The (key, value) pairs of a watch-workload batch write (`arg` is `[[key, value], …]`).
fn pairs(op: &Op) -> Vec<(String, Value)> {
    op.rec
        .arg
        .as_array()
        .map(|a| a.iter().filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].clone()))).collect())
        .unwrap_or_default()
}

/// The pairs of a write a watch on `prefix` sees.
fn under(pairs: &[(String, Value)], prefix: &str) -> Vec<(String, Value)> {
    pairs.iter().filter(|(k, _)| k.starts_with(prefix)).cloned().collect()
}

fn holds(changes: &[Change], pairs: &[(String, Value)], version: Option<u64>) -> bool {
    pairs.iter().all(|(k, v)| {
        changes
            .iter()
            .any(|c| c.op == "set" && c.key == *k && c.value == *v && version.is_none_or(|ver| c.version == ver))
    })
}

fn covers(w: &WatcherLog, at: u64) -> bool {
    range(w).is_some_and(|(s, e)| s < at && at <= e)
}

/// Every acknowledged batch write appears, whole, exactly once in every watcher whose range
/// holds its version (the entry's index from the write's answer), and in the reference.
pub fn acknowledged(logs: &[WatcherLog], r: &Reference, ops: &[Op]) -> CheckResult {
    let mut problems = Vec::new();
    let mut checked = 0;
    for op in ops.iter().filter(|o| o.workload == Workload::Watch && o.rec.status == Status::Ok) {
        let want = pairs(op);
        let Some(v) = op.extra.version else {
            problems.push(format!("acknowledged write {} without a version", op.rec.arg));
            continue;
        };
        if v <= r.after {
            continue; // before every watcher began
        }
        checked += 1;
        if !r.entries.get(&v).is_some_and(|c| holds(c, &want, Some(v))) {
            problems.push(format!("acknowledged write {} at {v} is not in the reference", op.rec.arg));
        }
        for w in logs.iter().filter(|w| covers(w, v)) {
            let want = under(&want, &w.prefix);
            if want.is_empty() {
                continue;
            }
            let times = changes(w).filter(|(_, id, c)| *id == v && holds(c, &want, Some(v))).count();
            if times != 1 {
                problems.push(format!(
                    "watcher {}: acknowledged write {} at {v} received {times} times",
                    w.watcher, op.rec.arg
                ));
            }
        }
    }
    CheckResult::new(
        "watch acknowledged writes exactly once",
        problems,
        format!("{checked} acknowledged writes after the watchers began"),
    )
}

/// A write whose outcome is unknown (found by its unique values) appears, whole, in every
/// watcher whose range holds the entry it landed in, or in no watcher at all; a failed write
/// appears nowhere.
pub fn unknown(logs: &[WatcherLog], r: &Reference, ops: &[Op]) -> CheckResult {
    let mut problems = Vec::new();
    let (mut landed, mut absent) = (0, 0);
    for op in ops.iter().filter(|o| o.workload == Workload::Watch && o.rec.status != Status::Ok) {
        let want = pairs(op);
        let touches = |c: &[Change]| want.iter().any(|(k, v)| c.iter().any(|c| c.key == *k && c.value == *v));
        let at = r.entries.iter().find(|(_, c)| touches(c)).map(|(id, _)| *id);
        match (op.rec.status, at) {
            (Status::Fail, Some(at)) => {
                problems.push(format!("failed write {} is in the reference at {at}", op.rec.arg))
            }
            (_, Some(at)) => {
                landed += 1;
                if !holds(&r.entries[&at], &want, Some(at)) {
                    problems.push(format!("write {} is only partly in reference entry {at}", op.rec.arg));
                }
                for w in logs.iter().filter(|w| covers(w, at)) {
                    let want = under(&want, &w.prefix);
                    if want.is_empty() {
                        continue;
                    }
                    if !changes(w).any(|(_, id, c)| id == at && holds(c, &want, Some(at))) {
                        problems.push(format!(
                            "watcher {}: unknown write {} (entry {at}) never arrived",
                            w.watcher, op.rec.arg
                        ));
                    }
                }
            }
            (_, None) => absent += 1,
        }
        for w in logs {
            for (_, id, c) in changes(w).filter(|(_, id, c)| touches(c) && at != Some(*id)) {
                problems.push(format!(
                    "watcher {}: write {} ({:?}) arrived at {id}: {c:?}",
                    w.watcher, op.rec.arg, op.rec.status
                ));
            }
        }
    }
    CheckResult::new(
        "watch unknown writes all or none",
        problems,
        format!("{landed} unknown writes took effect, {absent} unknown or failed writes did not"),
    )
}

/// All the watch checks, in the order docs/testing.md lists them.
pub fn all(logs: &[WatcherLog], r: &Reference, ops: &[Op]) -> Vec<CheckResult> {
    vec![
        ordered(logs),
        unique(logs),
        atomic(logs, r),
        reliable(logs, r),
        resumable(logs),
        bookmarkable(logs, r),
        acknowledged(logs, r, ops),
        unknown(logs, r, ops),
    ]
}

/// Per-run figures of the watchers.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct WatchStats {
    pub watchers: usize,
    pub changes: usize,
    pub progress: usize,
    pub connections: usize,
    /// Streams opened with `Last-Event-ID`, by node.
    pub resumes_per_node: BTreeMap<String, usize>,
    /// Connection attempts answered otherwise (HTTP status or transport error), by answer.
    pub refused: BTreeMap<String, usize>,
    /// How streams ended (`hang-up` is the watcher's own), by reason.
    pub ends: BTreeMap<String, usize>,
    pub reference_entries: usize,
    pub reference_node: String,
}

pub fn stats(logs: &[WatcherLog], r: Option<&Reference>) -> WatchStats {
    let mut s = WatchStats { watchers: logs.len(), ..WatchStats::default() };
    for w in logs {
        s.changes += w.events.iter().filter(|e| e.kind == EventKind::Change).count();
        s.progress += w.events.iter().filter(|e| e.kind == EventKind::Progress).count();
        s.connections += w.conns.len();
        for c in &w.conns {
            if !c.streamed() {
                let answer = if c.answer.starts_with("transport") { "transport error" } else { c.answer.as_str() };
                *s.refused.entry(answer.to_string()).or_default() += 1;
                continue;
            }
            if c.after.is_some() {
                *s.resumes_per_node.entry(c.node.clone()).or_default() += 1;
            }
            *s.ends.entry(c.end.clone()).or_default() += 1;
        }
    }
    if let Some(r) = r {
        s.reference_entries = r.entries.len();
        s.reference_node = r.node.clone();
    }
    s
}
