#!/usr/bin/env bash
# fuzz.sh [CASES]: the long pass of the request-parsing property (tests/it/inproc/fuzz_requests.rs):
# generated methods, paths, query strings, headers and bodies against an in-process node; any
# 5xx, lost answer or stopped node fails it. `cargo test` runs 300 cases; this runs CASES
# (default 100000, about 2-3 minutes here).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CAIRN_FUZZ_CASES="${1:-100000}" cargo test --test it fuzz_requests -- --nocapture
