#!/usr/bin/env bash
# deploy/check.sh: checks the deployment files with whatever tools this machine has.
#
#   - every `cairn serve` flag and CAIRN_* variable the files use exists in `cairn serve --help`
#   - compose.yaml passes `docker-compose config` / `docker compose config`
#   - the Kubernetes manifests parse, and their entrypoint script picks the right id and
#     --peers or --join, and refuses empty or placeholder secrets
#   - cairn@.service passes `systemd-analyze verify`
#   - live: the Kubernetes entrypoint, run with the real binary, forms a cluster of pods
#     cairn-0..2 and lets a fourth pod join (pod DNS names mapped to 127.0.0.K addresses)
#
# A missing tool is reported as `skip:` and is not a failure; a failed check is. Nothing here
# needs a Docker engine, a Kubernetes cluster or a running systemd. The image itself is never
# built and no container or unit is started: that needs a Docker engine or systemd as PID 1.
#
# Environment: CAIRN_BIN (default target/release/cairn, built if missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=${CAIRN_BIN:-target/release/cairn}
failed=0
tmp=$(mktemp -d)
pids=()
cleanup() {
    # Only the processes this script started, by PID.
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

ok() { echo "ok:   $*"; }
skip() { echo "skip: $*"; }
fail() {
    echo "FAIL: $*" >&2
    failed=1
}

if ! python3 -c 'import yaml' 2>/dev/null; then
    echo "deploy/check.sh needs python3 with PyYAML (pip install pyyaml)" >&2
    exit 1
fi

# 1. Flags and variables against the binary.
if [[ ! -x $BIN ]]; then cargo build --release --quiet; fi
"$BIN" serve --help >"$tmp/help"
if python3 - "$tmp/help" <<'PY'; then ok "flags and CAIRN_* variables exist in cairn serve --help"; else fail "deploy files use settings cairn serve does not have"; fi
import glob, json, re, sys, yaml
help_text = open(sys.argv[1]).read()
flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))
envs = set(re.findall(r"env: (CAIRN_[A-Z0-9_]+)", help_text))
used = []  # (file, setting)

def serve_args(words, where):
    words = list(words)
    if "serve" in words:
        for w in words[words.index("serve") + 1:]:
            if w.startswith("--"):
                used.append((where, w.split("=")[0]))

for line in open("deploy/Dockerfile"):
    if line.startswith("CMD "):
        serve_args(json.loads(line[4:]), "deploy/Dockerfile CMD")
for line in open("deploy/systemd/cairn@.service"):
    if line.startswith("ExecStart="):
        serve_args(line.split("=", 1)[1].split(), "cairn@.service ExecStart")
for path in glob.glob("deploy/systemd/*.env") + ["deploy/cairn.env.example"]:
    for line in open(path):
        m = re.match(r"#?(CAIRN_[A-Z0-9_]+)=", line)
        if m:
            used.append((path, m.group(1)))
compose = yaml.safe_load(open("deploy/compose.yaml"))
for name, svc in compose["services"].items():
    for var in svc.get("environment", {}):
        used.append((f"compose.yaml {name}", var))
for path in glob.glob("deploy/kubernetes/*.yaml"):
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") != "StatefulSet":
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            script = " ".join(c.get("command", []) + c.get("args", []))
            serve_args(re.sub(r"\\\n", " ", script).split(), path)
            for e in c.get("env", []):
                if e["name"].startswith("CAIRN_"):
                    used.append((path, e["name"]))

bad = [(f, s) for f, s in used if s not in (flags if s.startswith("--") else envs)]
for f, s in bad:
    print(f"  {f}: {s} is not in cairn serve --help", file=sys.stderr)
sys.exit(1 if bad or not used else 0)
PY

