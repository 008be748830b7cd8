//! Overlay upper directory → OCI layer tar (a changeset, per the image spec's `layer.md`).
//!
//! Two passes over the tree: [`scan_layer`] stats every entry (sorted, excluded paths left out)
//! so the size cap fails before anything is written and progress has a total; then
//! [`LayerScan::write_tar`] streams the entries into a tar in the same order.
//!
//! Overlay markers become OCI whiteouts: a character device 0:0 (or a zero-size file carrying
//! `*.overlay.whiteout`) becomes an empty `.wh.<name>`; a directory with `*.overlay.opaque=y`
//! gets a `.wh..wh..opq` entry right after it. A directory's whiteouts are written before its
//! other entries, so readers that apply entries in order see the deletion first.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};

use crate::error::{human_bytes, Error, Result};
use crate::exclude::ExcludeRules;
use crate::progress::Signals;

/// Prefix of a whiteout file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Default size cap: 10 GiB of file content.
pub const DEFAULT_SIZE_CAP: u64 = 10 * 1024 * 1024 * 1024;

/// What goes into the layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LayerOptions {
    /// Paths left out.
    pub excludes: ExcludeRules,
    /// Maximum file content in bytes (`None`: no cap).
    pub size_cap: Option<u64>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        Self {
            excludes: ExcludeRules::default(),
            size_cap: Some(DEFAULT_SIZE_CAP),
        }
    }
}

/// What a scanned entry becomes in the tar.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Directory {
        opaque: bool,
    },
    File,
    /// A further name of an inode already written (index into `entries`).
    HardLink {
        target: usize,
    },
    Symlink {
        target: OsString,
    },
    Whiteout,
    CharDevice,
    BlockDevice,
    Fifo,
}

#[derive(Debug)]
struct ScannedEntry {
    /// Path relative to the upper directory (no leading `/`).
    relative: PathBuf,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
    rdev: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// The result of scanning a writable layer: every entry to write, in order.
#[derive(Debug)]
pub struct LayerScan {
    upper_dir: PathBuf,
    entries: Vec<ScannedEntry>,
    content_bytes: u64,
    skipped: Vec<String>,
}

impl LayerScan {
    /// Number of tar entries (whiteouts and opaque markers included).
    pub fn entry_count(&self) -> usize {
        self.entries.len()
            + self
                .entries
                .iter()
                .filter(|e| matches!(e.kind, Kind::Directory { opaque: true }))
                .count()
    }

    /// Bytes of regular file content (each hard-linked inode once).
    pub fn content_bytes(&self) -> u64 {
        self.content_bytes
    }

    /// Container paths that cannot be represented (sockets, real files named `.wh.*`) and were
    /// left out.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }
}

/// Statistics of a written tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TarSummary {
    /// Tar entries written.
    pub entries: u64,
    /// File content bytes written.
    pub content_bytes: u64,
}

