//! The read-only folders of a spawn ([`SpawnSpec::mounts`](crate::SpawnSpec), e.g. datasets) in
//! every node of a cluster.
//!
//! - Each source is bind-mounted **read-only** at `/home/jovyan/{relative}` (Docker's mount API,
//!   so any path works: no `:` or `,` parsing as in `-v` strings). The kernel refuses every
//!   write there, for root in the node too: "Read-only file system".
//! - The folders between `/home/jovyan` and each mount point (`datasets/`,
//!   `datasets/alice/`) are made by the node files' archive before the node starts, owned by
//!   jovyan with mode 0755, so jovyan lists them (Docker would make missing ones as root) and
//!   may add folders of its own beside the mounts.
//! - A mount point may not be the work directory ([`WORK_MOUNT`]) or inside it: that folder is
//!   the user's files on the host, and a mount point in it would be made there by root.

use bollard::models::MountTypeEnum;
use bollard::models::{Mount as DockerMount, MountBindOptions, MountBindOptionsPropagationEnum};

use super::WORK_MOUNT;
use crate::{check_mounts, Mount, SpawnerError};

/// The node user's home, under which every mount point is.
pub const NODE_HOME: &str = "/home/jovyan";

/// Where `mount` appears inside every node: `/home/jovyan/{relative}`.
pub fn node_path(mount: &Mount) -> String {
    format!("{NODE_HOME}/{}", mount.relative)
}

/// Checks a spec's mounts for this backend: [`check_mounts`], a source Docker can be given (UTF-8)
/// and no mount point at or inside the work directory.
pub(crate) fn check(mounts: &[Mount]) -> Result<(), SpawnerError> {
    check_mounts(mounts)?;
    for mount in mounts {
        if mount.source.to_str().is_none() {
            return Err(SpawnerError::InvalidSpec(format!(
                "the folder {} to mount at {:?} has a name that is not UTF-8",
                mount.source.display(),
                mount.relative
            )));
        }
        let target = node_path(mount);
        if target == WORK_MOUNT || target.starts_with(&format!("{WORK_MOUNT}/")) {
            return Err(SpawnerError::InvalidSpec(format!(
                "the mount point {:?} is in the work directory {WORK_MOUNT}: choose another place",
                mount.relative
            )));
        }
    }
    Ok(())
}

/// The read-only bind mounts of a node, one per mount.
pub(super) fn read_only_binds(mounts: &[Mount]) -> Vec<DockerMount> {
    mounts
        .iter()
        .map(|mount| DockerMount {
            target: Some(node_path(mount)),
            source: Some(mount.source.to_string_lossy().into_owned()),
            typ: Some(MountTypeEnum::BIND),
            read_only: Some(true),
            bind_options: Some(MountBindOptions {
                propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect()
}

/// The folders between `/home/jovyan` and each mount point, relative to `/` with a trailing
/// `/` as the node files' archive names them, parents first, each once: for
/// `datasets/alice/mnist`, `home/jovyan/datasets/` and `home/jovyan/datasets/alice/`.
pub(super) fn parent_folders(mounts: &[Mount]) -> Vec<String> {
    let home = NODE_HOME.trim_start_matches('/');
    let mut folders: Vec<String> = Vec::new();
    for mount in mounts {
        let parts: Vec<&str> = mount.relative.split('/').collect();
        for depth in 1..parts.len() {
            let folder = format!("{home}/{}/", parts[..depth].join("/"));
            if !folders.contains(&folder) {
                folders.push(folder);
            }
        }
    }
    // A parent's path is a prefix of its children's, so it sorts before them.
    folders.sort();
    folders
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(source: &std::path::Path, relative: &str) -> Mount {
        Mount {
            source: source.to_path_buf(),
            relative: relative.to_owned(),
        }
    }

    #[test]
    fn every_mount_is_a_read_only_bind_under_the_home_of_jovyan() {
        let binds = read_only_binds(&[
            mount(
                std::path::Path::new("/srv/pool:1/datasets/7/files"),
                "datasets/alice/mnist",
            ),
            mount(
                std::path::Path::new("/srv/pool/datasets/8/files"),
                "datasets/王/数据",
            ),
        ]);
        assert_eq!(binds.len(), 2);
        assert_eq!(
            binds[0].target.as_deref(),
            Some("/home/jovyan/datasets/alice/mnist")
        );
        assert_eq!(
            binds[0].source.as_deref(),
            Some("/srv/pool:1/datasets/7/files")
        );
        assert_eq!(
            binds[1].target.as_deref(),
            Some("/home/jovyan/datasets/王/数据")
        );
        for bind in &binds {
            assert_eq!(bind.typ, Some(MountTypeEnum::BIND));
            assert_eq!(bind.read_only, Some(true));
        }
        // As the engine receives them.
        let json = serde_json::to_value(&binds[0]).unwrap();
        assert_eq!(json["Type"], "bind");
        assert_eq!(json["ReadOnly"], true);
        assert_eq!(json["Target"], "/home/jovyan/datasets/alice/mnist");
        assert_eq!(json["BindOptions"]["Propagation"], "rprivate");
    }

    #[test]
    fn the_folders_above_the_mount_points_are_made_once_parents_first() {
        let dir = std::path::Path::new("/srv/x");
        let folders = parent_folders(&[
            mount(dir, "datasets/bob/b"),
            mount(dir, "datasets/alice/a"),
            mount(dir, "datasets/alice/c"),
            mount(dir, "top"),
        ]);
        assert_eq!(
            folders,
            [
                "home/jovyan/datasets/",
                "home/jovyan/datasets/alice/",
                "home/jovyan/datasets/bob/",
            ]
        );
        assert!(parent_folders(&[]).is_empty());
    }

    #[test]
    fn a_mount_point_may_not_be_in_the_work_directory() {
        let dir = tempfile::tempdir().unwrap();
        for relative in ["work", "work/datasets/a/b"] {
            match check(&[mount(dir.path(), relative)]) {
                Err(SpawnerError::InvalidSpec(message)) => {
                    assert!(message.contains("work directory"), "{message}");
                }
                other => panic!("{relative}: {other:?}"),
            }
        }
        assert!(check(&[mount(dir.path(), "workspace/a")]).is_ok());
        assert!(check(&[mount(dir.path(), "datasets/alice/mnist")]).is_ok());
        // The shared checks apply too.
        assert!(check(&[mount(dir.path(), "../etc")]).is_err());
        assert!(check(&[mount(&dir.path().join("missing"), "datasets/a/b")]).is_err());
    }
}
