#!/usr/bin/env bash
# Prepares a Docker Engine for the docker backend's tests (and for trying it by hand), and
# writes `.cache/docker-env.sh`.
#
#   tests/setup-docker.sh && . .cache/docker-env.sh
#
# Idempotent; a second run only checks and is quick.
#   - Debian packages: docker.io, debootstrap, docker-registry, skopeo (installed when missing)
#   - dockerd running (started in the background, log in .cache/docker/dockerd.log, when
#     `docker info` fails)
#   - a registry on 127.0.0.1:5000 (Debian's docker-registry, data in .cache/docker/registry)
#   - images/build.sh: xiji/base-notebook built (or reused) and pushed to that registry
# The env file exports XIJI_TEST_DOCKER=1 and XIJI_TEST_DOCKER_IMAGE, which
# `cargo test -p spawner --test docker` reads.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="$ROOT/.cache/docker"
mkdir -p "$CACHE"
REGISTRY_ADDR="${XIJI_REGISTRY:-127.0.0.1:5000}"

log() { printf '[setup-docker] %s\n' "$*" >&2; }
die() { printf '[setup-docker] ERROR: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

exec 9>"$CACHE/setup.lock"
flock -w 1800 9 || die "another tests/setup-docker.sh has held $CACHE/setup.lock for 30 minutes"

# --- packages ---------------------------------------------------------------
missing=()
command -v dockerd > /dev/null || missing+=(docker.io)
command -v debootstrap > /dev/null || missing+=(debootstrap)
command -v docker-registry > /dev/null || missing+=(docker-registry)
command -v skopeo > /dev/null || missing+=(skopeo)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq > /dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" > "$CACHE/apt.log" 2>&1 || { tail -n 30 "$CACHE/apt.log" >&2; die "apt-get install failed"; }
fi

# --- dockerd ----------------------------------------------------------------
if ! docker info > /dev/null 2>&1; then
    log "starting dockerd (log: $CACHE/dockerd.log)"
    # 9>&-: the daemon must not inherit (and so hold forever) the setup lock.
    as_root nohup dockerd > "$CACHE/dockerd.log" 2>&1 9>&- &
    echo $! > "$CACHE/dockerd.pid"
    for _ in $(seq 1 120); do
        docker info > /dev/null 2>&1 && break
        sleep 0.5
    done
    docker info > /dev/null 2>&1 || { tail -n 30 "$CACHE/dockerd.log" >&2; die "dockerd did not come up"; }
fi

# --- registry on 127.0.0.1:5000 -----------------------------------------------
registry_up() { curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/" 2>/dev/null; }
if ! registry_up; then
    mkdir -p "$CACHE/registry/data"
    cat > "$CACHE/registry/config.yml" <<CONFIG
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $CACHE/registry/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
CONFIG
    log "starting docker-registry on $REGISTRY_ADDR (log: $CACHE/registry.log)"
    nohup docker-registry serve "$CACHE/registry/config.yml" > "$CACHE/registry.log" 2>&1 9>&- &
    echo $! > "$CACHE/registry.pid"
    for _ in $(seq 1 60); do
        registry_up && break
        sleep 0.5
    done
    registry_up || { tail -n 30 "$CACHE/registry.log" >&2; die "the registry did not come up"; }
fi

# --- images -----------------------------------------------------------------
XIJI_REGISTRY="$REGISTRY_ADDR" "$ROOT/images/build.sh"

cat > "$ROOT/.cache/docker-env.sh" <<ENV
export XIJI_TEST_DOCKER=1
export XIJI_TEST_DOCKER_IMAGE=$REGISTRY_ADDR/xiji/base-notebook:latest
ENV
log "ready; . .cache/docker-env.sh"
