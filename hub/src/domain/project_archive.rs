//! A project as one archive (`.tar.zst`): the format, its writer (export) and its reader
//! (import). The reader refuses, before anything is kept, whatever could write outside the
//! import's folder, make something else than files, folders and contained symbolic links, or
//! expand past the user's storage limit. The format is described in docs/projects-archive.md.
//!
//! ```text
//! project.json                  the manifest (Manifest), always the first entry
//! files/…                       the project's folder: files, folders, symbolic links inside it
//! datasets/{owner}/{name}/…     an included dataset's files (only when asked for)
//! ```
//!
//! Both directions stream: the writer reads one file at a time into the compressor, the reader
//! writes each entry as it is decompressed and counts the bytes while they arrive, never
//! holding a file (or the archive) in memory.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::HubError;
use crate::clock::Micros;

/// The manifest's `format`.
pub const FORMAT: &str = "xiji-project";
/// The one version of the format this hub writes and reads.
pub const VERSION: u64 = 1;
/// The manifest's name in the archive.
pub const MANIFEST_NAME: &str = "project.json";
/// Most entries an archive may hold (the manifest, files, folders, links).
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Largest manifest.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Longest path of an entry, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest name (one path component), in bytes: what Linux filesystems allow.
pub const MAX_NAME_BYTES: usize = 255;
/// Decompressed bytes an entry's headers may take (its header block, GNU long name and link
/// blocks, PAX records), beyond its content. Each path is at most 4 KiB, so a real entry stays
/// well below.
const HEADER_ALLOWANCE: u64 = 32 * 1024;
/// Bytes that may follow the end-of-archive blocks (zeros only: tar pads to its record size).
const TRAILING_MAX: u64 = 1 << 20;
/// zstd level of the export: fast, and most of a project's bytes are compressed already.
const ZSTD_LEVEL: i32 = 3;
/// Largest zstd window the reader accepts (2^27 = 128 MiB, zstd's own default bound).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Bytes copied at a time.
const COPY_BUFFER: usize = 1 << 20;

/// The first entry of every archive, `project.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u64,
    /// What the project is.
    pub project: ProjectMeta,
    /// Regular files in the archive (the project's and the included datasets').
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Manifest {
    /// The manifest of a project, counts left for the export to fill.
    pub fn new(project: ProjectMeta) -> Self {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            project,
            files: 0,
            bytes: 0,
        }
    }
}

/// A project's metadata, as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectMeta {
    /// Its name.
    pub name: String,
    /// Markdown.
    pub description: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// The image it runs on, if it has one.
    pub image: Option<ImageRef>,
    /// Who may see it.
    pub visibility: Visibility,
    /// The datasets it uses, by reference; `included` when their files are in the archive.
    pub datasets: Vec<DatasetRef>,
    /// When it was created.
    #[serde(with = "iso_time")]
    pub created: Micros,
    /// When the archive was made.
    #[serde(with = "iso_time")]
    pub exported_at: Micros,
    /// The hub that made it (its public URL).
    pub exported_from: String,
}

/// An image, by name and reference (the importing hub finds it again or asks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    /// Its name in the library.
    pub name: String,
    /// Its registry reference.
    pub reference: String,
}

/// A dataset a project uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRef {
    /// Its owner's name.
    pub owner: String,
    /// Its name.
    pub name: String,
    /// Whether its files are in the archive, under `datasets/{owner}/{name}/`.
    pub included: bool,
}

/// A project's visibility, as the archive spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Its owner and members only.
    Private,
    /// Every logged-in user.
    Public,
}

impl Visibility {
    /// The word.
    pub const fn as_str(self) -> &'static str {
        match self {
            Visibility::Private => "private",
            Visibility::Public => "public",
        }
    }
}

/// Timestamps as JupyterHub's ISO 8601 UTC with microseconds.
mod iso_time {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::clock::{iso, parse_iso, Micros};

    pub fn serialize<S: Serializer>(t: &Micros, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&iso(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Micros, D::Error> {
        let text = String::deserialize(d)?;
        parse_iso(&text)
            .ok_or_else(|| D::Error::custom(format!("{text:?} is not an ISO 8601 time")))
    }
}

/// Why an export or an import failed. Every variant but [`ArchiveError::Exists`] and
/// [`ArchiveError::Io`] is the archive's fault: a 400 whose message says what was refused.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Not a zstd-compressed tar, cut short, or otherwise unreadable.
    #[error("The file is not a project archive (.tar.zst) or it is damaged: {0}")]
    Damaged(String),
    /// The first entry is not `project.json` (or there is none).
    #[error(
        "The archive does not start with project.json ({0}): it is not a project archive \
         exported by Xiji"
    )]
    NoManifest(String),
    /// `project.json` is not JSON, not of this format, or not valid.
    #[error("The archive's project.json is not valid: {0}")]
    Manifest(String),
    /// A manifest of another version of the format.
    #[error(
        "The archive is version {0} of the project format; this hub reads version {VERSION} \
         only"
    )]
    UnknownVersion(u64),
    /// A path that is absolute, climbs out with `..`, is outside `files/` and the included
    /// datasets, or has a name that cannot be a file name.
    #[error("The archive's entry {path:?} is refused: {reason}")]
    UnsafePath {
        /// The entry's path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A symbolic link whose target is absolute or leaves the folder it is in.
    #[error("The archive's symbolic link {path:?} -> {target:?} is refused: {reason}")]
    UnsafeLink {
        /// The link.
        path: String,
        /// Its target.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry below a symbolic link of the archive.
    #[error(
        "The archive's entry {path:?} would be written through the symbolic link {link:?}: \
         refused"
    )]
    ThroughLink {
        /// The entry.
        path: String,
        /// The link on its way.
        link: String,
    },
    /// A hard link: archives never hold them.
    #[error(
        "The archive's entry {path:?} is a hard link (to {target:?}): project archives hold no \
         hard links"
    )]
    HardLink {
        /// The entry.
        path: String,
        /// What it links to.
        target: String,
    },
    /// A device, FIFO or another kind of entry that is not a file, folder or symbolic link.
    #[error(
        "The archive's entry {path:?} is a {kind}: project archives hold only files, folders \
         and symbolic links"
    )]
    SpecialFile {
        /// The entry.
        path: String,
        /// What it is.
        kind: String,
    },
    /// The same path twice (or a file where a folder is).
    #[error("The archive's entry {path:?} appears twice (or as both a file and a folder)")]
    Duplicate {
        /// The entry.
        path: String,
    },
    /// More bytes than the caller may store.
    #[error(
        "The archive expands to more than the {} you may still store; nothing was kept",
        super::datasets::human_bytes(i64::try_from(*limit).unwrap_or(i64::MAX))
    )]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// More entries than [`MAX_ENTRIES`].
    #[error("The archive holds more than {max} files, folders and links")]
    TooManyEntries {
        /// The most there may be.
        max: u64,
    },
    /// The archive's content does not match the manifest's counts.
    #[error(
        "The archive holds {files} files of {bytes} bytes but its project.json lists \
         {declared_files} files of {declared_bytes} bytes: it is truncated or was altered"
    )]
    Mismatch {
        /// Files the manifest lists.
        declared_files: u64,
        /// Bytes the manifest lists.
        declared_bytes: u64,
        /// Files read (at least, when refused on the way).
        files: u64,
        /// Bytes read (at least, when refused on the way).
        bytes: u64,
    },
    /// The import's destination exists already (the caller's mistake).
    #[error("the import's destination {0} exists already")]
    Exists(PathBuf),
    /// Reading the project's files or writing the imported ones failed (the hub's side).
    #[error("reading or writing a project's files failed: {0}")]
    Io(#[from] io::Error),
}

impl ArchiveError {
    /// Whether the archive (the client) is at fault: a 400. Otherwise the hub failed.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, ArchiveError::Exists(_) | ArchiveError::Io(_))
    }
}

