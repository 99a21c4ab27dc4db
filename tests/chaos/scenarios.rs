//! Named regression scenarios: one hand-written plan per bug the harness found, shaped to
//! hit that bug's window often (docs/testing.md, "Track record"). They run in the quick pass
//! after the per-fault-kind runs, and alone with `scripts/chaos.sh --scenario NAME`.

use super::history::Workload;
use super::plan::{FaultKind, FaultStep, Plan, Profile};

pub struct Scenario {
    pub name: &'static str,
    /// What it guards against (the track-record entry).
    pub guards: &'static str,
    steps: fn() -> Vec<FaultStep>,
    workloads: &'static [Workload],
}

fn step(kind: FaultKind, pick: u64, hold_ms: u64, gap_ms: u64) -> FaultStep {
    FaultStep { kind, pick, hold_ms, gap_ms }
}

pub const ALL: &[Scenario] = &[
    Scenario {
        name: "restarted-leader-serves-stale-strong-reads",
        guards: "a leader killed and restarted before anyone else is elected resumes leadership \
                 and answers strong reads from a state machine that lags the commit index",
        // Kills far shorter than the 600 ms a follower waits before it stands for election
        // (leader lease 350 ms plus at least 250 ms), so the old leader is usually back first
        // and resumes its term.
        steps: || (0..5).map(|i| step(FaultKind::KillLeader, i, 100, 2_500)).collect(),
        workloads: &[Workload::Register, Workload::Counter],
    },
    Scenario {
        name: "restarted-node-stale-reads-go-backwards",
        guards: "after a restart a node serves default (stale) reads from a state machine older \
                 than what it had served before the crash",
        // Short kills of random nodes (a follower's state machine restarts behind what it
        // served) and longer kills of the leader (it restarts as leader of its old term,
        // proxies a read, is deposed, then serves its own older state).
        steps: || {
            (0..4)
                .flat_map(|i| {
                    [step(FaultKind::KillRandom, 10 + i, 600, 1_500), step(FaultKind::KillLeader, 20 + i, 1_500, 1_500)]
                })
                .collect()
        },
        workloads: &[Workload::Stale],
    },
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

impl Scenario {
    pub fn plan(&self, seed: u64, nodes: usize) -> Plan {
        let steps = (self.steps)();
        let mut faults: Vec<FaultKind> = steps.iter().map(|s| s.kind).collect();
        faults.sort();
        faults.dedup();
        Plan {
            seed,
            profile: Profile::Quick,
            scenario: Some(self.name.to_string()),
            nodes,
            workloads: self.workloads.to_vec(),
            faults,
            warmup_ms: 3_000,
            cooldown_ms: 3_000,
            steps,
            op_timeout_ms: 2_500,
            // The sled state machine is flushed about once a second; the default snapshot
            // interval keeps the WAL (and so the lag after a restart) long.
            snapshot_logs: 10_000,
            ttl_s: 2,
            register_clients_per_node: 2,
            ops_per_key: 300,
        }
    }
}