/// Walks `upper_dir` and decides every entry, enforcing exclusions and the size cap.
pub fn scan_layer(
    upper_dir: &Path,
    options: &LayerOptions,
    signals: &Signals,
) -> Result<LayerScan> {
    let meta = std::fs::symlink_metadata(upper_dir).map_err(|source| Error::UpperDir {
        path: upper_dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(Error::UpperDir {
            path: upper_dir.to_path_buf(),
            source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    let mut scan = LayerScan {
        upper_dir: upper_dir.to_path_buf(),
        entries: Vec::new(),
        content_bytes: 0,
        skipped: Vec::new(),
    };
    let mut inodes: HashMap<(u64, u64), usize> = HashMap::new();
    let mut largest: Vec<(u64, String)> = Vec::new();
    let root_opaque = is_opaque(upper_dir)?;
    if root_opaque {
        // An opaque root would hide the whole base image: not something a container produces.
        return Err(Error::UnsupportedOverlay {
            path: "/".into(),
            feature: "an opaque root directory",
        });
    }
    scan_dir(
        upper_dir,
        Path::new(""),
        options,
        signals,
        &mut scan,
        &mut inodes,
        &mut largest,
    )?;
    if let Some(limit) = options.size_cap {
        if scan.content_bytes > limit {
            largest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let largest = largest
                .iter()
                .take(5)
                .map(|(size, path)| format!("{path} ({})", human_bytes(*size)))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::SizeCapExceeded {
                size: scan.content_bytes,
                limit,
                largest,
            });
        }
    }
    signals.set_total_estimate(scan.content_bytes);
    tracing::debug!(
        upper_dir = %upper_dir.display(),
        entries = scan.entries.len(),
        content_bytes = scan.content_bytes,
        "scanned the writable layer"
    );
    Ok(scan)
}

fn container_path(relative: &Path) -> String {
    format!("/{}", relative.display())
}

fn io_at(path: &Path, what: &str) -> impl FnOnce(io::Error) -> Error {
    let context = format!("{what} {}", path.display());
    move |e| Error::io(context, e)
}

fn scan_dir(
    dir: &Path,
    relative_dir: &Path,
    options: &LayerOptions,
    signals: &Signals,
    scan: &mut LayerScan,
    inodes: &mut HashMap<(u64, u64), usize>,
    largest: &mut Vec<(u64, String)>,
) -> Result<()> {
    let mut names: Vec<OsString> = std::fs::read_dir(dir)
        .map_err(io_at(dir, "cannot list"))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(io_at(dir, "cannot list"))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));

    // Whiteouts first, then everything else; each group in byte order.
    let mut whiteouts = Vec::new();
    let mut others = Vec::new();
    for name in names {
        if signals.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let path = dir.join(&name);
        let relative = relative_dir.join(&name);
        let shown = container_path(&relative);
        if options.excludes.is_excluded(&shown) {
            continue;
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Deleted while we looked: the container is running.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_at(&path, "cannot stat")(e)),
        };
        if is_whiteout(&path, &meta)? {
            whiteouts.push((name, meta));
        } else {
            others.push((name, path, relative, meta));
        }
    }

    for (name, meta) in whiteouts {
        let mut entry = base_entry(relative_dir.join(whiteout_name(&name)), &meta);
        entry.kind = Kind::Whiteout;
        entry.mode = 0o600;
        entry.size = 0;
        scan.entries.push(entry);
        signals.add_entries(1);
    }

    for (name, path, relative, meta) in others {
        if name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // Such a name means "delete" in a layer; it cannot be stored as a file.
            tracing::warn!(path = %container_path(&relative), "a file named .wh.* cannot be saved in an image; left out");
            scan.skipped.push(container_path(&relative));
            continue;
        }
        let file_type = meta.file_type();
        let xattrs = read_xattrs(&path, &relative, file_type.is_symlink())?;
        let mut entry = base_entry(relative.clone(), &meta);
        entry.xattrs = xattrs;
        if file_type.is_dir() {
            entry.kind = Kind::Directory {
                opaque: is_opaque(&path)?,
            };
            scan.entries.push(entry);
            signals.add_entries(1);
            scan_dir(&path, &relative, options, signals, scan, inodes, largest)?;
            continue;
        }
        if file_type.is_file() {
            if meta.nlink() > 1 {
                if let Some(&target) = inodes.get(&(meta.dev(), meta.ino())) {
                    entry.kind = Kind::HardLink { target };
                    entry.size = 0;
                    scan.entries.push(entry);
                    signals.add_entries(1);
                    continue;
                }
                inodes.insert((meta.dev(), meta.ino()), scan.entries.len());
            }
            entry.kind = Kind::File;
            scan.content_bytes += meta.len();
            note_largest(largest, meta.len(), container_path(&relative));
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io_at(&path, "cannot read link"))?;
            entry.kind = Kind::Symlink {
                target: target.into_os_string(),
            };
        } else if file_type.is_char_device() {
            entry.kind = Kind::CharDevice;
        } else if file_type.is_block_device() {
            entry.kind = Kind::BlockDevice;
        } else if file_type.is_fifo() {
            entry.kind = Kind::Fifo;
        } else {
            // Sockets belong to a running process; tar cannot hold them.
            scan.skipped.push(container_path(&relative));
            continue;
        }
        scan.entries.push(entry);
        signals.add_entries(1);
    }
    Ok(())
}

