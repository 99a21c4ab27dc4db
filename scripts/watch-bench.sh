#!/usr/bin/env bash
# watch-bench.sh: what watches cost and deliver, on a fresh 3-node cluster of the release build
# (ports 17831-17833, temp data dirs; only the processes it started are stopped).
#   1. put@64 with no watcher and with 100 idle prefix watchers, ROUNDS times each, alternating;
#   2. a watch workload: 100 watchers, one key each, while put@64 writes those 100 keys: events
#      delivered per second and the nodes' apply-to-send delay.
#
#   scripts/watch-bench.sh
#   ROUNDS=5 DURATION=30s scripts/watch-bench.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-15s}
# shellcheck source=scripts/lib/tmp-cluster.sh
source scripts/lib/tmp-cluster.sh
tmp_cluster_up watch 17830

field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
run() { "$BIN" bench --endpoints "$ENDPOINTS" --workload put --clients 64 --duration "$DURATION" --warmup 3s --json "$@"; }

echo "round  watchers      puts/s"
for r in $(seq 1 "$ROUNDS"); do
    run >"$WORK/none-$r.json" 2>/dev/null
    printf '%-6s %-13s %s\n' "$r" none "$(field "$WORK/none-$r.json" 'round(d["throughput"])')"
    run --watchers 100 --idle-watchers >"$WORK/idle-$r.json" 2>/dev/null
    printf '%-6s %-13s %s\n' "$r" "100 idle" "$(field "$WORK/idle-$r.json" 'round(d["throughput"])')"
done
python3 - "$WORK" "$ROUNDS" <<'PY'
import json, sys
work, rounds = sys.argv[1], int(sys.argv[2])
mean = lambda kind: sum(json.load(open(f"{work}/{kind}-{r}.json"))["throughput"] for r in range(1, rounds + 1)) / rounds
none, idle = mean("none"), mean("idle")
print(f"mean   none {none:.0f} puts/s, 100 idle watchers {idle:.0f} puts/s: {100 * (none - idle) / none:+.1f}% fewer")
PY

run --keys 100 --watchers 100 >"$WORK/watch.json" 2>/dev/null
echo "watch workload (100 watchers, one key each, put@64 over those keys):"
field "$WORK/watch.json" '"  puts/s %.0f, events/s %.0f, apply->send p50 <= %s ms, p99 <= %s ms, streams dropped %d" % (d["throughput"], d["watch"]["eventsPerSec"], d["watch"]["delayP50MsAtMost"], d["watch"]["delayP99MsAtMost"], d["watch"]["dropped"])'
