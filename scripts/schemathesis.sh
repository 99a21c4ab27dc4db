#!/usr/bin/env bash
# schemathesis.sh: fuzzes a live 3-node cluster from its own /openapi.json, and then from each
# dialect's /openapi/{saasignal,kvdb,echovalue}.json, with schemathesis (every check, a bounded
# number of examples per operation), in a scratch namespace, and fails on any failure it
# reports: a 5xx, a response that breaks the description, a request the description allows
# but the server refuses or the other way round, a crash. Every document is run even when an
# earlier one fails, so one run shows them all.
#
# The cluster runs with an admin token, and schemathesis acts with a token of the scratch
# namespace holding read, write and admin there, so nothing outside that namespace can be
# touched (membership and backups need the bootstrap token: they answer 403 here). The same
# token goes to each dialect the way its users send one: Bearer to saasignal (its seed's
# style), `x-token` to echovalue (its seed's), and to KVdb as the Basic user name (its seed's):
# there it acts as the secret key of the two buckets made for the run in that namespace (a
# token with `admin` on a bucket's namespace does), so a policy change the fuzzer makes never
# locks it out. One bucket is for every operation but bucket deletion, which gets the other.
# Which checks are relaxed for which operation, and why, is in scripts/schemathesis.toml.
#
# Environment: CAIRN_BIN (default target/debug/cairn, built if missing), ST_EXAMPLES (per
# operation, default 40), ST_SEED (default 1: the same cases every run, so a failure is
# reproducible; set ST_SEED=random for a new draw), ST_BASE_PORT (default 7460), ST_VENV
# (default target/schemathesis-venv: schemathesis is installed there from PyPI if missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

EXAMPLES=${ST_EXAMPLES:-40}
SEED=${ST_SEED:-1}
VENV=${ST_VENV:-target/schemathesis-venv}
export CAIRN_BIN=${CAIRN_BIN:-target/debug/cairn}
[[ -x $CAIRN_BIN ]] || cargo build --quiet --bin cairn

if [[ ! -x $VENV/bin/schemathesis ]]; then
    python3 -m venv "$VENV"
    # Pinned, so a new release cannot turn CI red on its own.
    "$VENV/bin/pip" install --quiet 'schemathesis==4.32.5'
fi

ADMIN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
# shellcheck source=scripts/lib/tmp-cluster.sh
source scripts/lib/tmp-cluster.sh
BIN=$CAIRN_BIN
tmp_cluster_up schemathesis "${ST_BASE_PORT:-7460}" --admin-token "$ADMIN" --cluster-secret "$SECRET"
URL=http://127.0.0.1:$((TMP_CLUSTER_BASE + 1))

NS=scratch-$RANDOM
TOKEN=$(curl -sf -H "Authorization: Bearer $ADMIN" -X POST "$URL/admin/tokens" \
    -d "{\"namespace\": \"$NS\", \"permissions\": [\"read\", \"write\", \"admin\"]}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["token"])')

# KVdb's operations act on these buckets (scripts/schemathesis.toml fixes `{bucket}`).
bucket() {
    curl -sf -H "Authorization: Bearer $TOKEN" -X POST "$URL/kvdb" -d "secret_key=$1&write_key=$2"
}
ST_KVDB_BUCKET=$(bucket secret-a write-a)
ST_KVDB_DOOMED=$(bucket secret-b write-b)
export ST_KVDB_BUCKET ST_KVDB_DOOMED

seed=()
[[ $SEED == random ]] || seed=(--seed "$SEED")
# ASCII strings: the description gives key lengths in characters, which the server counts in
# bytes; for ASCII the two agree. Non-ASCII keys are covered by the Rust tests.
fuzz() {
    local doc=$1
    shift
    echo "== schemathesis: $doc" >&2
    "$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml run "$URL/$doc" \
        --max-examples "$EXAMPLES" "${seed[@]}" --generation-codec ascii \
        --generation-database none --request-timeout 10 --workers 1 \
        -H "X-Cairn-Namespace: $NS" "$@"
}

status=0
set +e
# The native document goes last: its token operations may revoke the very token every run
# acts with (it lists the namespace's tokens, and links them to `revokeToken`).
fuzz openapi/saasignal.json -H "Authorization: Bearer $TOKEN" || status=$?
fuzz openapi/kvdb.json -H "Authorization: Basic $(printf '%s:' "$TOKEN" | base64 -w0)" || status=$?
fuzz openapi/echovalue.json -H "x-token: $TOKEN" || status=$?
fuzz openapi.json -H "Authorization: Bearer $TOKEN" || status=$?
set -e
if ((status != 0)); then
    echo "schemathesis: failures above (exit $status); the last lines of each node's log follow" >&2
    for i in 1 2 3; do tail -n 20 "$WORK/node$i.log" >&2; done
fi
exit "$status"
