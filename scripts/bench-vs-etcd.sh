#!/usr/bin/env bash
# bench-vs-etcd.sh: Cairn against etcd on this machine, in one run, measured by the same client
# (`cairn bench`). Installs Debian's etcd if missing, measures fsync latency, starts a 3-node etcd
# and a 3-node Cairn on loopback (both with their default durability: fsync on commit), runs the
# same workloads against each, alternating, and prints one Markdown table with the Cairn/etcd
# ratios. Beside them it measures this machine's ceiling: `cairn ceiling`, the node's own HTTP
# path with no storage or replication, answering put and get at 64 clients; each Cairn figure
# is then also a fraction of that. Stops only the processes it started and removes its temporary data.
#
# Environment:
#   DURATION (10s)  measured time per run     WARMUP (2s)    unmeasured load before it
#   SMOKE=1         DURATION=2s WARMUP=1s, for a quick check of the script itself
#   KEYS (10000)    VALUE_SIZE (100)          CAIRN_BIN (target/release/cairn, built if needed)
#   RESULTS=DIR     keep the per-run JSON, logs and table.md in DIR (default: a temp dir, removed)
#   KEEP=1          keep the temp dir (data dirs and logs) for inspection
#   MAX_BUSY (0.2), LOAD_WAIT (300): before starting, wait up to LOAD_WAIT seconds until the
#                   machine's busy CPU over 5 s is below MAX_BUSY cores (then go on, with a warning)
# Ports: etcd clients 12379/22379/32379, peers 12380/22380/32380; Cairn 17001-17003; the
# ceiling 17004.
# Traffic goes to 127.0.0.1 only. Exit status: 0 if every run completed with zero errors.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ${SMOKE:-0} == 1 ]]; then
    DURATION=${DURATION:-2s}
    WARMUP=${WARMUP:-1s}
fi
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-100}
UP_TIMEOUT=${UP_TIMEOUT:-60}

ETCD_CLIENT=(12379 22379 32379)
ETCD_PEER=(12380 22380 32380)
CAIRN_PORT=(17001 17002 17003)
CEILING_PORT=17004

