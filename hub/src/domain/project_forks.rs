//! The copy of a fork's files, made in the background: the fork's request creates the project
//! with its copy `copying` and answers; a task of the hub counts the original's files while it
//! copies them file by file into the fork's folder, and writes how far it got to the database
//! (`project_forks`) every quarter of a second, ending `done` or `failed`. Until it is done the
//! fork cannot be run or exported (409), nor forked in turn; a failed copy leaves no files, and
//! its project can be deleted. Deleting a fork while it is copied stops the copy first. A hub
//! that restarts marks the copies it finds under way failed and removes what they had copied
//! (`recover`): the task that made them died with the old process.
//!
//! Why a walker of our own rather than `cp -a` with the target's size polled: progress then comes
//! from the copy itself (files and bytes as they are written, within a large file too, with no
//! second walk of the target competing with the copy for the disk), a delete can stop it between
//! two pieces, and a hub killed mid-copy leaves no orphan `cp` writing into a folder that start-up
//! is cleaning. It does what `cp -a --reflink=auto` does with the same system calls:
//! `copy_file_range(2)` for the bytes, which clones extents (copy-on-write, as `FICLONE` does)
//! when both folders are on one filesystem that can (XFS with reflink, Btrfs), and copies inside
//! the kernel otherwise; a read/write loop where the kernel cannot; holes of sparse files kept;
//! symbolic links copied as links; hard links within the project kept as hard links; modes,
//! owners (where the hub may set them) and access and modification times kept, a folder's after
//! its contents. It leaves out extended attributes and device files (a device node in another
//! user's project would be a way into the host). It never follows a link out of the original:
//! every folder is opened without following links, and every entry relative to its opened folder
//! (through `/proc/self/fd`), so a link swapped in by a running cluster of the original is copied
//! as a link or fails the copy, never read through.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, Whence};
use tokio::sync::watch;

use super::{HubError, HubResult, Services};
use crate::clock;
use crate::db::{ForkProgress, ForkRow, ForkState, PlacementKind, ProjectRow};

/// How often a copy under way writes its progress to the database.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// The largest piece of a file copied by one call: progress and a stop are seen between pieces.
const PIECE: u64 = 64 << 20;
/// Folders nested deeper are refused: each level holds two descriptors open.
const MAX_DEPTH: usize = 256;
/// Why a copy that a restart of the hub interrupted failed.
const RESTARTED: &str = "The hub restarted while the files were being copied";

/// The files and bytes a copy counted or copied, and whether it must stop.
#[derive(Debug, Default)]
struct Counters {
    files: AtomicI64,
    bytes: AtomicI64,
    stop: AtomicBool,
}

