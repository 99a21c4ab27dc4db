#!/usr/bin/env bash
# chaos.sh: front door of the chaos harness (tests/chaos.rs, tests/chaos/). Builds the test
# binary and runs the quick pass, one seeded run, a soak, or a saved plan. Every run prints its
# seed and a summary table; a failed run keeps its history, node logs and data dirs under
# target/chaos/<seed>/. See docs/testing.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() {
    cat <<'EOF'
usage: scripts/chaos.sh [--quick] [--seed N] [--soak DURATION] [--plan FILE] [--scenario NAME]
                        [--workload LIST] [--faults LIST] [--nodes 3|5] [--profile quick|soak]
                        [--shrink RUNS] [--keep] [--no-netns] [--require-netns] [--release]

  --quick            the CI pass: one run per fault kind (all workloads), then every
                     regression scenario (about 6 minutes)
  --seed N           seed to replay (printed by every run); random when absent
  --soak DURATION    keep running fresh seeds (soak profile) for e.g. 30m, 2h
  --plan FILE        replay a saved plan exactly (plan.json or smallest-plan.json)
  --scenario NAME    run a named regression scenario (tests/chaos/scenarios.rs)
  --workload LIST    all (default) or a comma list of: register,counter,ttl,stale,watch,lock
                     (watch: batch writers, and watchers resuming on random nodes with
                     Last-Event-ID, checked against a reference history)
  --faults LIST      all (default), none, or a comma list of: kill-random,kill-leader,
                     kill-all,pause,partition-leader,partition-split,partition-bridge,
                     partition-one-way,membership (a node joins, then a voter, sometimes
                     the leader, is removed),clock (one node's clock jumps or drifts)
  --nodes 3|5        cluster size (default 3)
  --profile P        quick (2-3 fault steps, default) or soak (6-12 steps)
  --shrink RUNS      after a failure, re-run up to RUNS simpler plans (proptest shrinking)
  --keep             keep target/chaos/<seed>/ even when the run passes
  --no-netns         run on 127.0.0.1 without a namespace (partition faults are skipped)
  --require-netns    fail instead of skipping partitions when no namespace can be created
  --release          build the server and harness with --release

Partitions need root (ip netns, iptables from the iproute2 and iptables packages).

examples:
  scripts/chaos.sh --quick
  scripts/chaos.sh --seed 1234 --faults kill-leader --workload all
  scripts/chaos.sh --seed 2 --faults membership,clock
  scripts/chaos.sh --seed 1 --workload watch --faults kill-leader
  scripts/chaos.sh --soak 30m
  scripts/chaos.sh --plan target/chaos/1234/smallest-plan.json
EOF
}

test_name=chaos_run
cargo_flags=()
require_netns=0
while (($# > 0)); do
    case "$1" in
    --quick) test_name=chaos_quick_pass ;;
    --seed) export CAIRN_CHAOS_SEED="${2:?--seed needs a value}"; shift ;;
    --soak) export CAIRN_CHAOS_SOAK="${2:?--soak needs a duration}"; shift ;;
    --plan) export CAIRN_CHAOS_PLAN="$(realpath "${2:?--plan needs a file}")"; shift ;;
    --scenario) export CAIRN_CHAOS_SCENARIO="${2:?--scenario needs a name}"; shift ;;
    --workload) export CAIRN_CHAOS_WORKLOAD="${2:?--workload needs a list}"; shift ;;
    --faults) export CAIRN_CHAOS_FAULTS="${2:?--faults needs a list}"; shift ;;
    --nodes) export CAIRN_CHAOS_NODES="${2:?--nodes needs 3 or 5}"; shift ;;
    --profile) export CAIRN_CHAOS_PROFILE="${2:?--profile needs quick or soak}"; shift ;;
    --shrink) export CAIRN_CHAOS_SHRINK="${2:?--shrink needs a number}"; shift ;;
    --keep) export CAIRN_CHAOS_KEEP=1 ;;
    --no-netns) export CAIRN_CHAOS_NO_NETNS=1 ;;
    --require-netns) require_netns=1 ;;
    --release) cargo_flags+=(--release) ;;
    -h | --help) usage; exit 0 ;;
    *) echo "chaos.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

# Partitions need a private network namespace and iptables inside it; say up front why they
# would be skipped (the harness prints the exact reason again and never counts a skip as a pass).
netns_problem=""
if [[ -n "${CAIRN_CHAOS_NO_NETNS:-}" ]]; then
    netns_problem="--no-netns given"
elif [[ $(id -u) -ne 0 ]]; then
    netns_problem="not running as root"
elif ! command -v ip >/dev/null 2>&1; then
    netns_problem="ip not found (install iproute2)"
elif ! command -v iptables >/dev/null 2>&1; then
    netns_problem="iptables not found (install iptables)"
fi
if [[ -n "$netns_problem" ]]; then
    if ((require_netns)); then
        echo "chaos.sh: partition faults cannot run: $netns_problem (--require-netns given)" >&2
        exit 1
    fi
    echo "chaos.sh: partition faults will be skipped: $netns_problem" >&2
fi

# Namespaces are named cairn-chaos-<pid of the creating test process>-<n> and removed by the
# harness (also on failure). After an interrupt (Ctrl-C) the harness cannot clean up, so remove
# empty namespaces of this harness whose creating process is gone.
sweep_namespaces() {
    command -v ip >/dev/null 2>&1 || return 0
    local ns pid
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^cairn-chaos-' || true); do
        pid=${ns#cairn-chaos-}
        pid=${pid%%-*}
        if ! kill -0 "$pid" 2>/dev/null && [[ -z "$(ip netns pids "$ns" 2>/dev/null)" ]]; then
            echo "chaos.sh: removing namespace $ns left by an interrupted run" >&2
            ip netns delete "$ns" || true
        fi
    done
    # Private copies of the binaries (target/chaos/.bin-<pid>) of runs that were killed.
    local bin
    for bin in "${CARGO_TARGET_DIR:-target}"/chaos/.bin-*; do
        [[ -d "$bin" ]] || continue
        pid=${bin##*.bin-}
        kill -0 "$pid" 2>/dev/null || rm -rf "$bin"
    done
}
trap sweep_namespaces EXIT

if ((require_netns)); then
    # Seen by the harness: a namespace that cannot be created fails the run instead of skipping.
    export CAIRN_CHAOS_REQUIRE_NETNS=1
fi

cargo test "${cargo_flags[@]}" --test chaos "$test_name" -- --exact --include-ignored --nocapture --test-threads=1
