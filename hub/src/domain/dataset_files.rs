//! A dataset's bytes on its storage pool: file names, uploads written in pieces, files moved
//! into place, folders streamed as ZIP, cover images.
//!
//! Layout of a dataset's folder (its placement on a pool):
//!
//! ```text
//! files/    the complete files, as users name them (what nodes mount read-only)
//! uploads/  one file per upload under way, named by its id, never shown
//! cover     the cover image, if any
//! ```
//!
//! An upload's bytes are appended to `uploads/{id}` while their sha256 is computed; when the
//! last byte is written the file is renamed into `files/` (same filesystem: atomic), so a node
//! or a listing never sees a partial file.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

/// Longest file name (one path component), in bytes: what Linux filesystems allow.
const MAX_COMPONENT_BYTES: usize = 255;
/// Longest path in a dataset, in bytes: with the pool's folder in front it stays well inside
/// the system's limit on a whole path (4096).
const MAX_PATH_BYTES: usize = 1024;
/// Deepest folder nesting.
const MAX_DEPTH: usize = 64;

/// A file or folder path in a dataset as users give it, made canonical: Unicode NFC, `/` between
/// components; or a message saying what is wrong with it. `..`, `.`, empty components,
/// absolute paths, backslashes, NUL and control characters are refused.
pub fn normalize_path(raw: &str) -> Result<String, String> {
    let path: String = raw.nfc().collect();
    if path.is_empty() {
        return Err("A file or folder name is empty".into());
    }
    if path.starts_with('/') {
        return Err(format!(
            "{path:?} is an absolute path: give a path inside the dataset, e.g. data/train.csv"
        ));
    }
    if let Some(c) = path.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{:?} contains the control character U+{:04X}: file names cannot contain NUL or \
             control characters",
            path.escape_debug().to_string(),
            u32::from(c)
        ));
    }
    if path.contains('\\') {
        return Err(format!(
            "{path:?} contains a backslash: use / between folders"
        ));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("The path is longer than {MAX_PATH_BYTES} bytes"));
    }
    let components: Vec<&str> = path.split('/').collect();
    if components.len() > MAX_DEPTH {
        return Err(format!(
            "{path:?} is nested deeper than {MAX_DEPTH} folders"
        ));
    }
    for c in &components {
        match *c {
            "" => {
                return Err(format!(
                    "{path:?} has an empty folder name (two / in a row or a / at the end)"
                ))
            }
            "." | ".." => {
                return Err(format!(
                    "{path:?} contains {c:?}: paths must stay inside the dataset"
                ))
            }
            _ if c.len() > MAX_COMPONENT_BYTES => {
                return Err(format!(
                    "The name {c:?} is longer than {MAX_COMPONENT_BYTES} bytes"
                ))
            }
            _ => {}
        }
    }
    Ok(path)
}

/// A dataset's folder on its pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetDir {
    /// The placement's folder.
    pub root: PathBuf,
}

impl DatasetDir {
    /// The folder of the complete files (what nodes mount).
    pub fn files(&self) -> PathBuf {
        self.root.join("files")
    }

    /// Where an upload's bytes gather.
    pub fn upload(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// Where a complete file is (`path` normalised).
    pub fn file(&self, path: &str) -> PathBuf {
        self.files().join(path)
    }

    /// The cover image.
    pub fn cover(&self) -> PathBuf {
        self.root.join("cover")
    }

    /// Creates `files/` and `uploads/`.
    pub async fn create(&self) -> std::io::Result<()> {
        tokio::fs::create_dir_all(self.files()).await?;
        tokio::fs::create_dir_all(self.root.join("uploads")).await
    }
}

/// What an append did.
#[derive(Debug)]
pub enum Appended {
    /// The body was written whole; the offset now.
    Done(u64),
    /// The client went away mid-body; what arrived is kept; the offset now.
    BrokeOff(u64),
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The client's offset is not where the upload stands.
    #[error("This upload is at byte {actual}, not at {given}: send from Upload-Offset {actual}")]
    WrongOffset {
        /// What the client sent.
        given: u64,
        /// Where the upload stands.
        actual: u64,
    },
    /// More bytes than the upload declared.
    #[error("The upload declared {size} bytes; this request sends more than the {left} left")]
    TooMuch {
        /// Declared size.
        size: u64,
        /// Bytes that were left.
        left: u64,
    },
    /// The pool's filesystem is full.
    #[error("the storage pool is full")]
    NoSpace,
    /// Any other I/O failure.
    #[error("writing an upload failed: {0}")]
    Io(#[from] std::io::Error),
}

impl From<AppendError> for super::HubError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::WrongOffset { .. } => super::HubError::Conflict(e.to_string()),
            AppendError::TooMuch { .. } => super::HubError::BadRequest(e.to_string()),
            AppendError::NoSpace => super::HubError::InsufficientStorage(
                "The storage pool is full: ask an administrator for room".into(),
            ),
            AppendError::Io(e) => super::HubError::Internal(format!("writing an upload: {e}")),
        }
    }
}