log() { echo "[bench-vs-etcd] $*" >&2; }
die() { log "error: $*"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-vs-etcd.XXXXXX")
RESULTS=${RESULTS:-$WORK/results}
mkdir -p "$RESULTS"
PIDS=()

# Signals only PIDs this script started, and only while their command line still names our
# temp dir (so a recycled PID is never hit). TERM first, KILL after a bounded wait.
stop_all() {
    local pid live=() deadline
    for pid in "${PIDS[@]}"; do
        if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$WORK"; then
            kill -TERM "$pid" 2>/dev/null && live+=("$pid")
        fi
    done
    deadline=$((SECONDS + 20))
    for pid in "${live[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not stop after TERM; sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

cleanup() {
    stop_all
    if [[ ${KEEP:-0} == 1 ]]; then
        log "kept $WORK"
    else
        # Keep RESULTS if it lives outside WORK; drop data dirs and logs.
        rm -rf -- "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need() { command -v "$1" >/dev/null 2>&1; }

install_etcd() {
    need etcd && need etcdctl && return 0
    log "installing Debian's etcd-server and etcd-client"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends etcd-server etcd-client >/dev/null
    need etcd || die "etcd is still missing after apt-get install"
}

ensure_cairn() {
    if [[ -n ${CAIRN_BIN:-} ]]; then
        BIN=$CAIRN_BIN
    else
        log "cargo build --release (a no-op when up to date)"
        cargo build --release --quiet --bin cairn
        BIN=target/release/cairn
    fi
    [[ -x $BIN ]] || die "$BIN is not executable"
}

# fdatasync of 4 KiB appends in our temp dir (the same filesystem as the data dirs): what a
# WAL commit costs at least. Prints "p50 p99 mean" in ms.
measure_fsync() {
    python3 - "$WORK/fsync-probe" <<'PY'
import os, statistics, sys, time
path = sys.argv[1]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
buf = b"x" * 4096
samples = []
for i in range(300):
    os.write(fd, buf)
    t = time.perf_counter()
    os.fdatasync(fd)
    samples.append((time.perf_counter() - t) * 1000)
os.close(fd)
os.unlink(path)
samples = samples[20:]
samples.sort()
p = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]
print(f"{p(0.5):.3f} {p(0.99):.3f} {statistics.mean(samples):.3f}")
PY
}

load1() { cut -d' ' -f1 /proc/loadavg; }

# Other people's work on a shared 2-core machine skews results. The load average cannot tell it
# apart from our own servers, so each run also measures "other CPU": busy CPU time in /proc/stat
# minus what our servers and this script's children used, in cores.
cpu_snapshot() {
    python3 - "$$" "${PIDS[@]}" <<'PY'
import sys
def ticks(pid, children):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # Fields after the command: state ppid ... utime(11) stime(12) cutime(13) cstime(14).
    return int(st[11]) + int(st[12]) + (int(st[13]) + int(st[14]) if children else 0)
with open("/proc/stat") as f:
    v = [int(x) for x in f.readline().split()[1:8]]
busy = v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq (idle, iowait, steal out)
ours = ticks(sys.argv[1], True) + sum(ticks(p, False) for p in sys.argv[2:])
print(busy, ours)
PY
}

# Busy cores over the next 5 s, from /proc/stat. Nothing of ours runs yet when it is called.
# Not the load average: its 1-minute mean still counts a previous run's servers minutes after
# they stopped, so waiting on it mostly waited for our own past.
busy_cores() {
    python3 - <<'PY'
import os, time
def busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq
a = busy()
time.sleep(5)
print(f"{(busy() - a) / os.sysconf('SC_CLK_TCK') / 5:.2f}")
PY
}

wait_for_quiet() {
    local max=${MAX_BUSY:-0.2} deadline=$((SECONDS + ${LOAD_WAIT:-300})) busy
    while busy=$(busy_cores) && python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)' "$busy" "$max"; do
        if ((SECONDS >= deadline)); then
            log "warning: other work still keeps $busy cores busy (>= $max); measuring anyway"
            return 0
        fi
        log "other work keeps $busy cores busy (>= $max); waiting for a quieter machine"
        sleep 10
    done
    log "machine quiet: $busy cores busy over 5 s; load average $(load1)"
}

# Refuses to start over someone else's server: a second etcd on our ports would make every
# result (and the stop step) about the wrong processes.
check_ports_free() {
    local port
    for port in "${ETCD_CLIENT[@]}" "${ETCD_PEER[@]}" "${CAIRN_PORT[@]}" "$CEILING_PORT"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "127.0.0.1:$port is already in use; stop whatever listens there first"
        fi
    done
}

start_etcd() {
    local i name cluster="" token
    token="bench-$$-$RANDOM"
    for i in 0 1 2; do
        cluster+="${cluster:+,}e$((i + 1))=http://127.0.0.1:${ETCD_PEER[i]}"
    done
    for i in 0 1 2; do
        name=e$((i + 1))
        etcd --name "$name" --data-dir "$WORK/etcd-$name" \
            --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT[i]}" \
            --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT[i]}" \
            --listen-peer-urls "http://127.0.0.1:${ETCD_PEER[i]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER[i]}" \
            --initial-cluster "$cluster" --initial-cluster-token "$token" \
            --initial-cluster-state new >"$WORK/etcd-$name.log" 2>&1 </dev/null &
        PIDS+=("$!")
    done
}

