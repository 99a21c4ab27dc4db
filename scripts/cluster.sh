#!/usr/bin/env bash
# cluster.sh: a local 3-node Cairn cluster for development. Owns ./cairn-data/node{1,2,3}{,.log,.pid}.
# Run `scripts/cluster.sh` without arguments for usage.
#
# What it is for, plainly: nodes 1, 2 and 3 on 127.0.0.1, started with --peers, on one machine.
# It follows CAIRN_* settings the nodes read themselves: with CAIRN_ADMIN_TOKEN exported the
# nodes require tokens and this script sends that token when it polls them; with
# CAIRN_TLS_CERT / CAIRN_TLS_KEY exported they serve HTTPS and it polls over HTTPS, trusting
# CAIRN_CACERT (else CAIRN_PEER_CA). It does not follow membership changes: once a node was
# removed, replaced or added under another id, `status` and `start N` describe only nodes
# 1-3 as it started them. Manage such a cluster with `cairn cluster ...` and your supervisor
# (deploy/), not with this script.
#
# Paths are relative to the repository root, whatever the caller's working directory.
# Environment: CAIRN_BIN (default target/release/cairn), CAIRN_UP_TIMEOUT (30 s),
# CAIRN_DOWN_TIMEOUT (15 s), CAIRN_BASE_PORT (7000: node N listens on BASE+N).
# Only processes whose PID is in our pid files and whose command line is `cairn serve --id N`
# are ever signalled; never pkill/killall, which could hit someone else's processes.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=${CAIRN_BIN:-target/release/cairn}
DATA=./cairn-data
NODES=(1 2 3)
BASE_PORT=${CAIRN_BASE_PORT:-7000}
PEERS="1=127.0.0.1:$((BASE_PORT + 1)),2=127.0.0.1:$((BASE_PORT + 2)),3=127.0.0.1:$((BASE_PORT + 3))"
UP_TIMEOUT=${CAIRN_UP_TIMEOUT:-30}
DOWN_TIMEOUT=${CAIRN_DOWN_TIMEOUT:-15}

usage() {
    cat >&2 <<'USAGE'
usage: scripts/cluster.sh up | down | status | start N | stop N | kill N | restart N

  up         build target/release/cairn if missing, start nodes 1..3, wait for one agreed leader
  down       SIGTERM exactly the PIDs in ./cairn-data/nodeN.pid, wait, remove the pid files
  status     id, pid, role, leader, term, appliedIndex of every node
  start N    start one node (e.g. after stop/kill) and wait until it sees the leader
  stop N     SIGTERM one node (graceful)
  kill N     SIGKILL one node (simulated crash; its data dir is kept)
  restart N  stop N, then start N
USAGE
}

die() { echo "cluster.sh: $*" >&2; exit 1; }
port() { echo $((BASE_PORT + $1)); }
pid_file() { echo "$DATA/node$1.pid"; }
log_file() { echo "$DATA/node$1.log"; }

check_node_id() {
    [[ ${1:-} =~ ^[123]$ ]] || die "node id must be 1, 2 or 3 (got '${1:-}')"
}

