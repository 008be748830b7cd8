//! A project's folder as the API shows it: listings read from the filesystem (folders first,
//! then files, by name) and downloads, never leaving the folder: symbolic links are shown as
//! links and followed only when they resolve inside it.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::Stream;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use super::{projects, HubError, HubResult, Services};
use crate::clock;
use crate::db::ProjectRow;

/// Largest page of a listing.
pub const MAX_PAGE: usize = 1000;

/// One entry of a folder.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Its path in the project (`/`-separated).
    pub path: String,
    /// `folder`, `file` or `link`.
    pub kind: &'static str,
    /// Bytes (files; 0 otherwise).
    pub size: u64,
    /// Last modification, ISO 8601 UTC.
    pub modified: String,
    /// A link's target, as written.
    pub target: Option<String>,
}

/// A page of a folder.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// The folder (`""`: the top).
    pub path: String,
    /// Its entries.
    pub items: Vec<Entry>,
    /// All its entries.
    pub total: usize,
    /// Entries skipped.
    pub offset: usize,
    /// Page size.
    pub limit: usize,
}

fn bad_path(path: &str, why: &str) -> HubError {
    HubError::BadRequest(format!("The path {path:?} is refused: {why}"))
}

/// A path of the project, checked: `/`-separated names, no `.`, `..` or control characters.
fn components(path: &str) -> HubResult<Vec<&str>> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for name in trimmed.split('/') {
        match name {
            "" => return Err(bad_path(path, "it has an empty name")),
            "." | ".." => return Err(bad_path(path, "it contains \".\" or \"..\"")),
            _ if name.chars().any(char::is_control) => {
                return Err(bad_path(path, "it contains a control character"))
            }
            _ => out.push(name),
        }
    }
    Ok(out)
}

/// Where `path` leads inside the project's folder, following links only while they stay in
/// it: `(root, the real path)`.
async fn resolve(hub: &Services, project: &ProjectRow, path: &str) -> HubResult<PathBuf> {
    let root = projects::dir_of(hub, project).await?;
    let mut full = root.clone();
    for name in components(path)? {
        full.push(name);
    }
    let real_root = tokio::fs::canonicalize(&root)
        .await
        .map_err(|e| HubError::Internal(format!("reading a project's folder: {e}")))?;
    let real = match tokio::fs::canonicalize(&full).await {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(HubError::NotFound(format!(
                "No file or folder {path:?} in {}/{}",
                project.owner, project.name
            )))
        }
        Err(e) => return Err(HubError::Internal(format!("reading {path:?}: {e}"))),
    };
    if !real.starts_with(&real_root) {
        return Err(bad_path(
            path,
            "it is a symbolic link (or goes through one) pointing outside the project",
        ));
    }
    Ok(real)
}

fn modified(meta: &std::fs::Metadata) -> String {
    let micros = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    clock::iso(micros)
}

/// A page of the folder `path`: folders first, then files and links, each by name.
pub async fn tree(
    hub: &Services,
    project: &ProjectRow,
    path: &str,
    offset: usize,
    limit: usize,
) -> HubResult<Page> {
    let dir = resolve(hub, project, path).await?;
    let prefix = components(path)?.join("/");
    let shown = prefix.clone();
    let listed = tokio::task::spawn_blocking(move || list(&dir, &prefix))
        .await
        .map_err(|e| HubError::Internal(format!("listing a project's folder: {e}")))??;
    let total = listed.len();
    let items = listed.into_iter().skip(offset).take(limit).collect();
    Ok(Page {
        path: shown,
        items,
        total,
        offset,
        limit,
    })
}

