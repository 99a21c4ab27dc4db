#!/usr/bin/env bash
# check.sh: the one gate to run before pushing (and what .ci/run runs): format, lints, tests.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test