/// Checks a `PATCH`'s declared length against what is left of an upload of `size` bytes.
pub fn check_length(offset: u64, content_length: Option<u64>, size: u64) -> Result<(), String> {
    match content_length {
        Some(len) if offset.saturating_add(len) > size => Err(format!(
            "The upload declared {size} bytes; {len} bytes from offset {offset} go past its end"
        )),
        _ => Ok(()),
    }
}

/// Running sha256 of each upload that is being written, with the offset it covers; rebuilt from
/// the bytes on disk when missing (after a restart) or stale.
static HASHERS: LazyLock<Mutex<HashMap<String, (u64, Sha256)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// One slot per upload that is being written or looked at: a lock held by whoever writes it or
/// reads its offset, and a generation that a newer request raises to make an older, stalled
/// `PATCH` stop (a connection that hangs after a laptop closed must not block the resumed upload
/// from another connection). The newest request wins; the older one keeps what it wrote.
struct UploadSlot {
    lock: Arc<tokio::sync::Mutex<()>>,
    generation: tokio::sync::watch::Sender<u64>,
}

static SLOTS: LazyLock<Mutex<HashMap<String, Arc<UploadSlot>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Holding an upload: nobody else writes it or reads its offset meanwhile.
pub struct UploadGuard {
    _held: tokio::sync::OwnedMutexGuard<()>,
    generation: u64,
    newer: tokio::sync::watch::Receiver<u64>,
}

