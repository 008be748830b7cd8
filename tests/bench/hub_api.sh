#!/usr/bin/env bash
# Hub REST API benchmark: Xiji (release build) against the real JupyterHub 5.5 on this machine,
# in one run; prints req/s, p50/p99 and the ratios Xiji/JupyterHub as Markdown tables (kept in
# docs/benchmarks.md). Not a timed test. Takes about 5 minutes.
#
#   tests/bench/hub_api.sh [--concurrency 1,16,64] [--seconds 5] [--users 1000]
#                          [--spawn-runs 5] [--startup-users 100000] [--json FILE]
#                          [--parts api,spawn,startup] [--hubs jupyterhub,xiji]
#
# Needs tests/setup-env.sh (XIJI_TEST_VENV5, XIJI_TEST_NODE_MODULES; .cache/test-env.sh is sourced
# if they are unset) and `wrk` (Debian package wrk). XIJI_BIN overrides the binary; by default it
# is built with `cargo build --release -p hub`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if [ -z "${XIJI_TEST_VENV5:-}" ] && [ -f .cache/test-env.sh ]; then
    # shellcheck disable=SC1091
    . .cache/test-env.sh
fi
: "${XIJI_TEST_VENV5:?run tests/setup-env.sh and source .cache/test-env.sh}"
command -v wrk >/dev/null || { echo "hub_api.sh: wrk is missing (apt-get install wrk)" >&2; exit 2; }
if [ -z "${XIJI_BIN:-}" ]; then
    cargo build -q --release -p hub
    export XIJI_BIN="$ROOT/target/release/xiji"
fi
exec timeout --kill-after=20 1800 "$XIJI_TEST_VENV5/bin/python" tests/bench/hub_api.py "$@"
