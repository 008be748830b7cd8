#!/usr/bin/env bash
# Cluster start benchmark (docs/benchmarks.md): Xiji's hub on the docker backend against the same
# containers started with `docker run`, for 1, 2 and 4 nodes, in one run. Needs Docker and the
# base image (tests/setup-docker.sh). Takes a few minutes.
#
#   tests/bench/cluster_start.sh [--nodes 1,2,4] [--runs 3]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if [ -z "${XIJI_TEST_DOCKER:-}" ]; then
    tests/setup-docker.sh
    # shellcheck disable=SC1091
    . .cache/docker-env.sh
fi
if [ -z "${XIJI_BIN:-}" ]; then
    cargo build -q --release -p hub
    export XIJI_BIN="$ROOT/target/release/xiji"
fi
exec timeout --kill-after=20 1800 python3 tests/bench/cluster_start.py "$@"