fn list(dir: &Path, prefix: &str) -> HubResult<Vec<Entry>> {
    let meta = std::fs::metadata(dir).map_err(|e| HubError::Internal(e.to_string()))?;
    if !meta.is_dir() {
        return Err(HubError::BadRequest(format!(
            "{prefix:?} is a file, not a folder"
        )));
    }
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| HubError::Internal(format!("listing a project's folder: {e}")))?;
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        let ft = meta.file_type();
        let (kind, size, target) = if ft.is_symlink() {
            let target = std::fs::read_link(entry.path())
                .ok()
                .map(|t| t.to_string_lossy().into_owned());
            ("link", 0, target)
        } else if ft.is_dir() {
            ("folder", 0, None)
        } else {
            ("file", meta.len(), None)
        };
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        out.push(Entry {
            name,
            path,
            kind,
            size,
            modified: modified(&meta),
            target,
        });
    }
    out.sort_by(|a, b| {
        (a.kind != "folder")
            .cmp(&(b.kind != "folder"))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}

/// A file of the project to download: its name, size and content as a stream.
pub async fn download(
    hub: &Services,
    project: &ProjectRow,
    path: &str,
) -> HubResult<(String, u64, impl Stream<Item = std::io::Result<Bytes>>)> {
    let real = resolve(hub, project, path).await?;
    let file = tokio::fs::File::open(&real)
        .await
        .map_err(|e| HubError::Internal(format!("opening {path:?}: {e}")))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| HubError::Internal(format!("reading {path:?}: {e}")))?;
    if !meta.is_file() {
        return Err(HubError::BadRequest(format!(
            "{path:?} is a folder: download its files one by one"
        )));
    }
    let name = components(path)?
        .last()
        .copied()
        .unwrap_or("file")
        .to_owned();
    let stream = futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 256 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    });
    Ok((name, meta.len(), stream))
}

/// `path` below the project's folder `root` with every folder on the way a real folder (not a
/// link) or not there yet, so that writing there cannot leave the project; `None` for the last
/// name when it is free, `Some(kind)` when something is there.
fn place_in(root: &Path, path: &str) -> HubResult<(PathBuf, Option<&'static str>)> {
    let names = components(path)?;
    if names.is_empty() {
        return Err(bad_path(path, "it names the project's folder itself"));
    }
    let mut full = root.to_path_buf();
    let last = names.len() - 1;
    for (i, name) in names.into_iter().enumerate() {
        full.push(name);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Nothing further down exists either.
                return Ok((root.join(components(path)?.join("/")), None));
            }
            Err(e) => return Err(HubError::Internal(format!("reading {path:?}: {e}"))),
        };
        let ft = meta.file_type();
        if i == last {
            let kind = if ft.is_symlink() {
                "link"
            } else if ft.is_dir() {
                "folder"
            } else {
                "file"
            };
            return Ok((full, Some(kind)));
        }
        if !ft.is_dir() || ft.is_symlink() {
            return Err(HubError::Conflict(format!(
                "{path:?} cannot be written: {:?} is a {} of the project, not a folder",
                full.strip_prefix(root).unwrap_or(&full).display(),
                if ft.is_symlink() { "link" } else { "file" }
            )));
        }
    }
    Ok((full, None))
}

/// Where a new file or folder `path` of the project goes: 409 when something is there already
/// or a folder on the way is a file or a link.
pub fn free_place(root: &Path, path: &str) -> HubResult<PathBuf> {
    match place_in(root, path)? {
        (full, None) => Ok(full),
        (_, Some(kind)) => Err(HubError::Conflict(format!(
            "{path:?} exists already in the project (a {kind}): delete or rename it first"
        ))),
    }
}

/// An existing file, folder or link `path` of the project (a link itself, not what it points
/// to); 404 when there is none.
fn existing_place(root: &Path, project: &ProjectRow, path: &str) -> HubResult<(PathBuf, bool)> {
    match place_in(root, path)? {
        (full, Some(kind)) => Ok((full, kind == "folder")),
        (_, None) => Err(HubError::NotFound(format!(
            "No file or folder {path:?} in {}/{}",
            project.owner, project.name
        ))),
    }
}

