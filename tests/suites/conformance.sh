#!/usr/bin/env bash
# Conformance with JupyterHub's REST API (issue 2's "Conformance" proof), run by tests/run:
#   1. the differential test: one request sequence against the real JupyterHub 5.5 (with its own
#      configurable-http-proxy) and against Xiji; status codes and JSON shapes must match, except
#      the deliberate differences in tests/conformance/known-differences.toml;
#   2. schemathesis with JupyterHub's OpenAPI document (5.5.1) against Xiji: no 5xx;
#   3. schemathesis with Xiji's own document (/hub/api/openapi.json: the image library, save
#      jobs, cluster sizes…) against Xiji: no 5xx (tests/conformance/schemathesis.sh xiji-own).
#
#   tests/suites/conformance.sh            all three
#   tests/suites/conformance.sh differential | schemathesis | openapi
#
# Needs tests/setup-env.sh (its .cache/test-env.sh is sourced if the variables are unset), the
# spec (XIJI_CONFORMANCE_SPEC, default: shared/conformance/rest-api-5.5.1.yml beside the
# repository) and the xiji binary (XIJI_BIN; default: built here with `cargo build -p hub`).
# Bounded: about 1 minute for the differential test, at most SCHEMATHESIS_MAX_TIME (150) seconds
# of fuzzing with JupyterHub's document and 60 (at most 90) with Xiji's.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if [ -z "${XIJI_TEST_VENV5:-}" ] && [ -f .cache/test-env.sh ]; then
    # shellcheck disable=SC1091
    . .cache/test-env.sh
fi
: "${XIJI_TEST_VENV5:?run tests/setup-env.sh and source .cache/test-env.sh}"
if [ -z "${XIJI_BIN:-}" ]; then
    cargo build -q -p hub
    export XIJI_BIN="$ROOT/target/debug/xiji"
fi

what=${1:-all}
status=0
if [ "$what" = all ] || [ "$what" = differential ]; then
    echo "== conformance: differential test against JupyterHub 5.5"
    timeout --kill-after=10 600 "$XIJI_TEST_VENV5/bin/python" tests/conformance/differential.py \
        || status=1
fi
if [ "$what" = all ] || [ "$what" = schemathesis ]; then
    echo "== conformance: schemathesis with JupyterHub's OpenAPI document"
    tests/conformance/schemathesis.sh xiji || status=1
fi
if [ "$what" = all ] || [ "$what" = openapi ]; then
    echo "== conformance: schemathesis with Xiji's own OpenAPI document"
    SCHEMATHESIS_MAX_TIME=${XIJI_OPENAPI_MAX_TIME:-60} tests/conformance/schemathesis.sh xiji-own \
        || status=1
fi
exit "$status"
