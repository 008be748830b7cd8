#!/usr/bin/env bash
# Builds xiji/base-notebook without Docker Hub and pushes it to a local registry.
#
#   images/build.sh            # build (or reuse) and push to ${XIJI_REGISTRY:-127.0.0.1:5000}
#
# 1. xiji/debian:bookworm: a minbase Debian rootfs from debootstrap, `docker import`ed
#    (skipped when the image exists).
# 2. xiji/base-notebook: `docker build` of images/base-notebook FROM that rootfs. The image
#    carries a label with a hash of images/base-notebook; a build is reused when the hash matches.
# 3. Tags and pushes ${XIJI_REGISTRY}/xiji/base-notebook:latest (cheap when the layers are there).
# 4. images/desktop/build.sh: xiji/desktop FROM xiji/base-notebook (skip: XIJI_BUILD_DESKTOP=0).
#
# Environment: XIJI_REGISTRY (default 127.0.0.1:5000; empty = do not push),
# XIJI_DEBIAN_MIRROR (default http://deb.debian.org/debian), XIJI_CA_BUNDLE (the CA bundle pip
# trusts inside the build; default /etc/ssl/certs/ca-certificates.crt), XIJI_IMAGE_REBUILD=1
# to build even when the hash matches, XIJI_IMAGE_TAG (default latest: the tag of both images,
# e.g. to try a change without replacing the images others use).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
registry="${XIJI_REGISTRY-127.0.0.1:5000}"
mirror="${XIJI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
ca_bundle="${XIJI_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
base_image="xiji/debian:bookworm"
image="xiji/base-notebook"
tag="${XIJI_IMAGE_TAG:-latest}"
# The legacy builder works with every daemon version and needs no buildx plugin.
export DOCKER_BUILDKIT=0

log() { echo "[images/build.sh] $*" >&2; }

content_hash() {
    { (cd "$here/base-notebook" && find . -type f -print0 | LC_ALL=C sort -z \
        | xargs -0 sha256sum); cat "$here"/../extensions/dist/*.whl.hash; } | sha256sum | cut -c1-16
}

ensure_base_rootfs() {
    if docker image inspect "$base_image" > /dev/null 2>&1; then
        log "reusing $base_image"
        return
    fi
    command -v debootstrap > /dev/null || { log "debootstrap is not installed"; exit 1; }
    local rootfs
    rootfs="$(mktemp -d /tmp/xiji-rootfs.XXXXXX)"
    log "debootstrap bookworm into $rootfs (mirror $mirror)"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$rootfs.log" 2>&1 || {
        tail -n 30 "$rootfs.log" >&2; rm -rf "$rootfs"; exit 1; }
    # The security and updates suites as on any Debian system.
    cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import - "$base_image" > /dev/null
    rm -rf "$rootfs" "$rootfs.log"
    log "imported $base_image"
}

build_notebook() {
    local hash current
    # Xiji's JupyterLab extension, installed in the image (quick when it is up to date).
    "$here/../extensions/build.sh"
    hash="$(content_hash)"
    current="$(docker image inspect -f '{{ index .Config.Labels "org.xiji.content-hash" }}' \
        "$image:$tag" 2>/dev/null || true)"
    if [ "$current" = "$hash" ] && [ "${XIJI_IMAGE_REBUILD:-0}" != 1 ]; then
        log "reusing $image:$tag (content hash $hash)"
        return
    fi
    ensure_base_rootfs
    local context
    context="$(mktemp -d /tmp/xiji-build.XXXXXX)"
    cp -a "$here/base-notebook/." "$context/"
    cp "$ca_bundle" "$context/ca-certificates.crt"
    mkdir -p "$context/xiji-wheels" && cp "$here"/../extensions/dist/*.whl "$context/xiji-wheels/"
    log "building $image:$tag (content hash $hash)"
    docker build --quiet --label "org.xiji.content-hash=$hash" \
        --build-arg "BASE_IMAGE=$base_image" -t "$image:$tag" "$context" > /dev/null
    rm -rf "$context"
    log "built $image:$tag"
}

push_notebook() {
    [ -n "$registry" ] || return 0
    docker tag "$image:$tag" "$registry/$image:$tag"
    log "pushing $registry/$image:$tag"
    docker push "$registry/$image:$tag" > /dev/null
}

build_notebook
push_notebook
log "ready: ${registry:+$registry/}$image:$tag"
# The desktop image FROM it (XIJI_BUILD_DESKTOP=0 skips it).
if [ "${XIJI_BUILD_DESKTOP:-1}" != 0 ]; then
    "$here/desktop/build.sh"
fi
