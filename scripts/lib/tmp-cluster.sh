# shellcheck shell=bash
# tmp-cluster.sh: sourced by the measurement scripts (disk-bound.sh, mem-1m.sh, ab.sh). Starts a
# 3-node Cairn cluster on loopback in a fresh temp dir and tears it down on exit, signalling only
# the PIDs it started, and only while their command line still names that dir.
#
#   tmp_cluster_up NAME BASE_PORT [serve args...]   # nodes listen on BASE_PORT+1..+3
#   tmp_cluster_start N [env assignments...]        # (re)starts node N as tmp_cluster_up did
#   tmp_cluster_stop                                # stops every node in PIDS (ab.sh starts its own)
#   tmp_cluster_load KEYS VALUE_SIZE                # writes every key once (cairn bench --preload)
#   tmp_cluster_fresh_snapshots VALUE_SIZE          # writes until every node built one more snapshot
#
# Sets WORK (the temp dir; node N's data is $WORK/nodeN, its log $WORK/nodeN.log), PIDS,
# ENDPOINTS (host:port,...) and BIN (CAIRN_BIN, default target/release/cairn, built if missing).

BIN=${CAIRN_BIN:-target/release/cairn}
[[ -x $BIN ]] || cargo build --release --quiet --bin cairn
PIDS=()

# SIGTERMs the nodes in PIDS (only while their command line still names $WORK) and reaps them.
tmp_cluster_stop() {
    local pid
    for pid in "${PIDS[@]}"; do
        if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$WORK"; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

tmp_cluster_cleanup() {
    tmp_cluster_stop
    rm -rf -- "$WORK"
}

tmp_cluster_up() {
    local name=$1 i
    TMP_CLUSTER_BASE=$2
    shift 2
    TMP_CLUSTER_ARGS=("$@")
    TMP_CLUSTER_PEERS=""
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-$name.XXXXXX")
    trap tmp_cluster_cleanup EXIT
    ENDPOINTS=""
    for i in 1 2 3; do
        TMP_CLUSTER_PEERS+="${TMP_CLUSTER_PEERS:+,}$i=127.0.0.1:$((TMP_CLUSTER_BASE + i))"
        ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:$((TMP_CLUSTER_BASE + i))"
    done
    for i in 1 2 3; do tmp_cluster_start "$i"; done
    local base=$TMP_CLUSTER_BASE
    local deadline=$((SECONDS + 30))
    until curl -sf "http://127.0.0.1:$((base + 1))/ready" >/dev/null; do
        ((SECONDS < deadline)) || { echo "cluster did not become ready" >&2; exit 1; }
        sleep 0.5
    done
}

tmp_cluster_start() {
    local i=$1
    shift
    env "$@" "$BIN" serve --id "$i" --listen "127.0.0.1:$((TMP_CLUSTER_BASE + i))" --data-dir "$WORK/node$i" \
        --peers "$TMP_CLUSTER_PEERS" "${TMP_CLUSTER_ARGS[@]}" >>"$WORK/node$i.log" 2>&1 &
    PIDS[i - 1]=$!
}

tmp_cluster_metric() {
    curl -sf "http://127.0.0.1:$((TMP_CLUSTER_BASE + $1))/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}

tmp_cluster_load() {
    local keys=$1 size=$2 t0=$SECONDS
    echo "loading $keys keys of $size bytes"
    "$BIN" bench --endpoints "$ENDPOINTS" --workload get --preload --keys "$keys" --value-size "$size" \
        --clients 64 --duration 1s --warmup 0s --json >"$WORK/load.json" 2>"$WORK/load.log" \
        || { cat "$WORK/load.log" >&2; exit 1; }
    echo "loaded in $((SECONDS - t0)) s"
}

# Overwrites a small set of keys until every node has built one more snapshot, so the snapshot
# covers the whole key space and the WAL behind it is compacted (600 s at most).
tmp_cluster_fresh_snapshots() {
    local size=$1 i fresh before=() deadline=$((SECONDS + 600))
    for i in 1 2 3; do before[i]=$(tmp_cluster_metric "$i" cairn_snapshots_built_total); done
    while :; do
        fresh=0
        for i in 1 2 3; do
            [[ $(tmp_cluster_metric "$i" cairn_snapshots_built_total) != "${before[i]}" ]] && fresh=$((fresh + 1))
        done
        ((fresh == 3)) && return 0
        ((SECONDS < deadline)) || { echo "no new snapshot on every node within 600 s" >&2; exit 1; }
        "$BIN" bench --endpoints "$ENDPOINTS" --workload put --keys 1000 --value-size "$size" \
            --clients 16 --duration 5s --warmup 0s --json >/dev/null 2>&1
    done
}