# 2. compose.yaml, from a copy so that no cairn.env is left in the repository.
mkdir -p "$tmp/compose"
cp -r deploy "$tmp/compose/deploy"
printf 'CAIRN_ADMIN_TOKEN=check\nCAIRN_CLUSTER_SECRET=check\n' >"$tmp/compose/deploy/cairn.env"
compose_checked=0
if command -v docker-compose >/dev/null; then
    if (cd "$tmp/compose/deploy" && docker-compose -f compose.yaml config -q); then
        ok "docker-compose config"
    else
        fail "docker-compose config"
    fi
    compose_checked=1
fi
if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
    if (cd "$tmp/compose/deploy" && docker compose -f compose.yaml config -q); then
        ok "docker compose config"
    else
        fail "docker compose config"
    fi
    compose_checked=1
fi
((compose_checked)) || skip "compose.yaml: neither docker-compose nor docker compose is installed"

# 3. Kubernetes manifests: YAML, and the entrypoint script run with a stand-in for cairn.
if python3 - <<'PY'; then ok "kubernetes manifests parse"; else fail "kubernetes manifests"; fi
import glob, yaml
kinds = []
for path in sorted(glob.glob("deploy/kubernetes/*.yaml")):
    kinds += [d["kind"] for d in yaml.safe_load_all(open(path)) if d]
need = {"StatefulSet", "Service", "PodDisruptionBudget", "Secret", "Kustomization"}
assert need <= set(kinds), f"missing kinds: {need - set(kinds)}"
PY
python3 - >"$tmp/entry.sh" <<'PY'
import yaml
for doc in yaml.safe_load_all(open("deploy/kubernetes/statefulset.yaml")):
    if doc and doc["kind"] == "StatefulSet":
        print(doc["spec"]["template"]["spec"]["containers"][0]["command"][2])
PY
mkdir -p "$tmp/bin" "$tmp/data"
printf '#!/bin/sh\necho "$@"\n' >"$tmp/bin/cairn"
chmod +x "$tmp/bin/cairn"
sed -i "s#/var/lib/cairn#$tmp/data#g" "$tmp/entry.sh"
# entry POD REJOIN_ORDINALS ADMIN_TOKEN CLUSTER_SECRET: the arguments the pod would give cairn.
entry() {
    env PATH="$tmp/bin:$PATH" POD_NAME="$1" REJOIN_ORDINALS="$2" CAIRN_ADMIN_TOKEN="$3" \
        CAIRN_CLUSTER_SECRET="$4" sh -ec "$(<"$tmp/entry.sh")" 2>/dev/null
}
entry_ok=1
expect() { # expect DESCRIPTION PATTERN OUTPUT
    if [[ $3 != *"$2"* ]]; then
        echo "  kubernetes entrypoint, $1: expected '$2' in: $3" >&2
        entry_ok=0
    fi
}
expect "initial voter" "--id 3 --peers 1=cairn-0.cairn-peer:7001," "$(entry cairn-2 "" t s)"
expect "initial voter" "--advertise cairn-2.cairn-peer:7001 " "$(entry cairn-2 "" t s)"
expect "extra pod" "--join http://cairn:7001" "$(entry cairn-3 "" t s)"
expect "replaced voter" "--join http://cairn:7001" "$(entry cairn-0 "0" t s)"
echo 42 >"$tmp/data/cairn-node-id"
expect "used volume" "--id 42 --join" "$(entry cairn-1 "" t s)"
echo 2 >"$tmp/data/cairn-node-id"
expect "restarted voter" "--id 2 --peers" "$(entry cairn-1 "" t s)"
if entry cairn-0 "" "" s >/dev/null || entry cairn-0 "" t REPLACE-ME >/dev/null; then
    echo "  kubernetes entrypoint: started with an empty or placeholder secret" >&2
    entry_ok=0
fi
if ((entry_ok)); then
    ok "kubernetes entrypoint: ids, --peers or --join, refusal of empty and placeholder secrets"
else
    fail "kubernetes entrypoint script"
fi
if command -v shellcheck >/dev/null; then
    if shellcheck -s sh "$tmp/entry.sh"; then ok "shellcheck kubernetes entrypoint"; else fail "shellcheck kubernetes entrypoint"; fi
