#!/usr/bin/env bash
# schemathesis against a running hub, with JupyterHub 5.5.1's own OpenAPI spec, or (xiji-own)
# with Xiji's own document of what it adds to JupyterHub's API. The bar is
# `not_a_server_error`: no request, however malformed, may get a 5xx.
#
#   tests/conformance/schemathesis.sh [xiji|jupyterhub]     (default: xiji)
#   tests/conformance/schemathesis.sh xiji-own
#
# xiji-own: the local backend, a real admin token, PostgreSQL when XIJI_TEST_PG_URL is set (a
# database of its own, created and dropped here; PostgreSQL refuses what SQLite stores, e.g. NUL
# characters), else SQLite; the document is fetched from the running hub at /hub/api/openapi.json
# without credentials (so it is also proved to be served there); users `alice` and `bob`, a
# library image (id 1) and alice's dataset `mnist` holding `train/labels.csv` exist first, the
# document's examples name them; the requests carry a token of the administrator user `admin`
# (datasets belong to users: a service's token is refused there), and 507 (no storage pool takes
# data, which the run's own pool changes bring about) counts as an answer, not a server error;
# the desktops (a page and a websocket outside /hub/api) are left out. Bounded to
# SCHEMATHESIS_MAX_TIME (default 60) seconds, schemathesis killed after 30 more.
#
# Needs XIJI_TEST_VENV5 and XIJI_TEST_VENV_TOOLS (source .cache/test-env.sh; defaults are the
# <repo>/.cache venvs), the xiji binary (XIJI_BIN, default target/debug/xiji), and JupyterHub's
# spec: XIJI_CONFORMANCE_SPEC, default shared/conformance/rest-api-5.5.1.yml beside the
# repository, else the same document from JupyterHub 5.5.1's sdist on PyPI (cached in .cache/);
# it is JupyterHub's own document, used as test data and not kept in this repository.
# Bounded: SCHEMATHESIS_MAX_EXAMPLES (default 10) per operation, SCHEMATHESIS_MAX_TIME (default
# 150) seconds in all.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MODE=${1:-xiji}
VENV5=${XIJI_TEST_VENV5:-$ROOT/.cache/venv5}
VENV_TOOLS=${XIJI_TEST_VENV_TOOLS:-$ROOT/.cache/venv-tools}
SPEC=${XIJI_CONFORMANCE_SPEC:-$ROOT/../shared/conformance/rest-api-5.5.1.yml}
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-10}

die() { printf 'schemathesis.sh: %s\n' "$*" >&2; exit 2; }
case "$MODE" in
    xiji | jupyterhub) TARGET=$MODE; MAX_TIME=${SCHEMATHESIS_MAX_TIME:-150}; GRACE=60; WORKERS=2 ;;
    # One worker: with two, schemathesis once died inside its own generator ("SystemError: AST
    # constructor recursion depth mismatch", CPython 3.11 parsing in two threads).
    xiji-own) TARGET=xiji; MAX_TIME=${SCHEMATHESIS_MAX_TIME:-60}; GRACE=30; WORKERS=1 ;;
    *) die "unknown mode $MODE: use xiji, jupyterhub or xiji-own" ;;
esac
[ -x "$VENV5/bin/python" ] || die "venv5 missing at $VENV5 (run tests/setup-env.sh; source .cache/test-env.sh)"
[ -x "$VENV_TOOLS/bin/schemathesis" ] || die "schemathesis missing in $VENV_TOOLS (run tests/setup-env.sh)"
if [ "$MODE" = xiji-own ]; then
    SPEC= # fetched from the hub below
elif [ ! -f "$SPEC" ] && [ -z "${XIJI_CONFORMANCE_SPEC:-}" ]; then
    # No copy beside the repository (e.g. a clean CI clone): take JupyterHub's own document from
    # its 5.5.1 source distribution on PyPI, once.
    SPEC="$ROOT/.cache/conformance/rest-api-5.5.1.yml"
    if [ ! -f "$SPEC" ]; then
        mkdir -p "$ROOT/.cache/conformance"
        sdist_dir=$(mktemp -d "${TMPDIR:-/tmp}/xiji-jh-sdist-XXXXXX")
        "$VENV5/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
            --no-binary :all: -d "$sdist_dir" 'jupyterhub==5.5.1' \
            || die "cannot download the jupyterhub 5.5.1 sdist from the package index"
        tar -xzf "$sdist_dir"/jupyterhub-5.5.1.tar.gz -C "$sdist_dir" \
            jupyterhub-5.5.1/docs/source/_static/rest-api.yml
        mv "$sdist_dir"/jupyterhub-5.5.1/docs/source/_static/rest-api.yml "$SPEC"
        rm -rf "$sdist_dir"
    fi
fi
[ "$MODE" = xiji-own ] || [ -f "$SPEC" ] \
    || die "REST API spec missing at $SPEC (JupyterHub 5.5.1 docs/source/_static/rest-api.yml; set XIJI_CONFORMANCE_SPEC)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/xiji-schemathesis-XXXXXX")