# True once every etcd member answers and all report the same non-zero leader.
etcd_ready() {
    local i out leaders=()
    for i in 0 1 2; do
        out=$(curl -fsS --max-time 1 -X POST "http://127.0.0.1:${ETCD_CLIENT[i]}/v3/maintenance/status" -d '{}' 2>/dev/null) || return 1
        leaders+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("leader","0"))' "$out")")
    done
    [[ ${leaders[0]} != 0 && ${leaders[0]} == "${leaders[1]}" && ${leaders[1]} == "${leaders[2]}" ]]
}

start_cairn() {
    local i id peers=""
    for i in 0 1 2; do peers+="${peers:+,}$((i + 1))=127.0.0.1:${CAIRN_PORT[i]}"; done
    for i in 0 1 2; do
        id=$((i + 1))
        "$BIN" serve --id "$id" --listen "127.0.0.1:${CAIRN_PORT[i]}" --data-dir "$WORK/cairn-$id" \
            --peers "$peers" >"$WORK/cairn-$id.log" 2>&1 </dev/null &
        PIDS+=("$!")
    done
}

# The ceiling: one process, the same HTTP stack as a node, no storage (src/bench/ceiling.rs).
start_ceiling() {
    # --data-dir is not used by the ceiling: it puts $WORK in the command line, which is how
    # stop_all recognises the processes of this run.
    "$BIN" ceiling --listen "127.0.0.1:$CEILING_PORT" --value-size "$VALUE_SIZE" --data-dir "$WORK/ceiling" \
        >"$WORK/ceiling.log" 2>&1 </dev/null &
    PIDS+=("$!")
}

ceiling_ready() {
    curl -fsS --max-time 1 "http://127.0.0.1:$CEILING_PORT/cluster/status" >/dev/null 2>&1
}

cairn_ready() {
    local i out leaders=()
    for i in 0 1 2; do
        out=$(curl -fsS --max-time 1 "http://127.0.0.1:${CAIRN_PORT[i]}/cluster/status" 2>/dev/null) || return 1
        leaders+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["data"].get("leader") or 0)' "$out")")
    done
    [[ ${leaders[0]} != 0 && ${leaders[0]} == "${leaders[1]}" && ${leaders[1]} == "${leaders[2]}" ]]
}

wait_until() {
    local what=$1 check=$2 deadline=$((SECONDS + UP_TIMEOUT))
    until $check; do
        ((SECONDS < deadline)) || die "$what not ready after ${UP_TIMEOUT}s; logs in $WORK (KEEP=1 keeps them)"
        sleep 0.3
    done
    log "$what ready"
}

# run_one NAME TARGET ARGS...: one `cairn bench` run, JSON to $RESULTS/NAME.TARGET.json.
FAILED=0
run_one() {
    local name=$1 target=$2 endpoints
    shift 2
    if [[ $target == cairn ]]; then
        endpoints="127.0.0.1:${CAIRN_PORT[0]},127.0.0.1:${CAIRN_PORT[1]},127.0.0.1:${CAIRN_PORT[2]}"
    elif [[ $target == ceiling ]]; then
        # Driven as Cairn; it stores nothing, so there is nothing to preload (every get answers).
        endpoints="127.0.0.1:$CEILING_PORT"
        set -- "$@" --no-preload
    else
        endpoints="127.0.0.1:${ETCD_CLIENT[0]},127.0.0.1:${ETCD_CLIENT[1]},127.0.0.1:${ETCD_CLIENT[2]}"
    fi
    local load_before
    load_before=$(load1)
    log "$name on $target (load $load_before)"
    local rc=0 before after t0 t1
    before=$(cpu_snapshot)
    t0=$(date +%s.%N)
    "$BIN" bench --target "${target/ceiling/cairn}" --endpoints "$endpoints" --duration "$DURATION" --warmup "$WARMUP" \
        --keys "$KEYS" --value-size "$VALUE_SIZE" --json "$@" \
        >"$RESULTS/$name.$target.json" 2>"$RESULTS/$name.$target.log" || rc=$?
    t1=$(date +%s.%N)
    after=$(cpu_snapshot)
    # shellcheck disable=SC2086 # each snapshot is two numbers
    python3 -c '
import sys
b0, o0, b1, o1, clk = map(int, sys.argv[1:6])
wall = float(sys.argv[7]) - float(sys.argv[6])
print(f"{max(0, (b1 - b0) - (o1 - o0)) / clk / wall:.2f}")
' $before $after "$(getconf CLK_TCK)" "$t0" "$t1" >"$RESULTS/$name.$target.other"
    if ((rc != 0)); then
        FAILED=1
        log "$name on $target exited $rc; last lines:"
        tail -n 5 "$RESULTS/$name.$target.log" >&2 || true
    fi
    echo "$load_before" >"$RESULTS/$name.$target.load"
}