impl Counters {
    fn add(&self, files: i64, bytes: u64) {
        self.files.fetch_add(files, Ordering::Relaxed);
        self.bytes
            .fetch_add(i64::try_from(bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A copy under way in this process: its counters, and a receiver that sees the end.
struct Running {
    counters: Arc<Counters>,
    ended: watch::Receiver<()>,
}

/// The copies under way in this process, by fork. Process-wide because a copy is: it is the
/// task that `start` spawned, and it ends with the process (`recover` then fails its row).
fn running() -> &'static Mutex<HashMap<i64, Running>> {
    static RUNNING: OnceLock<Mutex<HashMap<i64, Running>>> = OnceLock::new();
    RUNNING.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Starts copying `from` (the original's folder) into `to` (the fork's, empty) in a task of the
/// hub; the fork's row is `copying` already (written with the project).
pub fn start(hub: &Arc<Services>, fork: &ProjectRow, from: PathBuf, to: PathBuf) {
    let counters = Arc::new(Counters::default());
    let (ended_tx, ended) = watch::channel(());
    if let Ok(mut map) = running().lock() {
        map.insert(
            fork.id,
            Running {
                counters: Arc::clone(&counters),
                ended,
            },
        );
    }
    let hub = Arc::clone(hub);
    let id = fork.id;
    tokio::spawn(async move {
        drive(&hub, id, from, to, &counters).await;
        if let Ok(mut map) = running().lock() {
            map.remove(&id);
        }
        drop(ended_tx);
    });
}

/// Stops the copy of a fork under way in this process, if any, and waits until it has ended
/// (its files removed, its row failed): what a delete of the fork does first.
pub async fn stop(project_id: i64) {
    let ended = running().lock().ok().and_then(|map| {
        map.get(&project_id).map(|r| {
            r.counters.stop.store(true, Ordering::Relaxed);
            r.ended.clone()
        })
    });
    if let Some(mut ended) = ended {
        // `changed` fails once the task dropped its sender, that is once it ended.
        while ended.changed().await.is_ok() {}
    }
}

/// A 409 while the fork's files are being copied, or after their copy failed: what running,
/// exporting or forking a project checks first.
pub async fn ensure_copied(hub: &Services, project: &ProjectRow) -> HubResult<()> {
    let Some(fork) = hub.store.project_fork(project.id).await? else {
        return Ok(());
    };
    let full = format!("{}/{}", project.owner, project.name);
    match fork.state {
        ForkState::Done => Ok(()),
        ForkState::Copying => Err(HubError::Conflict(format!(
            "The files of {full} are still being copied ({}); wait until the copy is done",
            progress_text(&fork)
        ))),
        ForkState::Failed => Err(HubError::Conflict(format!(
            "The copy of {full}'s files failed ({}), so it has no files: delete it and fork \
             the original again",
            fork.message.as_deref().unwrap_or("no reason recorded")
        ))),
    }
}

/// "1200 of 20000 files, 6%" (or "counting the files" before the count).
fn progress_text(fork: &ForkRow) -> String {
    if fork.files_total == 0 && fork.bytes_total == 0 {
        return "counting the files".into();
    }
    let percent = if fork.bytes_total > 0 {
        fork.bytes_done.saturating_mul(100) / fork.bytes_total
    } else {
        fork.files_done.saturating_mul(100) / fork.files_total.max(1)
    };
    format!(
        "{} of {} files, {}%",
        fork.files_done,
        fork.files_total,
        percent.min(100)
    )
}

/// At start-up: every copy left `copying` by a hub that stopped has its copied files removed and
/// ends `failed` (the task that made it is gone).
pub async fn recover(hub: &Services) -> HubResult<()> {
    for fork in hub.store.copying_forks().await? {
        if let Some(files) = placed_files(hub, fork.project_id).await? {
            remove_files(&files).await;
        }
        let progress = ForkProgress {
            files_done: fork.files_done,
            files_total: fork.files_total,
            bytes_done: fork.bytes_done,
            bytes_total: fork.bytes_total,
        };
        hub.store
            .end_fork(
                fork.project_id,
                ForkState::Failed,
                Some(RESTARTED),
                progress,
                clock::now(),
            )
            .await?;
        tracing::warn!(
            project.id = fork.project_id,
            "a fork's copy was under way when the hub stopped: marked failed, its files removed"
        );
    }
    Ok(())
}

/// A project's `files` folder where it is placed, without placing it.
async fn placed_files(hub: &Services, project_id: i64) -> HubResult<Option<PathBuf>> {
    let key = format!("project:{project_id}");
    let Some(placement) = hub.store.placement(PlacementKind::Project, &key).await? else {
        return Ok(None);
    };
    Ok(hub.store.pool(placement.pool_id).await?.map(|pool| {
        Path::new(&pool.path)
            .join(placement.relative_path)
            .join("files")
    }))
}

/// Removes a fork's copied files (the folder itself too; it is made again when next needed).
async fn remove_files(files: &Path) {
    if let Err(e) = tokio::fs::remove_dir_all(files).await {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(folder = %files.display(), error = %e, "a failed fork's files could not be removed");
        }
    }
}

/// The copy's task: count, copy with progress written through, end `done` or `failed`.
async fn drive(hub: &Services, id: i64, from: PathBuf, to: PathBuf, counters: &Arc<Counters>) {
    let began = Instant::now();
    let (outcome, progress) = copy_with_progress(hub, id, from, to.clone(), counters).await;
    let now = clock::now();
    let ended = match &outcome {
        Ok(()) => {
            // What was copied is the total: files the original gained or lost meanwhile count.
            let all = ForkProgress {
                files_total: progress.files_done,
                bytes_total: progress.bytes_done,
                ..progress
            };
            hub.store
                .end_fork(id, ForkState::Done, None, all, now)
                .await
        }
        Err(why) => {
            remove_files(&to).await;
            hub.store
                .end_fork(id, ForkState::Failed, Some(why), progress, now)
                .await
        }
    };
    match (outcome, ended) {
        (Ok(()), Ok(_)) => tracing::info!(
            project.id = id,
            files = progress.files_done,
            bytes = progress.bytes_done,
            seconds = began.elapsed().as_secs_f64(),
            "fork copied"
        ),
        (Err(why), Ok(_)) => {
            tracing::warn!(project.id = id, reason = %why, "fork's copy failed; its files were removed")
        }
        (_, Err(e)) => {
            // The row stays `copying`: the next start-up fails it and removes the files.
            tracing::error!(project.id = id, error = %e, "the end of a fork's copy could not be recorded")
        }
    }
}

/// Counts and copies at once (the count, a walk of the original's folder with one status per
/// file, takes another core instead of time before the copy), writing the counters to the
/// fork's row; the outcome (or why it failed, for the user) and the last counters. Totals stay
/// 0 until the count is done; a count that fails leaves them so (the copy's own outcome decides).
async fn copy_with_progress(
    hub: &Services,
    id: i64,
    from: PathBuf,
    to: PathBuf,
    counters: &Arc<Counters>,
) -> (Result<(), String>, ForkProgress) {
    let mut progress = ForkProgress::default();
    // The count's own stop: set once the copy has ended, however it ended.
    let count_stop = Arc::new(Counters::default());
    let count_from = from.clone();
    let count_counters = Arc::clone(&count_stop);
    let count = tokio::task::spawn_blocking(move || count(&count_from, &count_counters));
    let copy_counters = Arc::clone(counters);
    let copy = tokio::task::spawn_blocking(move || copy_tree(&from, &to, &copy_counters));
    tokio::pin!(count, copy);
    let mut counted = false;
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let joined = loop {
        tokio::select! {
            joined = &mut copy => break joined,
            totals = &mut count, if !counted => {
                counted = true;
                if let Ok(Ok(totals)) = totals {
                    progress.files_total = totals.files;
                    progress.bytes_total = i64::try_from(totals.bytes).unwrap_or(i64::MAX);
                }
            }
            _ = tick.tick() => {}
        }
        progress.files_done = counters.files.load(Ordering::Relaxed);
        progress.bytes_done = counters.bytes.load(Ordering::Relaxed);
        match hub
            .store
            .set_fork_progress(id, progress, clock::now())
            .await
        {
            // The row is gone (the project deleted) or ended: nobody waits for the copy.
            Ok(false) => counters.stop.store(true, Ordering::Relaxed),
            Ok(true) => {}
            Err(e) => {
                tracing::warn!(project.id = id, error = %e, "a fork's progress could not be written")
            }
        }
    };
    count_stop.stop.store(true, Ordering::Relaxed);
    progress.files_done = counters.files.load(Ordering::Relaxed);
    progress.bytes_done = counters.bytes.load(Ordering::Relaxed);
    let outcome = match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.for_user("copying")),
        Err(e) => Err(format!("the copy stopped: {e}")),
    };
    (outcome, progress)
}

/// Why a walk stopped.
#[derive(Debug)]
enum WalkError {
    /// Asked to stop (the fork is being deleted).
    Stopped,
    /// An entry (its path inside the project) could not be read or written.
    Io(PathBuf, io::Error),
    /// Folders nested too deep.
    TooDeep(PathBuf),
}

impl WalkError {
    /// The message a user reads on the fork's page.
    fn for_user(&self, doing: &str) -> String {
        match self {
            WalkError::Stopped => "the copy was stopped".into(),
            WalkError::TooDeep(path) => format!(
                "{} is nested more than {MAX_DEPTH} folders deep",
                shown(path)
            ),
            WalkError::Io(_, e) if is_full(e) => "the storage pool is full".into(),
            WalkError::Io(path, e) => format!("{doing} {}: {e}", shown(path)),
        }
    }
}

/// Whether an error says the disk (or the hub's quota on it) is full.
fn is_full(e: &io::Error) -> bool {
    e.raw_os_error()
        .is_some_and(|code| code == Errno::ENOSPC as i32 || code == Errno::EDQUOT as i32)
}

/// A path inside the project as a message shows it: its first 120 characters.
fn shown(path: &Path) -> String {
    let text = path.display().to_string();
    if text.is_empty() {
        "the project's folder".into()
    } else if text.chars().count() > 120 {
        format!("{}…", text.chars().take(120).collect::<String>())
    } else {
        text
    }
}

type WalkResult<T> = Result<T, WalkError>;

/// Attaches an entry's path inside the project to an I/O error.
trait At<T> {
    fn at(self, path: &Path) -> WalkResult<T>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, path: &Path) -> WalkResult<T> {
        self.map_err(|e| WalkError::Io(path.to_owned(), e))
    }
}

