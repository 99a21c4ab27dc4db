#!/usr/bin/env bash
# failover.sh: how long a 3-node cluster takes to accept writes again after its leader dies.
#
#   scripts/failover.sh [--kills N] [--load CLIENTS] [--quiet-s S] [--trace-ms T] [-- extra cairn serve flags]
#
# Starts a fresh 3-node cluster of target/release/cairn (CAIRN_BIN to override) on free
# loopback ports under a temp dir, then N times (default 10): finds the leader, SIGKILLs it,
# and times from the kill to the first write acknowledged through a surviving node (a PUT
# every 10 ms, alternating survivors, each with a 500 ms timeout); then restarts the killed
# node and waits for it to catch up. Prints each figure, the median and the maximum.
#
# --trace-ms T prints, for every kill that took T ms or more, each probe's answer and the
# survivors' election log lines (run with RUST_LOG=info,openraft=info for openraft's), and
# keeps the logs.
#
# --load C runs `cairn bench --workload mixed:1/1 --clients C` against the cluster meanwhile
# (after a --quiet-s S stretch, default 30 s, with the same load and no kills, whose leader
# changes are counted: elections the load alone caused).
#
# Only the PIDs this script started are ever signalled. Needs curl and python3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=${CAIRN_BIN:-target/release/cairn}
KILLS=10
LOAD=0
QUIET_S=30
TRACE_MS=
EXTRA=()
while (($# > 0)); do
    case "$1" in
    --kills) KILLS=${2:?}; shift ;;
    --load) LOAD=${2:?}; shift ;;
    --quiet-s) QUIET_S=${2:?}; shift ;;
    --trace-ms) TRACE_MS=${2:?}; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "usage: scripts/failover.sh [--kills N] [--load CLIENTS] [--quiet-s S] [--trace-ms T] [-- serve flags]" >&2; exit 2 ;;
    esac
    shift
done
[[ -x $BIN ]] || { echo "failover.sh: build first: cargo build --release" >&2; exit 2; }

