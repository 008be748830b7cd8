#!/usr/bin/env bash
# Prepares real filesystems for the storage-pool tests, and writes `.cache/storage-env.sh`.
#
#   tests/setup-storage.sh && . .cache/storage-env.sh
#
# Needs root (it mounts). Idempotent: a second run only checks and is quick.
#   - Debian packages: glusterfs-server, glusterfs-client, e2fsprogs (installed when missing)
#   - two ext4 filesystems in image files, loop-mounted: `local-a` (96 MiB) and `tiny` (16 MiB,
#     to fill up)
#   - a GlusterFS volume `xiji-test`: glusterd started when it is not running, one brick on a
#     loop-mounted ext4 of 192 MiB (so the volume's size differs from local-a's), mounted through
#     FUSE with `mount -t glusterfs`
# This kernel has no NFS client or server, so no NFS mount is made: the `nfs` type's checks are
# tested against the mounts above (a declared type that does not match is refused).
# The env file exports XIJI_TEST_POOL_LOCAL, XIJI_TEST_POOL_GLUSTER and XIJI_TEST_POOL_TINY (the
# mount points); each test works in a folder of its own below them and removes it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="$ROOT/.cache/storage"
mkdir -p "$CACHE"
VOLUME=xiji-test

log() { printf '[setup-storage] %s\n' "$*" >&2; }
die() { printf '[setup-storage] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: it mounts filesystems"

exec 9>"$CACHE/setup.lock"
flock -w 600 9 || die "another tests/setup-storage.sh has held $CACHE/setup.lock for 10 minutes"

# --- packages ---------------------------------------------------------------
missing=()
command -v glusterd > /dev/null || missing+=(glusterfs-server)
command -v mount.glusterfs > /dev/null || [ -x /sbin/mount.glusterfs ] || missing+=(glusterfs-client)
command -v mkfs.ext4 > /dev/null || missing+=(e2fsprogs)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq > /dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        > "$CACHE/apt.log" 2>&1 || { tail -n 30 "$CACHE/apt.log" >&2; die "apt-get install failed"; }
fi
[ -e /dev/fuse ] || die "/dev/fuse is missing: GlusterFS mounts need FUSE"

# --- loop-mounted ext4 filesystems ----------------------------------------------
# ext4_mount NAME SIZE_MIB MOUNT_POINT
ext4_mount() {
    local name=$1 size=$2 dir=$3 image="$CACHE/$1.img"
    mkdir -p "$dir"
    if mountpoint -q "$dir"; then
        return 0
    fi
    if [ ! -f "$image" ]; then
        log "making a ${size} MiB ext4 filesystem for $name"
        truncate -s "${size}M" "$image"
        mkfs.ext4 -q -F -m 0 "$image"
    fi
    mount -o loop "$image" "$dir" 9>&- || die "cannot loop-mount $image on $dir"
}
ext4_mount local-a 96 "$CACHE/mnt/local-a"
ext4_mount tiny 16 "$CACHE/mnt/tiny"
ext4_mount gluster-brick 192 "$CACHE/bricks/b1"

# --- GlusterFS ----------------------------------------------------------------
if ! pgrep -x glusterd > /dev/null; then
    log "starting glusterd"
    glusterd --log-file="$CACHE/glusterd.log" 9>&-
fi
for _ in $(seq 1 60); do
    gluster --mode=script volume list > /dev/null 2>&1 && break
    sleep 0.5
done
gluster --mode=script volume list > /dev/null 2>&1 || die "glusterd does not answer (see $CACHE/glusterd.log)"
# GlusterFS refuses loopback addresses for bricks: the machine's name must resolve to another one.
HOST=$(hostname)
if ! gluster --mode=script volume info "$VOLUME" > /dev/null 2>&1; then
    log "creating the GlusterFS volume $VOLUME on $HOST"
    mkdir -p "$CACHE/bricks/b1/brick"
    gluster --mode=script volume create "$VOLUME" "$HOST:$CACHE/bricks/b1/brick" force > /dev/null \
        || die "gluster volume create failed (does $HOST resolve to an address other than loopback?)"
fi
if ! gluster --mode=script volume info "$VOLUME" | grep -q '^Status: Started'; then
    gluster --mode=script volume start "$VOLUME" force > /dev/null || die "gluster volume start failed"
fi
GLUSTER_MNT="$CACHE/mnt/gluster"
mkdir -p "$GLUSTER_MNT"
if ! mountpoint -q "$GLUSTER_MNT"; then
    log "mounting $HOST:/$VOLUME on $GLUSTER_MNT"
    for _ in $(seq 1 20); do
        mount -t glusterfs "$HOST:/$VOLUME" "$GLUSTER_MNT" 9>&- 2> /dev/null && break
        sleep 1
    done
fi
mountpoint -q "$GLUSTER_MNT" || die "cannot mount the GlusterFS volume $VOLUME"
[ "$(stat -f -c %T "$GLUSTER_MNT")" = fuseblk ] || die "$GLUSTER_MNT is not a FUSE mount"

cat > "$ROOT/.cache/storage-env.sh.tmp" << EOF
# Written by tests/setup-storage.sh; source it before running the storage-pool tests.
export XIJI_TEST_POOL_LOCAL='$CACHE/mnt/local-a'
export XIJI_TEST_POOL_GLUSTER='$GLUSTER_MNT'
export XIJI_TEST_POOL_TINY='$CACHE/mnt/tiny'
EOF
mv "$ROOT/.cache/storage-env.sh.tmp" "$ROOT/.cache/storage-env.sh"
log "ready; . .cache/storage-env.sh"