# True if PID is alive and its command line is `.../cairn serve ... --id N ...`, so a recycled
# PID that now belongs to another program is never signalled. A zombie has an empty cmdline and
# so counts as gone. A leading `nohup` is skipped: right after start_node the child may not have
# exec'd the binary yet.
is_our_node() {
    local pid=$1 id=$2 args first=0
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    mapfile -d '' -t args </proc/"$pid"/cmdline || return 1
    ((${#args[@]} > 0)) || return 1
    [[ $(basename -- "${args[0]}") == nohup ]] && first=1
    [[ $(basename -- "${args[first]:-}") == cairn ]] || return 1
    local i found_serve=0 found_id=0
    for ((i = first + 1; i < ${#args[@]}; i++)); do
        [[ ${args[i]} == serve ]] && found_serve=1
        if [[ ${args[i]} == --id && ${args[i + 1]:-} == "$id" ]] || [[ ${args[i]} == "--id=$id" ]]; then
            found_id=1
        fi
    done
    ((found_serve && found_id))
}

# Prints the PID of node N if it is running and was started by us; prints nothing otherwise.
running_pid() {
    local id=$1 file pid
    file=$(pid_file "$id")
    [[ -f $file ]] || return 0
    pid=$(<"$file")
    if is_our_node "$pid" "$id"; then echo "$pid"; fi
}

SCHEME=http
[[ -n ${CAIRN_TLS_CERT:-} ]] && SCHEME=https
CURL_AUTH=()
[[ -n ${CAIRN_ADMIN_TOKEN:-} ]] && CURL_AUTH=(-H "Authorization: Bearer $CAIRN_ADMIN_TOKEN")
CURL_TLS=()
CA=${CAIRN_CACERT:-${CAIRN_PEER_CA:-}}
[[ $SCHEME == https && -n $CA ]] && CURL_TLS=(--cacert "$CA")

# `cluster/status` of node N as "role leader term appliedIndex", or nothing if it does not answer.
node_status() {
    local body
    body=$(curl -fsS --max-time 1 "${CURL_AUTH[@]}" "${CURL_TLS[@]}" \
        "$SCHEME://127.0.0.1:$(port "$1")/cluster/status" 2>/dev/null) || return 0
    python3 -c '
import json, sys
try:
    d = json.loads(sys.argv[1])["data"]
except (ValueError, KeyError, TypeError):
    sys.exit(0)
leader = d.get("leader")
print(d.get("role", "?"), "none" if leader is None else leader, d.get("term", "?"), d.get("appliedIndex", "?"))
' "$body"
}

# The ids of the nodes running now: a restarted node must agree with them on the leader, so
# it never reports a leader from before it stopped.
running_ids() {
    local id
    for id in "${NODES[@]}"; do [[ -n $(running_pid "$id") ]] && echo "$id"; done
    return 0
}

ensure_binary() {
    if [[ ! -x $BIN ]]; then
        [[ -z ${CAIRN_BIN:-} ]] || die "CAIRN_BIN=$BIN is not an executable"
        echo "building $BIN (cargo build --release)..."
        cargo build --release
    fi
}

start_node() {
    local id=$1 pid
    pid=$(running_pid "$id")
    if [[ -n $pid ]]; then
        echo "node $id already running (pid $pid)"
        return 0
    fi
    mkdir -p "$DATA/node$id"
    # nohup: the node must outlive this script and the terminal it was started from.
    nohup "$BIN" serve --id "$id" --listen "127.0.0.1:$(port "$id")" \
        --data-dir "$DATA/node$id" --peers "$PEERS" >>"$(log_file "$id")" 2>&1 </dev/null &
    echo $! >"$(pid_file "$id")"
    echo "node $id started (pid $!, log $(log_file "$id"))"
}

# Waits until every node in "$@" answers and all of them name the same leader.
wait_for_leader() {
    local deadline=$((SECONDS + UP_TIMEOUT)) id line leader agreed
    while ((SECONDS < deadline)); do
        agreed=""
        for id in "$@"; do
            if [[ -z $(running_pid "$id") ]]; then
                echo "node $id exited during start-up; last log lines:" >&2
                tail -n 20 "$(log_file "$id")" >&2 || true
                return 1
            fi
            line=$(node_status "$id")
            leader=$(awk '{print $2}' <<<"$line")
            if [[ -z $leader || $leader == none ]] || [[ -n $agreed && $leader != "$agreed" ]]; then
                agreed=""
                break
            fi
            agreed=$leader
        done
        if [[ -n $agreed ]]; then
            echo "leader: node $agreed"
            return 0
        fi
        sleep 0.3
    done
    echo "no agreed leader after ${UP_TIMEOUT}s; see $DATA/node*.log" >&2
    return 1
}

# SIGTERM (or the given signal) to node N if it is ours; echoes the PID that was signalled.
signal_node() {
    local id=$1 sig=$2 file pid
    file=$(pid_file "$id")
    [[ -f $file ]] || return 0
    pid=$(<"$file")
    if is_our_node "$pid" "$id"; then
        # A node that exits between the check and the signal needs no waiting for.
        if kill -s "$sig" "$pid" 2>/dev/null; then echo "$pid"; fi
    else
        echo "node $id: pid file names no running cairn node $id; removing it" >&2
        rm -f -- "$file"
    fi
}

# Waits for the nodes given as "id:pid" pairs to exit; removes each pid file once its node is gone.
wait_for_exit() {
    local deadline=$((SECONDS + DOWN_TIMEOUT)) pair id pid pending=("$@") left
    while ((${#pending[@]} > 0)); do
        left=()
        for pair in "${pending[@]}"; do
            id=${pair%%:*} pid=${pair#*:}
            if is_our_node "$pid" "$id"; then
                left+=("$pair")
            else
                rm -f -- "$(pid_file "$id")"
                echo "node $id stopped"
            fi
        done
        pending=("${left[@]}")
        ((${#pending[@]} == 0)) && return 0
        if ((SECONDS >= deadline)); then
            echo "still running after ${DOWN_TIMEOUT}s: ${pending[*]} (id:pid); pid files kept" >&2
            return 1
        fi
        sleep 0.2
    done
}

stop_nodes() {
    local sig=$1 id pid pairs=()
    shift
    for id in "$@"; do
        pid=$(signal_node "$id" "$sig")
        [[ -z $pid ]] || pairs+=("$id:$pid")
    done
    ((${#pairs[@]} == 0)) && { echo "nothing to stop"; return 0; }
    wait_for_exit "${pairs[@]}"
}

cmd_status() {
    local id pid line role leader term applied
    printf '%-5s %-8s %-10s %-7s %-6s %s\n' NODE PID ROLE LEADER TERM APPLIED
    for id in "${NODES[@]}"; do
        pid=$(running_pid "$id")
        line=$(node_status "$id")
        if [[ -n $line ]]; then
            read -r role leader term applied <<<"$line"
            printf '%-5s %-8s %-10s %-7s %-6s %s\n' "$id" "${pid:--}" "$role" "$leader" "$term" "$applied"
        elif [[ -n $pid ]]; then
            printf '%-5s %-8s %-10s %-7s %-6s %s\n' "$id" "$pid" "no-answer" - - -
        else
            printf '%-5s %-8s %-10s %-7s %-6s %s\n' "$id" - down - - -
        fi
    done
}

main() {
    command -v curl >/dev/null || die "curl is required"
    command -v python3 >/dev/null || die "python3 is required"
    local cmd=${1:-}
    case $cmd in
        up)
            ensure_binary
            mkdir -p "$DATA"
            for id in "${NODES[@]}"; do start_node "$id"; done
            wait_for_leader "${NODES[@]}" || die "cluster did not come up; 'scripts/cluster.sh down' stops what did start"
            ;;
        down) stop_nodes TERM "${NODES[@]}" ;;
        status) cmd_status ;;
        start)
            check_node_id "${2:-}"
            ensure_binary
            start_node "$2"
            wait_for_leader $(running_ids)
            ;;
        stop) check_node_id "${2:-}"; stop_nodes TERM "$2" ;;
        kill) check_node_id "${2:-}"; stop_nodes KILL "$2" ;;
        restart)
            check_node_id "${2:-}"
            stop_nodes TERM "$2"
            ensure_binary
            start_node "$2"
            wait_for_leader $(running_ids)
            ;;
        *)
            usage
            exit 2
            ;;
    esac
}

main "$@"