impl From<ArchiveError> for HubError {
    fn from(e: ArchiveError) -> Self {
        match &e {
            ArchiveError::Io(io)
                if matches!(io.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded) =>
            {
                HubError::InsufficientStorage("The storage pool is full".into())
            }
            _ if e.is_refusal() => HubError::BadRequest(e.to_string()),
            _ => HubError::Internal(e.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Names and link targets: one set of rules for both directions.

/// What is wrong with one name (a path component), if anything.
fn check_name(name: &str) -> Result<(), String> {
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "its name contains the control character U+{:04X}",
            u32::from(c)
        ));
    }
    match name {
        "" => Err("it has an empty name (two / in a row or a / at the end)".into()),
        "." => Err("it contains \".\"".into()),
        ".." => Err("it contains \"..\", which would climb out of the project".into()),
        _ if name.len() > MAX_NAME_BYTES => Err(format!(
            "a name in it is longer than {MAX_NAME_BYTES} bytes"
        )),
        _ => Ok(()),
    }
}

/// A dataset's owner or name as one safe path component.
fn check_dataset_names(owner: &str, name: &str) -> Result<(), String> {
    for word in [owner, name] {
        if word.contains('/') || check_name(word).is_err() {
            return Err(format!(
                "the dataset {owner:?}/{name:?} does not have a name that can be a folder"
            ));
        }
    }
    Ok(())
}

/// A symbolic link's target when it stays inside the folder the link's tree starts at:
/// relative, `../` only at the start, then names, and no more `../` than the folders above the
/// link (`depth`). With `tidy`, `.` and empty components are dropped first (export); without,
/// they are refused (import). Otherwise why not.
fn link_target(target: &str, depth: usize, tidy: bool) -> Result<String, String> {
    if target.is_empty() {
        return Err("its target is empty".into());
    }
    if target.starts_with('/') {
        return Err("its target is an absolute path; links may only point inside".into());
    }
    if let Some(c) = target.chars().find(|c| c.is_control()) {
        return Err(format!(
            "its target contains the control character U+{:04X}",
            u32::from(c)
        ));
    }
    if target.len() > MAX_PATH_BYTES {
        return Err(format!("its target is longer than {MAX_PATH_BYTES} bytes"));
    }
    let mut ups = 0usize;
    let mut parts: Vec<&str> = Vec::new();
    for part in target.split('/') {
        match part {
            "" | "." if tidy => continue,
            "" => return Err("its target has an empty name (// or a / at the end)".into()),
            "." => return Err("its target contains \".\"".into()),
            ".." if parts.len() == ups => ups += 1,
            ".." => {
                return Err(
                    "its target goes down and then up again (name/..); only leading ../ are \
                     accepted"
                        .into(),
                )
            }
            _ if part.len() > MAX_NAME_BYTES => {
                return Err(format!(
                    "a name in its target is longer than {MAX_NAME_BYTES} bytes"
                ))
            }
            _ => {}
        }
        parts.push(part);
    }
    if parts.is_empty() {
        return Err("its target is its own folder".into());
    }
    if ups > depth {
        return Err(format!(
            "it points outside the folder it is in ({ups} levels up from {depth} levels deep)"
        ));
    }
    Ok(parts.join("/"))
}

// ---------------------------------------------------------------------------------------------
// Export.

/// An entry the export left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Its path in the archive's terms (`files/…`, `datasets/…`).
    pub path: String,
    /// Why.
    pub reason: String,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Regular files (project and included datasets).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Folders (each tree's top included).
    pub folders: u64,
    /// Symbolic links kept.
    pub links: u64,
    /// What was left out: symbolic links pointing outside, FIFOs, sockets, devices, names that
    /// are not UTF-8 or hold control characters.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone)]
enum ItemKind {
    Folder,
    File { size: u64 },
    Link { target: String },
}

#[derive(Debug, Clone)]
struct Item {
    /// In the archive.
    path: String,
    source: PathBuf,
    kind: ItemKind,
    mode: u32,
    /// Seconds and nanoseconds since the epoch.
    mtime: (u64, u32),
}

/// What an export will write, found by walking the folders first (so the manifest, the first
/// entry, can count the files). Holds names and sizes, no content.
#[derive(Debug, Clone)]
pub struct ExportPlan {
    items: Vec<Item>,
    included: Vec<(String, String)>,
    report: ExportReport,
}

fn mtime_of(meta: &std::fs::Metadata) -> (u64, u32) {
    match (
        u64::try_from(meta.mtime()),
        u32::try_from(meta.mtime_nsec()),
    ) {
        (Ok(s), Ok(ns)) if ns < 1_000_000_000 => (s, ns),
        (Ok(s), _) => (s, 0),
        _ => (0, 0),
    }
}

impl ExportPlan {
    /// Walks the project's folder and the folders of the datasets to include
    /// (`(owner, name, files folder)`), without following symbolic links.
    pub fn scan(
        project_dir: &Path,
        datasets: &[(String, String, PathBuf)],
    ) -> Result<Self, ArchiveError> {
        let mut plan = ExportPlan {
            items: Vec::new(),
            included: Vec::new(),
            report: ExportReport::default(),
        };
        plan.add_tree(project_dir, "files", true)?;
        let mut seen = HashSet::new();
        for (owner, name, dir) in datasets {
            check_dataset_names(owner, name)
                .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
            if !seen.insert((owner.clone(), name.clone())) {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    format!("the dataset {owner}/{name} is included twice"),
                )
                .into());
            }
            plan.included.push((owner.clone(), name.clone()));
            plan.add_tree(dir, &format!("datasets/{owner}/{name}"), false)?;
        }
        Ok(plan)
    }

    /// Regular files to write.
    pub fn files(&self) -> u64 {
        self.report.files
    }

    /// Their bytes.
    pub fn bytes(&self) -> u64 {
        self.report.bytes
    }

    /// What will be left out, and why.
    pub fn skipped(&self) -> &[Skipped] {
        &self.report.skipped
    }

    fn push(&mut self, item: Item) -> Result<(), ArchiveError> {
        // The manifest is one more entry.
        if self.items.len() as u64 + 1 >= MAX_ENTRIES {
            return Err(ArchiveError::TooManyEntries { max: MAX_ENTRIES });
        }
        match &item.kind {
            ItemKind::Folder => self.report.folders += 1,
            ItemKind::File { size } => {
                self.report.files += 1;
                self.report.bytes += size;
            }
            ItemKind::Link { .. } => self.report.links += 1,
        }
        self.items.push(item);
        Ok(())
    }

    fn skip(&mut self, path: String, reason: impl Into<String>) {
        self.report.skipped.push(Skipped {
            path,
            reason: reason.into(),
        });
    }

    /// Adds `root` as `prefix` and everything below it: each folder before its content, names
    /// in byte order.
    fn add_tree(&mut self, root: &Path, prefix: &str, links: bool) -> Result<(), ArchiveError> {
        let meta = std::fs::metadata(root)?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                ErrorKind::NotADirectory,
                format!("{} is not a folder", root.display()),
            )
            .into());
        }
        self.push(Item {
            path: prefix.to_owned(),
            source: root.to_owned(),
            kind: ItemKind::Folder,
            mode: meta.mode() & 0o777,
            mtime: mtime_of(&meta),
        })?;
        // (folder on disk, its path below root, its depth below root)
        let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_owned(), String::new(), 0)];
        while let Some((dir, rel, depth)) = stack.pop() {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                names.push(entry?.file_name());
            }
            names.sort();
            let mut subfolders = Vec::new();
            for name in names {
                let source = dir.join(&name);
                let shown = name.to_string_lossy();
                let child = if rel.is_empty() {
                    shown.to_string()
                } else {
                    format!("{rel}/{shown}")
                };
                let path = format!("{prefix}/{child}");
                let Some(text) = name.to_str() else {
                    self.skip(path, "its name is not valid UTF-8");
                    continue;
                };
                if let Err(reason) = check_name(text) {
                    self.skip(path, reason);
                    continue;
                }
                if path.len() > MAX_PATH_BYTES {
                    self.skip(
                        path,
                        format!("its path is longer than {MAX_PATH_BYTES} bytes"),
                    );
                    continue;
                }
                let meta = std::fs::symlink_metadata(&source)?;
                let kind = meta.file_type();
                let mode = meta.mode() & 0o777;
                let mtime = mtime_of(&meta);
                if kind.is_dir() {
                    self.push(Item {
                        path,
                        source: source.clone(),
                        kind: ItemKind::Folder,
                        mode,
                        mtime,
                    })?;
                    subfolders.push((source, child, depth + 1));
                } else if kind.is_file() {
                    self.push(Item {
                        path,
                        source,
                        kind: ItemKind::File { size: meta.len() },
                        mode,
                        mtime,
                    })?;
                } else if kind.is_symlink() {
                    if !links {
                        self.skip(path, "datasets hold files and folders only");
                        continue;
                    }
                    let raw = std::fs::read_link(&source)?;
                    let Some(raw) = raw.to_str() else {
                        self.skip(path, "its target is not valid UTF-8");
                        continue;
                    };
                    match link_target(raw, depth, true) {
                        Ok(target) => self.push(Item {
                            path,
                            source,
                            kind: ItemKind::Link { target },
                            mode: 0o777,
                            mtime,
                        })?,
                        Err(reason) => {
                            self.skip(path, format!("symbolic link to {raw:?}: {reason}"))
                        }
                    }
                } else {
                    self.skip(path, format!("it is a {}", special_kind(&kind)));
                }
            }
            // Pushed in reverse so that they are walked in name order.
            stack.extend(subfolders.into_iter().rev());
        }
        Ok(())
    }

    /// The manifest as written: format, version, counts and `included` filled in.
    fn manifest_for(&self, given: &Manifest) -> Result<Manifest, ArchiveError> {
        let mut manifest = given.clone();
        manifest.format = FORMAT.into();
        manifest.version = VERSION;
        manifest.files = self.report.files;
        manifest.bytes = self.report.bytes;
        for d in &mut manifest.project.datasets {
            d.included = self
                .included
                .iter()
                .any(|(o, n)| *o == d.owner && *n == d.name);
        }
        for (owner, name) in &self.included {
            if !manifest
                .project
                .datasets
                .iter()
                .any(|d| d.owner == *owner && d.name == *name)
            {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "the dataset {owner}/{name} is included but the project does not use it"
                    ),
                )
                .into());
            }
        }
        Ok(manifest)
    }
}

fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_fifo() {
        "FIFO (named pipe)"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// A file's bytes, exactly as many as planned: an error if it became shorter meanwhile (the
/// archive's header says the planned size), the planned count if it grew.
struct Exact<R> {
    inner: R,
    left: u64,
    path: String,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                format!("{} became shorter during the export", self.path),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn new_header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// One PAX record: `"{length} {key}={value}\n"`, the length counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// A PAX header carrying an entry's mtime to the nanosecond (the tar header has seconds).
fn append_mtime<W: Write>(tar: &mut tar::Builder<W>, (secs, nanos): (u64, u32)) -> io::Result<()> {
    if nanos == 0 {
        return Ok(());
    }
    let record = pax_record("mtime", &format!("{secs}.{nanos:09}"));
    let mut header = new_header(tar::EntryType::XHeader, 0o644, record.len() as u64, secs);
    header.set_path("././@PaxHeader")?;
    header.set_cksum();
    tar.append(&header, record.as_slice())
}

/// Writes a planned export: the manifest (counts filled in), then every entry, through zstd
/// into `out`. Blocking; see [`export_stream`] for an HTTP body.
pub fn write_archive(
    plan: &ExportPlan,
    manifest: &Manifest,
    out: impl Write,
) -> Result<ExportReport, ArchiveError> {
    let manifest = plan.manifest_for(manifest)?;
    let json = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
    let mut encoder = zstd::Encoder::new(out, ZSTD_LEVEL)?;
    encoder.include_checksum(true)?;
    let mut tar = tar::Builder::new(encoder);
    let exported = u64::try_from(manifest.project.exported_at / 1_000_000).unwrap_or(0);
    let mut header = new_header(tar::EntryType::Regular, 0o644, json.len() as u64, exported);
    tar.append_data(&mut header, MANIFEST_NAME, json.as_slice())?;
    for item in &plan.items {
        append_mtime(&mut tar, item.mtime)?;
        match &item.kind {
            ItemKind::Folder => {
                let mut header = new_header(tar::EntryType::Directory, item.mode, 0, item.mtime.0);
                tar.append_data(&mut header, &item.path, io::empty())?;
            }
            ItemKind::File { size } => {
                let file = std::fs::File::open(&item.source)?;
                if !file.metadata()?.is_file() {
                    return Err(
                        io::Error::other(format!("{} is no longer a file", item.path)).into(),
                    );
                }
                let mut header =
                    new_header(tar::EntryType::Regular, item.mode, *size, item.mtime.0);
                let data = BufReader::with_capacity(
                    COPY_BUFFER,
                    Exact {
                        inner: file,
                        left: *size,
                        path: item.path.clone(),
                    },
                );
                tar.append_data(&mut header, &item.path, data)?;
            }
            ItemKind::Link { target } => {
                let mut header = new_header(tar::EntryType::Symlink, 0o777, 0, item.mtime.0);
                tar.append_link(&mut header, &item.path, target)?;
            }
        }
    }
    let encoder = tar.into_inner()?;
    let mut out = encoder.finish()?;
    out.flush()?;
    Ok(plan.report.clone())
}

/// Exports a project: its folder as `files/`, the given datasets' folders as
/// `datasets/{owner}/{name}/`, after `project.json` (the given manifest with its format,
/// version, counts and `included` flags filled in). Blocking: run it in `spawn_blocking`.
pub fn export(
    project_dir: &Path,
    manifest: &Manifest,
    datasets: &[(String, String, PathBuf)],
    out: impl Write,
) -> Result<ExportReport, ArchiveError> {
    let plan = ExportPlan::scan(project_dir, datasets)?;
    write_archive(&plan, manifest, out)
}

/// Where an archive goes: a channel to the response body.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A planned export as a stream of chunks (an HTTP body), written in a blocking task as it is
/// read. A failure midway ends the stream with an error (the client sees a cut download, which
/// the importer refuses as damaged).
pub fn export_stream(
    plan: ExportPlan,
    manifest: Manifest,
) -> impl Stream<Item = io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let sink = ChannelWriter { tx: tx.clone() };
        match write_archive(&plan, &manifest, sink) {
            Ok(report) => tracing::info!(
                project = %manifest.project.name,
                files = report.files,
                bytes = report.bytes,
                skipped = report.skipped.len(),
                "project exported"
            ),
            Err(e) => {
                tracing::warn!(project = %manifest.project.name, error = %e, "a project export stopped");
                let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

// ---------------------------------------------------------------------------------------------
// Import.

/// A file of an included dataset, as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedFile {
    /// Its path in the dataset (`/`-separated, NFC).
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Hex sha256 of its content, computed while it was written.
    pub sha256: String,
}

/// An included dataset, as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludedDataset {
    /// Its owner's name (as the archive says).
    pub owner: String,
    /// Its name.
    pub name: String,
    /// Its files' folder: `{into}/datasets/{owner}/{name}`.
    pub dir: PathBuf,
    /// Its files.
    pub files: Vec<ImportedFile>,
    /// Their bytes.
    pub bytes: u64,
}

/// What an import made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// Regular files written (project and datasets).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The project's folder: `{into}/files`.
    pub project_dir: PathBuf,
    /// Regular files of the project alone.
    pub project_files: u64,
    /// Their bytes.
    pub project_bytes: u64,
    /// The included datasets, in the manifest's order.
    pub datasets_included: Vec<IncludedDataset>,
}

/// How much an import may take.
#[derive(Debug, Clone, Copy)]
struct Limits {
    bytes: u64,
    entries: u64,
}

/// Decompressed bytes read so far, and how many may be read: the reader stops (an error) at
/// the cap, which the importer raises by what it accepted (an entry's declared size, one more
/// entry's headers).
#[derive(Debug, Default)]
struct Budget {
    read: Cell<u64>,
    cap: Cell<u64>,
    over: Cell<bool>,
}

impl Budget {
    fn allow(&self, more: u64) {
        self.cap.set(self.read.get().saturating_add(more));
    }
}

struct Metered<R> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let left = self.budget.cap.get().saturating_sub(self.budget.read.get());
        if left == 0 {
            self.budget.over.set(true);
            return Err(io::Error::other("the decompressed size allowed is reached"));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.budget.read.set(self.budget.read.get() + n as u64);
        Ok(n)
    }
}

/// Imports an archive into `into` (which must not exist; its parent must): `into/files` is the
/// project's folder, `into/datasets/{owner}/{name}` each included dataset's files. Everything
/// is written into a new hidden folder next to `into`, renamed to `into` only when the whole
/// archive was read and checked; any refusal or failure removes it, leaving nothing. At most
/// `limit_bytes` bytes of files are written, counted while they arrive. Blocking: run it in
/// `spawn_blocking`, or use [`import_stream`].
pub fn import(input: impl Read, into: &Path, limit_bytes: u64) -> Result<Imported, ArchiveError> {
    import_with(
        input,
        into,
        Limits {
            bytes: limit_bytes,
            entries: MAX_ENTRIES,
        },
    )
}

fn import_with(input: impl Read, into: &Path, limits: Limits) -> Result<Imported, ArchiveError> {
    let parent = match into.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if into.file_name().is_none() {
        return Err(io::Error::new(
            ErrorKind::InvalidInput,
            format!("{} cannot be an import's destination", into.display()),
        )
        .into());
    }
    if into.symlink_metadata().is_ok() {
        return Err(ArchiveError::Exists(into.to_owned()));
    }
    let mut staging = Staging::create(parent)?;
    let imported = Extractor::new(&staging.path, into, limits).run(input)?;
    staging.finish(into)?;
    Ok(imported)
}

/// The hidden folder an import writes into; removed unless finished.
struct Staging {
    path: PathBuf,
    done: bool,
}

impl Staging {
    fn create(parent: &Path) -> io::Result<Self> {
        loop {
            let path = parent.join(format!(".xiji-import-{:016x}", rand::random::<u64>()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Staging { path, done: false }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn finish(&mut self, into: &Path) -> Result<(), ArchiveError> {
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o755))?;
        match rename_no_replace(&self.path, into) {
            Ok(()) => {
                self.done = true;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Err(ArchiveError::Exists(into.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = remove_tree(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove an import's folder");
            }
        }
    }
}

/// Renames `from` to `to`, failing with `AlreadyExists` if `to` exists (atomically where the
/// system and filesystem can).
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::fcntl::{renameat2, RenameFlags};
        match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(()),
            // The filesystem does not know the flag: check, then rename.
            Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if to.symlink_metadata().is_ok() {
        return Err(io::Error::new(
            ErrorKind::AlreadyExists,
            format!("{} exists", to.display()),
        ));
    }
    std::fs::rename(from, to)
}

/// Removes a folder and all below it, making folders writable first if it must (an archive's
/// folders may be read-only).
fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }
    std::fs::remove_dir_all(path)
}

/// Sets a path's mtime (and atime) without following a symbolic link.
fn set_mtime(path: &Path, mtime: SystemTime) -> io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let since = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let t = TimeSpec::new(secs, i64::from(since.subsec_nanos()));
    utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}

/// Where an entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    Project,
    Dataset(usize),
}

/// A folder's final mode and mtime (set once everything is written: a read-only folder must
/// still take its content).
#[derive(Debug, Clone, Copy)]
struct DirMeta {
    mode: u32,
    mtime: Option<SystemTime>,
}

struct Extractor<'a> {
    /// The staging folder.
    root: &'a Path,
    /// Where it will be.
    into: &'a Path,
    limits: Limits,
    manifest: Option<Manifest>,
    /// (owner, name) of the included datasets, in the manifest's order.
    included: Vec<(String, String)>,
    datasets: Vec<IncludedDataset>,
    dirs: HashMap<PathBuf, DirMeta>,
    entries: u64,
    files: u64,
    bytes: u64,
    project_files: u64,
    project_bytes: u64,
    buf: Vec<u8>,
}

fn damaged(budget: &Budget, e: io::Error) -> ArchiveError {
    if budget.over.get() {
        ArchiveError::Damaged(format!(
            "an entry's headers take more than {} KiB",
            HEADER_ALLOWANCE / 1024
        ))
    } else {
        ArchiveError::Damaged(e.to_string())
    }
}

/// An entry's mtime: the PAX record's (nanoseconds) or the header's (seconds).
fn entry_mtime<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<SystemTime> {
    if let Ok(Some(pax)) = entry.pax_extensions() {
        for ext in pax.flatten() {
            if ext.key_bytes() == b"mtime" {
                if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                    return Some(t);
                }
            }
        }
    }
    entry
        .header()
        .mtime()
        .ok()
        .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
}

/// `"1700000000.123456789"` → a time (fractions padded or cut to nanoseconds).
fn parse_pax_time(text: &str) -> Option<SystemTime> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: u64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: u32 = digits.parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

impl<'a> Extractor<'a> {
    fn new(root: &'a Path, into: &'a Path, limits: Limits) -> Self {
        Extractor {
            root,
            into,
            limits,
            manifest: None,
            included: Vec::new(),
            datasets: Vec::new(),
            dirs: HashMap::new(),
            entries: 0,
            files: 0,
            bytes: 0,
            project_files: 0,
            project_bytes: 0,
            buf: vec![0u8; COPY_BUFFER],
        }
    }