main() {
    need curl || die "curl is required"
    need python3 || die "python3 is required"
    install_etcd
    ensure_cairn
    local etcd_version
    etcd_version=$(etcd --version | sed -n 1p) # sed reads to the end: head could SIGPIPE etcd (exit 141)
    log "$etcd_version; cairn: $BIN"

    check_ports_free
    wait_for_quiet
    read -r FSYNC_P50 FSYNC_P99 FSYNC_MEAN < <(measure_fsync)
    log "fdatasync of a 4 KiB append: p50 ${FSYNC_P50} ms, p99 ${FSYNC_P99} ms, mean ${FSYNC_MEAN} ms"

    start_etcd
    start_cairn
    start_ceiling
    wait_until "etcd (3 members)" etcd_ready
    wait_until "cairn (3 nodes)" cairn_ready
    wait_until "the ceiling" ceiling_ready

    # name | bench args. The order of the two systems alternates from one workload to the next,
    # so a slow drift in machine load does not always hit the same one.
    local workloads=(
        "put-c1|--workload put --clients 1"
        "put-c16|--workload put --clients 16"
        "put-c64|--workload put --clients 64"
        "put-c256|--workload put --clients 256"
        "get-c64|--workload get --clients 64"
        "stale-c64|--workload get-stale --clients 64"
        "mixed-c64|--workload mixed:90/10 --clients 64"
    )
    local n=0 entry name args first second
    for entry in "${workloads[@]}"; do
        name=${entry%%|*}
        args=${entry#*|}
        if ((n % 2 == 0)); then first=cairn second=etcd; else first=etcd second=cairn; fi
        # shellcheck disable=SC2086 # args is a list of flags on purpose
        run_one "$name" "$first" $args
        # shellcheck disable=SC2086
        run_one "$name" "$second" $args
        if [[ $name == put-c64 || $name == stale-c64 ]]; then
            # shellcheck disable=SC2086
            run_one "$name" ceiling $args
        fi
        n=$((n + 1))
    done
    stop_all

    {
        echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
        echo "fdatasync (4 KiB append, this filesystem): p50 ${FSYNC_P50} ms, p99 ${FSYNC_P99} ms, mean ${FSYNC_MEAN} ms"
        echo "$etcd_version (Debian); $("$BIN" --version)$(git rev-parse --short HEAD 2>/dev/null | sed 's/^/ at /')"
        echo "Each run: ${DURATION} measured after ${WARMUP} warm-up, ${KEYS} keys, ${VALUE_SIZE}-byte values, closed loop"
        echo "ceiling = \`cairn ceiling\`: the node's HTTP path answering the same put and get with no storage or replication"
        echo "load = 1-minute load average before the run (our own servers included); other CPU = cores"
        echo "used by processes that are not part of the benchmark, during the run"
        echo
        python3 - "$RESULTS" <<'PY'
import json, os, sys
d = sys.argv[1]
rows = [
    ("put-c1", "put", 1), ("put-c16", "put", 16), ("put-c64", "put", 64), ("put-c256", "put", 256),
    ("get-c64", "get (linearizable)", 64), ("stale-c64", "stale get / serializable range (follower)", 64),
    ("mixed-c64", "mixed 90/10", 64),
]
def load(name, target):
    try:
        with open(os.path.join(d, f"{name}.{target}.json")) as f:
            r = json.load(f)
        with open(os.path.join(d, f"{name}.{target}.load")) as f:
            r["load"] = f.read().strip()
        with open(os.path.join(d, f"{name}.{target}.other")) as f:
            r["other"] = f.read().strip()
        return r
    except (OSError, ValueError):
        return None
def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "–"
def num(r, *path):
    for p in path:
        if r is None:
            return None
        r = r.get(p)
    return r
print("| workload | clients | Cairn ops/s | etcd ops/s | Cairn/etcd | Cairn p50 ms | etcd p50 ms | Cairn p99 ms | etcd p99 ms | p99 Cairn/etcd | Cairn p99.9 / max ms | etcd p99.9 / max ms | errors C/E | load C/E | other CPU C/E |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
res = {}
for name, label, clients in rows:
    c, e = load(name, "cairn"), load(name, "etcd")
    res[name] = (c, e)
    f = lambda x, fmt="{:,.0f}": "–" if x is None else fmt.format(x)
    tail = lambda r: "–" if r is None else f"{r['latencyMs']['p999']:.1f} / {r['latencyMs']['max']:.1f}"
    print(f"| {label} | {clients} | {f(num(c,'throughput'))} | {f(num(e,'throughput'))} | "
          f"{ratio(num(c,'throughput'), num(e,'throughput'))} | "
          f"{f(num(c,'latencyMs','p50'), '{:.2f}')} | {f(num(e,'latencyMs','p50'), '{:.2f}')} | "
          f"{f(num(c,'latencyMs','p99'), '{:.2f}')} | {f(num(e,'latencyMs','p99'), '{:.2f}')} | "
          f"{ratio(num(c,'latencyMs','p99'), num(e,'latencyMs','p99'))} | {tail(c)} | {tail(e)} | "
          f"{f(num(c,'errors','total'))}/{f(num(e,'errors','total'))} | "
          f"{(c or {}).get('load','–')}/{(e or {}).get('load','–')} | "
          f"{(c or {}).get('other','–')}/{(e or {}).get('other','–')} |")
print()
cp, cs = load("put-c64", "ceiling"), load("stale-c64", "ceiling")
pct = lambda a, b: f"{100 * a / b:.0f} %" if a is not None and b else "–"
if cp or cs:
    print("| the ceiling, 64 clients | ops/s | p50 ms | p99 ms | Cairn put / strong get / stale get as a share of it |")
    print("|---|---:|---:|---:|---|")
    c64, g, s = res["put-c64"][0], res["get-c64"][0], res["stale-c64"][0]
    if cp:
        print(f"| put | {cp['throughput']:,.0f} | {cp['latencyMs']['p50']:.2f} | {cp['latencyMs']['p99']:.2f} | put {pct(num(c64,'throughput'), cp['throughput'])} |")
    if cs:
        print(f"| get | {cs['throughput']:,.0f} | {cs['latencyMs']['p50']:.2f} | {cs['latencyMs']['p99']:.2f} | "
              f"strong get {pct(num(g,'throughput'), cs['throughput'])}, stale get {pct(num(s,'throughput'), cs['throughput'])} |")
    print()
def t(r, *p): return num(r, *p)
def targets(title, make):
    """Prints one target list; `make` gets the runs and returns (label, met) pairs."""
    print(title)
    try:
        runs = {k: res[k] for k in ("put-c1", "put-c64", "put-c256", "get-c64", "stale-c64")}
        lines = [f"- [{'x' if ok else ' '}] {label}" for label, ok in make(**{k.replace("-", "_"): v for k, v in runs.items()})]
    except (TypeError, KeyError):
        lines = ["- (some runs produced no result; see the logs)"]
    print("\n".join(lines))
def issue6(put_c1, put_c64, put_c256, get_c64, stale_c64):
    (c1, e1), (c64, e64), (c256, e256), (g, ge), (s, se) = put_c1, put_c64, put_c256, get_c64, stale_c64
    return [
        (f"put 64 clients ≥ 2× etcd: {ratio(t(c64,'throughput'), t(e64,'throughput'))}", t(c64,'throughput') >= 2 * t(e64,'throughput')),
        (f"put 256 clients ≥ 2× etcd: {ratio(t(c256,'throughput'), t(e256,'throughput'))}", t(c256,'throughput') >= 2 * t(e256,'throughput')),
        (f"put 1 client p50 ≤ etcd: {t(c1,'latencyMs','p50')} vs {t(e1,'latencyMs','p50')} ms", t(c1,'latencyMs','p50') <= t(e1,'latencyMs','p50')),
        (f"put 64 clients p99 < etcd: {t(c64,'latencyMs','p99')} vs {t(e64,'latencyMs','p99')} ms", t(c64,'latencyMs','p99') < t(e64,'latencyMs','p99')),
        (f"linearizable get 64 clients ≥ 2× etcd: {ratio(t(g,'throughput'), t(ge,'throughput'))}", t(g,'throughput') >= 2 * t(ge,'throughput')),
        (f"stale follower get ≥ 5× etcd serializable range: {ratio(t(s,'throughput'), t(se,'throughput'))}", t(s,'throughput') >= 5 * t(se,'throughput')),
        (f"group commit: put 64 clients ≥ 10× 1 client: {ratio(t(c64,'throughput'), t(c1,'throughput'))}", t(c64,'throughput') >= 10 * t(c1,'throughput')),
    ]
def issue19(put_c1, put_c64, put_c256, get_c64, stale_c64):
    (c1, e1), (c64, e64), (c256, e256), (g, ge), (s, se) = put_c1, put_c64, put_c256, get_c64, stale_c64
    out = [
        (f"put 64 clients ≥ 3× etcd: {ratio(t(c64,'throughput'), t(e64,'throughput'))}", t(c64,'throughput') >= 3 * t(e64,'throughput')),
        (f"put 256 clients ≥ 3× etcd: {ratio(t(c256,'throughput'), t(e256,'throughput'))}", t(c256,'throughput') >= 3 * t(e256,'throughput')),
        (f"put 1 client p99 ≤ etcd: {t(c1,'latencyMs','p99')} vs {t(e1,'latencyMs','p99')} ms", t(c1,'latencyMs','p99') <= t(e1,'latencyMs','p99')),
        (f"put 64 clients p99 ≤ etcd: {t(c64,'latencyMs','p99')} vs {t(e64,'latencyMs','p99')} ms", t(c64,'latencyMs','p99') <= t(e64,'latencyMs','p99')),
        (f"put 64 clients p99.9 < 50 ms: {t(c64,'latencyMs','p999')} ms", t(c64,'latencyMs','p999') < 50),
        (f"linearizable get 64 clients ≥ 5× etcd: {ratio(t(g,'throughput'), t(ge,'throughput'))}", t(g,'throughput') >= 5 * t(ge,'throughput')),
        (f"stale follower get ≥ 8× etcd serializable range: {ratio(t(s,'throughput'), t(se,'throughput'))}", t(s,'throughput') >= 8 * t(se,'throughput')),
    ]
    if cs:
        out.append((f"stale get ≥ 70 % of the ceiling's get: {pct(t(s,'throughput'), cs['throughput'])}", t(s,'throughput') >= 0.7 * cs['throughput']))
    return out
targets("Targets (issue 6):", issue6)
print()
targets("Targets (issue 19):", issue19)
PY
    } | tee "$RESULTS/table.md"

    if [[ $RESULTS != "$WORK"/* ]]; then log "results kept in $RESULTS"; fi
    ((FAILED == 0)) || { log "some runs reported errors (see $RESULTS/*.log)"; return 1; }
}

main "$@"
