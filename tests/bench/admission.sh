#!/usr/bin/env bash
# Admission and metering benchmark: Xiji (release build; SQLite and PostgreSQL) against the real
# JupyterHub 5.5 on this machine, in one run; prints Markdown tables (kept in docs/benchmarks.md,
# "Admission and metering"). Not a timed test. Takes about 10 minutes.
#
#   tests/bench/admission.sh [--parts admission,ledger] [--engines sqlite,postgres]
#                            [--concurrency 16,64] [--users 100] [--per-user 10]
#                            [--interval 15] [--window 60] [--json FILE]
#
# Needs tests/setup-env.sh (XIJI_TEST_VENV5, XIJI_TEST_NODE_MODULES, XIJI_TEST_PG_URL;
# .cache/test-env.sh is sourced if they are unset), `cc` (to build tests/bench/tiny_singleuser.c)
# and `psql`. XIJI_BIN overrides the binary; by default it is built with
# `cargo build --release -p hub`. Then hub/examples/ledger_bench.rs measures the ledger at the
# store level (no backend), on SQLite and on PostgreSQL.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if [ -z "${XIJI_TEST_VENV5:-}" ] && [ -f .cache/test-env.sh ]; then
    # shellcheck disable=SC1091
    . .cache/test-env.sh
fi
: "${XIJI_TEST_VENV5:?run tests/setup-env.sh and source .cache/test-env.sh}"
command -v cc >/dev/null || { echo "admission.sh: cc is missing (apt-get install gcc)" >&2; exit 2; }
command -v psql >/dev/null || { echo "admission.sh: psql is missing (apt-get install postgresql-client)" >&2; exit 2; }
if [ -z "${XIJI_BIN:-}" ]; then
    cargo build -q --release -p hub
    export XIJI_BIN="$ROOT/target/release/xiji"
fi
timeout --kill-after=20 1800 "$XIJI_TEST_VENV5/bin/python" tests/bench/admission.py "$@"

# The ledger's own cost at the store level (no backend), unless only admission was asked for.
case " $* " in
    *" --parts "*ledger*|*" --parts="*ledger*) ledger=1 ;;
    *" --parts"*) ledger=0 ;;
    *) ledger=1 ;;
esac
if [ "$ledger" = 1 ]; then
    cargo build -q --release -p hub --example ledger_bench
    echo
    echo "Store level: checkpoint rounds of 1000 admitted one-node clusters (ledger_bench)"
    timeout --kill-after=20 600 "$ROOT/target/release/examples/ledger_bench" 1000 5
fi
