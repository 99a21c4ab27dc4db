#!/usr/bin/env bash
# sdk-test.sh: builds and tests the first-party clients in sdk/ against the real binary: the
# TypeScript client (npm ci, tsc, node --test) and the Python client (installed into a venv with
# pytest, then pytest). Each suite starts its own 3-node clusters on free loopback ports, runs
# the shared cases of sdk/cases.json, its retry-rule tests against scripted fake servers, and a
# failover test that SIGKILLs the leader mid-run; they signal only the processes they started.
#
# Environment: CAIRN_BIN (default target/debug/cairn, built if missing), SDK_VENV (default
# target/sdk-venv). `--typescript` or `--python` runs one suite.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CAIRN_BIN=${CAIRN_BIN:-$PWD/target/debug/cairn}
[[ -x $CAIRN_BIN ]] || cargo build --quiet --bin cairn
VENV=${SDK_VENV:-target/sdk-venv}

run_ts=1 run_py=1
case ${1:-} in
    --typescript) run_py=0 ;;
    --python) run_ts=0 ;;
    "") ;;
    *) echo "usage: $0 [--typescript|--python]" >&2; exit 2 ;;
esac

if ((run_ts)); then
    echo "== sdk/typescript"
    # npm ci installs exactly the lock file: typescript, the only (dev) dependency.
    (cd sdk/typescript && npm ci --no-audit --no-fund && npm test)
fi

if ((run_py)); then
    echo "== sdk/python"
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "./sdk/python[test]"
    set +e
    "$VENV/bin/python" -m pytest -q sdk/python/tests
    status=$?
    set -e
    # pytest exits 5 when it collected no test: here that means the suite went missing, which
    # must fail CI rather than pass as "nothing failed".
    if ((status == 5)); then
        echo "sdk-test: pytest collected no tests in sdk/python/tests" >&2
        exit 1
    fi
    exit "$status"
fi
