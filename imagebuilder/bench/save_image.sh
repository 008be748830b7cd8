#!/usr/bin/env bash
# Benchmark: save-and-push of a ~1 GiB change with the image builder, against
# `docker commit` + `docker push` of the same container to the same registry.
#
#   imagebuilder/bench/save_image.sh
#
# Needs a running Docker Engine and Debian's docker-registry (tests/setup-docker.sh provides
# both). Starts its own registry on a free 127.0.0.1 port with storage in a temporary
# directory, builds a small base image from the host's binaries (or uses $XIJI_BENCH_BASE, an
# image already in the local Docker), pushes it, starts a container, copies the change into it
# (one large random file plus 20,000 small text files), then times both ways. Prints the times
# and the ratio. Cleans up after itself.
#
# Environment: XIJI_BENCH_BIG_MIB (default 944), XIJI_BENCH_SMALL_FILES (default 20000),
# XIJI_BENCH_SMALL_BYTES (default 4096), XIJI_BENCH_COMPRESSION (pgzip | gzip | zstd,
# default pgzip; Docker 20.10 cannot pull zstd, so the final check fails with it),
# XIJI_BENCH_BIG_KIND (random: incompressible like model weights, the default; base64:
# compressible text that makes deflate work), XIJI_BENCH_BASE (a local image as the base),
# XIJI_BENCH_SKIP_BUILD=1 (use target/release/examples/save_image as it is).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIG_MIB=${XIJI_BENCH_BIG_MIB:-944}
SMALL_FILES=${XIJI_BENCH_SMALL_FILES:-20000}
SMALL_BYTES=${XIJI_BENCH_SMALL_BYTES:-4096}
COMPRESSION=${XIJI_BENCH_COMPRESSION:-pgzip}
BIG_KIND=${XIJI_BENCH_BIG_KIND:-random}

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

docker info > /dev/null 2>&1 || die "docker does not work (run tests/setup-docker.sh)"
command -v docker-registry > /dev/null || die "docker-registry is not installed"

WORK=$(mktemp -d /tmp/xiji-bench.XXXXXX)
REGISTRY_PID=""
CONTAINER="xiji-bench-$$"
IMAGES=()
cleanup() {
    docker rm -f "$CONTAINER" > /dev/null 2>&1 || true
    for image in "${IMAGES[@]}"; do docker rmi -f "$image" > /dev/null 2>&1 || true; done
    if [ -n "$REGISTRY_PID" ]; then kill "$REGISTRY_PID" 2> /dev/null || true; wait "$REGISTRY_PID" 2> /dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

SAVE="$ROOT/target/release/examples/save_image"
if [ "${XIJI_BENCH_SKIP_BUILD:-0}" = 1 ] && [ -x "$SAVE" ]; then
    log "using the example binary already built: $SAVE"
else
    log "building the example binary (release)"
    (cd "$ROOT" && cargo build -q --release -p imagebuilder --example save_image)
fi

# --- our own registry ---------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
REGISTRY="127.0.0.1:$PORT"
mkdir -p "$WORK/registry"
cat > "$WORK/registry/config.yml" << CONFIG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
http:
  addr: $REGISTRY
CONFIG
docker-registry serve "$WORK/registry/config.yml" > "$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 1 100); do curl -fs "http://$REGISTRY/v2/" > /dev/null && break; sleep 0.1; done
curl -fs "http://$REGISTRY/v2/" > /dev/null || die "the registry did not start: $(cat "$WORK/registry.log")"

# --- base image ---------------------------------------------------------------------------
BASE="$REGISTRY/bench/base:1"
if [ -n "${XIJI_BENCH_BASE:-}" ]; then
    docker tag "$XIJI_BENCH_BASE" "$BASE"
else
    log "making a small base image from the host's binaries"
    rootfs="$WORK/rootfs"
    mkdir -p "$rootfs"/{usr/bin,usr/lib,usr/lib64,etc,tmp,root}
    ln -s usr/bin "$rootfs/bin"; ln -s usr/lib "$rootfs/lib"; ln -s usr/lib64 "$rootfs/lib64"
    for bin in sh ls cat sleep; do
        path=$(command -v "$bin")
        cp "$path" "$rootfs/usr/bin/$bin"
        for lib in $(ldd "$path" | grep -o '/lib[^ ]*'); do
            dir=$(readlink -f "$(dirname "$lib")")
            mkdir -p "$rootfs$dir"
            cp "$lib" "$rootfs$dir/"
        done
    done
    tar -C "$rootfs" -c . | docker import - "$BASE" > /dev/null
fi
IMAGES+=("$BASE")
docker push -q "$BASE" > /dev/null

# --- the change ---------------------------------------------------------------------------
log "making the change: ${BIG_MIB} MiB $BIG_KIND file + ${SMALL_FILES} files of ${SMALL_BYTES} bytes"
mkdir -p "$WORK/change/opt/data" "$WORK/change/opt/src"
case "$BIG_KIND" in
    random) dd if=/dev/urandom of="$WORK/change/opt/data/model.bin" bs=1M count="$BIG_MIB" status=none ;;
    # 3 random bytes → 4 characters, plus a newline per 76: about BIG_MIB MiB of text.
    base64) head -c $((BIG_MIB * 1024 * 1024 / 4 * 3 / 77 * 76)) /dev/urandom | base64 -w 76 \
                > "$WORK/change/opt/data/model.bin" ;;
    *) die "XIJI_BENCH_BIG_KIND must be random or base64" ;;
