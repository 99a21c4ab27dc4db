#!/usr/bin/env bash
# Browser tests of the web console (/ui/): a live 3-node cluster of the real binary, driven
# through Debian's Chromium by playwright-core (tests/ui/). Screenshots of every screen the
# tests visit land in target/console-screenshots/.
#
#   bash scripts/ui-test.sh              # builds target/debug/cairn first (a no-op when fresh)
#   CAIRN_BIN=/path/to/cairn bash scripts/ui-test.sh
#   CHROMIUM=/path/to/chromium bash scripts/ui-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "ui-test: no Chromium at $chromium (apt-get install chromium, or set CHROMIUM=/path/to/chromium)" >&2
  exit 1
fi
export CHROMIUM="$chromium"

# playwright-core only: never let anything download a browser.
(cd tests/ui && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)

# The console is compiled into the binary: build it (a no-op when up to date), so the tests
# never run an older console than the source.
if [ -z "${CAIRN_BIN:-}" ]; then
  cargo build --quiet --bin cairn
fi

# The tests must see the console embedded in the binary, not files from disk.
unset CAIRN_CONSOLE_DIR
rm -rf target/console-screenshots
# One file, its tests in order against one cluster; each test has 60 s, the whole file 170 s.
node --test --test-timeout=170000 tests/ui/
