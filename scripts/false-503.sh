#!/usr/bin/env bash
# false-503.sh: counts `503 no_leader` answers to strong reads from a leader that stays leader
# (issue 14 §3). Starts its own 3-node cluster on loopback (ports BASE+1..+3, temp data dirs),
# runs `cairn bench` with a mixed workload against the leader (every key pre-filled by the
# bench), then prints the bench's error breakdown and whether the leader and its term stayed
# the same over the run. A 503 from a node that stayed leader in the same term is a false one.
# Stops only the processes it started. Exits 1 if there was any false 503.
#
#   scripts/false-503.sh                                  # 64 clients, mixed:2/1, 60 s
#   CLIENTS=96 DURATION=30s scripts/false-503.sh
#
# With PAUSE_MS set, both followers are also stopped (SIGSTOP, then SIGCONT) for PAUSE_MS every
# PAUSE_EVERY seconds: a stand-in for the load stalls that make a quorum round slow, which on a
# quiet machine are rare. Keep PAUSE_MS below --election-min-ms (600) so leadership stays.
#
#   PAUSE_MS=400 PAUSE_EVERY=3 DURATION=30s scripts/false-503.sh
#
# Environment: CLIENTS (64), MIX (2/1: reads/writes), DURATION (60s), KEYS (10000),
# BASE (17900), PAUSE_MS (none), PAUSE_EVERY (3), CAIRN_BIN (target/release/cairn, built if
# missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLIENTS=${CLIENTS:-64}
MIX=${MIX:-2/1}
DURATION=${DURATION:-60s}
KEYS=${KEYS:-10000}
BASE=${BASE:-17900}
PAUSE_MS=${PAUSE_MS:-}
PAUSE_EVERY=${PAUSE_EVERY:-3}
# shellcheck source=scripts/lib/tmp-cluster.sh
source scripts/lib/tmp-cluster.sh
tmp_cluster_up false-503 "$BASE"
# The node logs outlive the temp dir, for the quorum-round timeouts openraft logs.
LOGS=${TMPDIR:-/tmp}/false-503-logs.$(date -u +%Y%m%dT%H%M%S)
keep_logs() {
    mkdir -p "$LOGS" && cp "$WORK"/node*.log "$LOGS"/ && echo "node logs: $LOGS"
}
PAUSER=""
FOLLOWERS=()
# Ends the pauser and resumes the followers first: a stopped node would not act on the SIGTERM.
stop_pausing() {
    [[ -z $PAUSER ]] || { kill -TERM "$PAUSER" 2>/dev/null; wait "$PAUSER" 2>/dev/null || true; }
    PAUSER=""
    ((${#FOLLOWERS[@]} == 0)) || kill -CONT "${FOLLOWERS[@]}" 2>/dev/null || true
}
trap 'stop_pausing; keep_logs; tmp_cluster_cleanup' EXIT

# "LEADER TERM" as node 1 sees them (the bench finds the leader the same way).
leader_and_term() {
    curl -fsS --max-time 2 "http://127.0.0.1:$((BASE + 1))/cluster/status" | python3 -c '
import json, sys
d = json.load(sys.stdin)["data"]
print(d.get("leader"), d.get("term"))'
}

# Waits until node 1 names a leader, so the bench and the before/after check agree.
deadline=$((SECONDS + 30))
until [[ $(leader_and_term | cut -d' ' -f1) =~ ^[0-9]+$ ]]; do
    ((SECONDS < deadline)) || { echo "no leader after 30 s" >&2; exit 1; }
    sleep 0.5
done
before=$(leader_and_term)
echo "$(date -u +%FT%TZ) $(git rev-parse --short HEAD) leader/term before: $before"

# Stops and resumes the followers (our own PIDs only) until killed; leaves them running.
pause_followers() {
    trap 'kill -CONT "${FOLLOWERS[@]}" 2>/dev/null; exit 0' TERM
    while sleep "$PAUSE_EVERY"; do
        kill -STOP "${FOLLOWERS[@]}"
        sleep "$(awk -v ms="$PAUSE_MS" 'BEGIN { print ms / 1000 }')"
        kill -CONT "${FOLLOWERS[@]}"
    done
}
if [[ -n $PAUSE_MS ]]; then
    for i in 1 2 3; do ((i == ${before%% *})) || FOLLOWERS+=("${PIDS[i - 1]}"); done
    pause_followers &
    PAUSER=$!
    echo "pausing both followers for $PAUSE_MS ms every $PAUSE_EVERY s"
fi
echo "+ cairn bench --endpoints $ENDPOINTS --workload mixed:$MIX --clients $CLIENTS --duration $DURATION --keys $KEYS --json"
json=$("$BIN" bench --endpoints "$ENDPOINTS" --workload "mixed:$MIX" --clients "$CLIENTS" \
    --duration "$DURATION" --keys "$KEYS" --json) || true
stop_pausing
[[ -n $json ]] || { echo "the bench printed no report" >&2; exit 1; }
after=$(leader_and_term)
echo "leader/term after:  $after"
# openraft logs one line per peer that missed a round's deadline: the slow rounds the run met.
slow=$(grep -c "timeout while confirming leadership" "$WORK/node${before%% *}.log" || true)
echo "leader's log: $slow peer answers missed a quorum round's 100 ms deadline"

python3 - "$json" "$before" "$after" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
same = sys.argv[2] == sys.argv[3]
gets = r["byOp"]["get"]["ops"]
# Builds before the per-op breakdown only had errors by status.
get_errors = r["errors"].get("byOp", {}).get("get", r["errors"]["byStatus"])
no_leader = get_errors.get("503 no_leader", 0)
print(f"ops {r['ops']} ({r['throughput']}/s), strong reads ok {gets}, puts ok {r['byOp']['put']['ops']}")
print(f"read p99 {r['byOp']['get']['latencyMs']['p99']} ms, max {r['byOp']['get']['latencyMs']['max']} ms")
print(f"errors: {json.dumps(r['errors'])}")
if same:
    print(f"leader kept its term: false 503s on strong reads = {no_leader}")
else:
    print(f"leadership changed during the run; {no_leader} strong reads answered 503 no_leader")
sys.exit(1 if same and no_leader else 0)
PY
