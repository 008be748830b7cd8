#!/usr/bin/env bash
# Builds xiji/desktop FROM xiji/base-notebook and pushes it to the local registry; also installs
# what the hub host needs for desktops when it is missing: Debian's `novnc` (the browser client
# the hub serves) and `websockify` (only for the benchmark, tests/bench/desktop_bridge.sh).
#
#   images/desktop/build.sh     # called by images/build.sh after base-notebook
#
# The image carries a label with a hash of images/desktop/ and of the base image's id; a build
# is reused when it matches. Environment: XIJI_REGISTRY (default 127.0.0.1:5000; empty = do not
# push), XIJI_IMAGE_REBUILD=1 (build even when the hash matches), XIJI_DESKTOP_HOST_PACKAGES=0
# (do not install host packages), XIJI_IMAGE_TAG (default latest; FROM xiji/base-notebook of the
# same tag).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
registry="${XIJI_REGISTRY-127.0.0.1:5000}"
tag="${XIJI_IMAGE_TAG:-latest}"
base="xiji/base-notebook:$tag"
image="xiji/desktop"
export DOCKER_BUILDKIT=0

log() { echo "[images/desktop/build.sh] $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

host_packages() {
    [ "${XIJI_DESKTOP_HOST_PACKAGES:-1}" != 0 ] || return 0
    local missing=()
    [ -f /usr/share/novnc/core/rfb.js ] || missing+=(novnc)
    command -v websockify > /dev/null || missing+=(websockify)
    [ "${#missing[@]}" -gt 0 ] || return 0
    log "installing ${missing[*]} on this host"
    as_root apt-get update -qq > /dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" > /dev/null
}

build() {
    local base_id hash current
    base_id="$(docker image inspect -f '{{.Id}}' "$base")" || {
        log "$base is missing: run images/build.sh first"; exit 1; }
    hash="$( (cd "$here" && find . -type f ! -name build.sh -print0 | LC_ALL=C sort -z \
        | xargs -0 sha256sum; echo "$base_id") | sha256sum | cut -c1-16)"
    current="$(docker image inspect -f '{{ index .Config.Labels "org.xiji.content-hash" }}' \
        "$image:$tag" 2>/dev/null || true)"
    if [ "$current" = "$hash" ] && [ "${XIJI_IMAGE_REBUILD:-0}" != 1 ]; then
        log "reusing $image:$tag (content hash $hash)"
        return
    fi
    log "building $image:$tag (content hash $hash)"
    docker build --quiet --label "org.xiji.content-hash=$hash" \
        --build-arg "BASE_IMAGE=$base" -f "$here/Dockerfile" -t "$image:$tag" "$here" > /dev/null
    log "built $image:$tag"
}

push() {
    [ -n "$registry" ] || return 0
    docker tag "$image:$tag" "$registry/$image:$tag"
    log "pushing $registry/$image:$tag"
    docker push "$registry/$image:$tag" > /dev/null
}

host_packages
build
push
log "ready: ${registry:+$registry/}$image:$tag"