else
    skip "shellcheck not installed"
fi

# 4. systemd unit. verify insists that ExecStart exists, so check a copy that points at $BIN.
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$tmp/systemd"
    sed "s#/usr/local/bin/cairn#$(realpath "$BIN")#" deploy/systemd/cairn@.service >"$tmp/systemd/cairn@.service"
    ln -s cairn@.service "$tmp/systemd/cairn@1.service"
    if systemd-analyze verify "$tmp/systemd/cairn@1.service"; then
        ok "systemd-analyze verify cairn@.service"
    else
        fail "systemd-analyze verify cairn@.service"
    fi
else
    skip "systemd-analyze not installed"
fi

# 5. Live: the Kubernetes entrypoint with the real binary. Pod cairn-K.cairn-peer becomes
#    127.0.0.(K+1), the client Service `cairn` becomes cairn-0's address, and port 7001 a free port.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$tmp/live/bin"
ln -s "$(realpath "$BIN")" "$tmp/live/bin/cairn"
sed -e "s#--listen 0.0.0.0:7001#--listen \"127.0.0.\$((ordinal + 1)):$port\"#" \
    -e "s#\$POD_NAME.cairn-peer:7001#127.0.0.\$((ordinal + 1)):$port#" \
    -e "s#cairn-\([0-9]\).cairn-peer:7001#127.0.0.\$((\1 + 1)):$port#g" \
    -e "s#http://cairn:7001#http://127.0.0.1:$port#" \
    -e "s#$tmp/data#$tmp/live/\$POD_NAME#g" \
    "$tmp/entry.sh" >"$tmp/live/entry.sh"
pod() { # pod NAME: start a pod's entrypoint in the background, logging to live/NAME.log
    env PATH="$tmp/live/bin:$PATH" POD_NAME="$1" REJOIN_ORDINALS="" CAIRN_ADMIN_TOKEN=check-token \
        CAIRN_CLUSTER_SECRET=check-secret sh -ec "$(<"$tmp/live/entry.sh")" >"$tmp/live/$1.log" 2>&1 &
    pids+=($!)
}
voters() { # voters ADDR: how many voters ADDR's node sees, with a leader known; 0 if unknown
    "$BIN" cluster status --endpoints "$1" --token check-token --timeout-ms 2000 2>/dev/null \
        | python3 -c 'import json, sys; d = json.load(sys.stdin); print(sum(m["voter"] for m in d["members"]) if d["leader"] else 0)' \
        2>/dev/null || echo 0
}
wait_for() { # wait_for SECONDS COMMAND...: true once COMMAND succeeds, false at the deadline
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}
all_ready() { local k; for k in 1 2 3; do curl -fs --max-time 2 -o /dev/null "http://127.0.0.$k:$port/ready" || return 1; done; }
four_voters() { [[ $(voters "127.0.0.1:$port") == 4 && $(voters "127.0.0.4:$port") == 4 ]]; }
if ! command -v curl >/dev/null; then
    skip "live kubernetes entrypoint: curl not installed"
else
    pod cairn-2
    pod cairn-0
    pod cairn-1
    if ! wait_for 30 all_ready; then
        fail "live: pods cairn-0..2 did not form a ready cluster within 30 s (logs: $tmp/live)"
        tail -n 5 "$tmp"/live/cairn-*.log >&2
    else
        pod cairn-3
        if wait_for 60 four_voters && [[ $(<"$tmp/live/cairn-3/cairn-node-id") -gt 1000 ]]; then
            ok "live: cairn-0..2 formed a cluster from --peers; cairn-3 joined with a new id and became a voter"
        else
            fail "live: cairn-3 did not become the fourth voter within 60 s"
            tail -n 5 "$tmp/live/cairn-3.log" >&2
        fi
    fi
fi

if ((failed)); then
    echo "deploy/check.sh: FAILED" >&2
    exit 1
fi
echo "deploy/check.sh: all available checks passed"
