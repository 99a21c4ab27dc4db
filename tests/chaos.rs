//! Chaos tests: real `cairn serve` processes under generated workloads and real faults
//! (SIGKILL, SIGSTOP, iptables partitions inside a private network namespace, membership
//! changes, a shifted clock), with the recorded history checked for linearizability and the
//! other invariants of issue 3, and the watchers' streams for the watch guarantees of issue 15.
//!
//! Plain `cargo test` runs only the fast unit tests of the checker, the planner and the
//! history format. The runs themselves are `#[ignore]`d and started by `scripts/chaos.sh`
//! (`--quick` is the CI pass, about 6 minutes). See docs/testing.md.

#[path = "chaos/mod.rs"]
mod chaos;
/// The cluster harness the integration tests use (`tests/it/support`).
#[path = "it/support/mod.rs"]
mod support;

use chaos::entry::{main, Mode};

/// One run per fault kind (10 runs, all workloads), then the regression scenarios; seeds
/// derived from `CAIRN_CHAOS_SEED`.
#[test]
#[ignore = "about 6 minutes and needs root for partitions; run scripts/chaos.sh --quick"]
fn chaos_quick_pass() {
    main(Mode::Quick, "chaos_quick_pass");
}

/// A configured run: one seed, a soak (`CAIRN_CHAOS_SOAK`), or a saved plan.
#[test]
#[ignore = "configured by scripts/chaos.sh (--seed, --soak, --plan, --faults, --workload)"]
fn chaos_run() {
    main(Mode::Configured, "chaos_run");
}
