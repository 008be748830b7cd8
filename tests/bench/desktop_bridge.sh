#!/usr/bin/env bash
# Desktop bridge benchmark: bytes per second and frame round trip through Xiji's VNC bridge
# (the browser's path: the hub's public listener, token auth, server-side VNC authentication)
# against Debian's websockify in front of the same node's VNC server, printed as a ratio.
#
# Usage (from the repository root; needs Docker with xiji/desktop, Debian's websockify):
#   tests/setup-docker.sh && . .cache/docker-env.sh    # registry, images (incl. xiji/desktop)
#   . .cache/test-env.sh
#   tests/bench/desktop_bridge.sh [SECONDS_PER_RUN]     # default 10
#
# It builds the hub and the measuring client in release mode, starts a hub on the docker backend,
# a 1-node cluster of the desktop image, websockify pointed at that node's VNC port, then runs the
# same RFB client (Raw encoding, so every byte is counted exactly) against both, alternating,
# best of two runs each: 300 round trips of a 16x16 update (p50/p99) and full-screen updates for
# SECONDS_PER_RUN (MB/s, frames/s).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
command -v websockify > /dev/null || { echo "missing: websockify (apt-get install websockify)" >&2; exit 1; }
cargo build --release -p hub
XIJI_BIN="$TARGET_DIR/release/xiji" XIJI_TEST_DOCKER=1 XIJI_BENCH_DESKTOP=1 \
    XIJI_BENCH_SECONDS="${1:-10}" \
    cargo test --release -p tests --test desktop bench_bridge_against_websockify -- --nocapture 2>&1 \
    | grep -E '^(desktop bridge|ratio| +MB/s|xiji bridge|websockify|test result|Error|thread)' 