DIR=$(mktemp -d /tmp/cairn-failover.XXXXXX)
declare -A PID PORT
BENCH_PID=
cleanup() {
    [[ -n $BENCH_PID ]] && kill "$BENCH_PID" 2>/dev/null || true
    for id in 1 2 3; do [[ -n ${PID[$id]:-} ]] && kill -9 "${PID[$id]}" 2>/dev/null || true; done
    sleep 0.2
    if [[ -n $TRACE_MS ]]; then echo "logs kept in $DIR"; else rm -rf "$DIR"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for id in 1 2 3; do PORT[$id]=$(free_port); done
PEERS="1=127.0.0.1:${PORT[1]},2=127.0.0.1:${PORT[2]},3=127.0.0.1:${PORT[3]}"
start() {
    "$BIN" serve --id "$1" --listen "127.0.0.1:${PORT[$1]}" --peers "$PEERS" --data-dir "$DIR/n$1" \
        "${EXTRA[@]}" >>"$DIR/n$1.log" 2>&1 &
    PID[$1]=$!
    # Not a job of this shell: a SIGKILL then prints no "Killed" notice over the figures.
    disown "$!"
}
now_ms() { date +%s%3N; }
# status ID -> "role term leader" (empty when the node does not answer)
status() {
    curl -s -m 1 "127.0.0.1:${PORT[$1]}/cluster/status" 2>/dev/null |
        python3 -c 'import sys,json; d=json.load(sys.stdin)["data"]; print(d["role"], d["term"], d["leader"] or 0)' 2>/dev/null || true
}
leader() {
    local id s
    for id in 1 2 3; do
        s=$(status "$id"); [[ $s == leader* ]] && { echo "$id"; return; }
    done
    echo 0
}
wait_leader() {
    local deadline=$(($(now_ms) + 30000)) l
    while (($(now_ms) < deadline)); do
        l=$(leader); ((l > 0)) && { echo "$l"; return; }
        sleep 0.05
    done
    echo "failover.sh: no leader within 30 s" >&2; exit 1
}
term() { status "$1" | awk '{print $2}'; }

for id in 1 2 3; do start "$id"; done
wait_leader >/dev/null

if ((LOAD > 0)); then
    ENDPOINTS="127.0.0.1:${PORT[1]},127.0.0.1:${PORT[2]},127.0.0.1:${PORT[3]}"
    "$BIN" bench --endpoints "$ENDPOINTS" --workload mixed:1/1 --clients "$LOAD" --duration 3600s \
        --warmup 0s --timeout 2s --no-leader-discovery >"$DIR/bench.log" 2>&1 &
    BENCH_PID=$!
    l=$(wait_leader); t0=$(term "$l")
    sleep "$QUIET_S"
    l2=$(wait_leader); t1=$(term "$l2")
    echo "quiet stretch: ${QUIET_S}s under ${LOAD} clients, leader $l -> $l2, term $t0 -> $t1 ($((t1 - t0)) elections without a fault)"
fi

figures=()
for k in $(seq 1 "$KILLS"); do
    l=$(wait_leader)
    before=$(term "$l")
    survivors=()
    for id in 1 2 3; do ((id != l)) && survivors+=("$id"); done
    kill -9 "${PID[$l]}"
    t0=$(now_ms)
    i=0
    probes=()
    while :; do
        s=${survivors[$((i % 2))]}
        p0=$(now_ms)
        code=$(curl -s -o /dev/null -w '%{http_code}' -m 0.5 -X PUT -H 'content-type: application/json' \
            -d '{"value":1}' "127.0.0.1:${PORT[$s]}/kv/items/failover-probe" 2>/dev/null || true)
        probes+=("+$((p0 - t0)) ms: node $s answered ${code:-nothing} in $(($(now_ms) - p0)) ms")
        [[ $code == 200 ]] && break
        (($(now_ms) - t0 > 30000)) && { echo "failover.sh: no write within 30 s of kill $k" >&2; exit 1; }
        i=$((i + 1))
        sleep 0.01
    done
    ms=$(($(now_ms) - t0))
    figures+=("$ms")
    after=$(term "$(wait_leader)")
    echo "kill $k: leader $l, first write after ${ms} ms (term $before -> $after)"
    if [[ -n $TRACE_MS ]] && ((ms >= TRACE_MS)); then
        # Where a slow kill's time went: every probe, and what the survivors logged about it.
        printf '    probe %s\n' "${probes[@]}"
        for id in "${survivors[@]}"; do
            python3 - "$DIR/n$id.log" "$id" "$t0" "$ms" <<'PY'
import re, sys, datetime
path, node, t0, ms = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
marks = ("do trigger election", "a quorum granted", "become leader", "reject vote-request",
         "standing now", "vote is changing")
for line in open(path, errors="replace"):
    m = re.match(r"(\d{4}-\d\d-\d\dT[\d:.]+)Z", line)
    if not m or not any(k in line for k in marks):
        continue
    t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc)
    off = int(t.timestamp() * 1000) - t0
    if -100 <= off <= ms + 100:
        print(f"    node {node} +{off} ms: {line[m.end():].strip()[:160]}")
PY
        done
    fi
    while kill -0 "${PID[$l]}" 2>/dev/null; do sleep 0.05; done
    start "$l"
    # Let the restarted node catch up before the next kill, so every kill finds three nodes.
    deadline=$(($(now_ms) + 30000))
    until [[ $(status "$l") == follower* ]]; do
        (($(now_ms) < deadline)) || { echo "failover.sh: node $l did not rejoin" >&2; exit 1; }
        sleep 0.1
    done
    sleep 1
done
((${#figures[@]} > 0)) || exit 0
printf '%s\n' "${figures[@]}" | sort -n | awk '{a[NR]=$1} END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf "failover over %d kills: median %d ms, min %d ms, max %d ms\n", NR, m, a[1], a[NR] }'
