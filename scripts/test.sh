#!/usr/bin/env bash
# Runs every certpilot test, installing what the tests need when it is missing:
#   - from PyPI into .test-env/venv: moto server (AWS APIs), cargo-lambda (the Lambda runtime
#     emulator), cfn-lint and the SAM CLI (template validation)
#   - Pebble >= 2.5 (ACME test server with ARI and profiles) from Debian unstable, pinned at
#     low priority so nothing else on the machine is upgraded from it
#   - Knot DNS from Debian (the RFC 2136 server of the DNS-01 tests)
#   - Prometheus from Debian, for `promtool` (parses `certpilot metrics`, runs the rule tests)
#   - Chromium and chromium-driver from Debian, and axe-core from npm into .test-env/npm
#     (the dashboard's tests in a real browser)
# then checks formatting and lints, and runs the whole Rust test suite.
#
# Environment: CERTPILOT_TEST_ENV (default ./.test-env) holds the virtualenv;
# SKIP_LINT=1 skips fmt and clippy (they are on in CI).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TEST_ENV="${CERTPILOT_TEST_ENV:-$ROOT/.test-env}"
# Pinned so that every run tests against the same servers and linters.
PY_TOOLS=("moto[server]==5.2.5" "cargo-lambda==1.9.2" "cfn-lint==1.58.0" "aws-sam-cli==1.170.0" "schemathesis==4.32.5")
export DEBIAN_FRONTEND=noninteractive
# A one-off build gains nothing from incremental state, which would double the disk it uses.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

say() { printf '==> %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_python_tools() {
    local stamp="$TEST_ENV/venv/.certpilot-tools"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${PY_TOOLS[*]}" ]; then
        return
    fi
    say "installing ${PY_TOOLS[*]} into $TEST_ENV/venv"
    if ! python3 -c "import venv, ensurepip" 2>/dev/null; then
        apt_install python3-venv
    fi
    python3 -m venv "$TEST_ENV/venv"
    "$TEST_ENV/venv/bin/pip" install -q --upgrade pip
    "$TEST_ENV/venv/bin/pip" install -q "${PY_TOOLS[@]}"
    echo "${PY_TOOLS[*]}" > "$stamp"
}

# The AWS CLI the SSM fleet's instances run (in a venv of its own: it pins botocore).
AWSCLI="awscli==1.46.2"
ensure_awscli() {
    local stamp="$TEST_ENV/awscli/.certpilot-tools"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$AWSCLI" ]; then
        return
    fi
    say "installing $AWSCLI into $TEST_ENV/awscli"
    python3 -m venv "$TEST_ENV/awscli"
    "$TEST_ENV/awscli/bin/pip" install -q "$AWSCLI"
    echo "$AWSCLI" > "$stamp"
}

pebble_ok() {
    local bin
    bin="$(command -v pebble 2>/dev/null)" || return 1
    # Debian's package: read its version. Anything else on PATH is taken as the user's choice.
    if dpkg -S "$bin" >/dev/null 2>&1; then
        local v
        v="$(dpkg-query -W -f='${Version}' pebble 2>/dev/null)" || return 1
        dpkg --compare-versions "$v" ge 2.5
    fi
}

ensure_pebble() {
    if pebble_ok; then
        return
    fi
    say "installing pebble >= 2.5 from Debian unstable (pinned at priority 100)"
    if ! grep -rqs "debian sid main\|debian unstable main" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb http://deb.debian.org/debian sid main" | as_root tee /etc/apt/sources.list.d/certpilot-sid.list >/dev/null
    fi
    printf 'Package: *\nPin: release a=unstable\nPin-Priority: 100\n' |
        as_root tee /etc/apt/preferences.d/certpilot-sid-low-priority >/dev/null
    APT_UPDATED=0
    apt_install -t sid pebble
    pebble_ok || { echo "pebble >= 2.5 could not be installed" >&2; exit 1; }
}

# Knot DNS: the RFC 2136 server the DNS-01 tests update (and Pebble validates against).
ensure_knot() {
    if command -v knotd >/dev/null 2>&1 || [ -x /usr/sbin/knotd ]; then
        return
    fi
    say "installing knot (Knot DNS) from Debian"
    apt_install --no-install-recommends knot
}

# HAProxy: the real load balancer the haproxy deploy target changes through its Runtime API.
ensure_haproxy() {
    if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then
        return
    fi
    say "installing haproxy from Debian"
    apt_install --no-install-recommends haproxy
}

# promtool: the real parser of the Prometheus text `certpilot metrics` writes, and the rule
# unit tests that run the seeds' expiry rule over it.
ensure_promtool() {
    if command -v promtool >/dev/null 2>&1; then
        return
    fi
    say "installing prometheus (for promtool) from Debian"
    apt_install --no-install-recommends prometheus
}

# A real browser for the dashboard: headless Chromium driven through WebDriver, and
# axe-core (pinned) run in its pages.
AXE_VERSION="4.11.0"
ensure_browser() {
    if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
        say "installing chromium and chromium-driver from Debian"
        apt_install --no-install-recommends chromium chromium-driver fonts-dejavu-core
    fi
    if [ ! -f "$TEST_ENV/npm/node_modules/axe-core/axe.min.js" ] \
        || ! grep -q "\"version\": \"$AXE_VERSION\"" "$TEST_ENV/npm/node_modules/axe-core/package.json"; then
        if ! command -v npm >/dev/null 2>&1; then
            say "installing npm from Debian"
            apt_install --no-install-recommends npm
        fi
        say "installing axe-core $AXE_VERSION from npm"
        mkdir -p "$TEST_ENV/npm"
        (cd "$TEST_ENV/npm" && npm install --no-audit --no-fund --silent "axe-core@$AXE_VERSION")
    fi
}

ensure_python_tools
ensure_awscli
ensure_browser
ensure_pebble
ensure_knot
ensure_haproxy
ensure_promtool
export CERTPILOT_PROMTOOL="$(command -v promtool)"
export CERTPILOT_KNOTD="$(command -v knotd || echo /usr/sbin/knotd)"
export CERTPILOT_HAPROXY="$(command -v haproxy || echo /usr/sbin/haproxy)"
export CERTPILOT_MOTO_SERVER="$TEST_ENV/venv/bin/moto_server"
export CERTPILOT_CARGO_LAMBDA="$TEST_ENV/venv/bin/cargo-lambda"
export CERTPILOT_CFN_LINT="$TEST_ENV/venv/bin/cfn-lint"
export CERTPILOT_SAM="$TEST_ENV/venv/bin/sam"
export CERTPILOT_SCHEMATHESIS="$TEST_ENV/venv/bin/st"
export CERTPILOT_AWS_CLI="$TEST_ENV/awscli/bin/aws"
export SAM_CLI_TELEMETRY=0
export CERTPILOT_PEBBLE="$(command -v pebble)"
export CERTPILOT_CHROMEDRIVER="$(command -v chromedriver)"
export CERTPILOT_CHROMIUM="$(command -v chromium)"
export CERTPILOT_AXE="$TEST_ENV/npm/node_modules/axe-core/axe.min.js"

if [ "${SKIP_LINT:-0}" != "1" ]; then
    say "cargo fmt --check"
    cargo fmt --all -- --check
    say "cargo clippy --all-targets -D warnings"
    cargo clippy --workspace --all-targets --locked -- -D warnings
fi
say "cargo test"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite: cargo prints a result line per test binary.
passed=$(grep -Eo '^test result: [A-Za-z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -Eo '^test result: .* [0-9]+ failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s += $1} END {print s + 0}')
echo "tests: $passed passed, $failed failed"
exit "$status"