fn note_largest(largest: &mut Vec<(u64, String)>, size: u64, path: String) {
    const KEEP: usize = 5;
    if largest.len() < KEEP {
        largest.push((size, path));
    } else if let Some(min) = largest.iter_mut().min_by_key(|(s, _)| *s) {
        if size > min.0 {
            *min = (size, path);
        }
    }
}

fn base_entry(relative: PathBuf, meta: &Metadata) -> ScannedEntry {
    ScannedEntry {
        relative,
        kind: Kind::File,
        mode: meta.mode() & 0o7777,
        uid: u64::from(meta.uid()),
        gid: u64::from(meta.gid()),
        mtime: u64::try_from(meta.mtime()).unwrap_or(0),
        size: if meta.is_file() { meta.len() } else { 0 },
        rdev: meta.rdev(),
        xattrs: Vec::new(),
    }
}

fn whiteout_name(name: &OsStr) -> OsString {
    let mut out = OsString::from(WHITEOUT_PREFIX);
    out.push(name);
    out
}

/// Overlay's own attributes (both the `trusted.` and the `userxattr` namespace).
fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

fn get_overlay_xattr(path: &Path, attr: &str) -> Result<Option<Vec<u8>>> {
    for ns in ["trusted.overlay.", "user.overlay."] {
        match xattr::get(path, format!("{ns}{attr}")) {
            Ok(Some(v)) => return Ok(Some(v)),
            Ok(None) => {}
            Err(e) if unsupported(&e) => return Ok(None),
            Err(e) => return Err(io_at(path, "cannot read attributes of")(e)),
        }
    }
    Ok(None)
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(95) | Some(61)) || e.kind() == io::ErrorKind::Unsupported
}

fn is_opaque(dir: &Path) -> Result<bool> {
    Ok(get_overlay_xattr(dir, "opaque")?.as_deref() == Some(b"y"))
}

fn is_whiteout(path: &Path, meta: &Metadata) -> Result<bool> {
    if meta.file_type().is_char_device() && meta.rdev() == 0 {
        return Ok(true);
    }
    // The "xwhiteout" format (Linux 6.7+): an empty file carrying `overlay.whiteout`.
    if meta.is_file() && meta.len() == 0 {
        return Ok(get_overlay_xattr(path, "whiteout")?.is_some());
    }
    Ok(false)
}

fn read_xattrs(path: &Path, relative: &Path, is_symlink: bool) -> Result<Vec<(String, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(io_at(path, "cannot list attributes of")(e)),
    };
    let mut out = Vec::new();
    for name in names {
        let Some(name) = name.to_str().map(str::to_owned) else {
            continue;
        };
        if is_overlay_xattr(&name) {
            let feature = match name.rsplit('.').next() {
                Some("metacopy") => Some("metacopy"),
                Some("redirect") => Some("redirect_dir"),
                _ => None,
            };
            if let Some(feature) = feature {
                return Err(Error::UnsupportedOverlay {
                    path: container_path(relative),
                    feature,
                });
            }
            continue;
        }
        // SELinux labels belong to the host that wrote them.
        if name == "security.selinux" || (is_symlink && name.starts_with("user.")) {
            continue;
        }
        match xattr::get(path, &name) {
            Ok(Some(value)) => out.push((name, value)),
            Ok(None) => {}
            Err(e) if unsupported(&e) => {}
            Err(e) => return Err(io_at(path, "cannot read attributes of")(e)),
        }
    }
    out.sort();
    Ok(out)
}

/// Linux's `major()`/`minor()` for a 64-bit `dev_t`.
fn dev_major(dev: u64) -> u32 {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as u32
}
fn dev_minor(dev: u64) -> u32 {
    ((dev & 0xff) | ((dev >> 12) & !0xff)) as u32
}

