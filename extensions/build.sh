#!/usr/bin/env bash
# Builds the JupyterLab extension(s) into pip-installable wheels in extensions/dist/.
#
#   extensions/build.sh          # → extensions/dist/jupyterlab_xiji-<version>-py3-none-any.whl
#
# 1. A build venv (.cache/extensions-venv: jupyterlab 4.4–4.5, hatchling; created once) for
#    `jupyter labextension build`, which bundles the TypeScript with webpack against the
#    installed JupyterLab's shared packages.
#    (JupyterLab 4.6 moved the build to `jupyter-builder`, which downloads core metadata at
#    build time; the 4.5 builder works offline. The result runs on any JupyterLab 4.)
# 2. npm ci (package-lock.json) → tsc → the prebuilt labextension in
#    jupyterlab_xiji/labextension/.
# 3. pip wheel (hatchling): the Python server extension, the prebuilt labextension under
#    share/jupyter/labextensions/jupyterlab-xiji and the server config that enables it.
#
# A wheel is rebuilt only when a source file changed (a hash of them is kept next to it);
# XIJI_EXT_REBUILD=1 builds anyway. Environment: XIJI_EXT_PYTHON (python3 that creates the
# venv), XIJI_EXT_JUPYTERLAB (pip requirement, default "jupyterlab>=4.4,<4.6").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
dist="$here/dist"
venv="$root/.cache/extensions-venv"
python="${XIJI_EXT_PYTHON:-python3}"
lab_spec="${XIJI_EXT_JUPYTERLAB:-jupyterlab>=4.4,<4.6}"
ext="$here/jupyterlab-xiji"

log() { echo "[extensions/build.sh] $*" >&2; }

source_hash() {
    (cd "$ext" && find src style jupyterlab_xiji jupyter-config package.json package-lock.json \
        pyproject.toml install.json tsconfig.json -type f \
        -not -path 'jupyterlab_xiji/labextension/*' -not -name '*.pyc' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}

mkdir -p "$dist"
hash="$(source_hash)"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ext/pyproject.toml" | head -n1)"
wheel="$dist/jupyterlab_xiji-$version-py3-none-any.whl"
if [ -f "$wheel" ] && [ "$(cat "$wheel.hash" 2>/dev/null)" = "$hash" ] \
    && [ "${XIJI_EXT_REBUILD:-0}" != 1 ]; then
    log "up to date: $wheel"
    exit 0
fi

mkdir -p "$root/.cache"
exec 9>"$root/.cache/extensions-build.lock"
flock -w 900 9 || { log "another build holds the lock"; exit 1; }

if [ ! -x "$venv/bin/jupyter-labextension" ] || [ ! -x "$venv/bin/python" ] \
    || ! "$venv/bin/python" -c 'import hatchling' 2> /dev/null; then
    log "creating the build venv $venv ($lab_spec, hatchling)"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$lab_spec" "hatchling>=1.18"
fi

cd "$ext"
log "npm ci"
npm ci --no-audit --no-fund --loglevel=error > /dev/null
log "tsc"
npx --no-install tsc
log "jupyter labextension build"
rm -rf jupyterlab_xiji/labextension
PATH="$venv/bin:$PATH" "$venv/bin/jupyter" labextension build . > /dev/null
log "wheel"
rm -f "$dist"/jupyterlab_xiji-*.whl "$dist"/jupyterlab_xiji-*.whl.hash
# A fixed timestamp keeps the wheel's bytes the same for the same sources.
SOURCE_DATE_EPOCH=1700000000 "$venv/bin/pip" wheel --quiet --disable-pip-version-check \
    --no-deps --no-build-isolation -w "$dist" . > /dev/null
[ -f "$wheel" ] || { log "no wheel was written at $wheel"; exit 1; }
echo "$hash" > "$wheel.hash"
log "built $wheel"