impl<T> At<T> for nix::Result<T> {
    fn at(self, path: &Path) -> WalkResult<T> {
        self.map_err(|e| WalkError::Io(path.to_owned(), io::Error::from(e)))
    }
}

/// An open folder. Its entries are reached relative to it, never through a link: by descriptor
/// (the `*at` calls) or through `/proc/self/fd/{fd}/{name}` for what the standard library opens.
struct Folder {
    file: File,
}

impl Folder {
    /// Opens the top of a tree (the hub's own path to a project folder).
    fn open(path: &Path) -> io::Result<Folder> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY)
            .open(path)?;
        Ok(Folder { file })
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// An entry's path through this process's descriptor of the folder.
    fn entry(&self, name: &OsStr) -> PathBuf {
        Path::new(&format!("/proc/self/fd/{}", self.fd())).join(name)
    }

    /// A sub-folder, refusing a link.
    fn open_folder(&self, name: &OsStr) -> io::Result<Folder> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
            .open(self.entry(name))?;
        Ok(Folder { file })
    }

    /// The names and kinds of the folder's entries.
    fn entries(&self) -> io::Result<Vec<(OsString, std::fs::FileType)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(format!("/proc/self/fd/{}", self.fd()))? {
            let entry = entry?;
            out.push((entry.file_name(), entry.file_type()?));
        }
        Ok(out)
    }

    /// An entry's status, not following a link.
    fn status(&self, name: &OsStr) -> nix::Result<nix::sys::stat::FileStat> {
        nix::sys::stat::fstatat(Some(self.fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
    }
}

/// Files (with links and other non-folders) and bytes under a folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    files: i64,
    bytes: u64,
}

