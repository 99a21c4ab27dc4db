//! What a run reports: operation counts per workload, availability figures (ops/s before,
//! during and after faults; the longest stretch without a successful write; leader kill to
//! next successful write), the checks, and the summary table printed after each run.

use serde::{Deserialize, Serialize};

use super::checks::CheckResult;
use super::history::{Op, Status, Workload};
use super::lock::LockStats;
use super::nemesis::FaultEvent;
use super::plan::{FaultKind, Plan};
use super::watchcheck::WatchStats;

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Counts {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Availability {
    /// Successful operations per second (all workloads) in each phase; `None` if empty.
    pub ops_per_s_before: Option<f64>,
    pub ops_per_s_during: Option<f64>,
    pub ops_per_s_after: Option<f64>,
    /// Longest stretch of the workload phase with no successful write, and where it began.
    pub longest_no_write_ms: u64,
    pub longest_no_write_from_s: f64,
    /// For each fault that hit the leader (kill, kill-all, isolation, pause, one-way cut, the
    /// leader's removal): the kind, and ms from the injection (or the removal) to the return
    /// of the first successful write issued after it (`None` when none succeeded before the end).
    /// A leader that was paused or cut off, not killed, may still acknowledge a write sent just
    /// after the injection; writes it served before the heal do not count.
    pub leader_fault_to_write_ms: Vec<(FaultKind, Option<u64>)>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct RunResult {
    pub plan: Plan,
    /// Whether the run used a network namespace (partitions possible).
    pub netns: bool,
    pub counts: Vec<(Workload, Counts)>,
    pub faults: Vec<FaultEvent>,
    pub availability: Availability,
    pub checks: Vec<CheckResult>,
    /// The watchers' figures, when the run had the watch workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchStats>,
    /// The lock workload's figures, when the run had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockStats>,
    pub duration_s: f64,
}

impl RunResult {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

pub fn counts(ops: &[Op], workloads: &[Workload]) -> Vec<(Workload, Counts)> {
    workloads
        .iter()
        .map(|w| {
            let mut c = Counts::default();
            for op in ops.iter().filter(|o| o.workload == *w) {
                match op.rec.status {
                    Status::Ok => c.ok += 1,
                    Status::Fail => c.fail += 1,
                    Status::Info => c.info += 1,
                }
            }
            (*w, c)
        })
        .collect()
}

/// Availability over the workload phase `[0, stop_ns]` (ops issued after `stop_ns`, such as
/// final reads, are not counted).
pub fn availability(ops: &[Op], faults: &[FaultEvent], stop_ns: u64) -> Availability {
    let ok: Vec<&Op> = ops.iter().filter(|o| o.is_ok() && o.rec.call <= stop_ns).collect();
    let rate = |from: u64, to: u64| -> Option<f64> {
        (to > from).then(|| {
            let n = ok.iter().filter(|o| o.rec.ret >= from && o.rec.ret < to).count();
            n as f64 / ((to - from) as f64 / 1e9)
        })
    };
    let (first, last) = match (faults.first(), faults.last()) {
        (Some(f), Some(l)) => (f.start_ns, l.end_ns),
        _ => (stop_ns, stop_ns),
    };
    let mut writes: Vec<u64> =
        ops.iter().filter(|o| o.is_successful_write() && o.rec.call <= stop_ns).map(|o| o.rec.ret).collect();
    writes.sort_unstable();
    let mut longest = (0u64, 0u64);
    let mut prev = 0u64;
    for t in writes.iter().copied().chain(std::iter::once(stop_ns)) {
        let t = t.min(stop_ns);
        if t.saturating_sub(prev) > longest.0 {
            longest = (t.saturating_sub(prev), prev);
        }
        prev = prev.max(t);
    }
    let kills = faults
        .iter()
        .filter(|f| f.leader_fault)
        .map(|f| {
            let hit = f.leader_hit_ns.unwrap_or(f.start_ns);
            // A leader that is cut off or paused, not killed, can still acknowledge a write
            // sent just before its packets stopped (the rules take a moment to hold): that is
            // the old leader's last write, not the next leader's first.
            let old_leader = match f.kind {
                FaultKind::Pause | FaultKind::PartitionLeader | FaultKind::PartitionOneWay => {
                    f.targets.first().copied()
                }
                _ => None,
            };
            let first = ops
                .iter()
                .filter(|o| o.is_successful_write() && o.rec.call >= hit)
                .filter(|o| old_leader.is_none() || o.extra.served_by != old_leader || o.rec.call >= f.end_ns)
                .map(|o| o.rec.ret)
                .min()
                .map(|t| (t - hit) / 1_000_000);
            (f.kind, first)
        })
        .collect();
    Availability {
        ops_per_s_before: rate(0, first),
        ops_per_s_during: rate(first, last),
        ops_per_s_after: rate(last, stop_ns),
        longest_no_write_ms: longest.0 / 1_000_000,
        longest_no_write_from_s: longest.1 as f64 / 1e9,
        leader_fault_to_write_ms: kills,
    }
}

fn rate(r: Option<f64>) -> String {
    r.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into())
}

/// The faults of a run as `kind×count`.
pub fn fault_summary(faults: &[FaultEvent]) -> String {
    let mut kinds: Vec<(FaultKind, usize)> = Vec::new();
    for f in faults {
        match kinds.iter_mut().find(|(k, _)| *k == f.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((f.kind, 1)),
        }
    }
    if kinds.is_empty() {
        return "none".into();
    }
    kinds.iter().map(|(k, n)| format!("{}×{n}", k.name())).collect::<Vec<_>>().join(",")
}

/// The per-run summary table: one row per workload, then availability and checks.
pub fn print_summary(r: &RunResult) {
    let faults = fault_summary(&r.faults);
    let verdict_of = |w: Workload| -> &'static str {
        let relevant: Vec<&CheckResult> = r
            .checks
            .iter()
            .filter(|c| match w {
                Workload::Register => c.name.contains("(register)"),
                Workload::Counter => c.name.contains("(counter)") || c.name.starts_with("counter"),
                Workload::Ttl => c.name.starts_with("ttl"),
                Workload::Stale => c.name.starts_with("stale") || c.name.starts_with("no lost"),
                Workload::Watch => c.name.starts_with("watch"),
                Workload::Lock => c.name.starts_with("lock"),
            })
            .collect();
        if relevant.iter().all(|c| c.passed) {
            "ok"
        } else {
            "FAIL"
        }
    };
    println!();
    println!(
        "seed {} ({}, {} nodes, {}) — {:.0} s",
        r.plan.seed,
        match &r.plan.scenario {
            Some(name) => format!("scenario {name}"),
            None => format!("{} profile", r.plan.profile.name()),
        },
        r.plan.nodes,
        if r.netns { "network namespace" } else { "loopback, no partitions" },
        r.duration_s
    );
    println!("{:<9} {:<34} {:>7} {:>6} {:>7} {:<8}", "workload", "faults", "ok", "fail", "unknown", "verdict");
    for (w, c) in &r.counts {
        println!("{:<9} {:<34} {:>7} {:>6} {:>7} {:<8}", w.name(), faults, c.ok, c.fail, c.info, verdict_of(*w));
    }
    let a = &r.availability;
    let kills: Vec<String> = a
        .leader_fault_to_write_ms
        .iter()
        .map(|(kind, ms)| {
            let ms = ms.map(|ms| format!("{ms} ms")).unwrap_or_else(|| "never".into());
            format!("{} {ms}", kind.name())
        })
        .collect();
    println!(
        "availability: ok ops/s before {} | during {} | after {}; longest without a successful write {} ms (from +{:.1}s); leader fault → next successful write: {}",
        rate(a.ops_per_s_before),
        rate(a.ops_per_s_during),
        rate(a.ops_per_s_after),
        a.longest_no_write_ms,
        a.longest_no_write_from_s,
        if kills.is_empty() { "-".to_string() } else { kills.join(", ") }
    );
    for f in r.faults.iter().filter(|f| !f.milestones.is_empty() || f.clock.is_some()) {
        println!("{} +{:.1}s–{:.1}s: {}", f.kind.name(), f.start_ns as f64 / 1e9, f.end_ns as f64 / 1e9, f.note);
        for m in &f.milestones {
            println!("    +{:>6.1}s {}", m.at_ns as f64 / 1e9, m.what);
        }
    }
    if let Some(w) = &r.watch {
        let list = |m: &std::collections::BTreeMap<String, usize>| {
            if m.is_empty() {
                "-".to_string()
            } else {
                m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
            }
        };
        println!(
            "watch: {} watchers, {} changes + {} progress received over {} connections; resumes per node: {}; refused: {}; streams ended: {}; reference {} entries from {}",
            w.watchers,
            w.changes,
            w.progress,
            w.connections,
            list(&w.resumes_per_node),
            list(&w.refused),
            list(&w.ends),
            w.reference_entries,
            w.reference_node
        );
    }
    if let Some(l) = &r.lock {
        println!(
            "lock: {} leases, {} acquisitions by {} holders; fenced writes {} ok, {} refused (fenced), {} unknown, {} failed; stale-holder writes {} ({} refused, {} begun after a higher token held); keepalives that found the lease gone {}",
            l.leases,
            l.acquisitions,
            l.holders,
            l.writes_ok,
            l.writes_fenced,
            l.writes_unknown,
            l.writes_failed,
            l.stale_attempts,
            l.stale_refused,
            l.stale_judged,
            l.keepalives_lost
        );
    }
    for c in &r.checks {
        println!("  [{}] {}: {}", if c.passed { "pass" } else { "FAIL" }, c.name, c.detail);
    }
}
