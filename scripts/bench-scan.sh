#!/usr/bin/env bash
# Scan benchmark: builds certpilot and the bench in release mode, then prints throughput,
# wall time and peak RSS for N = 1,000 and 10,000 loopback TLS endpoints beside a bare
# handshake loop and a sequential `openssl s_client` loop, and the hostile-endpoint bound.
# Extra arguments go to scan-bench (e.g. --sizes 1000 --concurrency 256).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p certpilot-cli -p certpilot-e2e --bins
exec target/release/scan-bench --certpilot target/release/certpilot "$@"