SERVE_PID=
PG_DB=
cleanup() {
    if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVE_PID" 2>/dev/null || break; sleep 0.3; done
        kill -KILL "$SERVE_PID" 2>/dev/null || true
    fi
    if [ -n "$PG_DB" ]; then
        psql "$XIJI_TEST_PG_URL" -qAt -c "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

SERVE_ARGS=()
if [ "$MODE" = xiji-own ] && [ -n "${XIJI_TEST_PG_URL:-}" ]; then
    command -v psql >/dev/null || die "psql missing (tests/setup-env.sh installs postgresql-client)"
    PG_DB="xiji_openapi_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
    psql "$XIJI_TEST_PG_URL" -qAt -c "CREATE DATABASE $PG_DB" >/dev/null \
        || die "cannot create the database $PG_DB at XIJI_TEST_PG_URL"
    SERVE_ARGS=(--database-url "${XIJI_TEST_PG_URL%/*}/$PG_DB")
fi

"$VENV5/bin/python" "$HERE/hubs.py" serve "$TARGET" --ready-file "$WORK/ready" "${SERVE_ARGS[@]}" &
SERVE_PID=$!
for _ in $(seq 1 900); do
    [ -s "$WORK/ready" ] && break
    kill -0 "$SERVE_PID" 2>/dev/null || die "the $TARGET hub did not start"
    sleep 0.1
done
[ -s "$WORK/ready" ] || die "the $TARGET hub did not become ready within 90 s"
read -r PORT TOKEN HUB_LOG <"$WORK/ready"

FILTERS=(--exclude-path /shutdown)
ST_CONFIG=()
if [ "$MODE" = xiji-own ]; then
    SPEC="$WORK/xiji-openapi.json"
    FILTERS=(--exclude-tag desktops)
    # The document, without credentials; then the objects its examples name.
    "$VENV5/bin/python" - "$PORT" "$TOKEN" "$SPEC" <<'PY' || die "could not fetch the document or create the fixtures"
import json, sys, urllib.request
port, token, out = sys.argv[1], sys.argv[2], sys.argv[3]
base = f"http://127.0.0.1:{port}/hub/api"
with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as r:
    doc = json.load(r)
assert doc["openapi"].startswith("3.") and doc["paths"], "not an OpenAPI 3 document"
open(out, "w").write(json.dumps(doc))
def call(method, path, body):
    req = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(body).encode(),
                                 headers={"Authorization": f"token {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status
call("POST", "/users/alice", {})
call("POST", "/images", {"name": "Python 3.12", "image": "127.0.0.1:5000/xiji/base-notebook",
                         "tag": "latest"})
# alice's dataset mnist with one small file, uploaded as a tus client does; bob to share it with.
call("POST", "/users/bob", {})
def user_token(user):
    req = urllib.request.Request(f"{base}/users/{user}/tokens", method="POST", data=b"{}",
                                 headers={"Authorization": f"token {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["token"]
alice = user_token("alice")
def as_alice(method, path, body=None, headers=None):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(path if path.startswith("http") else f"{base}{path}",
                                 method=method, data=data,
                                 headers={"Authorization": f"token {alice}",
                                          "Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()
as_alice("POST", "/datasets", {"name": "mnist", "description": "Handwritten digits",
                               "tags": ["images", "digits"], "license": "CC-BY-4.0"})
labels = b"label\n5\n0\n4\n"
_, started = as_alice("POST", "/datasets/alice/mnist/uploads",
                      {"path": "train/labels.csv", "size": len(labels)})
upload_url = f"http://127.0.0.1:{port}{json.loads(started)['url']}"
status, _ = as_alice("PATCH", upload_url, labels,
                     {"Upload-Offset": "0", "Tus-Resumable": "1.0.0",
                      "Content-Type": "application/offset+octet-stream"})
assert status == 204, f"the fixture's upload answered {status}"
# alice's project digits on image 1 with the dataset, bob its editor.
as_alice("POST", "/projects", {"name": "digits", "image": 1, "datasets": ["alice/mnist"]})
as_alice("PUT", "/projects/alice/digits/members/bob", {"role": "editor"})
open(out + ".token", "w").write(user_token("admin"))
print(f"document: {len(doc['paths'])} paths; fixtures: users alice and bob, image 1, "
      "dataset alice/mnist with train/labels.csv, project alice/digits with bob as editor")
PY
    # Datasets belong to users: the run uses the administrator user's token.
    TOKEN=$(cat "$SPEC.token")
    # 507 is the document's answer when no storage pool can take data, which the run itself
    # brings about (it drains the pool and shrinks its capacity): allowed, like any 4xx.
    printf '[checks.not_a_server_error]\nexpected-statuses = ["2xx", "3xx", "4xx", "507"]\n' \
        > "$WORK/schemathesis.toml"
    ST_CONFIG=(--config-file "$WORK/schemathesis.toml")
fi

echo "schemathesis: $TARGET on 127.0.0.1:$PORT (database: ${PG_DB:-SQLite}), spec $(basename "$SPEC"), $MAX_EXAMPLES examples per operation, at most $MAX_TIME s"
status=0
timeout --kill-after=10 $((MAX_TIME + GRACE)) \
    "$VENV_TOOLS/bin/schemathesis" "${ST_CONFIG[@]}" run "$SPEC" \
    --url "http://127.0.0.1:$PORT/hub/api" \
    --header "Authorization: token $TOKEN" \
    --checks not_a_server_error \
    "${FILTERS[@]}" \
    --phases examples,coverage,fuzzing \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$MAX_TIME" \
    --request-timeout 30 \
    --workers "$WORKERS" \
    --seed 20261124 \
    --no-color \
    --report-dir "$WORK/report" \
    || status=$?
if [ "$status" != 0 ]; then
    echo "--- errors and warnings in the $TARGET log ---"
    grep -aE 'ERROR|WARN|panicked' "$HUB_LOG" 2>/dev/null | tail -n 40 || true
    echo "--- last lines of the $TARGET log ---"
    tail -n 30 "$HUB_LOG" 2>/dev/null || true
fi
exit "$status"