impl LayerScan {
    /// Writes the tar stream to `out`, reading file content from the upper directory.
    ///
    /// Files that changed size since the scan are written with the scanned size (cut, or padded
    /// with zeros) so the archive stays valid; files deleted since the scan are left out.
    pub fn write_tar<W: Write>(&self, out: W, signals: &Signals) -> Result<(W, TarSummary)> {
        let mut builder = tar::Builder::new(out);
        let mut summary = TarSummary {
            entries: 0,
            content_bytes: 0,
        };
        for entry in &self.entries {
            if signals.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let result = self.write_entry(&mut builder, entry, signals, &mut summary);
            if let Err(e) = result {
                if signals.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                return Err(e);
            }
        }
        builder
            .finish()
            .map_err(|e| Error::io("cannot finish the layer tar", e))?;
        let out = builder
            .into_inner()
            .map_err(|e| Error::io("cannot finish the layer tar", e))?;
        Ok((out, summary))
    }

    fn write_entry<W: Write>(
        &self,
        builder: &mut tar::Builder<W>,
        entry: &ScannedEntry,
        signals: &Signals,
        summary: &mut TarSummary,
    ) -> Result<()> {
        let source = self.upper_dir.join(&entry.relative);
        let write_err = |e: io::Error| Error::io("cannot write the layer", e);
        let mut name = entry.relative.as_os_str().as_bytes().to_vec();
        let mut header = Header::new_ustar();
        header.set_mode(entry.mode);
        header.set_mtime(entry.mtime);
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        set_id(&mut header, &mut pax, entry.uid, "uid");
        set_id(&mut header, &mut pax, entry.gid, "gid");
        let mut size = 0;
        let mut file = None;
        match &entry.kind {
            Kind::Directory { .. } => {
                name.push(b'/');
                header.set_entry_type(EntryType::Directory);
            }
            Kind::File => {
                match File::open(&source) {
                    Ok(f) => file = Some(f),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        tracing::warn!(path = %container_path(&entry.relative), "deleted while saving; left out");
                        return Ok(());
                    }
                    Err(e) => return Err(io_at(&source, "cannot open")(e)),
                }
                header.set_entry_type(EntryType::Regular);
                size = entry.size;
            }
            Kind::HardLink { target } => {
                header.set_entry_type(EntryType::Link);
                let target = self.entries[*target].relative.as_os_str().as_bytes();
                set_link(&mut header, &mut pax, target);
            }
            Kind::Symlink { target } => {
                header.set_entry_type(EntryType::Symlink);
                set_link(&mut header, &mut pax, target.as_bytes());
            }
            Kind::Whiteout => header.set_entry_type(EntryType::Regular),
            Kind::CharDevice | Kind::BlockDevice => {
                header.set_entry_type(if entry.kind == Kind::CharDevice {
                    EntryType::Char
                } else {
                    EntryType::Block
                });
                header
                    .set_device_major(dev_major(entry.rdev))
                    .map_err(write_err)?;
                header
                    .set_device_minor(dev_minor(entry.rdev))
                    .map_err(write_err)?;
            }
            Kind::Fifo => header.set_entry_type(EntryType::Fifo),
        }
        header.set_size(size);
        if size > 0o77777777777 {
            pax.push(("size".into(), size.to_string().into_bytes()));
        }
        set_name(&mut header, &mut pax, &name);
        for (key, value) in &entry.xattrs {
            pax.push((format!("SCHILY.xattr.{key}"), value.clone()));
        }
        if !pax.is_empty() {
            builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(write_err)?;
        }
        header.set_cksum();
        match file {
            Some(file) => {
                let reader = ExactReader {
                    inner: file,
                    remaining: size,
                    padding: false,
                    signals,
                    path: &entry.relative,
                };
                builder.append(&header, reader).map_err(|e| {
                    if signals.is_cancelled() {
                        Error::Cancelled
                    } else {
                        Error::io(
                            format!(
                                "cannot add {} to the layer",
                                container_path(&entry.relative)
                            ),
                            e,
                        )
                    }
                })?;
                summary.content_bytes += size;
            }
            None => builder.append(&header, io::empty()).map_err(write_err)?,
        }
        summary.entries += 1;
        if let Kind::Directory { opaque: true } = entry.kind {
            let mut marker = Header::new_ustar();
            marker.set_entry_type(EntryType::Regular);
            marker.set_mode(0o600);
            marker.set_mtime(entry.mtime);
            marker.set_size(0);
            let mut pax = Vec::new();
            set_id(&mut marker, &mut pax, entry.uid, "uid");
            set_id(&mut marker, &mut pax, entry.gid, "gid");
            let mut marker_name = name.clone();
            marker_name.extend_from_slice(OPAQUE_MARKER.as_bytes());
            set_name(&mut marker, &mut pax, &marker_name);
            if !pax.is_empty() {
                builder
                    .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                    .map_err(write_err)?;
            }
            marker.set_cksum();
            builder.append(&marker, io::empty()).map_err(write_err)?;
            summary.entries += 1;
        }
        Ok(())
    }
}

