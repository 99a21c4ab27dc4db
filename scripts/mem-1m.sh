#!/usr/bin/env bash
# mem-1m.sh: measures what one node costs with KEYS keys (default 1,000,000) of 100-byte values:
# resident memory (now and peak) and data dir size once a snapshot and WAL compaction have run.
# Starts its own 3-node cluster on loopback (ports 17811-17813, temp data dirs), loads every key
# once with `cairn bench --preload`, writes past the next snapshot, waits for it, and prints one
# line per node. Stops only the processes it started.
#
#   scripts/mem-1m.sh
#   KEYS=200000 scripts/mem-1m.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

KEYS=${KEYS:-1000000}
VALUE_SIZE=100
# shellcheck source=scripts/lib/tmp-cluster.sh
source scripts/lib/tmp-cluster.sh
# The namespace quota (1,000,000 keys by default) is lifted so the bench's own marker key fits.
tmp_cluster_up mem 17810 --max-keys-per-namespace 0

tmp_cluster_load "$KEYS" "$VALUE_SIZE"
tmp_cluster_fresh_snapshots "$VALUE_SIZE"
sleep 2

key_bytes=$(python3 -c "print(len('bench-00000000'))")
raw=$((KEYS * (key_bytes + VALUE_SIZE)))
echo "raw data: $KEYS keys x ($key_bytes B key + $VALUE_SIZE B value) = $raw B"
echo "node  rss_now_MiB  rss_peak_MiB  data_dir_B  data_dir/raw  wal_B  snapshots_B  sled_B"
for i in 1 2 3; do
    pid=${PIDS[$((i - 1))]}
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
    hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")
    dir=$(du -sb "$WORK/node$i" | cut -f1)
    wal=$(du -sb "$WORK/node$i/wal" 2>/dev/null | cut -f1 || echo 0)
    snap=$(du -sb "$WORK/node$i/snapshots" 2>/dev/null | cut -f1 || echo 0)
    sled=$(du -sb "$WORK/node$i/sm" 2>/dev/null | cut -f1 || echo 0)
    printf '%-5s %-12s %-13s %-11s %-13s %-6s %-12s %s\n' "$i" "$((rss / 1024))" "$((hwm / 1024))" "$dir" \
        "$(python3 -c "print(f'{$dir / $raw:.2f}')")" "$wal" "$snap" "$sled"
done
