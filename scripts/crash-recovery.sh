#!/usr/bin/env bash
# crash-recovery.sh: how long a follower holding KEYS keys (default 1,000,000, 100-byte values)
# takes to serve again after `kill -9` during a write load: from its restart to `/ready` 200.
# Starts its own 3-node cluster on loopback (ports 17821-17823, temp data dirs), loads every key
# with `cairn bench --preload`, writes until every node has a snapshot covering them, then KILLS
# times (default 3): starts a put load over all the keys, SIGKILLs a follower after 3 s,
# restarts it at once and times it. Prints one line per kill, with the path the restart took
# (`kept`: sled kept and its last apply finished; `rebuilt`: sled rebuilt from the snapshot and
# the WAL). Stops only the processes it started.
#
#   scripts/crash-recovery.sh                      # process crashes (same boot)
#   scripts/crash-recovery.sh --machine-restart    # as if the machine had rebooted (power loss)
#   KEYS=200000 KILLS=5 scripts/crash-recovery.sh
#
# --machine-restart restarts the follower with a new CAIRN_TEST_BOOT_ID (a test hook standing
# for a reboot; docs/operations.md, "Durability"), which takes the slow path on purpose.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KEYS=${KEYS:-1000000}
KILLS=${KILLS:-3}
VALUE_SIZE=100
machine_restart=0
case "${1:-}" in
"") ;;
--machine-restart) machine_restart=1 ;;
*) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac

# shellcheck source=scripts/lib/tmp-cluster.sh
source scripts/lib/tmp-cluster.sh
tmp_cluster_up crash 17820 --max-keys-per-namespace 0
url() { echo "http://127.0.0.1:$((17820 + $1))"; }
leader() { curl -sf "$(url 1)/cluster/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["leader"])'; }

tmp_cluster_load "$KEYS" "$VALUE_SIZE"
tmp_cluster_fresh_snapshots "$VALUE_SIZE"

echo "kill  node  path     ready_after_restart_s"
for k in $(seq 1 "$KILLS"); do
    lead=$(leader)
    victim=$(( (lead % 3) + 1 ))
    "$BIN" bench --endpoints "$ENDPOINTS" --workload put --keys "$KEYS" --value-size "$VALUE_SIZE" \
        --clients 16 --duration 120s --warmup 0s --json >/dev/null 2>&1 &
    load=$!
    sleep 3
    kill -KILL "${PIDS[victim - 1]}"
    wait "${PIDS[victim - 1]}" 2>/dev/null || true
    lines=$(wc -l <"$WORK/node$victim.log")
    env=()
    ((machine_restart)) && env=("CAIRN_TEST_BOOT_ID=crash-recovery-$k-$RANDOM")
    start=$(date +%s.%N)
    tmp_cluster_start "$victim" "${env[@]}"
    deadline=$((SECONDS + 120))
    until curl -sf "$(url "$victim")/ready" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { echo "node $victim not ready within 120 s" >&2; exit 1; }
        sleep 0.05
    done
    ready=$(date +%s.%N)
    kill -TERM "$load" 2>/dev/null || true
    wait "$load" 2>/dev/null || true
    path=unknown
    tail -n +"$((lines + 1))" "$WORK/node$victim.log" | grep -q "kept it and finished its last apply" && path=kept
    tail -n +"$((lines + 1))" "$WORK/node$victim.log" | grep -q "rebuilding it" && path=rebuilt
    printf '%-5s %-5s %-8s %s\n' "$k" "$victim" "$path" "$(python3 -c "print(f'{$ready - $start:.2f}')")"
    # Lets the node catch up fully before the next round.
    sleep 5
done
