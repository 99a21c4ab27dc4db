#!/usr/bin/env bash
# bench-smoke.sh: CI smoke test of `cairn bench`. Starts one single-node Cairn on a free loopback
# port with a temporary data dir, runs a short put and a short get benchmark against it, and a put
# run with watch streams open, then a put and a get against `cairn ceiling`, and fails if any run
# saw an error (or the watchers no events). Stops only the node it started and removes its data dir.
#
# Environment: CAIRN_BIN (default: target/debug/cairn, built with `cargo build` so it is never
# stale), SMOKE_DURATION (3s), SMOKE_CLIENTS (8), SMOKE_KEYS (1000), SMOKE_UP_TIMEOUT (30 s).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

DURATION=${SMOKE_DURATION:-3s}
CLIENTS=${SMOKE_CLIENTS:-8}
KEYS=${SMOKE_KEYS:-1000}
UP_TIMEOUT=${SMOKE_UP_TIMEOUT:-30}

if [[ -n ${CAIRN_BIN:-} ]]; then
    BIN=$CAIRN_BIN
else
    cargo build --quiet --bin cairn
    BIN=target/debug/cairn
fi
[[ -x $BIN ]] || { echo "bench-smoke: $BIN is not executable" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cairn-bench-smoke.XXXXXX")
NODE_PID=""

stop_node() {
    [[ -n $NODE_PID ]] || return 0
    # Signal only the node we started, and only while its command line still names our dir.
    if [[ -r /proc/$NODE_PID/cmdline ]] && tr '\0' ' ' <"/proc/$NODE_PID/cmdline" | grep -qF -- "$WORK"; then
        kill -TERM "$NODE_PID" 2>/dev/null || true
        local deadline=$((SECONDS + 15))
        while kill -0 "$NODE_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$NODE_PID" 2>/dev/null; then kill -KILL "$NODE_PID" 2>/dev/null || true; fi
    fi
    wait "$NODE_PID" 2>/dev/null || true
    NODE_PID=""
}

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
    stop_node
    rm -rf -- "$WORK"
}
trap cleanup EXIT

# A port the kernel just handed out and released; the tiny race with other programs is retried.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start_node() {
    local attempt port
    for attempt in 1 2 3; do
        port=$(free_port)
        rm -rf -- "$WORK/data"
        "$BIN" serve --id 1 --listen "127.0.0.1:$port" --data-dir "$WORK/data" >"$WORK/node.log" 2>&1 </dev/null &
        NODE_PID=$!
        local deadline=$((SECONDS + UP_TIMEOUT))
        while ((SECONDS < deadline)); do
            if ! kill -0 "$NODE_PID" 2>/dev/null; then
                break
            fi
            if "$BIN" cluster status --endpoints "127.0.0.1:$port" 2>/dev/null | grep -q '"role": "leader"'; then
                ENDPOINT="127.0.0.1:$port"
                return 0
            fi
            sleep 0.2
        done
        echo "bench-smoke: node did not come up on port $port (attempt $attempt); log:" >&2
        tail -n 20 "$WORK/node.log" >&2 || true
        stop_node
    done
    return 1
}

start_node || { echo "bench-smoke: FAILED to start a node" >&2; exit 1; }
echo "bench-smoke: node pid $NODE_PID on $ENDPOINT"

status=0
for workload in put get; do
    echo "bench-smoke: $workload, $CLIENTS clients, $DURATION"
    if ! "$BIN" bench --endpoints "$ENDPOINT" --workload "$workload" --clients "$CLIENTS" \
        --duration "$DURATION" --warmup 1s --keys "$KEYS" --value-size 100; then
        echo "bench-smoke: $workload run reported errors" >&2
        status=1
    fi
done

# Watch streams through a put run: every write is one event for one of the 50 watchers, so
# events must arrive, and no stream may drop.
echo "bench-smoke: put with 50 watchers, $CLIENTS clients, $DURATION"
if "$BIN" bench --endpoints "$ENDPOINT" --workload put --clients "$CLIENTS" --duration "$DURATION" --warmup 1s \
    --keys 50 --watchers 50 --json >"$WORK/watch.json"; then
    if ! python3 - "$WORK/watch.json" <<'PY'; then
import json, sys
w = json.load(open(sys.argv[1]))["watch"]
print(f"bench-smoke: watch {w}")
sys.exit(0 if w["events"] > 0 and w["dropped"] == 0 else 1)
PY
        echo "bench-smoke: the watchers received no events, or a stream dropped" >&2
        status=1
    fi
else
    echo "bench-smoke: the put run with watchers reported errors" >&2
    status=1
fi

# The ceiling (`cairn ceiling`, what scripts/bench-vs-etcd.sh measures beside Cairn) answers the
# same put and get as a node: bench drives it with zero errors. Its --data-dir is unused; it puts
# $WORK in the command line, which stop_node checks before signalling.
stop_node
port=$(free_port)
"$BIN" ceiling --listen "127.0.0.1:$port" --data-dir "$WORK/ceiling" >"$WORK/ceiling.log" 2>&1 </dev/null &
NODE_PID=$!
deadline=$((SECONDS + UP_TIMEOUT))
until curl -fsS --max-time 1 "127.0.0.1:$port/cluster/status" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)) || ! kill -0 "$NODE_PID" 2>/dev/null; then
        echo "bench-smoke: the ceiling did not come up; log:" >&2
        tail -n 20 "$WORK/ceiling.log" >&2 || true
        exit 1
    fi
    sleep 0.2
done
for workload in put get-stale; do
    echo "bench-smoke: the ceiling, $workload, $CLIENTS clients, $DURATION"
    if ! "$BIN" bench --endpoints "127.0.0.1:$port" --workload "$workload" --no-preload --clients "$CLIENTS" \
        --duration "$DURATION" --warmup 1s --keys "$KEYS" --value-size 100; then
        echo "bench-smoke: the ceiling's $workload run reported errors" >&2
        status=1
    fi
done

if ((status == 0)); then echo "bench-smoke: ok"; else echo "bench-smoke: FAILED" >&2; fi
exit "$status"