/// Whether an entry of this kind is copied (and counted): all but device files.
fn copied_kind(kind: &std::fs::FileType) -> bool {
    !(kind.is_block_device() || kind.is_char_device())
}

/// Counts what `copy_tree` copies under `root`: files, links and other non-folders, and the
/// bytes of regular files (a file with several hard links once).
fn count(root: &Path, counters: &Counters) -> WalkResult<Totals> {
    let top = Folder::open(root).at(Path::new(""))?;
    let mut totals = Totals::default();
    let mut linked = HashSet::new();
    match count_in(&top, Path::new(""), 0, counters, &mut totals, &mut linked) {
        Err(_) if counters.stopped() => Err(WalkError::Stopped),
        Err(e) => Err(e),
        Ok(()) => Ok(totals),
    }
}

fn count_in(
    folder: &Folder,
    at: &Path,
    depth: usize,
    counters: &Counters,
    totals: &mut Totals,
    linked: &mut HashSet<(u64, u64)>,
) -> WalkResult<()> {
    if depth > MAX_DEPTH {
        return Err(WalkError::TooDeep(at.to_owned()));
    }
    for (name, kind) in folder.entries().at(at)? {
        if counters.stopped() {
            return Err(WalkError::Stopped);
        }
        let path = at.join(&name);
        if kind.is_dir() {
            let sub = folder.open_folder(&name).at(&path)?;
            count_in(&sub, &path, depth + 1, counters, totals, linked)?;
        } else if kind.is_file() {
            let status = folder.status(&name).at(&path)?;
            totals.files += 1;
            let first = status.st_nlink < 2 || linked.insert((status.st_dev, status.st_ino));
            if first {
                totals.bytes += u64::try_from(status.st_size).unwrap_or(0);
            }
        } else if copied_kind(&kind) {
            totals.files += 1;
        }
    }
    Ok(())
}

