#!/usr/bin/env bash
# Builds xiji/xiji (the hub, xiji-proxy and xiji-node-agent: the image the Helm chart runs) and
# pushes it.
#
#   deploy/images/build.sh            # cargo build --release, docker build, push
#
# Environment: XIJI_REGISTRY (default 127.0.0.1:5000; empty = do not push), XIJI_IMAGE_TAG
# (default: the workspace's version), XIJI_PROFILE (release, or dev for a quick trial build),
# XIJI_BIN_DIR (binaries already built: skip cargo), BASE_IMAGE (default xiji/debian:bookworm,
# which images/build.sh imports from debootstrap).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
registry="${XIJI_REGISTRY-127.0.0.1:5000}"
profile="${XIJI_PROFILE:-release}"
base_image="${BASE_IMAGE:-xiji/debian:bookworm}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)"
tag="${XIJI_IMAGE_TAG:-$version}"
export DOCKER_BUILDKIT=0

log() { echo "[deploy/images/build.sh] $*" >&2; }

if [ -z "${XIJI_BIN_DIR:-}" ]; then
    log "cargo build --profile $profile (hub, proxy, imagebuilder)"
    (cd "$root" && cargo build --profile "$profile" -p hub -p proxy -p imagebuilder \
        --bin xiji --bin xiji-proxy --bin xiji-node-agent)
    target="${CARGO_TARGET_DIR:-$root/target}"
    case "$profile" in dev) XIJI_BIN_DIR="$target/debug" ;; *) XIJI_BIN_DIR="$target/$profile" ;; esac
fi
docker image inspect "$base_image" > /dev/null 2>&1 \
    || { log "no $base_image: run images/build.sh first (it imports the Debian rootfs)"; exit 1; }

context="$(mktemp -d /tmp/xiji-image.XXXXXX)"
trap 'rm -rf "$context"' EXIT
mkdir "$context/bin"
for b in xiji xiji-proxy xiji-node-agent; do
    [ -x "$XIJI_BIN_DIR/$b" ] || { log "missing $XIJI_BIN_DIR/$b"; exit 1; }
    cp "$XIJI_BIN_DIR/$b" "$context/bin/"
done
[ "$profile" = dev ] || strip "$context"/bin/* 2> /dev/null || true
cp "$here/xiji/Dockerfile" "$context/"
log "docker build xiji/xiji:$tag"
docker build -q --build-arg "BASE_IMAGE=$base_image" -t "xiji/xiji:$tag" "$context" > /dev/null
if [ -n "$registry" ]; then
    docker tag "xiji/xiji:$tag" "$registry/xiji/xiji:$tag"
    docker push -q "$registry/xiji/xiji:$tag" > /dev/null
    log "pushed $registry/xiji/xiji:$tag"
fi
echo "xiji/xiji:$tag"