/// Sets a uid/gid, moving values too large for the octal field to a PAX record.
fn set_id(header: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, id: u64, key: &str) {
    const MAX_OCTAL: u64 = 0o7777777;
    let field = id.min(MAX_OCTAL);
    if key == "uid" {
        header.set_uid(field);
    } else {
        header.set_gid(field);
    }
    if id > MAX_OCTAL {
        pax.push((key.to_string(), id.to_string().into_bytes()));
    }
}

/// Writes `name` into the ustar `name`/`prefix` fields, or a PAX `path` record when it does
/// not fit (the header then keeps a truncated name, as PAX writers do).
fn set_name(header: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, name: &[u8]) {
    let Some(ustar) = header.as_ustar_mut() else {
        return;
    };
    if name.len() <= ustar.name.len() {
        ustar.name[..name.len()].copy_from_slice(name);
        return;
    }
    // Split at a '/' so that the prefix holds ≤ 155 bytes and the name ≤ 100.
    let split = name
        .iter()
        .enumerate()
        .filter(|(i, b)| **b == b'/' && *i <= ustar.prefix.len() && name.len() - i - 1 <= 100)
        .map(|(i, _)| i)
        .find(|i| name.len() - i - 1 > 0);
    if let Some(i) = split {
        ustar.prefix[..i].copy_from_slice(&name[..i]);
        ustar.name[..name.len() - i - 1].copy_from_slice(&name[i + 1..]);
        return;
    }
    let n = ustar.name.len();
    ustar.name.copy_from_slice(&name[..n]);
    pax.push(("path".into(), name.to_vec()));
}

fn set_link(header: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, target: &[u8]) {
    let Some(ustar) = header.as_ustar_mut() else {
        return;
    };
    let n = ustar.linkname.len();
    if target.len() <= n {
        ustar.linkname[..target.len()].copy_from_slice(target);
    } else {
        ustar.linkname.copy_from_slice(&target[..n]);
        pax.push(("linkpath".into(), target.to_vec()));
    }
}

/// Reads exactly `remaining` bytes: the file's content, then zeros if it shrank.
struct ExactReader<'a> {
    inner: File,
    remaining: u64,
    padding: bool,
    signals: &'a Signals,
    path: &'a Path,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        if self.signals.is_cancelled() {
            // Not `Interrupted`: `io::copy` would retry that forever.
            return Err(io::Error::other("cancelled"));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = if self.padding {
            buf[..want].fill(0);
            want
        } else {
            let n = self.inner.read(&mut buf[..want])?;
            if n == 0 {
                tracing::warn!(path = %container_path(self.path), "file shrank while saving; padded with zeros");
                self.padding = true;
                buf[..want].fill(0);
                want
            } else {
                n
            }
        };
        self.remaining -= n as u64;
        self.signals.add_read(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_split_like_glibc() {
        // makedev(8, 1) and makedev(259, 70000)
        assert_eq!((dev_major(0x801), dev_minor(0x801)), (8, 1));
        let (major, minor) = (259u64, 70000u64);
        let dev = ((major & 0xfff) << 8)
            | ((major & !0xfff) << 32)
            | (minor & 0xff)
            | ((minor & !0xff) << 12);
        assert_eq!((dev_major(dev), dev_minor(dev)), (259, 70000));
    }
}