impl UploadGuard {
    /// Resolves when a newer request wants the upload.
    async fn preempted(&mut self) {
        loop {
            if *self.newer.borrow_and_update() != self.generation {
                return;
            }
            if self.newer.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// Takes an upload: with `preempt`, a `PATCH` still writing it is told to stop first (tus's
/// offset request and every new `PATCH` do this); without, waits for it to end.
pub async fn take_upload(id: &str, preempt: bool) -> UploadGuard {
    let slot = {
        let mut map = SLOTS.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned())
            .or_insert_with(|| {
                Arc::new(UploadSlot {
                    lock: Arc::default(),
                    generation: tokio::sync::watch::Sender::new(0),
                })
            })
            .clone()
    };
    let mut generation = *slot.generation.borrow();
    if preempt {
        slot.generation.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
    }
    let newer = slot.generation.subscribe();
    let held = slot.lock.clone().lock_owned().await;
    UploadGuard {
        _held: held,
        generation,
        newer,
    }
}

/// Forgets an upload's slot and hash state (it finished or was given up).
pub fn forget_upload(id: &str) {
    SLOTS.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    HASHERS.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
}

/// How many bytes of an upload are on disk.
pub async fn upload_offset(file: &Path) -> std::io::Result<u64> {
    match tokio::fs::metadata(file).await {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// The hash state of an upload covering exactly `offset` bytes of `file`.
async fn hasher_at(id: &str, file: &Path, offset: u64) -> std::io::Result<Sha256> {
    let cached = HASHERS.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    if let Some((at, h)) = cached {
        if at == offset {
            return Ok(h);
        }
    }
    let file = file.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<Sha256> {
        let mut h = Sha256::new();
        let f = std::fs::File::open(&file);
        let mut f = match f {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(h),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; 1 << 20];
        let mut left = offset;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(h)
    })
    .await
    .map_err(std::io::Error::other)?
}

fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

/// Most bytes of a refused request's body read and thrown away, so its answer reaches a client
/// that sends the whole body before reading (a browser, curl): beyond this the connection is
/// closed instead.
const DRAIN_MAX: u64 = 1 << 30;

/// Reads what is left of a refused request's body (up to [`DRAIN_MAX`]) and throws it away.
pub async fn drain<S, E>(body: &mut S)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut read: u64 = 0;
    while let Some(Ok(chunk)) = body.next().await {
        read += chunk.len() as u64;
        if read > DRAIN_MAX {
            break;
        }
    }
}

/// Bytes received before they are handed to the writer thread as one batch.
const BATCH_BYTES: usize = 1024 * 1024;
/// Batches waiting for the writer, and written batches waiting for the hasher: with the batches
/// being received, written and hashed, at most 5 batches (5 MiB) of a request are in memory.
const BATCHES_QUEUED: usize = 1;

/// Writes a batch of buffers at the end of `out`, with as few system calls as the kernel allows.
fn write_batch(out: &mut std::fs::File, batch: &[Bytes]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    let mut first = 0;
    let mut skip = 0;
    while first < batch.len() {
        let slices: Vec<IoSlice<'_>> = batch[first..]
            .iter()
            .take(512)
            .enumerate()
            .map(|(i, b)| IoSlice::new(if i == 0 { &b[skip..] } else { b }))
            .collect();
        let mut n = match out.write_vectored(&slices) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        while n > 0 {
            let left = batch[first].len() - skip;
            if n >= left {
                n -= left;
                first += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
        while first < batch.len() && batch[first].len() == skip {
            first += 1;
            skip = 0;
        }
    }
    Ok(())
}

/// The two threads behind one `PATCH`: a writer appending the batches it is sent to the upload's
/// file, and a hasher folding the written batches into the upload's sha256. Receiving, writing
/// and hashing overlap, each on a core of its own when there are cores to spare.
struct Pipeline {
    batches: tokio::sync::mpsc::Sender<Vec<Bytes>>,
    writer: tokio::task::JoinHandle<std::io::Result<()>>,
    hasher: tokio::task::JoinHandle<Sha256>,
}

impl Pipeline {
    fn start(out: std::fs::File, mut hasher: Sha256) -> Self {
        let (batches, mut to_write) = tokio::sync::mpsc::channel::<Vec<Bytes>>(BATCHES_QUEUED);
        let (written, to_hash) = std::sync::mpsc::sync_channel::<Vec<Bytes>>(BATCHES_QUEUED);
        let writer = tokio::task::spawn_blocking(move || {
            let mut out = out;
            while let Some(batch) = to_write.blocking_recv() {
                write_batch(&mut out, &batch)?;
                if written.send(batch).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let hasher = tokio::task::spawn_blocking(move || {
            for batch in to_hash {
                for b in &batch {
                    hasher.update(b);
                }
            }
            hasher
        });
        Pipeline {
            batches,
            writer,
            hasher,
        }
    }

    /// Hands a batch to the writer; false when the writer has stopped (it failed).
    async fn send(&self, batch: Vec<Bytes>) -> bool {
        self.batches.send(batch).await.is_ok()
    }

    /// Waits for every batch sent to be written and hashed; the hash covers exactly the bytes
    /// written when the writer did not fail.
    async fn finish(self) -> std::io::Result<Sha256> {
        drop(self.batches);
        let written = self.writer.await.map_err(std::io::Error::other)?;
        let hasher = self.hasher.await.map_err(std::io::Error::other)?;
        written.map(|()| hasher)
    }
}

/// Appends a request body to an upload that stands at `given` of `size` bytes, holding the
/// upload (`guard`); stops early, keeping what arrived, when a newer request preempts it. A wrong
/// offset or a body longer than what is left changes nothing.
pub async fn append<S, E>(
    guard: &mut UploadGuard,
    id: &str,
    file: &Path,
    given: u64,
    size: u64,
    body: &mut S,
) -> Result<Appended, AppendError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let actual = upload_offset(file).await?;
    if given != actual {
        return Err(AppendError::WrongOffset { given, actual });
    }
    let left = size - actual.min(size);
    let hasher = hasher_at(id, file, actual).await?;
    let out = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .await?
        .into_std()
        .await;
    let pipeline = Pipeline::start(out, hasher);
    let mut received: u64 = 0;
    let mut broke_off = false;
    let mut too_much = false;
    let mut writer_stopped = false;
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_bytes = 0;
    loop {
        let next = tokio::select! {
            next = body.next() => next,
            () = guard.preempted() => {
                tracing::info!(upload = id, at = actual + received, "a newer request took the upload over");
                broke_off = true;
                break;
            }
        };
        let Some(chunk) = next else { break };
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(upload = id, at = actual + received, error = %e, "upload body broke off");
                broke_off = true;
                break;
            }
        };
        if chunk.is_empty() {
            continue;
        }
        if received + chunk.len() as u64 > left {
            too_much = true;
            break;
        }
        received += chunk.len() as u64;
        batch_bytes += chunk.len();
        batch.push(chunk);
        if batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            if !pipeline.send(std::mem::take(&mut batch)).await {
                writer_stopped = true;
                break;
            }
        }
    }
    if !too_much && !writer_stopped && !batch.is_empty() {
        pipeline.send(batch).await;
    }
    let hasher = match pipeline.finish().await {
        Err(e) if is_no_space(&e) => return Err(AppendError::NoSpace),
        // What reached the disk is unknown: the hash is rebuilt from the file next time.
        Err(e) => return Err(AppendError::Io(e)),
        Ok(h) => h,
    };
    if too_much {
        // Take back what this request wrote: the upload stays where it stood.
        let f = std::fs::OpenOptions::new().write(true).open(file)?;
        f.set_len(actual)?;
        return Err(AppendError::TooMuch { size, left });
    }
    let now = actual + received;
    HASHERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.to_owned(), (now, hasher));
    Ok(if broke_off {
        Appended::BrokeOff(now)
    } else {
        Appended::Done(now)
    })
}

/// The hex sha256 of an upload whose every byte (`size`) is on disk.
pub async fn upload_sha256(id: &str, file: &Path, size: u64) -> std::io::Result<String> {
    let h = hasher_at(id, file, size).await?;
    Ok(hex::encode(h.finalize()))
}

/// Moves a finished upload to its place among the complete files (parent folders created).
pub async fn move_into_place(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    if tokio::fs::try_exists(to).await? {
        return Err(std::io::Error::new(
            ErrorKind::AlreadyExists,
            format!("{} exists", to.display()),
        ));
    }
    tokio::fs::rename(from, to).await
}

/// Creates an empty upload file (a declared 0-byte file is complete at once).
pub async fn create_empty(file: &Path) -> std::io::Result<()> {
    if let Some(parent) = file.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::File::create(file).await.map(drop)
}

/// Removes a file or a folder and then the folders it leaves empty up to `files/`.
pub async fn remove_path(dir: &DatasetDir, path: &str) -> std::io::Result<()> {
    let target = dir.file(path);
    match tokio::fs::symlink_metadata(&target).await {
        Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(&target).await?,
        Ok(_) => tokio::fs::remove_file(&target).await?,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    prune_empty_parents(dir, &target).await;
    Ok(())
}

/// Removes the folders above `below` that are now empty, up to (not including) `files/`.
async fn prune_empty_parents(dir: &DatasetDir, below: &Path) {
    let top = dir.files();
    let mut current = below.parent().map(Path::to_path_buf);
    while let Some(folder) = current {
        if folder == top || !folder.starts_with(&top) {
            break;
        }
        // Fails (and stops) when the folder is not empty.
        if tokio::fs::remove_dir(&folder).await.is_err() {
            break;
        }
        current = folder.parent().map(Path::to_path_buf);
    }
}

/// Renames a file or folder among the complete files (the new parents created, the old ones
/// pruned when empty).
pub async fn rename_path(dir: &DatasetDir, from: &str, to: &str) -> std::io::Result<()> {
    let source = dir.file(from);
    let target = dir.file(to);
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::rename(&source, &target).await?;
    prune_empty_parents(dir, &source).await;
    Ok(())
}

/// The kind of a cover image, from its first bytes: `image/png`, `image/jpeg` or `image/webp`.
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// One file of a ZIP download.
#[derive(Debug, Clone)]
pub struct ZipEntry {
    /// Its name in the archive.
    pub name: String,
    /// Where its bytes are.
    pub source: PathBuf,
    /// Its size as recorded.
    pub size: u64,
    /// When it was written, microseconds since the epoch (for the DOS time).
    pub modified_micros: i64,
}

/// A ZIP archive of `entries`, written as it is read: files stored (datasets are mostly
/// compressed already), sizes from the records, each CRC-32 in a data descriptor after the file,
/// ZIP64 fields where a size or an offset needs them. Nothing is buffered beyond a chunk.
pub fn zip_stream(entries: Vec<ZipEntry>) -> impl Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut sink = ChannelSink { tx };
        if let Err(e) = write_zip(&mut sink, &entries) {
            tracing::warn!(error = %e, "a ZIP download stopped");
            let _ = sink.tx.blocking_send(Err(e));
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Where the archive goes: a channel to the response body.
struct ChannelSink {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

impl ChannelSink {
    fn send(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        self.tx
            .blocking_send(Ok(Bytes::from(bytes)))
            .map_err(|_| std::io::Error::new(ErrorKind::BrokenPipe, "the client went away"))
    }
}

/// The MS-DOS date and time of a moment (UTC).
fn dos_time(micros: i64) -> (u16, u16) {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
    let year = t.year().clamp(1980, 2107) as u16;
    let date = ((year - 1980) << 9) | ((t.month() as u16) << 5) | t.day() as u16;
    let time = ((t.hour() as u16) << 11) | ((t.minute() as u16) << 5) | (t.second() as u16 / 2);
    (time, date)
}

const U32_MAX: u64 = 0xFFFF_FFFF;

fn write_zip(sink: &mut ChannelSink, entries: &[ZipEntry]) -> std::io::Result<()> {
    // name, crc, size, offset, time, date
    let mut central: Vec<(String, u32, u64, u64, u16, u16)> = Vec::with_capacity(entries.len());
    let mut offset: u64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    for entry in entries {
        let (time, date) = dos_time(entry.modified_micros);
        let zip64 = entry.size >= U32_MAX;
        let name = entry.name.as_bytes();
        let mut header = Vec::with_capacity(30 + name.len() + 20);
        header.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        header.extend_from_slice(&(if zip64 { 45u16 } else { 20u16 }).to_le_bytes());
        // Bit 3: sizes and CRC in a data descriptor; bit 11: UTF-8 names.
        header.extend_from_slice(&0x0808u16.to_le_bytes());
        header.extend_from_slice(&0u16.to_le_bytes()); // stored
        header.extend_from_slice(&time.to_le_bytes());
        header.extend_from_slice(&date.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes()); // CRC in the descriptor
        let small = if zip64 {
            U32_MAX as u32
        } else {
            entry.size as u32
        };
        header.extend_from_slice(&small.to_le_bytes());
        header.extend_from_slice(&small.to_le_bytes());
        header.extend_from_slice(&(name.len() as u16).to_le_bytes());
        header.extend_from_slice(&(if zip64 { 20u16 } else { 0u16 }).to_le_bytes());
        header.extend_from_slice(name);
        if zip64 {
            header.extend_from_slice(&1u16.to_le_bytes());
            header.extend_from_slice(&16u16.to_le_bytes());
            header.extend_from_slice(&entry.size.to_le_bytes());
            header.extend_from_slice(&entry.size.to_le_bytes());
        }
        let header_len = header.len() as u64;
        sink.send(header)?;
        let mut crc = crc32fast::Hasher::new();
        let mut file = std::fs::File::open(&entry.source)?;
        let mut left = entry.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("{} is shorter than recorded", entry.name),
                ));
            }
            crc.update(&buf[..n]);
            sink.send(buf[..n].to_vec())?;
            left -= n as u64;
        }
        let crc = crc.finalize();
        let mut descriptor = Vec::with_capacity(24);
        descriptor.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
        descriptor.extend_from_slice(&crc.to_le_bytes());
        if zip64 {
            descriptor.extend_from_slice(&entry.size.to_le_bytes());
            descriptor.extend_from_slice(&entry.size.to_le_bytes());
        } else {
            descriptor.extend_from_slice(&(entry.size as u32).to_le_bytes());
            descriptor.extend_from_slice(&(entry.size as u32).to_le_bytes());
        }
        let descriptor_len = descriptor.len() as u64;
        sink.send(descriptor)?;
        central.push((entry.name.clone(), crc, entry.size, offset, time, date));
        offset += header_len + entry.size + descriptor_len;
    }
    let cd_start = offset;
    let mut cd = Vec::new();
    for (name, crc, size, at, time, date) in &central {
        let big_size = *size >= U32_MAX;
        let big_at = *at >= U32_MAX;
        let mut extra = Vec::new();
        if big_size || big_at {
            let mut fields = Vec::new();
            if big_size {
                fields.extend_from_slice(&size.to_le_bytes());
                fields.extend_from_slice(&size.to_le_bytes());
            }
            if big_at {
                fields.extend_from_slice(&at.to_le_bytes());
            }
            extra.extend_from_slice(&1u16.to_le_bytes());
            extra.extend_from_slice(&(fields.len() as u16).to_le_bytes());
            extra.extend_from_slice(&fields);
        }
        let version: u16 = if extra.is_empty() { 20 } else { 45 };
        cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        cd.extend_from_slice(&(0x0300u16 | version).to_le_bytes()); // made on Unix
        cd.extend_from_slice(&version.to_le_bytes());
        cd.extend_from_slice(&0x0808u16.to_le_bytes());
        cd.extend_from_slice(&0u16.to_le_bytes());
        cd.extend_from_slice(&time.to_le_bytes());
        cd.extend_from_slice(&date.to_le_bytes());
        cd.extend_from_slice(&crc.to_le_bytes());
        let small = if big_size {
            U32_MAX as u32
        } else {
            *size as u32
        };
        cd.extend_from_slice(&small.to_le_bytes());
        cd.extend_from_slice(&small.to_le_bytes());
        cd.extend_from_slice(&(name.len() as u16).to_le_bytes());
        cd.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        cd.extend_from_slice(&0u16.to_le_bytes()); // comment
        cd.extend_from_slice(&0u16.to_le_bytes()); // disk
        cd.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        cd.extend_from_slice(&(0o100_644u32 << 16).to_le_bytes());
        let small_at = if big_at { U32_MAX as u32 } else { *at as u32 };
        cd.extend_from_slice(&small_at.to_le_bytes());
        cd.extend_from_slice(name.as_bytes());
        cd.extend_from_slice(&extra);
        if cd.len() >= 1 << 20 {
            offset += cd.len() as u64;
            sink.send(std::mem::take(&mut cd))?;
        }
    }
    offset += cd.len() as u64;
    let cd_size = offset - cd_start;
    let count = central.len() as u64;
    let mut end = cd;
    if count >= 0xFFFF || cd_size >= U32_MAX || cd_start >= U32_MAX {
        let zip64_end_at = offset;
        end.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
        end.extend_from_slice(&44u64.to_le_bytes());
        end.extend_from_slice(&0x032Du16.to_le_bytes());
        end.extend_from_slice(&45u16.to_le_bytes());
        end.extend_from_slice(&0u32.to_le_bytes());
        end.extend_from_slice(&0u32.to_le_bytes());
        end.extend_from_slice(&count.to_le_bytes());
        end.extend_from_slice(&count.to_le_bytes());
        end.extend_from_slice(&cd_size.to_le_bytes());
        end.extend_from_slice(&cd_start.to_le_bytes());
        end.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
        end.extend_from_slice(&0u32.to_le_bytes());
        end.extend_from_slice(&zip64_end_at.to_le_bytes());
        end.extend_from_slice(&1u32.to_le_bytes());
    }
    end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes());
    let small_count = count.min(0xFFFF) as u16;
    end.extend_from_slice(&small_count.to_le_bytes());
    end.extend_from_slice(&small_count.to_le_bytes());
    end.extend_from_slice(&(cd_size.min(U32_MAX) as u32).to_le_bytes());
    end.extend_from_slice(&(cd_start.min(U32_MAX) as u32).to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes());
    sink.send(end)
}

