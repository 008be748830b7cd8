#!/usr/bin/env bash
# Project fork benchmark: a project holding 20,000 small files (1–16 KiB of random bytes, in
# nested folders) and one 1 GiB file is forked through Xiji's API (POST …/fork, then GET of the
# fork until its copy is done), against `cp -a` of the same folder on the same pool (and
# `cp -a --reflink=always` / `--reflink=never`), in one run. Prints the seconds of each, best and
# median of RUNS, and the ratios to `cp -a`. Not a timed test (docs/benchmarks.md).
#
#   tests/bench/project_fork.sh [SMALL_FILES] [BIG_MIB]     # default 20000 1024
#
# Two pools: the default disk (the folder TMPDIR is on), and, when this runs as root with
# losetup and mkfs.xfs (apt-get install -y xfsprogs), an XFS filesystem made with reflink=1 on a
# loop device, where copies can share blocks. A half that cannot be made is skipped with a
# message. Each pool holds the hub's data folder (SQLite and its default storage pool), so the
# project and its fork are on it.
#
# Needs curl and python3. XIJI_BIN overrides the binary; by default it is built with
# `cargo build --release -p hub`. RUNS (default 5) runs of each copy, every other run in the
# reverse order, after one untimed copy of each kind. The page cache is warm:
# every copy reads a source that was just read; `sync` runs (untimed) before each copy, and the
# copies' own writeback is not timed, for `cp` as for Xiji.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
SMALL_FILES=${1:-20000}
BIG_MIB=${2:-1024}
RUNS=${RUNS:-5}
export PATH="$PATH:/usr/sbin:/sbin"
die() { printf 'project_fork.sh: %s\n' "$*" >&2; exit 2; }
command -v curl > /dev/null || die "curl is missing"
command -v python3 > /dev/null || die "python3 is missing"
if [ -z "${XIJI_BIN:-}" ]; then
    cargo build -q --release -p hub
    XIJI_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/xiji"
fi
[ -x "$XIJI_BIN" ] || die "no xiji binary at $XIJI_BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/xiji-bench-fork-XXXXXX")
HUB_PID=
XFS_MOUNT=
XFS_LOOP=
cleanup() {
    if [ -n "$HUB_PID" ]; then
        kill -TERM "$HUB_PID" 2> /dev/null || true
        for _ in $(seq 1 50); do kill -0 "$HUB_PID" 2> /dev/null || break; sleep 0.1; done
        kill -KILL "$HUB_PID" 2> /dev/null || true
    fi
    if [ -n "$XFS_MOUNT" ]; then umount "$XFS_MOUNT" 2> /dev/null || umount -l "$XFS_MOUNT" || true; fi
    if [ -n "$XFS_LOOP" ]; then losetup -d "$XFS_LOOP" 2> /dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- the project's files, made once ------------------------------------------------------------
echo "writing $SMALL_FILES small files and a $BIG_MIB MiB file of random bytes"
python3 - "$WORK/fixture" "$SMALL_FILES" << 'PY'
import os
import random
import sys

root, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(14)
for i in range(count):
    # 10 × 20 × 5 folders, three deep, 20 files each.
    folder = os.path.join(root, f"a{i % 10}", f"b{(i // 10) % 20}", f"c{(i // 200) % 5}")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"f{i}.bin"), "wb") as f:
        f.write(os.urandom(rng.randint(1024, 16 * 1024)))
PY
head -c "$((BIG_MIB * 1024 * 1024))" /dev/urandom > "$WORK/fixture/big.bin"
FIXTURE_BYTES=$(du -sb "$WORK/fixture" | cut -f1)

