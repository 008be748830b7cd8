#!/usr/bin/env bash
# Class-start benchmark: 20 users press Start at once, on Xiji (release build) and on the real
# JupyterHub 6 on this machine, in one run (docs/benchmarks.md). Not a timed test. Takes a few
# minutes.
#
#   tests/bench/class_start.sh [--users 20] [--hubs jupyterhub,xiji]
#
# Needs tests/setup-env.sh (XIJI_TEST_VENV6, XIJI_TEST_NODE_MODULES; .cache/test-env.sh is sourced
# if they are unset). XIJI_BIN overrides the binary; by default it is built with
# `cargo build --release -p hub`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if [ -z "${XIJI_TEST_VENV6:-}" ] && [ -f .cache/test-env.sh ]; then
    # shellcheck disable=SC1091
    . .cache/test-env.sh
fi
: "${XIJI_TEST_VENV6:?run tests/setup-env.sh and source .cache/test-env.sh}"
if [ -z "${XIJI_BIN:-}" ]; then
    cargo build -q --release -p hub
    export XIJI_BIN="$ROOT/target/release/xiji"
fi
exec timeout --kill-after=20 1800 "$XIJI_TEST_VENV6/bin/python" tests/bench/class_start.py "$@"