/// Copies the contents of `from` into the empty folder `to` as the module's comment says,
/// adding to `counters` as it goes; stops (with `WalkError::Stopped`) once `counters.stop` is set.
fn copy_tree(from: &Path, to: &Path, counters: &Counters) -> WalkResult<()> {
    let top = Path::new("");
    let source = Folder::open(from).at(top)?;
    let target = Folder::open(to).at(top)?;
    let mut copier = Copier {
        counters,
        target_top: target.fd(),
        linked: HashMap::new(),
        euid: nix::unistd::geteuid(),
        egid: nix::unistd::getegid(),
    };
    let walked = copier.folder(&source, &target, top, 0).and_then(|()| {
        let status = source.file.metadata().at(top)?;
        copier.finish_folder(&target, &status, top)
    });
    match walked {
        // A piece refused as "stopped" surfaces as an I/O error of its file.
        Err(_) if counters.stopped() => Err(WalkError::Stopped),
        other => other,
    }
}

/// One copy's state as it walks.
struct Copier<'a> {
    counters: &'a Counters,
    /// The target's top folder, which hard links are made relative to.
    target_top: RawFd,
    /// The first copy (path inside the target) of each source file with several hard links.
    linked: HashMap<(u64, u64), PathBuf>,
    euid: Uid,
    egid: Gid,
}