/// Reads `len` bytes of a file from `start`, as a stream of chunks.
pub fn file_range(
    path: PathBuf,
    start: u64,
    len: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let run = || -> std::io::Result<()> {
            let mut f = std::fs::File::open(&path)?;
            f.seek(SeekFrom::Start(start))?;
            let mut left = len;
            while left > 0 {
                let want = (1usize << 20).min(usize::try_from(left).unwrap_or(usize::MAX));
                let mut chunk = vec![0u8; want];
                let n = f.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "file shrank"));
                }
                chunk.truncate(n);
                left -= n as u64;
                if tx.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        };
        if let Err(e) = run() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_many_buffers_of_any_size_is_written_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut out = std::fs::File::create(&path).unwrap();
        // More buffers than one system call takes, of sizes 0 to 1,500 bytes.
        let batch: Vec<Bytes> = (0..1500u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; (i as usize * 7919) % 1501]))
            .collect();
        write_batch(&mut out, &batch).unwrap();
        write_batch(&mut out, &batch[..3]).unwrap();
        let mut want: Vec<u8> = batch.iter().flat_map(|b| b.iter().copied()).collect();
        want.extend(batch[..3].iter().flat_map(|b| b.iter().copied()));
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn names_are_nfc_normalised_and_chinese_names_pass() {
        let decomposed = "cafe\u{301}/数据/训练集.csv";
        assert_eq!(normalize_path(decomposed).unwrap(), "café/数据/训练集.csv");
    }

    #[test]
    fn traversal_absolute_paths_nul_and_control_characters_are_refused() {
        for bad in [
            "",
            "../x",
            "a/../../b",
            "./a",
            "/etc/passwd",
            "a//b",
            "a/",
            "a\0b",
            "a\nb",
            "a\\b",
            "a/\u{7f}",
        ] {
            assert!(normalize_path(bad).is_err(), "{bad:?} was accepted");
        }
        let long = "x".repeat(256);
        assert!(normalize_path(&long).is_err());
    }

    #[test]
    fn images_are_recognised_by_their_first_bytes_only() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"<svg onload=alert(1)>"), None);
        assert_eq!(sniff_image(b"GIF89a"), None);
    }

    #[tokio::test]
    async fn a_stalled_patch_stops_and_keeps_its_bytes_when_a_newer_request_takes_the_upload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("up");
        let id = "stalled-upload";
        // Two chunks, then a connection that hangs (a closed laptop).
        let body = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 1000])),
            Ok(Bytes::from(vec![2u8; 500])),
        ])
        .chain(futures::stream::pending());
        let writer = {
            let file = file.clone();
            tokio::spawn(async move {
                let mut guard = take_upload(id, true).await;
                append(&mut guard, id, &file, 0, 10_000, &mut Box::pin(body)).await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // The resumed client's offset request: answered once the stalled PATCH gave way.
        let head = tokio::time::timeout(std::time::Duration::from_secs(5), take_upload(id, true))
            .await
            .expect("the offset request waited for a stalled PATCH");
        assert_eq!(upload_offset(&file).await.unwrap(), 1500);
        drop(head);
        match writer.await.unwrap() {
            Ok(Appended::BrokeOff(1500)) => {}
            other => panic!("{other:?}"),
        }
        // The hash state goes on from there.
        let mut guard = take_upload(id, true).await;
        let rest =
            futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(vec![3u8; 8500]))]);
        assert!(matches!(
            append(&mut guard, id, &file, 1500, 10_000, &mut Box::pin(rest)).await,
            Ok(Appended::Done(10_000))
        ));
        let mut whole = vec![1u8; 1000];
        whole.extend(vec![2u8; 500]);
        whole.extend(vec![3u8; 8500]);
        assert_eq!(
            upload_sha256(id, &file, 10_000).await.unwrap(),
            hex::encode(Sha256::digest(&whole))
        );
        forget_upload(id);
    }

    #[tokio::test]
    async fn a_zip_stream_unzips_with_python_to_the_same_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, b"hello").unwrap();
        std::fs::write(&b, vec![7u8; 3_000_000]).unwrap();
        let entries = vec![
            ZipEntry {
                name: "数据/训练集.csv".into(),
                source: a,
                size: 5,
                modified_micros: 1_700_000_000_000_000,
            },
            ZipEntry {
                name: "b.bin".into(),
                source: b,
                size: 3_000_000,
                modified_micros: 0,
            },
        ];
        let mut out = Vec::new();
        let mut s = Box::pin(zip_stream(entries));
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        let zip = dir.path().join("x.zip");
        std::fs::write(&zip, &out).unwrap();
        let script = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nprint(sorted((i.filename, i.file_size) for i in z.infolist()))\nprint(z.read('数据/训练集.csv').decode())";
        let run = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&zip)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{text} {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            text.contains("('b.bin', 3000000), ('数据/训练集.csv', 5)"),
            "{text}"
        );
        assert!(text.contains("hello"), "{text}");
    }
}
