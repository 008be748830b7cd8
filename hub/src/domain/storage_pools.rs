//! Storage pools: the mounted filesystems that hold users' work directories, datasets and
//! projects.
//!
//! An administrator adds a pool online by path and declared filesystem type. The hub checks that
//! the path is a directory on a mount of that type (`statfs`'s magic number, and for FUSE the
//! mount's subtype in `/proc/self/mountinfo`: a GlusterFS volume is `fuse.glusterfs`), that it can
//! write there, and that it is neither inside another pool nor holds one. New data goes to the
//! active pool with the most free space ([`place`]); the placement is recorded, so data is always
//! found where it was put, and a pool that holds placements cannot be removed. A draining pool
//! keeps what it holds and takes nothing new.
//!
//! Sizes: a pool's size is its filesystem's, or its cap when one is set; its free space is the
//! filesystem's space available to the hub, and with a cap no more than the cap less what the
//! pool's folder holds (counted by walking it, so only capped pools are walked).
//!
//! At the first start the hub adds one `local` pool, `default`, at `{data_dir}/storage`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::statfs::{statfs, FUSE_SUPER_MAGIC, NFS_SUPER_MAGIC};
use nix::sys::statvfs::statvfs;

use super::{HubError, HubResult, Services};
use crate::clock;
use crate::db::{
    NewPool, PlacementKind, PlacementRow, PoolRemoval, PoolRow, PoolState, PoolType, Store, UserRow,
};

/// The name of the pool the hub adds at its first start.
pub const DEFAULT_POOL: &str = "default";

/// Longest pool name.
const MAX_NAME_LEN: usize = 64;

/// Filesystem types (mountinfo's word) that are not on this machine.
const NETWORK_TYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "9p",
    "lustre",
    "gpfs",
    "afs",
    "glusterfs",
];

/// An administrator's request to add a pool.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRequest {
    /// Unique name: letters, digits, `-`, `_`, `.`.
    pub name: Option<String>,
    /// Absolute path of a directory on the mounted filesystem.
    pub path: Option<String>,
    /// `local`, `nfs` or `glusterfs`.
    pub fs_type: Option<String>,
    /// Optional cap in bytes.
    pub capacity_bytes: Option<i64>,
}

/// An administrator's change of a pool: its state, its cap (`Some(None)` removes it).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolChange {
    /// `active` or `draining`.
    pub state: Option<String>,
    /// A new cap in bytes, or `null` for none.
    #[serde(default, with = "serde_with_null")]
    pub capacity_bytes: Option<Option<i64>>,
}

/// `Option<Option<T>>` from JSON: absent → `None`, `null` → `Some(None)`.
mod serde_with_null {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// What a pool's filesystem is, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MountFacts {
    /// The mount point that holds the path.
    pub mount_point: String,
    /// The filesystem type as mounted (`ext4`, `tmpfs`, `fuse.glusterfs`, `nfs4`…).
    pub mounted_type: String,
    /// What was mounted (a device, `server:/volume`…).
    pub source: String,
}

/// A pool's sizes and contents, for the administrator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PoolUsage {
    /// The pool's size: its filesystem's, or its cap.
    pub size_bytes: u64,
    /// What is used: of the filesystem (no cap), or what the pool's folder holds (with a cap).
    pub used_bytes: u64,
    /// What new data may still take.
    pub free_bytes: u64,
    /// The filesystem's size.
    pub filesystem_size_bytes: u64,
    /// The filesystem's space available to the hub.
    pub filesystem_free_bytes: u64,
    /// The mount as found now; `None` when the path is gone or unreadable.
    pub mount: Option<MountFacts>,
    /// Why the pool cannot be used now (unmounted, wrong type), if so.
    pub problem: Option<String>,
}

/// Checks a pool name.
fn check_name(name: &str) -> HubResult<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(HubError::BadRequest(format!(
            "Invalid pool name {name:?}: use 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', \
             not starting with '.' or '-'"
        )))
    }
}

/// Unescapes a mountinfo field (`\040` is a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(b) = octal.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path` (canonical): the longest mount point that is an ancestor.
fn mount_of(path: &Path) -> std::io::Result<Option<MountFacts>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut best: Option<MountFacts> = None;
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4).map(unescape_mountinfo) else {
            continue;
        };
        let mut right = right.split(' ');
        let (Some(fs_type), Some(source)) = (right.next(), right.next()) else {
            continue;
        };
        if !path.starts_with(&mount_point) {
            continue;
        }
        // A later mount on the same point hides an earlier one: `>=` keeps the last.
        if best
            .as_ref()
            .is_none_or(|b| mount_point.len() >= b.mount_point.len())
        {
            best = Some(MountFacts {
                mount_point,
                mounted_type: fs_type.to_owned(),
                source: unescape_mountinfo(source),
            });
        }
    }
    Ok(best)
}

