#!/usr/bin/env bash
# ab.sh: an A/B run of two cairn binaries, for deciding whether a change is kept
# (docs/performance.md). Each round starts a fresh 3-node cluster with A, measures one workload,
# stops it, then does the same with B; rounds alternate so that a slow spell of the machine
# falls on both. The load generator is always the same binary (BENCH_BIN), so only the servers
# differ. Beside each row it reads the CPU used by the node serving the load (the leader, or for
# get-stale the follower the bench reads from) from /proc/PID/stat over the measured window,
# and prints it per operation, a figure less noisy than throughput on a shared machine, and
# the same for the other two nodes together.
#
#   scripts/ab.sh A_BIN B_BIN
#   A_ARGS='--sled-flush-ms 0' scripts/ab.sh target/release/cairn target/release/cairn
#
# Environment:
#   WORKLOAD (put)  any `cairn bench --workload`   CLIENTS (64)   ROUNDS (3)
#   DURATION (10)   measured seconds per row        WARMUP (2)     seconds before it
#   KEYS (10000)    VALUE_SIZE (100)               BENCH_BIN (target/release/cairn)
#   PORT_BASE (17100): nodes listen on PORT_BASE+1..+3
#   A_ARGS, B_ARGS: extra `cairn serve` arguments for A's or B's nodes (split on spaces), to
#                   compare settings of one binary
# Stops only the processes it started, and removes its temporary data. Traffic stays on 127.0.0.1.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

[[ $# -eq 2 ]] || { sed -n '2,17p' "$0" >&2; exit 2; }
A_BIN=$(realpath "$1")
B_BIN=$(realpath "$2")
WORKLOAD=${WORKLOAD:-put}
CLIENTS=${CLIENTS:-64}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-100}
BENCH_BIN=${BENCH_BIN:-target/release/cairn}
PORT_BASE=${PORT_BASE:-17100}
for b in "$A_BIN" "$B_BIN" "$BENCH_BIN"; do [[ -x $b ]] || { echo "not executable: $b" >&2; exit 2; }; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-ab.XXXXXX")
# shellcheck source=scripts/lib/tmp-cluster.sh
source scripts/lib/tmp-cluster.sh
trap tmp_cluster_cleanup EXIT

# Starts a fresh cluster of binary $1 in $WORK/$2, with the extra serve arguments $3, and
# waits until a node names a leader.
start_cluster() {
    local bin=$1 dir=$WORK/$2 peers="" i
    local -a extra
    read -r -a extra <<<"$3"
    mkdir -p "$dir"
    for i in 1 2 3; do peers+="${peers:+,}$i=127.0.0.1:$((PORT_BASE + i))"; done
    for i in 1 2 3; do
        "$bin" serve --id "$i" --listen "127.0.0.1:$((PORT_BASE + i))" --data-dir "$dir/node$i" --peers "$peers" \
            "${extra[@]}" >>"$dir/node$i.log" 2>&1 &
        PIDS[i - 1]=$!
    done
    local deadline=$((SECONDS + 30))
    until [[ -n $(leader_id) ]]; do
        ((SECONDS < deadline)) || { echo "cluster of $bin elected no leader in 30 s" >&2; exit 1; }
        sleep 0.3
    done
    # A moment for the followers to hear of the leader, as a user's cluster would have had.
    sleep 1
}

leader_id() {
    curl -sf --max-time 2 "http://127.0.0.1:$((PORT_BASE + 1))/cluster/status" 2>/dev/null \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); v=d.get("data", d).get("leader"); print(v if v else "")' 2>/dev/null || true
}

# utime+stime of a pid, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# utime+stime of every node, in clock ticks.
all_ticks() { local p t=0; for p in "${PIDS[@]}"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }

# One row: binary $1 (label $2) in round $3, serve arguments $4. Prints "label ops/s µs-per-op µs-per-op p99-ms errors".
row() {
    local bin=$1 label=$2 round=$3 endpoints="" i serving pid c0 c1 a0 a1 out log
    start_cluster "$bin" "$label-$round" "$4"
    for i in 1 2 3; do endpoints+="${endpoints:+,}127.0.0.1:$((PORT_BASE + i))"; done
    out=$WORK/$label-$round.json
    log=$WORK/$label-$round.log
    "$BENCH_BIN" bench --endpoints "$endpoints" --workload "$WORKLOAD" --clients "$CLIENTS" \
        --duration "${DURATION}s" --warmup "${WARMUP}s" --keys "$KEYS" --value-size "$VALUE_SIZE" --json \
        >"$out" 2>"$log" &
    local bench=$!
    # The bench names the node it loads when its clients start (after any preload); that line
    # also marks the start of the warm-up.
    local deadline=$((SECONDS + 120))
    until grep -q "clients against" "$log" 2>/dev/null; do
        ((SECONDS < deadline)) || { echo "bench did not start:" >&2; cat "$log" >&2; exit 1; }
        sleep 0.05
    done
    serving=$(grep -m1 "clients against" "$log" | grep -o "127.0.0.1:[0-9]*" | head -1 | cut -d: -f2)
    pid=${PIDS[serving - PORT_BASE - 1]}
    sleep "$WARMUP"
    c0=$(cpu_ticks "$pid")
    a0=$(all_ticks)
    sleep "$DURATION"
    c1=$(cpu_ticks "$pid")
    a1=$(all_ticks)
    wait "$bench" || { echo "bench failed for $label:" >&2; tail -5 "$log" >&2; exit 1; }
    tmp_cluster_stop
    python3 - "$out" "$c0" "$c1" "$(getconf CLK_TCK)" "$DURATION" "$label" "$a0" "$a1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
c0, c1, tck, dur, label = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
a0, a1 = int(sys.argv[7]), int(sys.argv[8])
ops = r["throughput"]
per_op = lambda ticks: ticks / tck * 1e6 / max(1.0, ops * dur)
cpu_us = per_op(c1 - c0)
others_us = per_op((a1 - a0) - (c1 - c0))
p99 = r["latencyMs"]["p99"]
errors = r["errors"]["total"]
print(f"{label} {ops:.0f} {cpu_us:.1f} {others_us:.1f} {p99:.2f} {errors}")
EOF
}

echo "# ab.sh: $WORKLOAD at $CLIENTS clients, ${DURATION}s (+${WARMUP}s warm-up), $ROUNDS rounds"
echo "# A=$A_BIN ${A_ARGS:-}"
echo "# B=$B_BIN ${B_ARGS:-}"
echo "# label ops/s cpu-us/op(serving node) cpu-us/op(other two nodes) p99-ms errors"
for r in $(seq 1 "$ROUNDS"); do
    row "$A_BIN" A "$r" "${A_ARGS:-}"
    row "$B_BIN" B "$r" "${B_ARGS:-}"
done
