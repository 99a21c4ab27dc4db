#!/usr/bin/env bash
# disk-bound.sh: measures that every node's disk use stays bounded under a long write load to a
# fixed set of keys (snapshots + WAL purge at work). Starts its own 3-node cluster on loopback
# (ports 17801-17803, temp data dirs), writes WRITES puts (default 1,000,000) over KEYS keys
# (default 1,000) with `cairn bench`, samples each node's data dir size after every chunk, and
# prints the peak and final sizes. Stops only the processes it started.
#
#   scripts/disk-bound.sh                     # 1M writes
#   WRITES=200000 CHUNK=10s scripts/disk-bound.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WRITES=${WRITES:-1000000}
KEYS=${KEYS:-1000}
CHUNK=${CHUNK:-30s}
# shellcheck source=scripts/lib/tmp-cluster.sh
source scripts/lib/tmp-cluster.sh
tmp_cluster_up disk-bound 17800

du_node() { du -sb "$WORK/node$1" | cut -f1; }
peak=(0 0 0 0)
done_writes=0
echo "writes        node1_bytes   node2_bytes   node3_bytes"
while ((done_writes < WRITES)); do
    out=$("$BIN" bench --endpoints "$ENDPOINTS" --workload put \
        --keys "$KEYS" --value-size 100 --clients 64 --duration "$CHUNK" --warmup 0s --json 2>/dev/null)
    ops=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ops"])' <<<"$out")
    done_writes=$((done_writes + ops))
    line=$(printf '%-12s' "$done_writes")
    for i in 1 2 3; do
        b=$(du_node "$i")
        ((b > peak[i])) && peak[i]=$b
        line+=$(printf '  %12s' "$b")
    done
    echo "$line"
done
raw=$((KEYS * 100))
echo "peak bytes per node: ${peak[1]} ${peak[2]} ${peak[3]} (raw data: $KEYS keys x 100 B = $raw B)"
