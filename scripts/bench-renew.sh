#!/usr/bin/env bash
# Renewal benchmark: builds certpilot and the bench in release mode, installs Debian's lego
# and Pebble when missing, then prints the wall time of one issuance and of 50 renewals in one
# run beside a sequential `lego run` loop over 50 names, all against the same local Pebble.
# Extra arguments go to renew-bench (e.g. --count 20).
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v lego >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends lego >/dev/null
fi
if ! command -v pebble >/dev/null 2>&1; then
    echo "pebble is missing: run scripts/test.sh once (it installs Pebble >= 2.5)" >&2
    exit 1
fi
cargo build --release --locked -p certpilot-cli -p certpilot-e2e --bins
exec target/release/renew-bench --certpilot target/release/certpilot --lego "$(command -v lego)" "$@"