impl Copier<'_> {
    fn check(&self) -> WalkResult<()> {
        if self.counters.stopped() {
            Err(WalkError::Stopped)
        } else {
            Ok(())
        }
    }

    fn folder(&mut self, from: &Folder, to: &Folder, at: &Path, depth: usize) -> WalkResult<()> {
        if depth > MAX_DEPTH {
            return Err(WalkError::TooDeep(at.to_owned()));
        }
        for (name, kind) in from.entries().at(at)? {
            self.check()?;
            let path = at.join(&name);
            if kind.is_dir() {
                let source = from.open_folder(&name).at(&path)?;
                let status = source.file.metadata().at(&path)?;
                // Writable by the hub until its contents are in; its own mode comes after.
                nix::sys::stat::mkdirat(Some(to.fd()), name.as_os_str(), Mode::S_IRWXU)
                    .at(&path)?;
                let target = to.open_folder(&name).at(&path)?;
                self.folder(&source, &target, &path, depth + 1)?;
                self.finish_folder(&target, &status, &path)?;
            } else if kind.is_file() {
                self.file(from, to, &name, &path)?;
            } else if kind.is_symlink() {
                self.link(from, to, &name, &path)?;
            } else if copied_kind(&kind) {
                self.special(from, to, &name, &path)?;
            } else {
                tracing::info!(path = %path.display(), "a device file is not copied into a fork");
            }
        }
        Ok(())
    }

    /// A folder's owner, mode and times, once its contents are in.
    fn finish_folder(
        &self,
        target: &Folder,
        status: &std::fs::Metadata,
        at: &Path,
    ) -> WalkResult<()> {
        self.owner(target.fd(), status.uid(), status.gid()).at(at)?;
        nix::sys::stat::fchmod(target.fd(), mode_of(status.mode())).at(at)?;
        let (atime, mtime) = times_of(status);
        nix::sys::stat::futimens(target.fd(), &atime, &mtime).at(at)
    }

    /// Sets the owner where it differs from the hub's, as `cp -a` does: silently not where the
    /// hub may not (it does not run as root).
    fn owner(&self, fd: RawFd, uid: u32, gid: u32) -> nix::Result<()> {
        if uid == self.euid.as_raw() && gid == self.egid.as_raw() {
            return Ok(());
        }
        match nix::unistd::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))) {
            Err(Errno::EPERM | Errno::EINVAL) => Ok(()),
            other => other,
        }
    }

    fn file(&mut self, from: &Folder, to: &Folder, name: &OsStr, at: &Path) -> WalkResult<()> {
        // No link followed; a FIFO swapped in does not block the open.
        let source = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(from.entry(name))
            .at(at)?;
        let status = source.metadata().at(at)?;
        if !status.is_file() {
            return Err(WalkError::Io(
                at.to_owned(),
                io::Error::other("it changed while it was being copied"),
            ));
        }
        if status.nlink() > 1 {
            let key = (status.dev(), status.ino());
            if let Some(first) = self.linked.get(&key) {
                nix::unistd::linkat(
                    Some(self.target_top),
                    first.as_path(),
                    Some(to.fd()),
                    Path::new(name),
                    AtFlags::empty(),
                )
                .at(at)?;
                self.counters.add(1, 0);
                return Ok(());
            }
            self.linked.insert(key, at.to_owned());
        }
        let target = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(to.entry(name))
            .at(at)?;
        let len = status.len();
        // A file with fewer blocks than its length has holes: only its data is copied.
        if status.blocks().saturating_mul(512) < len {
            self.sparse(&source, &target, len).at(at)?;
        } else {
            self.range(&source, &target, 0, len).at(at)?;
        }
        self.counters.add(1, 0);
        self.owner(target.as_raw_fd(), status.uid(), status.gid())
            .at(at)?;
        nix::sys::stat::fchmod(target.as_raw_fd(), mode_of(status.mode())).at(at)?;
        let (atime, mtime) = times_of(&status);
        nix::sys::stat::futimens(target.as_raw_fd(), &atime, &mtime).at(at)
    }

    /// Copies the data of a file with holes, segment by segment, and gives it its length.
    fn sparse(&self, source: &File, target: &File, len: u64) -> io::Result<()> {
        let fd = source.as_raw_fd();
        let mut at = 0u64;
        while at < len {
            let offset = |o: u64| i64::try_from(o).unwrap_or(i64::MAX);
            let data = match nix::unistd::lseek(fd, offset(at), Whence::SeekData) {
                Ok(d) => u64::try_from(d).unwrap_or(len),
                Err(Errno::ENXIO) => break, // only a hole is left
                Err(e) => return Err(e.into()),
            };
            let hole = u64::try_from(nix::unistd::lseek(fd, offset(data), Whence::SeekHole)?)
                .unwrap_or(len)
                .min(len);
            self.range(source, target, data, hole)?;
            at = hole;
        }
        target.set_len(len)
    }

    /// Copies bytes `start..end` of a file to the same place in another, a piece at a time.
    /// `io::copy` between two files is `copy_file_range(2)` (the kernel clones or copies; a
    /// read/write loop where it cannot).
    fn range(&self, source: &File, target: &File, start: u64, end: u64) -> io::Result<()> {
        let (mut reader, mut writer) = (source, target);
        if start > 0 {
            reader.seek(SeekFrom::Start(start))?;
            writer.seek(SeekFrom::Start(start))?;
        }
        let mut at = start;
        while at < end {
            if self.counters.stopped() {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "stopped"));
            }
            let done = io::copy(&mut reader.take((end - at).min(PIECE)), &mut writer)?;
            if done == 0 {
                break; // the file shrank while it was copied
            }
            at += done;
            self.counters.add(0, done);
        }
        Ok(())
    }

    fn link(&mut self, from: &Folder, to: &Folder, name: &OsStr, at: &Path) -> WalkResult<()> {
        let status = from.status(name).at(at)?;
        let points_to = nix::fcntl::readlinkat(Some(from.fd()), name).at(at)?;
        nix::unistd::symlinkat(points_to.as_os_str(), Some(to.fd()), name).at(at)?;
        self.entry_owner_and_times(to, name, &status).at(at)?;
        self.counters.add(1, 0);
        Ok(())
    }

    /// A FIFO or socket: made again, empty, as `cp -a` does.
    fn special(&mut self, from: &Folder, to: &Folder, name: &OsStr, at: &Path) -> WalkResult<()> {
        let status = from.status(name).at(at)?;
        let kind = SFlag::from_bits_truncate(status.st_mode & SFlag::S_IFMT.bits());
        if kind != SFlag::S_IFIFO && kind != SFlag::S_IFSOCK {
            return Ok(()); // changed into a device since it was listed
        }
        nix::sys::stat::mknodat(Some(to.fd()), name, kind, mode_of(status.st_mode), 0).at(at)?;
        self.entry_owner_and_times(to, name, &status).at(at)?;
        nix::sys::stat::fchmodat(
            Some(to.fd()),
            name,
            mode_of(status.st_mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .at(at)?;
        self.counters.add(1, 0);
        Ok(())
    }

    /// The owner and times of an entry that cannot be opened (a link, a FIFO).
    fn entry_owner_and_times(
        &self,
        to: &Folder,
        name: &OsStr,
        status: &nix::sys::stat::FileStat,
    ) -> nix::Result<()> {
        if status.st_uid != self.euid.as_raw() || status.st_gid != self.egid.as_raw() {
            match nix::unistd::fchownat(
                Some(to.fd()),
                name,
                Some(Uid::from_raw(status.st_uid)),
                Some(Gid::from_raw(status.st_gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(()) | Err(Errno::EPERM | Errno::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        let atime = TimeSpec::new(status.st_atime, status.st_atime_nsec);
        let mtime = TimeSpec::new(status.st_mtime, status.st_mtime_nsec);
        nix::sys::stat::utimensat(
            Some(to.fd()),
            name,
            &atime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
    }
}

/// The permission bits of a mode (with set-id and sticky bits).
fn mode_of(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode & 0o7777)
}

/// Access and modification times of a status, to the nanosecond.
fn times_of(status: &std::fs::Metadata) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::new(status.atime(), status.atime_nsec()),
        TimeSpec::new(status.mtime(), status.mtime_nsec()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, FileExt, PermissionsExt};

    fn copy(from: &Path, to: &Path) -> (Totals, Counters) {
        let counters = Counters::default();
        let totals = count(from, &counters).unwrap();
        std::fs::create_dir_all(to).unwrap();
        copy_tree(from, to, &counters).unwrap();
        (totals, counters)
    }

    #[test]
    fn a_tree_is_copied_with_its_links_modes_times_holes_and_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        let to = dir.path().join("to");
        std::fs::create_dir_all(from.join("笔记/deep/er")).unwrap();
        std::fs::write(from.join("笔记/run.py"), "print('hi')\n").unwrap();
        std::fs::write(from.join("笔记/deep/er/data.bin"), vec![7u8; 300_000]).unwrap();
        std::fs::set_permissions(
            from.join("笔记/run.py"),
            std::fs::Permissions::from_mode(0o751),
        )
        .unwrap();
        symlink("run.py", from.join("笔记/link")).unwrap();
        symlink("/etc/passwd", from.join("outside")).unwrap();
        std::fs::hard_link(from.join("笔记/run.py"), from.join("hard")).unwrap();
        // 1 MiB with 4 KiB of data in the middle.
        let sparse = File::create(from.join("sparse")).unwrap();
        sparse.write_all_at(&[1u8; 4096], 512 * 1024).unwrap();
        sparse.set_len(1 << 20).unwrap();
        drop(sparse);
        nix::unistd::mkfifo(&from.join("pipe"), Mode::from_bits_truncate(0o640)).unwrap();
        std::fs::set_permissions(
            from.join("笔记/deep"),
            std::fs::Permissions::from_mode(0o555),
        )
        .unwrap();
        let old = TimeSpec::new(1_000_000_000, 123_456_789);
        nix::sys::stat::utimensat(
            None,
            &from.join("笔记/run.py"),
            &old,
            &old,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        nix::sys::stat::utimensat(
            None,
            &from.join("笔记/link"),
            &old,
            &old,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        nix::sys::stat::utimensat(
            None,
            &from.join("笔记"),
            &old,
            &old,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();

        let (totals, counters) = copy(&from, &to);
        // run.py and hard are one file: its bytes count once.
        assert_eq!(totals.files, 7);
        assert_eq!(totals.bytes, 12 + 300_000 + (1 << 20));
        assert_eq!(counters.files.load(Ordering::Relaxed), 7);
        assert_eq!(counters.bytes.load(Ordering::Relaxed), 12 + 300_000 + 4096);

        assert_eq!(
            std::fs::read(to.join("笔记/deep/er/data.bin")).unwrap(),
            vec![7u8; 300_000]
        );
        let run = std::fs::metadata(to.join("笔记/run.py")).unwrap();
        assert_eq!(run.mode() & 0o7777, 0o751);
        assert_eq!(
            (run.mtime(), run.mtime_nsec()),
            (1_000_000_000, 123_456_789)
        );
        assert_eq!(
            std::fs::read_link(to.join("笔记/link")).unwrap(),
            Path::new("run.py")
        );
        let link = std::fs::symlink_metadata(to.join("笔记/link")).unwrap();
        assert_eq!(link.mtime(), 1_000_000_000);
        assert_eq!(
            std::fs::read_link(to.join("outside")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(std::fs::metadata(to.join("hard")).unwrap().ino(), run.ino());
        let sparse = std::fs::metadata(to.join("sparse")).unwrap();
        assert_eq!(sparse.len(), 1 << 20);
        assert!(sparse.blocks() * 512 < 1 << 20, "the holes were filled");
        let data = std::fs::read(to.join("sparse")).unwrap();
        assert_eq!(&data[512 * 1024..512 * 1024 + 4096], &[1u8; 4096][..]);
        assert!(std::fs::symlink_metadata(to.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(
            std::fs::metadata(to.join("笔记/deep")).unwrap().mode() & 0o7777,
            0o555
        );
        assert_eq!(
            std::fs::metadata(to.join("笔记")).unwrap().mtime(),
            1_000_000_000
        );
        std::fs::set_permissions(to.join("笔记/deep"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::set_permissions(
            from.join("笔记/deep"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }

    #[test]
    fn a_stopped_copy_says_so_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::create_dir_all(&from).unwrap();
        std::fs::write(from.join("a"), "a").unwrap();
        std::fs::create_dir_all(dir.path().join("to")).unwrap();
        let counters = Counters::default();
        counters.stop.store(true, Ordering::Relaxed);
        let err = copy_tree(&from, &dir.path().join("to"), &counters).unwrap_err();
        assert_eq!(err.for_user("copying"), "the copy was stopped");
        assert!(!dir.path().join("to/a").exists());
    }

    #[test]
    fn the_progress_text_counts_before_it_knows_the_totals() {
        let mut fork = ForkRow {
            project_id: 1,
            state: ForkState::Copying,
            files_done: 0,
            files_total: 0,
            bytes_done: 0,
            bytes_total: 0,
            message: None,
            created: 0,
            updated: 0,
        };
        assert_eq!(progress_text(&fork), "counting the files");
        fork.files_total = 4;
        fork.files_done = 1;
        fork.bytes_total = 200;
        fork.bytes_done = 50;
        assert_eq!(progress_text(&fork), "1 of 4 files, 25%");
    }
}