/// Deletes a file, a link or a whole folder of the project.
pub async fn delete(hub: &Services, project: &ProjectRow, path: &str) -> HubResult<()> {
    super::project_forks::ensure_copied(hub, project).await?;
    let root = projects::dir_of(hub, project).await?;
    let (full, folder) = existing_place(&root, project, path)?;
    let removed = if folder {
        tokio::fs::remove_dir_all(&full).await
    } else {
        tokio::fs::remove_file(&full).await
    };
    removed.map_err(|e| HubError::Internal(format!("deleting {path:?}: {e}")))?;
    tracing::info!(
        project.id = project.id,
        path,
        folder,
        "project files deleted"
    );
    Ok(())
}

/// Renames or moves a file, link or folder of the project to a free path; both as answered.
pub async fn move_path(
    hub: &Services,
    project: &ProjectRow,
    from: &str,
    to: &str,
) -> HubResult<(String, String)> {
    super::project_forks::ensure_copied(hub, project).await?;
    let root = projects::dir_of(hub, project).await?;
    let (from_full, _) = existing_place(&root, project, from)?;
    let (from, to) = (components(from)?.join("/"), components(to)?.join("/"));
    if to.starts_with(&format!("{from}/")) {
        return Err(HubError::BadRequest(format!(
            "{from:?} cannot move into itself ({to:?})"
        )));
    }
    let to_full = free_place(&root, &to)?;
    if let Some(parent) = to_full.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| HubError::Internal(format!("creating the folders of {to:?}: {e}")))?;
    }
    tokio::fs::rename(&from_full, &to_full)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidFilename => HubError::BadRequest(format!(
                "{to:?} is too long a name for the storage pool's filesystem; shorten it"
            )),
            _ => HubError::Internal(format!("moving {from:?} to {to:?}: {e}")),
        })?;
    // The folders the move made are the nodes' user's, like the rest.
    if let Some(parent) = to_full.parent() {
        hand_over(hub, &root, parent, false).await;
    }
    tracing::info!(project.id = project.id, from = %from, to = %to, "project files moved");
    Ok((from, to))
}

/// Gives `path` inside a project's folder `root` — and everything below it with `below` — and
/// the folders above it up to `root` to the user the project's servers run as (the spawner's
/// `work_owner`, e.g. jovyan in containers), so that JupyterLab on its nodes can change, save and
/// rename what the hub wrote (an upload, a folder a move made, an import) and write beside it.
/// Nothing to do when the servers run as the hub's user. A failure (a hub that may not change
/// owners) is logged; the files stay as they are.
pub async fn hand_over(hub: &Services, root: &Path, path: &Path, below: bool) {
    let Some(uid) = hub.spawner.capabilities().work_owner else {
        return;
    };
    let (root, start) = (root.to_path_buf(), path.to_path_buf());
    let done = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if below {
            give_tree(&start, uid)?;
        }
        let mut at = Some(start.as_path());
        while let Some(p) = at.filter(|p| p.starts_with(&root) && *p != root) {
            std::os::unix::fs::lchown(p, Some(uid), Some(uid))?;
            at = p.parent();
        }
        Ok(())
    })
    .await;
    if let Ok(Err(e)) | Err(e) = done.map_err(std::io::Error::other) {
        tracing::warn!(path = %path.display(), uid, error = %e, "cannot hand project files to the servers' user");
    }
}

/// `lchown`s everything below `dir` (links themselves, never what they point to).
fn give_tree(dir: &Path, uid: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        std::os::unix::fs::lchown(&p, Some(uid), Some(uid))?;
        if entry.file_type()?.is_dir() {
            give_tree(&p, uid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn a_tree_is_given_away_links_themselves_and_never_what_they_point_to() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("NOT RUN: changing owners needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, b"keep").unwrap();
        let tree = dir.path().join("files");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/c.txt"), b"c").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/link")).unwrap();
        give_tree(&tree, 1000).unwrap();
        for p in ["a", "a/b", "a/b/c.txt", "a/link"] {
            let meta = std::fs::symlink_metadata(tree.join(p)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (1000, 1000), "{p}");
        }
        assert_eq!(std::fs::metadata(&outside).unwrap().uid(), 0);
    }
}