/// Whether the filesystem holding `path` is of the declared type; the facts, or a message that
/// says what is mounted there instead.
fn check_type(path: &Path, declared: PoolType) -> Result<MountFacts, String> {
    let stat = statfs(path)
        .map_err(|e| format!("cannot read the filesystem of {}: {e}", path.display()))?;
    let magic = stat.filesystem_type();
    let facts = mount_of(path)
        .map_err(|e| format!("cannot read the mount table: {e}"))?
        .ok_or_else(|| format!("{} is on no mounted filesystem", path.display()))?;
    let mounted = facts.mounted_type.as_str();
    let fits = match declared {
        PoolType::Nfs => magic == NFS_SUPER_MAGIC || mounted.starts_with("nfs"),
        PoolType::Glusterfs => magic == FUSE_SUPER_MAGIC && mounted == "fuse.glusterfs",
        PoolType::Local => {
            magic != NFS_SUPER_MAGIC
                && !NETWORK_TYPES.contains(&mounted)
                && !(magic == FUSE_SUPER_MAGIC && mounted != "fuse")
        }
    };
    if fits {
        return Ok(facts);
    }
    let wanted = match declared {
        PoolType::Nfs => "an NFS mount",
        PoolType::Glusterfs => "a GlusterFS volume mounted with mount -t glusterfs",
        PoolType::Local => "a filesystem of this machine",
    };
    Err(format!(
        "{} is on {} mounted at {} (type {}), not {wanted}: mount the filesystem there first, or \
         declare its type",
        path.display(),
        facts.source,
        facts.mount_point,
        facts.mounted_type
    ))
}

/// Writes, reads back and removes a file in `dir`.
fn check_writable(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(
        ".xiji-write-check-{}",
        super::tokens::random_hex(6)
    ));
    let result = std::fs::write(&probe, b"xiji").and_then(|()| std::fs::read(&probe));
    let _ = std::fs::remove_file(&probe);
    match result {
        Ok(read) if read == b"xiji" => Ok(()),
        Ok(_) => Err(format!("{} does not keep what is written", dir.display())),
        Err(e) => Err(format!("the hub cannot write in {}: {e}", dir.display())),
    }
}