echo "$("$XIJI_BIN" --version 2>/dev/null || echo "xiji ($XIJI_BIN)"); $(cp --version | head -n 1); kernel $(uname -r)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# Runs the comparison with the hub's data folder (and so the project and its fork) in "$2".
bench_pool() {
    local label=$1 base=$2
    local port token
    port=$(free_port)
    token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
    mkdir -p "$base/xiji-data"
    cat > "$base/xiji.toml" << EOF
bind = "127.0.0.1:$port"
data_dir = "$base/xiji-data"
log = "info"

[admin]
username = "admin"
password = "benchmark-password-1"

[spawner.local]
cmd = ["true"]

[[services]]
name = "bench"
api_token = "$token"
admin = true
EOF
    env -u XIJI_BIND -u XIJI_DATA_DIR -u XIJI_DATABASE_URL "$XIJI_BIN" --config "$base/xiji.toml" \
        > "$base/xiji.log" 2>&1 &
    HUB_PID=$!
    for _ in $(seq 1 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/hub/api/")" != 000 ] && break
        kill -0 "$HUB_PID" 2> /dev/null || { tail -n 30 "$base/xiji.log" >&2; die "xiji exited"; }
        sleep 0.1
    done
    echo
    echo "== $label: $(stat -f -c %T "$base") at $(df --output=source "$base" | tail -n 1) =="
    python3 - "$label" "$base" "$port" "$token" "$WORK/fixture" "$RUNS" \
        << 'PY'
import http.client
import json
import os
import shutil
import subprocess
import sys
import time

label, base, port, token, fixture, runs = sys.argv[1:]
port, runs = int(port), int(runs)


def api(method, path, tok, body=None, want=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={
        "Authorization": f"token {tok}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    text = resp.read()
    conn.close()
    if resp.status >= 300:
        sys.exit(f"{method} {path}: {resp.status} {text[:300]!r}")
    return json.loads(text) if text else None


api("POST", "/hub/api/users/bench", token)
user = api("POST", "/hub/api/users/bench/tokens", token, {})["token"]
project = api("POST", "/hub/api/projects", user, {"name": "source"})
pid = project["id"]
source = os.path.join(base, "xiji-data", "storage", "project", str(pid), "files")
subprocess.run(["cp", "-a", "--reflink=never", fixture + "/.", source], check=True)
subprocess.run(["sync"], check=True)
target = os.path.join(base, "cp-target")
file_count = 0
file_bytes = 0
for folder, _, names in os.walk(source):
    for n in names:
        file_count += 1
        file_bytes += os.path.getsize(os.path.join(folder, n))


def cp(*flags):
    def run(_):
        subprocess.run(["sync"], check=True)
        t0 = time.monotonic()
        done = subprocess.run(["cp", "-a", *flags, source, target], capture_output=True, text=True)
        elapsed = time.monotonic() - t0
        shutil.rmtree(target, ignore_errors=True)
        if done.returncode != 0:
            # "cp: failed to clone 'x' from 'y': Operation not supported" → the reason.
            return None, done.stderr.strip().splitlines()[0].rsplit(": ", 1)[-1]
        return elapsed, None
    return run


def xiji(run):
    name = f"fork-{run + 1}"
    subprocess.run(["sync"], check=True)
    t0 = time.monotonic()
    fork = api("POST", "/hub/api/projects/bench/source/fork", user, {"name": name})
    answered = time.monotonic() - t0
    while True:
        state = api("GET", f"/hub/api/projects/bench/{name}", user)["fork"]
        if state["state"] != "copying":
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - t0
    if state["state"] != "done":
        sys.exit(f"the fork failed: {state}")
    if (state["files_done"], state["bytes_done"]) != (file_count, file_bytes):
        sys.exit(f"the fork copied {state}, not {file_count} files of {file_bytes} bytes")
    if run == -1:
        copied = os.path.join(base, "xiji-data", "storage", "project", str(fork["id"]), "files")
        same = subprocess.run(["diff", "-rq", "--no-dereference", source, copied],
                              capture_output=True, text=True)
        if same.returncode != 0:
            sys.exit(f"the fork differs from its original: {same.stdout[:500]}")
    api("DELETE", f"/hub/api/projects/bench/{name}", user)
    return elapsed, f"answered in {answered * 1000:.0f} ms, {state['files_done']} files, " \
                    f"{state['bytes_done'] / 2**20:.0f} MiB"


cases = [
    ("cp -a", cp()),
    ("cp -a --reflink=always", cp("--reflink=always")),
    ("cp -a --reflink=never", cp("--reflink=never")),
    ("Xiji fork (API, until done)", xiji),
]
# One untimed copy of each kind first: the first copy after the project was written is faster
# than the later ones, which follow the removal of a copy (on ext4 mounted with `discard`, much
# faster), so it would skew the first case of run 1.
for _, fn in cases:
    fn(-1)

times = {}
notes = {}
for run in range(runs):
    # Every other run in the reverse order, so that a drift of the machine hits all alike.
    for name, fn in (cases if run % 2 == 0 else cases[::-1]):
        elapsed, note = fn(run)
        if elapsed is None:
            notes[name] = note
            print(f"  run {run + 1}: {name:<30} not possible: {note}", flush=True)
            continue
        times.setdefault(name, []).append(elapsed)
        print(f"  run {run + 1}: {name:<30} {elapsed:7.2f} s" + (f"  ({note})" if note else ""),
              flush=True)


def median(xs):
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


print(f"\n{label}: {file_count} files, {file_bytes / 2**30:.2f} GiB in the project, {runs} runs:")
print("| copy | best (s) | / cp -a | median (s) | / cp -a |")
print("|---|---:|---:|---:|---:|")
best_cp, median_cp = min(times["cp -a"]), median(times["cp -a"])
for name, _ in cases:
    if name in times:
        b, m = min(times[name]), median(times[name])
        print(f"| {name} | {b:.2f} | {b / best_cp:.2f}× | {m:.2f} | {m / median_cp:.2f}× |")
    else:
        print(f"| {name} | not possible: {notes.get(name, '')} | | | |")
xiji = times["Xiji fork (API, until done)"]
print(f"\nratio Xiji fork / cp -a on {label}: {min(xiji) / best_cp:.2f} best, "
      f"{median(xiji) / median_cp:.2f} median (target ≤ 1.2)")
PY
    kill -TERM "$HUB_PID" 2> /dev/null || true
    wait "$HUB_PID" 2> /dev/null || true
    HUB_PID=
}

bench_pool "default disk" "$WORK/default"

# --- a reflink-capable pool: XFS with reflink=1 on a loop device --------------------------------
xfs_skip() { echo; echo "== XFS (reflink=1): skipped: $* =="; }
if [ "$(id -u)" != 0 ]; then
    xfs_skip "mounting a loop device needs root"
elif ! command -v mkfs.xfs > /dev/null || ! command -v losetup > /dev/null; then
    xfs_skip "mkfs.xfs or losetup is missing (apt-get install -y xfsprogs)"
else
    # Room for the source, a full copy (cp --reflink=never) and the log, with a margin.
    size_mib=$(( FIXTURE_BYTES / 1048576 * 3 + 1024 ))
    truncate -s "${size_mib}M" "$WORK/xfs.img"
    if ! mkfs.xfs -q -m reflink=1 "$WORK/xfs.img" 2> "$WORK/mkfs.log"; then
        xfs_skip "mkfs.xfs failed: $(head -n 1 "$WORK/mkfs.log")"
    elif ! XFS_LOOP=$(losetup --find --show "$WORK/xfs.img" 2> "$WORK/losetup.log"); then
        XFS_LOOP=
        xfs_skip "no loop device: $(head -n 1 "$WORK/losetup.log")"
    else
        mkdir -p "$WORK/xfs"
        if mount "$XFS_LOOP" "$WORK/xfs" 2> "$WORK/mount.log"; then
            XFS_MOUNT="$WORK/xfs"
            bench_pool "XFS (reflink=1, loop device)" "$WORK/xfs"
        else
            xfs_skip "mount failed: $(head -n 1 "$WORK/mount.log")"
        fi
    fi
fi
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