esac
python3 - "$WORK/change/opt/src" "$SMALL_FILES" "$SMALL_BYTES" << 'PY'
import os, sys
root, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    d = os.path.join(root, f"pkg{i // 500:03d}")
    os.makedirs(d, exist_ok=True)
    line = f"def function_{i}(x):\n    return x * {i} + {i % 97}\n"
    with open(os.path.join(d, f"module_{i:05d}.py"), "w") as f:
        f.write((line * (size // len(line) + 1))[:size])
PY
docker run -d --name "$CONTAINER" "$BASE" sleep 36000 > /dev/null
docker cp "$WORK/change/opt" "$CONTAINER:/" > /dev/null
rm -rf "$WORK/change"
sync
CHANGE=$(docker exec "$CONTAINER" sh -c 'ls /opt' | tr '\n' ' ')
log "container $CONTAINER has /opt: $CHANGE"

now() { date +%s.%N; }

# --- ours ---------------------------------------------------------------------------------
OURS="$REGISTRY/bench/ours:1"
log "image builder ($COMPRESSION): save and push"
t0=$(now)
"$SAVE" --container "$CONTAINER" --target "$OURS" --compression "$COMPRESSION" > "$WORK/ours.json"
t1=$(now)
IMAGES+=("$OURS")

# --- docker commit + docker push ----------------------------------------------------------
THEIRS="$REGISTRY/bench/commit:1"
log "docker commit + docker push"
t2=$(now)
docker commit "$CONTAINER" "$THEIRS" > /dev/null
docker push -q "$THEIRS" > /dev/null
t3=$(now)
IMAGES+=("$THEIRS")

# --- check and report -----------------------------------------------------------------------
docker rmi -f "$OURS" > /dev/null 2>&1 || true
docker pull -q "$OURS" > /dev/null
docker run --rm "$OURS" sh -c "ls /opt/src; ls -l /opt/data/model.bin" > "$WORK/check.txt"

python3 - "$WORK/ours.json" "$t0" "$t1" "$t2" "$t3" "$WORK/check.txt" << 'PY'
import json, sys
ours = json.load(open(sys.argv[1]))
t0, t1, t2, t3 = map(float, sys.argv[2:6])
check = open(sys.argv[6]).read().splitlines()
mine, theirs = t1 - t0, t3 - t2
print(f"change: {ours['layer_uncompressed_size'] / 2**20:.0f} MiB uncompressed tar, "
      f"{ours['layer_entries']} entries; new layer {ours['layer_size'] / 2**20:.0f} MiB compressed")
print(f"image builder save+push:      {mine:7.2f} s")
print(f"docker commit + docker push:  {theirs:7.2f} s")
print(f"ratio (docker / image builder): {theirs / mine:.2f}x")
print(f"pulled image: {len(check) - 1} package dirs in /opt/src, model.bin {check[-1].split()[4]} bytes")
PY