    fn run(mut self, input: impl Read) -> Result<Imported, ArchiveError> {
        let budget = Rc::new(Budget::default());
        let mut decoder =
            zstd::Decoder::new(input).map_err(|e| ArchiveError::Damaged(e.to_string()))?;
        decoder
            .window_log_max(ZSTD_WINDOW_LOG_MAX)
            .map_err(|e| ArchiveError::Damaged(e.to_string()))?;
        let mut archive = tar::Archive::new(Metered {
            inner: decoder,
            budget: budget.clone(),
        });
        {
            let mut entries = archive.entries().map_err(|e| damaged(&budget, e))?;
            budget.allow(MAX_MANIFEST_BYTES + HEADER_ALLOWANCE);
            let first = match entries.next() {
                None => return Err(ArchiveError::NoManifest("the archive is empty".into())),
                Some(entry) => entry.map_err(|e| damaged(&budget, e))?,
            };
            self.read_manifest(first, &budget)?;
            loop {
                // What is left of the previous entry is its padding (< 512 bytes).
                budget.allow(511 + HEADER_ALLOWANCE);
                let entry = match entries.next() {
                    None => break,
                    Some(entry) => entry.map_err(|e| damaged(&budget, e))?,
                };
                self.entries += 1;
                if self.entries > self.limits.entries {
                    return Err(ArchiveError::TooManyEntries {
                        max: self.limits.entries,
                    });
                }
                self.entry(entry, &budget)?;
            }
        }
        let manifest = self
            .manifest
            .clone()
            .ok_or_else(|| ArchiveError::NoManifest("the archive has no project.json".into()))?;
        if self.files != manifest.files || self.bytes != manifest.bytes {
            return Err(self.mismatch(&manifest));
        }
        // After the end-of-archive blocks: zeros at most (tar's record padding), and zstd's
        // checksum is checked when the frame ends.
        let mut rest = archive.into_inner();
        budget.allow(TRAILING_MAX + 1);
        loop {
            let n = match rest.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(_) if budget.over.get() => {
                    return Err(ArchiveError::Damaged(format!(
                        "more than {} KiB follow the end of the archive",
                        TRAILING_MAX / 1024
                    )))
                }
                Err(e) => return Err(ArchiveError::Damaged(e.to_string())),
            };
            if self.buf[..n].iter().any(|b| *b != 0) {
                return Err(ArchiveError::Damaged(
                    "data follows the end of the archive".into(),
                ));
            }
        }
        self.finish(manifest)
    }

    fn mismatch(&self, manifest: &Manifest) -> ArchiveError {
        ArchiveError::Mismatch {
            declared_files: manifest.files,
            declared_bytes: manifest.bytes,
            files: self.files,
            bytes: self.bytes,
        }
    }

    fn read_manifest<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        budget: &Budget,
    ) -> Result<(), ArchiveError> {
        self.entries += 1;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if path != MANIFEST_NAME {
            return Err(ArchiveError::NoManifest(format!(
                "its first entry is {path:?}"
            )));
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(ArchiveError::NoManifest(
                "its first entry, project.json, is not a file".into(),
            ));
        }
        let size = entry.size();
        if size > MAX_MANIFEST_BYTES {
            return Err(ArchiveError::Manifest(format!(
                "it is larger than {} KiB",
                MAX_MANIFEST_BYTES / 1024
            )));
        }
        let mut json = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry
            .read_to_end(&mut json)
            .map_err(|e| damaged(budget, e))?;
        if json.len() as u64 != size {
            return Err(ArchiveError::Damaged(
                "the archive ends inside project.json".into(),
            ));
        }
        let manifest = parse_manifest(&json)?;
        if manifest.bytes > self.limits.bytes {
            return Err(ArchiveError::TooLarge {
                limit: self.limits.bytes,
            });
        }
        if manifest.files >= self.limits.entries {
            return Err(ArchiveError::TooManyEntries {
                max: self.limits.entries,
            });
        }
        for d in manifest.project.datasets.iter().filter(|d| d.included) {
            self.included.push((d.owner.clone(), d.name.clone()));
            self.datasets.push(IncludedDataset {
                owner: d.owner.clone(),
                name: d.name.clone(),
                dir: self.into.join("datasets").join(&d.owner).join(&d.name),
                files: Vec::new(),
                bytes: 0,
            });
        }
        self.manifest = Some(manifest);
        Ok(())
    }

    /// Where an entry's path puts it, and its components below that root; or why it is
    /// refused.
    fn locate<'p>(&self, path: &'p str, is_dir: bool) -> Result<(Root, Vec<&'p str>), String> {
        if let Some(c) = path.chars().find(|c| c.is_control()) {
            return Err(format!(
                "its name contains the control character U+{:04X}",
                u32::from(c)
            ));
        }
        if path.starts_with('/') {
            return Err("it is an absolute path".into());
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(format!("its path is longer than {MAX_PATH_BYTES} bytes"));
        }
        let trimmed = if is_dir {
            path.strip_suffix('/').unwrap_or(path)
        } else {
            path
        };
        let parts: Vec<&str> = trimmed.split('/').collect();
        for part in &parts {
            check_name(part)?;
        }
        match parts.as_slice() {
            ["files", rest @ ..] => Ok((Root::Project, rest.to_vec())),
            ["datasets", owner, name, rest @ ..] => {
                let Some(i) = self
                    .included
                    .iter()
                    .position(|(o, n)| o == owner && n == name)
                else {
                    return Err(format!(
                        "it belongs to the dataset {owner}/{name}, which project.json does not \
                         list as included"
                    ));
                };
                if !rest.is_empty() {
                    let joined = rest.join("/");
                    match super::dataset_files::normalize_path(&joined) {
                        Ok(normal) if normal == joined => {}
                        Ok(_) => return Err("a dataset's file names must be in Unicode NFC".into()),
                        Err(e) => return Err(e),
                    }
                }
                Ok((Root::Dataset(i), rest.to_vec()))
            }
            [MANIFEST_NAME] => Err("project.json appears a second time".into()),
            _ => Err("it is outside files/ and the included datasets' folders \
                 (datasets/{owner}/{name}/)"
                .into()),
        }
    }

    fn entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        budget: &Budget,
    ) -> Result<(), ArchiveError> {
        let raw = entry.path_bytes().into_owned();
        let path = match String::from_utf8(raw) {
            Ok(p) => p,
            Err(e) => {
                return Err(ArchiveError::UnsafePath {
                    path: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    reason: "its name is not valid UTF-8".into(),
                })
            }
        };
        let kind = entry.header().entry_type();
        let (root, rest) = self
            .locate(&path, kind == tar::EntryType::Directory)
            .map_err(|reason| ArchiveError::UnsafePath {
                path: path.clone(),
                reason,
            })?;
        let special = |what: &str| ArchiveError::SpecialFile {
            path: path.clone(),
            kind: what.into(),
        };
        match kind {
            tar::EntryType::Regular | tar::EntryType::Directory | tar::EntryType::Symlink => {}
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                return Err(ArchiveError::HardLink { path, target });
            }
            tar::EntryType::Char => return Err(special("character device")),
            tar::EntryType::Block => return Err(special("block device")),
            tar::EntryType::Fifo => return Err(special("FIFO (named pipe)")),
            tar::EntryType::GNUSparse => return Err(special("sparse file")),
            tar::EntryType::Continuous => return Err(special("contiguous file")),
            tar::EntryType::XGlobalHeader => return Err(special("global PAX header")),
            other => {
                return Err(special(&format!(
                    "entry of tar type {:?}",
                    char::from(other.as_byte())
                )))
            }
        }
        if rest.is_empty() && kind != tar::EntryType::Directory {
            return Err(ArchiveError::UnsafePath {
                path,
                reason: "the top of files/ or of a dataset must be a folder".into(),
            });
        }
        // The path on disk, below the staging folder.
        let mut parts: Vec<String> = Vec::with_capacity(rest.len() + 3);
        match root {
            Root::Project => parts.push("files".into()),
            Root::Dataset(i) => {
                let (owner, name) = &self.included[i];
                parts.extend(["datasets".to_owned(), owner.clone(), name.clone()]);
            }
        }
        parts.extend(rest.iter().map(|p| (*p).to_owned()));
        let mode = entry.header().mode().map_err(|e| damaged(budget, e))? & 0o777;
        let mtime = entry_mtime(&mut entry);
        match kind {
            tar::EntryType::Directory => {
                if entry.size() != 0 {
                    return Err(ArchiveError::Damaged(format!(
                        "the folder {path:?} has content"
                    )));
                }
                let dest = self.parents(&path, &parts)?;
                match std::fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(ArchiveError::Duplicate { path }),
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        std::fs::DirBuilder::new().mode(0o700).create(&dest)?;
                    }
                    Err(e) => return Err(e.into()),
                }
                self.dirs.insert(dest, DirMeta { mode, mtime });
            }
            tar::EntryType::Symlink => {
                if matches!(root, Root::Dataset(_)) {
                    return Err(ArchiveError::UnsafeLink {
                        path,
                        target: String::new(),
                        reason: "datasets hold files and folders only".into(),
                    });
                }
                if entry.size() != 0 {
                    return Err(ArchiveError::Damaged(format!(
                        "the symbolic link {path:?} has content"
                    )));
                }
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let target = String::from_utf8(target).map_err(|e| ArchiveError::UnsafeLink {
                    path: path.clone(),
                    target: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    reason: "its target is not valid UTF-8".into(),
                })?;
                if let Err(reason) = link_target(&target, rest.len() - 1, false) {
                    return Err(ArchiveError::UnsafeLink {
                        path,
                        target,
                        reason,
                    });
                }
                let dest = self.parents(&path, &parts)?;
                match std::os::unix::fs::symlink(&target, &dest) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        return Err(ArchiveError::Duplicate { path })
                    }
                    Err(e) => return Err(e.into()),
                }
                if let Some(t) = mtime {
                    set_mtime(&dest, t)?;
                }
            }
            _ => {
                let size = entry.size();
                if self.bytes.saturating_add(size) > self.limits.bytes {
                    return Err(ArchiveError::TooLarge {
                        limit: self.limits.bytes,
                    });
                }
                if let Some(manifest) = &self.manifest {
                    if self.files + 1 > manifest.files
                        || self.bytes.saturating_add(size) > manifest.bytes
                    {
                        let mut e = self.mismatch(manifest);
                        if let ArchiveError::Mismatch { files, bytes, .. } = &mut e {
                            *files += 1;
                            *bytes = bytes.saturating_add(size);
                        }
                        return Err(e);
                    }
                }
                let dest = self.parents(&path, &parts)?;
                let mut file = match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dest)
                {
                    Ok(f) => f,
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        return Err(ArchiveError::Duplicate { path })
                    }
                    Err(e) => return Err(e.into()),
                };
                let mut hasher = matches!(root, Root::Dataset(_)).then(Sha256::new);
                budget.allow(size);
                let mut left = size;
                while left > 0 {
                    let want = self
                        .buf
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = entry
                        .read(&mut self.buf[..want])
                        .map_err(|e| damaged(budget, e))?;
                    if n == 0 {
                        return Err(ArchiveError::Damaged(format!(
                            "the archive ends inside {path:?}"
                        )));
                    }
                    // Never past the limit, whatever the headers said.
                    if self.bytes + n as u64 > self.limits.bytes {
                        return Err(ArchiveError::TooLarge {
                            limit: self.limits.bytes,
                        });
                    }
                    file.write_all(&self.buf[..n])?;
                    if let Some(h) = hasher.as_mut() {
                        h.update(&self.buf[..n]);
                    }
                    self.bytes += n as u64;
                    left -= n as u64;
                }
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
                if let Some(t) = mtime {
                    file.set_modified(t)?;
                }
                self.files += 1;
                match root {
                    Root::Project => {
                        self.project_files += 1;
                        self.project_bytes += size;
                    }
                    Root::Dataset(i) => {
                        let d = &mut self.datasets[i];
                        d.bytes += size;
                        d.files.push(ImportedFile {
                            path: rest.join("/"),
                            size,
                            sha256: hasher
                                .map(|h| hex::encode(h.finalize()))
                                .unwrap_or_default(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes sure the folders above `parts` are real folders of the staging folder (creating
    /// the missing ones), never a symbolic link or a file; gives the entry's path on disk.
    fn parents(&mut self, path: &str, parts: &[String]) -> Result<PathBuf, ArchiveError> {
        let mut current = self.root.to_path_buf();
        let Some((last, above)) = parts.split_last() else {
            return Err(ArchiveError::UnsafePath {
                path: path.into(),
                reason: "it is empty".into(),
            });
        };
        for (i, part) in above.iter().enumerate() {
            current.push(part);
            // A folder this import made or checked: only the import writes here.
            if self.dirs.contains_key(&current) {
                continue;
            }
            match std::fs::symlink_metadata(&current) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(ArchiveError::ThroughLink {
                        path: path.into(),
                        link: above[..=i].join("/"),
                    })
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(ArchiveError::UnsafePath {
                        path: path.into(),
                        reason: format!("{} is a file, not a folder", above[..=i].join("/")),
                    })
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    std::fs::DirBuilder::new().mode(0o700).create(&current)?;
                }
                Err(e) => return Err(e.into()),
            }
            self.dirs.insert(
                current.clone(),
                DirMeta {
                    mode: 0o755,
                    mtime: None,
                },
            );
        }
        current.push(last);
        Ok(current)
    }

    /// Folders that must exist, then every folder's mode and mtime, deepest first.
    fn finish(mut self, manifest: Manifest) -> Result<Imported, ArchiveError> {
        let mut needed = vec![self.root.join("files")];
        for (owner, name) in &self.included {
            needed.push(self.root.join("datasets"));
            needed.push(self.root.join("datasets").join(owner));
            needed.push(self.root.join("datasets").join(owner).join(name));
        }
        for dir in needed {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.dirs.entry(dir) {
                std::fs::DirBuilder::new().mode(0o700).create(slot.key())?;
                slot.insert(DirMeta {
                    mode: 0o755,
                    mtime: None,
                });
            }
        }
        let mut dirs: Vec<(PathBuf, DirMeta)> = self.dirs.drain().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (dir, meta) in dirs {
            if let Some(t) = meta.mtime {
                set_mtime(&dir, t)?;
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(meta.mode))?;
        }
        Ok(Imported {
            manifest,
            files: self.files,
            bytes: self.bytes,
            project_dir: self.into.join("files"),
            project_files: self.project_files,
            project_bytes: self.project_bytes,
            datasets_included: self.datasets,
        })
    }
}

/// Parses `project.json`: JSON, this format, this version, then every field.
fn parse_manifest(json: &[u8]) -> Result<Manifest, ArchiveError> {
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| ArchiveError::Manifest(format!("it is not JSON ({e})")))?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(ArchiveError::Manifest(format!(
                "its format is {other:?}, not {FORMAT:?}"
            )))
        }
        None => {
            return Err(ArchiveError::Manifest(format!(
                "it has no \"format\": {FORMAT:?}"
            )))
        }
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(VERSION) => {}
        Some(other) => return Err(ArchiveError::UnknownVersion(other)),
        None => {
            return Err(ArchiveError::Manifest(
                "it has no \"version\" (a whole number)".into(),
            ))
        }
    }
    let manifest: Manifest =
        serde_json::from_value(value).map_err(|e| ArchiveError::Manifest(e.to_string()))?;
    let mut seen = HashSet::new();
    for d in &manifest.project.datasets {
        check_dataset_names(&d.owner, &d.name).map_err(ArchiveError::Manifest)?;
        if !seen.insert((d.owner.as_str(), d.name.as_str())) {
            return Err(ArchiveError::Manifest(format!(
                "the dataset {}/{} is listed twice",
                d.owner, d.name
            )));
        }
    }
    Ok(manifest)
}

