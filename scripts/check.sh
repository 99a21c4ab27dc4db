#!/usr/bin/env bash
# check.sh: the one gate to run before pushing (and what .ci/run runs): format, lints, tests.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# The module graph first: a cycle between modules fails here in seconds (tests/it/layering.rs).
cargo test --test it layering
cargo test