/// The bytes a folder's files take on disk (symbolic links not followed; one filesystem).
fn disk_usage(dir: &Path) -> u64 {
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let device = top.dev();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() && meta.dev() == device {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// A pool's sizes, read now (walks the pool's folder only when it has a cap).
pub fn usage(pool: &PoolRow) -> PoolUsage {
    let path = Path::new(&pool.path);
    let cap = pool.capacity_bytes.and_then(|c| u64::try_from(c).ok());
    let (fs_size, fs_free) = match statvfs(path) {
        Ok(s) => {
            let unit = s.fragment_size();
            (
                s.blocks().saturating_mul(unit),
                s.blocks_available().saturating_mul(unit),
            )
        }
        Err(_) => (0, 0),
    };
    let problem = if !path.is_dir() {
        Some(format!("{} is missing or not a directory", pool.path))
    } else {
        check_type(path, pool.fs_type).err()
    };
    let mount = mount_of(path).ok().flatten();
    let (size, used, free) = match cap {
        Some(cap) => {
            let used = disk_usage(path);
            let size = cap.min(fs_size);
            (size, used, fs_free.min(size.saturating_sub(used)))
        }
        None => {
            let fs_used = match statvfs(path) {
                Ok(s) => s
                    .blocks()
                    .saturating_sub(s.blocks_free())
                    .saturating_mul(s.fragment_size()),
                Err(_) => 0,
            };
            (fs_size, fs_used, fs_free)
        }
    };
    PoolUsage {
        size_bytes: size,
        used_bytes: used,
        free_bytes: if problem.is_some() { 0 } else { free },
        filesystem_size_bytes: fs_size,
        filesystem_free_bytes: fs_free,
        mount,
        problem,
    }
}

/// [`usage`] off the async runtime (it reads the disk).
pub async fn usage_of(pool: &PoolRow) -> PoolUsage {
    let pool = pool.clone();
    let fallback = PoolUsage {
        size_bytes: 0,
        used_bytes: 0,
        free_bytes: 0,
        filesystem_size_bytes: 0,
        filesystem_free_bytes: 0,
        mount: None,
        problem: Some("the size could not be read".into()),
    };
    tokio::task::spawn_blocking(move || usage(&pool))
        .await
        .unwrap_or(fallback)
}

/// A pool by id, or a 404.
pub async fn pool_or_404(store: &Store, id: i64) -> HubResult<PoolRow> {
    store
        .pool(id)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No storage pool {id}")))
}

/// Adds a pool after checking its name, path, mount type and that the hub can write there.
pub async fn add(hub: &Services, request: PoolRequest) -> HubResult<PoolRow> {
    let name = request.name.unwrap_or_default().trim().to_owned();
    check_name(&name)?;
    let fs_type = PoolType::parse(request.fs_type.as_deref().unwrap_or_default().trim())
        .map_err(HubError::BadRequest)?;
    let capacity = check_capacity(request.capacity_bytes)?;
    let given = request.path.unwrap_or_default();
    let given = given.trim();
    if given.is_empty() || !Path::new(given).is_absolute() || given.contains('\0') {
        return Err(HubError::BadRequest(format!(
            "The pool's path must be an absolute path, e.g. /mnt/pool1 (got {given:?})"
        )));
    }
    let existing = hub.store.list_pools().await?;
    let path = prepare_path(PathBuf::from(given), fs_type, existing).await?;
    let new = NewPool {
        name,
        path,
        fs_type,
        capacity_bytes: capacity,
    };
    match hub.store.create_pool(&new, clock::now()).await {
        Ok(row) => {
            tracing::info!(pool.id = row.id, pool.name = %row.name, pool.path = %row.path, pool.fs_type = %row.fs_type, "storage pool added");
            Ok(row)
        }
        Err(crate::db::DbError::Conflict) => Err(HubError::Conflict(format!(
            "A storage pool named {:?} or at {} exists already",
            new.name, new.path
        ))),
        Err(e) => Err(e.into()),
    }
}

fn check_capacity(capacity: Option<i64>) -> HubResult<Option<i64>> {
    match capacity {
        Some(c) if c < 1024 * 1024 => Err(HubError::BadRequest(format!(
            "A pool's capacity must be at least 1 MiB (1048576 bytes), got {c}"
        ))),
        other => Ok(other),
    }
}

/// Canonicalises a pool's path and checks it (off the async runtime: it touches the disk).
async fn prepare_path(
    path: PathBuf,
    fs_type: PoolType,
    existing: Vec<PoolRow>,
) -> HubResult<String> {
    tokio::task::spawn_blocking(move || {
        let meta = std::fs::metadata(&path).map_err(|e| {
            HubError::BadRequest(format!(
                "{} cannot be used: {e}; mount the filesystem and create the folder first",
                path.display()
            ))
        })?;
        if !meta.is_dir() {
            return Err(HubError::BadRequest(format!(
                "{} is not a directory",
                path.display()
            )));
        }
        let canonical = std::fs::canonicalize(&path).map_err(|e| {
            HubError::BadRequest(format!("{} cannot be resolved: {e}", path.display()))
        })?;
        if canonical
            .components()
            .any(|c| matches!(c, Component::ParentDir))
        {
            return Err(HubError::BadRequest(format!(
                "{} cannot be resolved to a plain path",
                path.display()
            )));
        }
        for pool in &existing {
            let other = Path::new(&pool.path);
            if canonical == other {
                return Err(HubError::Conflict(format!(
                    "{} is the pool {:?} already",
                    canonical.display(),
                    pool.name
                )));
            }
            if canonical.starts_with(other) {
                return Err(HubError::BadRequest(format!(
                    "{} is inside the pool {:?} ({}); pools cannot nest",
                    canonical.display(),
                    pool.name,
                    pool.path
                )));
            }
            if other.starts_with(&canonical) {
                return Err(HubError::BadRequest(format!(
                    "The pool {:?} ({}) is inside {}; pools cannot nest",
                    pool.name,
                    pool.path,
                    canonical.display()
                )));
            }
        }
        check_type(&canonical, fs_type).map_err(HubError::BadRequest)?;
        check_writable(&canonical).map_err(HubError::BadRequest)?;
        canonical
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| HubError::BadRequest("The pool's path must be UTF-8".into()))
    })
    .await
    .map_err(|e| HubError::Spawner(format!("pool check failed: {e}")))?
}

/// Changes a pool's state or cap.
pub async fn change(hub: &Services, id: i64, change: PoolChange) -> HubResult<PoolRow> {
    let pool = pool_or_404(&hub.store, id).await?;
    let state = match change.state.as_deref() {
        Some(word) => PoolState::parse(word.trim()).map_err(HubError::BadRequest)?,
        None => pool.state,
    };
    let capacity = match change.capacity_bytes {
        Some(c) => check_capacity(c)?,
        None => pool.capacity_bytes,
    };
    let row = hub
        .store
        .update_pool(id, state, capacity, clock::now())
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No storage pool {id}")))?;
    tracing::info!(pool.id = id, pool.name = %row.name, pool.state = %row.state, pool.capacity_bytes = ?row.capacity_bytes, "storage pool changed");
    Ok(row)
}

/// Removes a pool that holds nothing (its files stay on disk).
pub async fn remove(hub: &Services, id: i64) -> HubResult<()> {
    let pool = pool_or_404(&hub.store, id).await?;
    match hub.store.delete_empty_pool(id).await? {
        PoolRemoval::Removed => {
            tracing::info!(pool.id = id, pool.name = %pool.name, "storage pool removed");
            Ok(())
        }
        PoolRemoval::NotEmpty(n) => Err(HubError::Conflict(format!(
            "The pool {:?} still holds {n} stored item(s); drain it and move or delete them first",
            pool.name
        ))),
        PoolRemoval::Missing => Err(HubError::NotFound(format!("No storage pool {id}"))),
    }
}

/// Counts of what is placed on a pool, by kind.
pub async fn contents(store: &Store, pool_id: i64) -> HubResult<BTreeMap<&'static str, usize>> {
    let mut counts = BTreeMap::new();
    for p in store.placements_on(pool_id).await? {
        *counts.entry(p.kind.as_str()).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Where a stored thing lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The pool.
    pub pool: PoolRow,
    /// The placement.
    pub placement: PlacementRow,
    /// `{pool path}/{relative path}`, created.
    pub dir: PathBuf,
}

/// The folder of `kind`/`owner_key`: where it was placed, or, the first time, `{kind}/{folder}`
/// on the active pool with the most free space (recorded; created on disk).
/// 507 when no pool can take it.
pub async fn place(
    hub: &Services,
    kind: PlacementKind,
    owner_key: &str,
    folder: &str,
) -> HubResult<Placed> {
    if let Some(placement) = hub.store.placement(kind, owner_key).await? {
        return placed(hub, placement).await;
    }
    let pool = freest_pool(&hub.store).await?;
    let relative = format!("{kind}/{folder}");
    let placement = hub
        .store
        .create_placement(pool.id, kind, owner_key, &relative, clock::now())
        .await?;
    tracing::info!(pool.name = %pool.name, placement.kind = %kind, placement.key = owner_key, placement.path = %placement.relative_path, "placed on a storage pool");
    placed(hub, placement).await
}

async fn placed(hub: &Services, placement: PlacementRow) -> HubResult<Placed> {
    let pool = pool_or_404(&hub.store, placement.pool_id).await?;
    let dir = Path::new(&pool.path).join(&placement.relative_path);
    let create = dir.clone();
    tokio::task::spawn_blocking(move || std::fs::create_dir_all(&create))
        .await
        .map_err(|e| HubError::Spawner(format!("creating a folder failed: {e}")))?
        .map_err(|e| {
            HubError::InsufficientStorage(format!(
                "The storage pool {:?} cannot take data now ({e}); ask an administrator to check it",
                pool.name
            ))
        })?;
    Ok(Placed {
        pool,
        placement,
        dir,
    })
}

/// The active pool with the most free space (ties: the oldest), or a 507 that says why none.
pub async fn freest_pool(store: &Store) -> HubResult<PoolRow> {
    let pools = store.list_pools().await?;
    let mut best: Option<(u64, PoolRow)> = None;
    for pool in pools.into_iter().filter(|p| p.state == PoolState::Active) {
        let free = usage_of(&pool).await.free_bytes;
        let better = best
            .as_ref()
            .is_none_or(|(f, b)| free > *f || (free == *f && pool.id < b.id));
        if better {
            best = Some((free, pool));
        }
    }
    match best {
        Some((free, pool)) if free > 0 => Ok(pool),
        Some(_) => Err(HubError::InsufficientStorage(
            "Every active storage pool is full; ask an administrator to add space".into(),
        )),
        None => Err(HubError::InsufficientStorage(
            "No storage pool takes new data (none is active); ask an administrator to add one"
                .into(),
        )),
    }
}

/// At start-up: with no pool at all, adds [`DEFAULT_POOL`], a pool at `{data_dir}/storage`
/// declared with the type it is mounted with.
pub async fn ensure_default(store: &Store, data_dir: &Path) -> HubResult<()> {
    if !store.list_pools().await?.is_empty() {
        return Ok(());
    }
    let dir = data_dir.join("storage");
    let (path, fs_type) =
        tokio::task::spawn_blocking(move || -> Result<(String, PoolType), String> {
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let canonical = std::fs::canonicalize(&dir)
                .map_err(|e| format!("resolving {}: {e}", dir.display()))?;
            let fs_type = [PoolType::Local, PoolType::Glusterfs, PoolType::Nfs]
                .into_iter()
                .find(|t| check_type(&canonical, *t).is_ok())
                .unwrap_or(PoolType::Local);
            let path = canonical
                .to_str()
                .ok_or_else(|| format!("{} is not UTF-8", canonical.display()))?
                .to_owned();
            Ok((path, fs_type))
        })
        .await
        .map_err(|e| HubError::Spawner(e.to_string()))?
        .map_err(HubError::Spawner)?;
    let new = NewPool {
        name: DEFAULT_POOL.into(),
        path,
        fs_type,
        capacity_bytes: None,
    };
    match store.create_pool(&new, clock::now()).await {
        Ok(row) => {
            tracing::info!(pool.path = %row.path, pool.fs_type = %row.fs_type, "default storage pool added");
            Ok(())
        }
        // Another hub on the same database added it first.
        Err(crate::db::DbError::Conflict) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The key of a user's work directory placement.
fn work_key(user: &UserRow) -> String {
    format!("user:{}", user.id)
}

/// A user's work directory: where it was placed; else, when the backend already keeps one for
/// the user from before pools existed, `None` (the backend's default, so nothing is lost); else
/// a new folder on the freest pool.
pub async fn work_dir(hub: &Services, user: &UserRow) -> HubResult<Option<PathBuf>> {
    if hub
        .store
        .placement(PlacementKind::Work, &work_key(user))
        .await?
        .is_none()
    {
        if let Some(legacy) = hub.spawner.default_work_dir(&user.name) {
            if tokio::fs::try_exists(&legacy).await.unwrap_or(false) {
                return Ok(None);
            }
        }
    }
    let folder = format!(
        "{}-{}",
        user.id,
        super::save_image::user_component(&user.name)
    );
    let placed = place(hub, PlacementKind::Work, &work_key(user), &folder).await?;
    Ok(Some(placed.dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_are_plain_words() {
        assert!(check_name("fast-ssd_1.a").is_ok());
        for bad in ["", ".hidden", "-x", "a/b", "空间", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mountinfo_fields_are_unescaped() {
        assert_eq!(unescape_mountinfo(r"/mnt/my\040pool"), "/mnt/my pool");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\04"), r"/end\04");
    }

    #[test]
    fn the_root_filesystem_is_found_in_the_mount_table() {
        let facts = mount_of(Path::new("/")).unwrap().unwrap();
        assert_eq!(facts.mount_point, "/");
        assert!(!facts.mounted_type.is_empty());
    }

    #[test]
    fn a_local_folder_is_local_and_not_nfs_or_glusterfs() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap();
        check_type(&path, PoolType::Local).unwrap();
        let nfs = check_type(&path, PoolType::Nfs).unwrap_err();
        assert!(nfs.contains("not an NFS mount"), "{nfs}");
        let gluster = check_type(&path, PoolType::Glusterfs).unwrap_err();
        assert!(gluster.contains("not a GlusterFS volume"), "{gluster}");
        check_writable(&path).unwrap();
        assert!(
            std::fs::read_dir(&path).unwrap().next().is_none(),
            "the probe was removed"
        );
    }

    #[test]
    fn a_capped_pool_counts_what_its_folder_holds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 64 * 1024]).unwrap();
        let pool = PoolRow {
            id: 1,
            name: "t".into(),
            path: std::fs::canonicalize(dir.path())
                .unwrap()
                .display()
                .to_string(),
            fs_type: PoolType::Local,
            capacity_bytes: Some(1024 * 1024),
            state: PoolState::Active,
            created: 0,
            updated: 0,
        };
        let u = usage(&pool);
        assert!(u.used_bytes >= 64 * 1024, "{u:?}");
        assert_eq!(u.size_bytes, 1024 * 1024);
        assert_eq!(u.free_bytes, 1024 * 1024 - u.used_bytes);
        assert_eq!(u.problem, None);
    }
}
