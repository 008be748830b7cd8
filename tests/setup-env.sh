#!/usr/bin/env bash
# Prepares everything the end-to-end tests need, and writes `.cache/test-env.sh`.
#
#   tests/setup-env.sh && . .cache/test-env.sh
#
# Idempotent: a second run only checks and is quick. Safe for developers and CI.
#   - Debian packages: PostgreSQL, Chromium, fonts (Latin and Chinese), python3-venv, CA certificates
#   - Python venvs under .cache/: venv5 (JupyterHub 5.5 + JupyterLab + idle culler),
#     venv6 (JupyterHub 6.x + JupyterLab), venv-tools (schemathesis),
#     kube-venv (kmock, kubernetes-validate, helm-python-sdk)
#   - npm packages under .cache/node: playwright-core, configurable-http-proxy, oidc-provider
#   - a running PostgreSQL on 127.0.0.1 with a role and a database for the tests
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="$ROOT/.cache"
mkdir -p "$CACHE"

log() { printf '[setup-env] %s\n' "$*" >&2; }
die() { printf '[setup-env] ERROR: %s\n' "$*" >&2; exit 1; }

# One setup at a time (two terminals, or a developer and a test run).
# (Daemons started below get fd 9 closed: an inherited lock would be held as long as they run.)
LOCK="$CACHE/setup-env.flock"
exec 9>"$LOCK"
if ! flock -w 1800 9; then die "another tests/setup-env.sh has held $LOCK for 30 minutes"; fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

# ---------------------------------------------------------------------------
# Debian packages
APT_PACKAGES=(
    ca-certificates
    postgresql
    postgresql-client
    chromium
    fonts-liberation
    fonts-dejavu-core
    fonts-wqy-microhei
    python3-venv
)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" 9>&-
fi
CHROMIUM_BIN=/usr/bin/chromium
[ -x "$CHROMIUM_BIN" ] || die "$CHROMIUM_BIN is missing after installing the chromium package"

# ---------------------------------------------------------------------------
# Python virtual environments
PYTHON=${XIJI_SETUP_PYTHON:-python3}
command -v "$PYTHON" >/dev/null || die "no $PYTHON on PATH (set XIJI_SETUP_PYTHON)"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$PYTHON is older than 3.10"

# ensure_venv DIR CHECK_PYTHON_CODE PACKAGE...
ensure_venv() {
    local dir=$1 check=$2
    shift 2
    if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
        return 0
    fi
    log "preparing $dir: $*"
    [ -x "$dir/bin/python" ] || "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
    "$dir/bin/python" -c "$check" || die "$dir does not pass its check after pip install: $check"
}

ensure_venv "$CACHE/venv5" '
import os, sys, jupyterhub, jupyterlab, jupyterhub_idle_culler, ipykernel
assert jupyterhub.__version__.startswith("5.5."), jupyterhub.__version__
for exe in ("jupyterhub-singleuser", "jupyterhub-idle-culler"):
    assert os.access(os.path.join(sys.prefix, "bin", exe), os.X_OK), exe
' 'jupyterhub>=5.5,<5.6' jupyterlab ipykernel jupyterhub-idle-culler

ensure_venv "$CACHE/venv6" '
import os, sys, jupyterhub, jupyterlab, ipykernel
assert jupyterhub.__version__.startswith("6."), jupyterhub.__version__
assert os.access(os.path.join(sys.prefix, "bin", "jupyterhub-singleuser"), os.X_OK)
' 'jupyterhub>=6,<7' jupyterlab ipykernel

ensure_venv "$CACHE/venv-tools" '
import os, sys, schemathesis
assert os.access(os.path.join(sys.prefix, "bin", "schemathesis"), os.X_OK)
' schemathesis

# The Kubernetes stand-in (tests/kube/cluster.py: the kmock API emulator with a scheduler and a
# kubelet played by the test) and the schema validator for every object and chart template;
# helm-python-sdk is Helm's own Go SDK (v4) as a library, which renders and lints the chart.
ensure_venv "$CACHE/kube-venv" '
import kmock, kubernetes_validate, helm_python
' 'kmock==0.8' 'kubernetes-validate==1.37.0' 'helm-python-sdk==0.2.2'

# ---------------------------------------------------------------------------
# npm packages
NODE_PREFIX="$CACHE/node"
command -v node >/dev/null || die "node is not on PATH"
command -v npm >/dev/null || die "npm is not on PATH"
if [ ! -f "$NODE_PREFIX/node_modules/playwright-core/package.json" ] \
    || [ ! -f "$NODE_PREFIX/node_modules/configurable-http-proxy/package.json" ] \
    || [ ! -f "$NODE_PREFIX/node_modules/oidc-provider/package.json" ]; then
    log "installing npm packages into $NODE_PREFIX"
    mkdir -p "$NODE_PREFIX"
    npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --loglevel=error \
        'playwright-core@^1' 'configurable-http-proxy@^5' 'oidc-provider@^9'
fi

# ---------------------------------------------------------------------------
# PostgreSQL (Debian's cluster), listening on 127.0.0.1
PG_USER=xiji_test
PG_PASSWORD=xiji_test
PG_DB=xiji_test
command -v pg_lsclusters >/dev/null || die "pg_lsclusters missing (postgresql-common)"
cluster=$(pg_lsclusters --no-header | awk 'NR == 1 { print $1, $2, $3, $4 }')
if [ -z "$cluster" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    log "creating PostgreSQL $version cluster main"
    as_root pg_createcluster -p 5432 "$version" main 9>&-
    cluster=$(pg_lsclusters --no-header | awk 'NR == 1 { print $1, $2, $3, $4 }')
fi
read -r PG_VERSION PG_CLUSTER PG_PORT PG_STATUS <<<"$cluster"
if [ "$PG_STATUS" != online ]; then
    log "starting PostgreSQL $PG_VERSION/$PG_CLUSTER on port $PG_PORT"
    as_root pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start 9>&-
fi
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$PG_PORT" \
    || die "PostgreSQL $PG_VERSION/$PG_CLUSTER does not answer on 127.0.0.1:$PG_PORT"

psql_admin() { as_postgres psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qAt "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]; then
    psql_admin -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
    psql_admin -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
fi
PG_URL="postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
PGPASSWORD=$PG_PASSWORD psql -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -qAt -c 'SELECT 1' >/dev/null \
    || die "cannot log in to $PG_URL with a password"

# ---------------------------------------------------------------------------
cat >"$CACHE/test-env.sh.tmp" <<EOF
# Written by tests/setup-env.sh; source it before running the tests.
export XIJI_TEST_VENV5='$CACHE/venv5'
export XIJI_TEST_VENV6='$CACHE/venv6'
export XIJI_TEST_VENV_TOOLS='$CACHE/venv-tools'
export XIJI_KUBE_PYTHON='$CACHE/kube-venv/bin/python'
export XIJI_TEST_NODE_MODULES='$NODE_PREFIX/node_modules'
export XIJI_TEST_PG_URL='$PG_URL'
export CHROMIUM='$CHROMIUM_BIN'
EOF
mv "$CACHE/test-env.sh.tmp" "$CACHE/test-env.sh"
log "ready; environment in $CACHE/test-env.sh"