/// Reads what the async side sends.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// [`import`] of a request body: the body is fed, as it arrives, to the import running in a
/// blocking task; a refusal stops reading the body. A body that breaks off is a damaged archive.
pub async fn import_stream<S, E>(
    mut body: S,
    into: PathBuf,
    limit_bytes: u64,
) -> Result<Imported, ArchiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
    let task = tokio::task::spawn_blocking(move || {
        import(
            ChannelReader {
                rx,
                chunk: Bytes::new(),
            },
            &into,
            limit_bytes,
        )
    });
    while let Some(item) = body.next().await {
        let item = item.map_err(|e| io::Error::other(format!("the upload broke off: {e}")));
        let broke = item.is_err();
        if tx.send(item).await.is_err() || broke {
            break;
        }
    }
    drop(tx);
    task.await.map_err(io::Error::other)?
}

/// The name of a staging folder, for callers that sweep leftovers of a killed hub.
pub fn is_staging_name(name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.starts_with(".xiji-import-"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::symlink;

    use rand::{RngCore, SeedableRng};

    use super::*;

    fn project_meta() -> ProjectMeta {
        ProjectMeta {
            name: "蛋白质-折叠".into(),
            description: "# 说明\n\nA *project* with `code`.".into(),
            tags: vec!["ml".into(), "生物".into()],
            image: Some(ImageRef {
                name: "base".into(),
                reference: "registry.example/xiji/base-notebook:1".into(),
            }),
            visibility: Visibility::Public,
            datasets: vec![
                DatasetRef {
                    owner: "alice".into(),
                    name: "细胞图像".into(),
                    included: false,
                },
                DatasetRef {
                    owner: "bob".into(),
                    name: "ref".into(),
                    included: false,
                },
            ],
            created: 1_790_000_000_123_456,
            exported_at: 1_795_000_000_654_321,
            exported_from: "https://hub.example".into(),
        }
    }

    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut data = vec![0u8; len];
        rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
        data
    }

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Every entry below `dir` (itself as ""): kind, permission bits, mtime, and the sha256 of
    /// a file's content or a link's target.
    fn snapshot(dir: &Path) -> BTreeMap<String, (&'static str, u32, SystemTime, String)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(dir.to_path_buf(), String::new())];
        while let Some((path, rel)) = stack.pop() {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mtime = meta.modified().unwrap();
            let mode = meta.mode() & 0o777;
            let t = meta.file_type();
            let value = if t.is_dir() {
                for e in std::fs::read_dir(&path).unwrap() {
                    let e = e.unwrap();
                    let name = e.file_name().into_string().unwrap();
                    let child = if rel.is_empty() {
                        name
                    } else {
                        format!("{rel}/{name}")
                    };
                    stack.push((e.path(), child));
                }
                ("dir", mode, mtime, String::new())
            } else if t.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("link", 0, mtime, target.to_str().unwrap().to_owned())
            } else if t.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                ("file", mode, mtime, hex::encode(Sha256::digest(&bytes)))
            } else {
                ("special", mode, mtime, String::new())
            };
            out.insert(rel, value);
        }
        out
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A project folder with nested Chinese names, an empty folder, a 5 MB file, an executable,
    /// read-only files and folders, links inside it, and what an export leaves out: links
    /// pointing outside, a FIFO. Mtimes set to the nanosecond.
    fn sample_project(root: &Path) -> Vec<&'static str> {
        let p = |rel: &str| root.join(rel);
        std::fs::create_dir_all(p("数据/训练集/第 1 批")).unwrap();
        std::fs::create_dir_all(p("空文件夹")).unwrap();
        std::fs::create_dir_all(p("私有目录")).unwrap();
        std::fs::create_dir_all(p("只读目录")).unwrap();
        let deep = format!("{}/{}", "很长的名字".repeat(10), "更长的名字".repeat(10));
        std::fs::create_dir_all(p(&deep)).unwrap();
        std::fs::write(p(&format!("{deep}/深处.txt")), "路径超过一百字节").unwrap();
        std::fs::write(p("数据/训练集/样本 一.csv"), "x,y\n1,2\n").unwrap();
        std::fs::write(
            p("数据/训练集/第 1 批/大文件.bin"),
            random_bytes(5 << 20, 1),
        )
        .unwrap();
        std::fs::write(p("run.sh"), "#!/bin/sh\necho 你好\n").unwrap();
        chmod(&p("run.sh"), 0o755);
        std::fs::write(p("只读.txt"), "read only").unwrap();
        chmod(&p("只读.txt"), 0o444);
        std::fs::write(p("空文件"), "").unwrap();
        std::fs::write(p("私有目录/a.txt"), "a").unwrap();
        std::fs::write(p("只读目录/b.txt"), "b").unwrap();
        symlink("数据/训练集", p("最新")).unwrap();
        symlink("../../run.sh", p("数据/训练集/脚本")).unwrap();
        symlink("./空文件夹/", p("整理")).unwrap();
        // Left out by the export.
        symlink("../../etc", p("逃逸")).unwrap();
        symlink("/etc/passwd", p("绝对")).unwrap();
        symlink("数据/../..", p("绕回")).unwrap();
        nix::unistd::mkfifo(&p("管道"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let files = [
            "数据/训练集/样本 一.csv",
            "数据/训练集/第 1 批/大文件.bin",
            "run.sh",
            "只读.txt",
            "空文件",
            "私有目录/a.txt",
            "只读目录/b.txt",
        ];
        for (i, f) in files.iter().enumerate() {
            set_mtime(&p(f), at(1_700_000_000 + i as u64, 123_456_789 + i as u32)).unwrap();
        }
        set_mtime(&p("最新"), at(1_600_000_000, 5)).unwrap();
        set_mtime(&p("数据/训练集/脚本"), at(1_600_000_001, 0)).unwrap();
        // Folders last, deepest first (writing into a folder changes its mtime).
        let dirs = [
            "数据/训练集/第 1 批",
            "数据/训练集",
            "数据",
            "空文件夹",
            "私有目录",
            "只读目录",
            "",
        ];
        for (i, d) in dirs.iter().enumerate() {
            set_mtime(&p(d), at(1_650_000_000 + i as u64, 987_654_321)).unwrap();
        }
        chmod(&p("私有目录"), 0o750);
        chmod(&p("只读目录"), 0o555);
        vec!["逃逸", "绝对", "绕回", "管道"]
    }

    fn sample_dataset(root: &Path) {
        std::fs::create_dir_all(root.join("train")).unwrap();
        std::fs::write(root.join("train/a.csv"), "id,细胞\n1,甲\n").unwrap();
        std::fs::write(root.join("b.bin"), random_bytes(100_000, 2)).unwrap();
    }

    #[test]
    fn an_exported_project_imports_back_byte_for_byte_with_modes_mtimes_links_and_manifest() {
        let work = tempfile::tempdir().unwrap();
        let project = work.path().join("project");
        std::fs::create_dir(&project).unwrap();
        let skipped = sample_project(&project);
        let dataset = work.path().join("dataset-files");
        sample_dataset(&dataset);

        let mut archive = Vec::new();
        let datasets = vec![("alice".to_owned(), "细胞图像".to_owned(), dataset.clone())];
        let manifest = Manifest::new(project_meta());
        let report = export(&project, &manifest, &datasets, &mut archive).unwrap();

        let mut left_out: Vec<&str> = report
            .skipped
            .iter()
            .map(|s| s.path.strip_prefix("files/").unwrap())
            .collect();
        left_out.sort();
        let mut expected_out = skipped.clone();
        expected_out.sort();
        assert_eq!(left_out, expected_out, "{:?}", report.skipped);
        let reason = |name: &str| {
            report
                .skipped
                .iter()
                .find(|s| s.path == format!("files/{name}"))
                .unwrap()
                .reason
                .clone()
        };
        assert!(reason("逃逸").contains("outside"), "{}", reason("逃逸"));
        assert!(reason("绝对").contains("absolute"), "{}", reason("绝对"));
        assert!(
            reason("绕回").contains("down and then up"),
            "{}",
            reason("绕回")
        );
        assert!(reason("管道").contains("FIFO"), "{}", reason("管道"));
        assert_eq!(
            report.files, 10,
            "8 project files, 2 dataset files: {report:?}"
        );
        assert_eq!(report.links, 3);

        let parent = work.path().join("imports");
        std::fs::create_dir(&parent).unwrap();
        let into = parent.join("new-project");
        let imported = import(archive.as_slice(), &into, 100 << 20).unwrap();
        assert_eq!(listing(&parent), vec!["new-project"]);
        assert_eq!(listing(&into), vec!["datasets", "files"]);
        assert_eq!(imported.project_dir, into.join("files"));

        // Files, folders, modes, mtimes (to the nanosecond) and links as they were.
        let mut want = snapshot(&project);
        for name in &skipped {
            want.remove(*name);
        }
        // `./空文件夹/` is written as its plain form.
        want.get_mut("整理").unwrap().3 = "空文件夹".into();
        let got = snapshot(&into.join("files"));
        assert_eq!(got, want);
        assert_eq!(got["run.sh"].1, 0o755);
        assert_eq!(got["只读目录"].1, 0o555);
        assert_eq!(got["最新"].3, "数据/训练集");
        assert_eq!(got["数据/训练集/脚本"].3, "../../run.sh");
        assert_eq!(
            std::fs::read(into.join("files/最新/样本 一.csv")).unwrap(),
            b"x,y\n1,2\n",
            "the link resolves inside the project"
        );
        let dataset_dir = into.join("datasets/alice/细胞图像");
        assert_eq!(snapshot(&dataset_dir), snapshot(&dataset));

        // The manifest: as given, with its counts and the included flag filled in.
        let mut want_manifest = manifest.clone();
        want_manifest.files = report.files;
        want_manifest.bytes = report.bytes;
        want_manifest.project.datasets[0].included = true;
        assert_eq!(imported.manifest, want_manifest);
        assert_eq!(imported.files, report.files);
        assert_eq!(imported.bytes, report.bytes);
        assert_eq!(imported.project_files, 8);
        assert_eq!(
            imported.project_bytes + imported.datasets_included[0].bytes,
            imported.bytes
        );
        let included = &imported.datasets_included;
        assert_eq!(included.len(), 1);
        assert_eq!(
            (included[0].owner.as_str(), included[0].name.as_str()),
            ("alice", "细胞图像")
        );
        assert_eq!(included[0].dir, dataset_dir);
        let mut files: Vec<(String, u64, String)> = included[0]
            .files
            .iter()
            .map(|f| (f.path.clone(), f.size, f.sha256.clone()))
            .collect();
        files.sort();
        let digest =
            |rel: &str| hex::encode(Sha256::digest(std::fs::read(dataset.join(rel)).unwrap()));
        assert_eq!(
            files,
            vec![
                ("b.bin".into(), 100_000, digest("b.bin")),
                ("train/a.csv".into(), 16, digest("train/a.csv")),
            ]
        );
        // Read-only folders: a plain removal fails for users other than root.
        remove_tree(&into).unwrap();
        remove_tree(&project).unwrap();
    }

    #[test]
    fn datasets_not_included_travel_by_reference_only() {
        let work = tempfile::tempdir().unwrap();
        let project = work.path().join("p");
        std::fs::create_dir(&project).unwrap();
        std::fs::write(project.join("notebook.ipynb"), "{}").unwrap();
        let mut archive = Vec::new();
        let report = export(&project, &Manifest::new(project_meta()), &[], &mut archive).unwrap();
        assert_eq!((report.files, report.bytes), (1, 2));
        let into = work.path().join("imported");
        let imported = import(archive.as_slice(), &into, 1 << 20).unwrap();
        assert!(imported.datasets_included.is_empty());
        assert!(imported
            .manifest
            .project
            .datasets
            .iter()
            .all(|d| !d.included));
        assert_eq!(imported.manifest.project.datasets.len(), 2);
        assert_eq!(listing(&into), vec!["files"]);
    }

    #[test]
    fn an_export_refuses_a_dataset_the_project_does_not_use() {
        let work = tempfile::tempdir().unwrap();
        let dataset = work.path().join("d");
        sample_dataset(&dataset);
        let datasets = vec![("carol".to_owned(), "other".to_owned(), dataset)];
        let err = export(
            work.path(),
            &Manifest::new(project_meta()),
            &datasets,
            Vec::new(),
        )
        .unwrap_err();
        assert!(!err.is_refusal());
        assert!(err.to_string().contains("carol/other"), "{err}");
    }

    #[tokio::test]
    async fn the_streamed_export_imports_from_a_streamed_body() {
        let work = tempfile::tempdir().unwrap();
        let project = work.path().join("p");
        std::fs::create_dir_all(project.join("子目录")).unwrap();
        std::fs::write(project.join("子目录/data.bin"), random_bytes(3 << 20, 3)).unwrap();
        let plan = ExportPlan::scan(&project, &[]).unwrap();
        assert_eq!((plan.files(), plan.bytes()), (1, 3 << 20));
        assert!(plan.skipped().is_empty());
        let body = export_stream(plan, Manifest::new(project_meta()));
        let into = work.path().join("imported");
        let imported = import_stream(Box::pin(body), into.clone(), 10 << 20)
            .await
            .unwrap();
        assert_eq!(imported.bytes, 3 << 20);
        assert_eq!(
            std::fs::read(into.join("files/子目录/data.bin")).unwrap(),
            std::fs::read(project.join("子目录/data.bin")).unwrap()
        );
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_leaves_nothing() {
        let work = tempfile::tempdir().unwrap();
        let project = work.path().join("p");
        std::fs::create_dir(&project).unwrap();
        std::fs::write(project.join("data.bin"), random_bytes(1 << 20, 4)).unwrap();
        let mut archive = Vec::new();
        export(&project, &Manifest::new(project_meta()), &[], &mut archive).unwrap();
        let half = Bytes::copy_from_slice(&archive[..archive.len() / 2]);
        let body = futures::stream::iter(vec![
            Ok::<Bytes, String>(half),
            Err("connection reset".to_owned()),
        ]);
        let parent = work.path().join("imports");
        std::fs::create_dir(&parent).unwrap();
        let err = import_stream(body, parent.join("x"), 10 << 20)
            .await
            .unwrap_err();
        assert!(matches!(err, ArchiveError::Damaged(_)), "{err}");
        assert!(err.to_string().contains("connection reset"), "{err}");
        assert!(listing(&parent).is_empty());
    }

    // -----------------------------------------------------------------------------------------
    // Archives made by hand, with the tar crate's low-level header API, so that each attack is
    // really in the archive.

    fn manifest_json(files: u64, bytes: u64, version: u64, included: bool) -> Vec<u8> {
        let mut project = project_meta();
        project.datasets[0].included = included;
        let mut value = serde_json::to_value(Manifest {
            format: FORMAT.into(),
            version: VERSION,
            project,
            files,
            bytes,
        })
        .unwrap();
        value["version"] = version.into();
        serde_json::to_vec(&value).unwrap()
    }

    fn header(kind: tar::EntryType, name: &[u8], link: &[u8], size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname = [0; 100];
        gnu.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        h
    }

    struct Evil {
        tar: tar::Builder<zstd::Encoder<'static, Vec<u8>>>,
    }

    impl Evil {
        fn empty() -> Self {
            Evil {
                tar: tar::Builder::new(zstd::Encoder::new(Vec::new(), 3).unwrap()),
            }
        }

        /// An archive that starts with a valid manifest listing `files` files of `bytes`.
        fn new(files: u64, bytes: u64) -> Self {
            let mut e = Evil::empty();
            e.file("project.json", &manifest_json(files, bytes, VERSION, false));
            e
        }

        fn raw(&mut self, kind: tar::EntryType, name: &[u8], link: &[u8], data: impl Read) {
            self.raw_sized(kind, name, link, 0, data);
        }

        /// An entry whose header says `size`, followed by whatever `data` holds.
        fn raw_sized(
            &mut self,
            kind: tar::EntryType,
            name: &[u8],
            link: &[u8],
            size: u64,
            data: impl Read,
        ) {
            let h = header(kind, name, link, size);
            self.tar.append(&h, data).unwrap();
        }

        fn file(&mut self, name: &str, data: &[u8]) {
            self.raw_sized(
                tar::EntryType::Regular,
                name.as_bytes(),
                b"",
                data.len() as u64,
                data,
            );
        }

        fn dir(&mut self, name: &str) {
            self.raw(tar::EntryType::Directory, name.as_bytes(), b"", io::empty());
        }

        fn link(&mut self, name: &str, target: &str) {
            self.raw(
                tar::EntryType::Symlink,
                name.as_bytes(),
                target.as_bytes(),
                io::empty(),
            );
        }

        fn done(self) -> Vec<u8> {
            self.tar.into_inner().unwrap().finish().unwrap()
        }
    }

    /// Imports `archive` next to a file that was there before; asserts that it is refused and
    /// that the folder is as it was (no destination, no staging folder).
    fn refused_with_limits(archive: &[u8], limits: Limits) -> ArchiveError {
        let parent = tempfile::tempdir().unwrap();
        std::fs::write(parent.path().join("already-here.txt"), "hello").unwrap();
        let before = listing(parent.path());
        let err = import_with(archive, &parent.path().join("proj"), limits).unwrap_err();
        assert!(err.is_refusal(), "{err:?}");
        assert_eq!(listing(parent.path()), before, "{err}");
        assert!(matches!(
            HubError::from(ArchiveError::Damaged(String::new())),
            HubError::BadRequest(_)
        ));
        err
    }

    fn refused(archive: &[u8]) -> ArchiveError {
        refused_with_limits(
            archive,
            Limits {
                bytes: 10 << 20,
                entries: MAX_ENTRIES,
            },
        )
    }

    fn unsafe_path(err: &ArchiveError) -> (&str, &str) {
        match err {
            ArchiveError::UnsafePath { path, reason } => (path.as_str(), reason.as_str()),
            other => panic!("not an unsafe path: {other:?}"),
        }
    }

    #[test]
    fn a_path_climbing_out_with_dotdot_is_refused() {
        let mut e = Evil::new(1, 4);
        e.file("../evil", b"evil");
        let err = refused(&e.done());
        let (path, reason) = unsafe_path(&err);
        assert_eq!(path, "../evil");
        assert!(reason.contains("\"..\""), "{reason}");
        assert!(
            err.to_string()
                .starts_with("The archive's entry \"../evil\" is refused"),
            "{err}"
        );
    }

    #[test]
    fn an_absolute_path_is_refused() {
        let mut e = Evil::new(1, 4);
        e.file("/etc/evil", b"evil");
        let err = refused(&e.done());
        let (path, reason) = unsafe_path(&err);
        assert_eq!(path, "/etc/evil");
        assert!(reason.contains("absolute"), "{reason}");
    }

    #[test]
    fn dotdot_inside_files_is_refused() {
        let mut e = Evil::new(2, 8);
        e.file("files/ok", b"fine");
        e.file("files/../../evil", b"evil");
        let err = refused(&e.done());
        assert_eq!(unsafe_path(&err).0, "files/../../evil");
    }

    #[test]
    fn a_symlink_to_an_absolute_path_is_refused_before_anything_is_written_through_it() {
        let mut e = Evil::new(1, 4);
        e.link("files/link", "/etc/passwd");
        e.file("files/link/x", b"evil");
        match refused(&e.done()) {
            ArchiveError::UnsafeLink {
                path,
                target,
                reason,
            } => {
                assert_eq!(
                    (path.as_str(), target.as_str()),
                    ("files/link", "/etc/passwd")
                );
                assert!(reason.contains("absolute"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn writing_through_a_symlink_is_refused_even_when_it_points_inside() {
        let mut e = Evil::new(1, 4);
        e.dir("files/sub");
        e.link("files/link", "sub");
        e.file("files/link/x", b"evil");
        match refused(&e.done()) {
            ArchiveError::ThroughLink { path, link } => {
                assert_eq!(
                    (path.as_str(), link.as_str()),
                    ("files/link/x", "files/link")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_symlink_climbing_out_of_its_folder_is_refused() {
        let mut e = Evil::new(0, 0);
        e.link("files/a", "../..");
        match refused(&e.done()) {
            ArchiveError::UnsafeLink { path, reason, .. } => {
                assert_eq!(path, "files/a");
                assert!(reason.contains("outside"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // One level deeper may climb one level, not two.
        let mut e = Evil::new(0, 0);
        e.link("files/d/up", "../x");
        e.link("files/d/out", "../../x");
        match refused(&e.done()) {
            ArchiveError::UnsafeLink { path, .. } => assert_eq!(path, "files/d/out"),
            other => panic!("{other:?}"),
        }
        // Climbing back after going down (through another link) is refused outright: d/y
        // resolves to e, so d/y/../.. would be the folder above files/.
        let mut e = Evil::new(0, 0);
        e.dir("files/e");
        e.link("files/d/y", "../e");
        e.link("files/x", "d/y/../..");
        match refused(&e.done()) {
            ArchiveError::UnsafeLink { path, reason, .. } => {
                assert_eq!(path, "files/x");
                assert!(reason.contains("down and then up"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hard_links_are_refused_wherever_they_point() {
        for target in ["/etc/passwd", "files/a"] {
            let mut e = Evil::new(1, 1);
            e.file("files/a", b"a");
            e.raw(
                tar::EntryType::Link,
                b"files/h",
                target.as_bytes(),
                io::empty(),
            );
            match refused(&e.done()) {
                ArchiveError::HardLink { path, target: t } => {
                    assert_eq!((path.as_str(), t.as_str()), ("files/h", target));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn devices_and_fifos_are_refused() {
        for (kind, word) in [
            (tar::EntryType::Char, "character device"),
            (tar::EntryType::Block, "block device"),
            (tar::EntryType::Fifo, "FIFO"),
        ] {
            let mut e = Evil::new(0, 0);
            e.raw(kind, b"files/dev", b"", io::empty());
            match refused(&e.done()) {
                ArchiveError::SpecialFile { path, kind } => {
                    assert_eq!(path, "files/dev");
                    assert!(kind.contains(word), "{kind}");
                }
                other => panic!("{other:?}"),
            }
        }
        // A sparse file (whose map is refused as damaged here) never becomes a file.
        let mut e = Evil::new(0, 0);
        e.raw(tar::EntryType::GNUSparse, b"files/sparse", b"", io::empty());
        refused(&e.done());
    }

    #[test]
    fn a_manifest_of_version_2_is_refused() {
        let mut e = Evil::empty();
        e.file("project.json", &manifest_json(0, 0, 2, false));
        let err = refused(&e.done());
        assert!(matches!(err, ArchiveError::UnknownVersion(2)), "{err:?}");
        assert!(err.to_string().contains("reads version 1"), "{err}");
    }

    #[test]
    fn an_archive_without_a_manifest_first_is_refused() {
        // None at all.
        let mut e = Evil::empty();
        e.file("files/a", b"a");
        let err = refused(&e.done());
        assert!(
            matches!(&err, ArchiveError::NoManifest(m) if m.contains("files/a")),
            "{err:?}"
        );
        // Not first.
        let mut e = Evil::empty();
        e.file("files/a", b"a");
        e.file("project.json", &manifest_json(1, 1, VERSION, false));
        assert!(matches!(refused(&e.done()), ArchiveError::NoManifest(_)));
        // Empty.
        let err = refused(&Evil::empty().done());
        assert!(
            matches!(&err, ArchiveError::NoManifest(m) if m.contains("empty")),
            "{err:?}"
        );
        // A folder named project.json.
        let mut e = Evil::empty();
        e.dir("project.json");
        assert!(matches!(refused(&e.done()), ArchiveError::NoManifest(_)));
        // A second one later.
        let mut e = Evil::new(0, 0);
        e.file("project.json", &manifest_json(0, 0, VERSION, false));
        assert!(unsafe_path(&refused(&e.done())).1.contains("second time"));
    }

    #[test]
    fn a_manifest_that_is_not_ours_is_refused() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "not JSON"),
            (
                br#"{"format": "other", "version": 1}"#.to_vec(),
                "\"other\"",
            ),
            (br#"{"version": 1}"#.to_vec(), "no \"format\""),
            (br#"{"format": "xiji-project"}"#.to_vec(), "no \"version\""),
            (
                br#"{"format": "xiji-project", "version": 1}"#.to_vec(),
                "missing field",
            ),
            (
                {
                    let mut v: serde_json::Value =
                        serde_json::from_slice(&manifest_json(0, 0, 1, false)).unwrap();
                    v["surprise"] = true.into();
                    serde_json::to_vec(&v).unwrap()
                },
                "unknown field",
            ),
            (
                {
                    let mut v: serde_json::Value =
                        serde_json::from_slice(&manifest_json(0, 0, 1, true)).unwrap();
                    v["project"]["datasets"][0]["owner"] = "..".into();
                    serde_json::to_vec(&v).unwrap()
                },
                "can be a folder",
            ),
            (
                {
                    let mut v: serde_json::Value =
                        serde_json::from_slice(&manifest_json(0, 0, 1, false)).unwrap();
                    v["project"]["visibility"] = "secret".into();
                    serde_json::to_vec(&v).unwrap()
                },
                "secret",
            ),
        ];
        for (json, words) in cases {
            let mut e = Evil::empty();
            e.file("project.json", &json);
            match refused(&e.done()) {
                ArchiveError::Manifest(m) => assert!(m.contains(words), "{m:?} lacks {words:?}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_zstd_bomb_is_stopped_at_the_limit() {
        // The manifest says 1 MB; the entry's header honestly says 50 MB of zeros: a few KB
        // compressed.
        let mut e = Evil::new(1, 1_000_000);
        e.raw_sized(
            tar::EntryType::Regular,
            b"files/zeros",
            b"",
            50 << 20,
            io::repeat(0).take(50 << 20),
        );
        let archive = e.done();
        assert!(archive.len() < 64 * 1024, "{} bytes", archive.len());
        let err = refused(&archive);
        assert!(
            matches!(err, ArchiveError::TooLarge { limit } if limit == 10 << 20),
            "{err:?}"
        );
        assert!(err.to_string().contains("10.0 MiB"), "{err}");
    }

    #[test]
    fn a_manifest_larger_than_the_limit_is_refused_before_any_file() {
        let mut e = Evil::new(1, 11 << 20);
        e.file("files/a", b"a");
        assert!(matches!(refused(&e.done()), ArchiveError::TooLarge { .. }));
    }

    #[test]
    fn the_limit_is_checked_while_streaming_not_after() {
        // 8 MB that do not compress, declared honestly, limit 1 MB: refused at the header,
        // having read a sliver of the input.
        struct Counting<'a> {
            inner: &'a [u8],
            read: &'a Cell<usize>,
        }
        impl Read for Counting<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.inner.read(buf)?;
                self.read.set(self.read.get() + n);
                Ok(n)
            }
        }
        let mut e = Evil::new(1, 1 << 20);
        e.file("files/noise.bin", &random_bytes(8 << 20, 5));
        let archive = e.done();
        let parent = tempfile::tempdir().unwrap();
        let read = Cell::new(0);
        let input = Counting {
            inner: &archive,
            read: &read,
        };
        let err = import(input, &parent.path().join("p"), 1 << 20).unwrap_err();
        assert!(matches!(err, ArchiveError::TooLarge { .. }), "{err:?}");
        assert!(
            read.get() < 1 << 20,
            "read {} of {} bytes",
            read.get(),
            archive.len()
        );
        assert!(listing(parent.path()).is_empty());
    }

    #[test]
    fn a_tar_header_that_lies_about_its_size_does_not_get_past() {
        // Says 1 KiB, 50 MB follow: the rest is read as the next header, which is garbage.
        let mut e = Evil::new(1, 1024);
        let pattern = (0..50u32 << 20).map(|i| (i % 251) as u8 + 1);
        let data: Vec<u8> = pattern.collect();
        e.raw_sized(
            tar::EntryType::Regular,
            b"files/liar",
            b"",
            1024,
            data.as_slice(),
        );
        let err = refused(&e.done());
        assert!(matches!(&err, ArchiveError::Damaged(_)), "{err:?}");
        // Says 1 KiB, 50 MB of zeros follow: they read as the end of the archive, then as
        // more than the padding tar allows.
        let mut e = Evil::new(1, 1024);
        e.raw_sized(
            tar::EntryType::Regular,
            b"files/liar",
            b"",
            1024,
            io::repeat(0).take(50 << 20),
        );
        let err = refused(&e.done());
        assert!(
            matches!(&err, ArchiveError::Damaged(m) if m.contains("follow the end")),
            "{err:?}"
        );
        // Says 5 MB, 1 KiB follows.
        let mut e = Evil::new(1, 5 << 20);
        e.raw_sized(
            tar::EntryType::Regular,
            b"files/liar",
            b"",
            5 << 20,
            &[7u8; 1024][..],
        );
        let err = refused(&e.done());
        assert!(matches!(&err, ArchiveError::Damaged(_)), "{err:?}");
        // Says 50 MB, with the limit at 10: stopped at the header.
        let mut e = Evil::new(1, 1024);
        e.raw_sized(
            tar::EntryType::Regular,
            b"files/liar",
            b"",
            50 << 20,
            &[7u8; 1024][..],
        );
        assert!(matches!(refused(&e.done()), ArchiveError::TooLarge { .. }));
    }

    #[test]
    fn a_truncated_or_altered_archive_is_refused() {
        let work = tempfile::tempdir().unwrap();
        let project = work.path().join("p");
        std::fs::create_dir(&project).unwrap();
        std::fs::write(project.join("a.bin"), random_bytes(300_000, 6)).unwrap();
        std::fs::write(project.join("b.txt"), "b").unwrap();
        let mut archive = Vec::new();
        export(&project, &Manifest::new(project_meta()), &[], &mut archive).unwrap();
        for cut in [archive.len() / 2, archive.len() - 1] {
            let err = refused(&archive[..cut]);
            assert!(matches!(err, ArchiveError::Damaged(_)), "{err:?}");
        }
        // Fewer files than the manifest lists.
        let mut e = Evil::new(3, 3);
        e.file("files/a", b"a");
        e.file("files/b", b"b");
        match refused(&e.done()) {
            ArchiveError::Mismatch {
                declared_files: 3,
                files: 2,
                ..
            } => {}
            other => panic!("{other:?}"),
        }
        // More.
        let mut e = Evil::new(1, 2);
        e.file("files/a", b"a");
        e.file("files/b", b"b");
        assert!(matches!(refused(&e.done()), ArchiveError::Mismatch { .. }));
        // Not zstd at all.
        assert!(matches!(
            refused(b"PK\x03\x04 a zip file"),
            ArchiveError::Damaged(_)
        ));
        // A valid zstd frame holding no tar.
        let not_tar = zstd::encode_all(&b"hello, this is not a tar archive"[..], 3).unwrap();
        assert!(matches!(
            refused(&not_tar),
            ArchiveError::Damaged(_) | ArchiveError::NoManifest(_)
        ));
    }

    #[test]
    fn entries_outside_files_and_the_included_datasets_are_refused() {
        for path in [
            "other/x",
            "datasets/eve/secret/x",
            "datasets/x",
            "files.txt",
        ] {
            let mut e = Evil::new(1, 1);
            e.file(path, b"x");
            let err = refused(&e.done());
            assert_eq!(unsafe_path(&err).0, path);
        }
        // An included dataset's files are accepted, its folder made even when empty.
        let mut e = Evil::empty();
        e.file("project.json", &manifest_json(1, 1, VERSION, true));
        e.file("datasets/alice/细胞图像/a/b.txt", b"x");
        let parent = tempfile::tempdir().unwrap();
        let imported = import(e.done().as_slice(), &parent.path().join("p"), 1 << 20).unwrap();
        assert_eq!(imported.datasets_included[0].files[0].path, "a/b.txt");
        assert!(parent.path().join("p/files").is_dir());
        // But no links in a dataset, and its names in NFC.
        let mut e = Evil::empty();
        e.file("project.json", &manifest_json(0, 0, VERSION, true));
        e.link("datasets/alice/细胞图像/l", "x");
        assert!(matches!(
            refused(&e.done()),
            ArchiveError::UnsafeLink { .. }
        ));
        let mut e = Evil::empty();
        e.file("project.json", &manifest_json(1, 1, VERSION, true));
        e.file("datasets/alice/细胞图像/e\u{301}.txt", b"x");
        assert!(unsafe_path(&refused(&e.done())).1.contains("NFC"));
    }

    #[test]
    fn names_with_control_characters_are_refused() {
        for name in ["files/a\nb", "files/tab\there", "files/bell\u{7}"] {
            let mut e = Evil::new(1, 1);
            e.file(name, b"x");
            let err = refused(&e.done());
            assert!(unsafe_path(&err).1.contains("control character"), "{err}");
        }
        // NUL cannot sit inside a header's name field, but can in a PAX path.
        let mut e = Evil::new(1, 1);
        let record = pax_record("path", "files/a\0b");
        e.raw_sized(
            tar::EntryType::XHeader,
            b"././@PaxHeader",
            b"",
            record.len() as u64,
            record.as_slice(),
        );
        e.file("files/ok", b"x");
        assert!(unsafe_path(&refused(&e.done())).1.contains("U+0000"));
    }

    #[test]
    fn long_names_and_pax_paths_are_checked_like_any_path() {
        // A PAX path overrides the header's innocent name.
        let mut e = Evil::new(1, 1);
        let record = pax_record("path", "../evil");
        e.raw_sized(
            tar::EntryType::XHeader,
            b"././@PaxHeader",
            b"",
            record.len() as u64,
            record.as_slice(),
        );
        e.file("files/ok", b"x");
        assert_eq!(unsafe_path(&refused(&e.done())).0, "../evil");
        // A GNU long name.
        let mut e = Evil::new(1, 1);
        let long = format!("files/{}/../../../evil\0", "a".repeat(120));
        e.raw_sized(
            tar::EntryType::GNULongName,
            b"././@LongLink",
            b"",
            long.len() as u64,
            long.as_bytes(),
        );
        e.file("files/ok", b"x");
        assert!(unsafe_path(&refused(&e.done())).1.contains(".."));
        // A PAX symlink target.
        let mut e = Evil::new(0, 0);
        let record = pax_record("linkpath", "/etc/shadow");
        e.raw_sized(
            tar::EntryType::XHeader,
            b"././@PaxHeader",
            b"",
            record.len() as u64,
            record.as_slice(),
        );
        e.link("files/l", "ok");
        assert!(
            matches!(refused(&e.done()), ArchiveError::UnsafeLink { target, .. } if target == "/etc/shadow")
        );
        // Headers larger than any real entry's.
        let mut e = Evil::new(1, 1);
        let huge = pax_record("comment", &"x".repeat(100_000));
        e.raw_sized(
            tar::EntryType::XHeader,
            b"././@PaxHeader",
            b"",
            huge.len() as u64,
            huge.as_slice(),
        );
        e.file("files/ok", b"x");
        assert!(matches!(&refused(&e.done()), ArchiveError::Damaged(m) if m.contains("headers")));
    }

    #[test]
    fn too_many_entries_are_refused() {
        let mut e = Evil::new(10, 10);
        for i in 0..10 {
            e.file(&format!("files/{i}"), b"x");
        }
        let err = refused_with_limits(
            &e.done(),
            Limits {
                bytes: 1 << 20,
                entries: 5,
            },
        );
        assert!(
            matches!(err, ArchiveError::TooManyEntries { max: 5 }),
            "{err:?}"
        );
    }

    #[test]
    fn the_same_path_twice_is_refused() {
        let mut e = Evil::new(2, 2);
        e.file("files/a", b"a");
        e.file("files/a", b"b");
        assert!(
            matches!(refused(&e.done()), ArchiveError::Duplicate { path } if path == "files/a")
        );
        let mut e = Evil::new(1, 1);
        e.file("files/a", b"a");
        e.dir("files/a");
        assert!(matches!(refused(&e.done()), ArchiveError::Duplicate { .. }));
        let mut e = Evil::new(1, 1);
        e.link("files/a", "b");
        e.file("files/a", b"a");
        assert!(matches!(refused(&e.done()), ArchiveError::Duplicate { .. }));
        // A file where a folder must be.
        let mut e = Evil::new(2, 2);
        e.file("files/a", b"a");
        e.file("files/a/b", b"b");
        assert!(unsafe_path(&refused(&e.done())).1.contains("not a folder"));
        let mut e = Evil::new(1, 1);
        e.file("files", b"a");
        assert!(unsafe_path(&refused(&e.done()))
            .1
            .contains("must be a folder"));
    }

    #[test]
    fn an_existing_destination_is_left_alone() {
        let parent = tempfile::tempdir().unwrap();
        let into = parent.path().join("p");
        std::fs::create_dir(&into).unwrap();
        std::fs::write(into.join("mine"), "keep").unwrap();
        let mut e = Evil::new(1, 1);
        e.file("files/a", b"a");
        let err = import(e.done().as_slice(), &into, 1 << 20).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Exists(_)) && !err.is_refusal(),
            "{err:?}"
        );
        assert!(matches!(HubError::from(err), HubError::Internal(_)));
        assert_eq!(listing(parent.path()), vec!["p"]);
        assert_eq!(listing(&into), vec!["mine"]);
    }

    #[test]
    fn the_documented_manifest_is_a_valid_manifest() {
        let doc = include_str!("../../../docs/projects-archive.md");
        let start = doc.find("```json\n").unwrap() + "```json\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let manifest = parse_manifest(&doc.as_bytes()[start..end]).unwrap();
        assert_eq!(
            (manifest.format.as_str(), manifest.version),
            (FORMAT, VERSION)
        );
        let mut want = project_meta();
        want.visibility = Visibility::Private;
        want.description = "Markdown".into();
        want.datasets[0].included = true;
        assert_eq!(manifest.project, want);
    }

    #[test]
    fn link_targets_follow_one_rule_in_both_directions() {
        assert_eq!(link_target("a/b", 0, false).unwrap(), "a/b");
        assert_eq!(link_target("../a", 1, false).unwrap(), "../a");
        assert_eq!(link_target("..", 1, false).unwrap(), "..");
        assert_eq!(link_target("./a//b/", 0, true).unwrap(), "a/b");
        assert!(link_target("./a", 0, false).is_err());
        assert!(link_target("a/", 0, false).is_err());
        assert!(link_target("../a", 0, false).is_err());
        assert!(link_target("a/../b", 5, false).is_err());
        assert!(link_target("/a", 5, false).is_err());
        assert!(link_target(".", 0, true).is_err());
        assert!(link_target("", 0, false).is_err());
    }

    #[test]
    fn pax_records_count_their_own_length() {
        for value in ["1", &"x".repeat(90), &"y".repeat(994)] {
            let r = pax_record("mtime", value);
            let text = String::from_utf8(r.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), r.len(), "{text:?}");
        }
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some(at(1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time("12"), Some(at(12, 0)));
        assert_eq!(parse_pax_time("1.x"), None);
    }
}
