//! Freezing a container's cgroup while its writable layer is read, and thawing it after —
//! always: after the read, on failure and cancel ([`FreezeHook`]'s resume is called by the job;
//! its `Drop` thaws a cgroup a dropped job left frozen), and at the agent's next start for a
//! cgroup a killed agent left frozen ([`thaw_recorded`]).
//!
//! cgroup v2: `cgroup.freeze` (`1`/`0`), done when `cgroup.events` says `frozen 1`/`frozen 0`.
//! cgroup v1: the freezer hierarchy's `freezer.state` (`FROZEN`/`THAWED`), done when it reads
//! back `FROZEN` (not `FREEZING`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::job::PauseHook;

/// How long a freeze or thaw may take before it is given up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the state is read meanwhile.
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// Which cgroup interface a freezer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The v1 `freezer` hierarchy.
    V1,
    /// The unified hierarchy.
    V2,
}

/// One cgroup's freezer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFreezer {
    version: CgroupVersion,
    dir: PathBuf,
}

impl CgroupFreezer {
    /// The freezer of the cgroup directory `dir`.
    pub fn new(version: CgroupVersion, dir: PathBuf) -> Self {
        Self { version, dir }
    }

    /// The freezer of `dir`, its version told by the files in it.
    pub fn of_dir(dir: PathBuf) -> Option<Self> {
        if dir.join("freezer.state").is_file() {
            Some(Self::new(CgroupVersion::V1, dir))
        } else if dir.join("cgroup.freeze").is_file() {
            Some(Self::new(CgroupVersion::V2, dir))
        } else {
            None
        }
    }

    /// The cgroup directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cgroup interface.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Whether every process of the cgroup is frozen now.
    pub fn is_frozen(&self) -> std::io::Result<bool> {
        match self.version {
            CgroupVersion::V1 => Ok(self.read("freezer.state")?.trim() == "FROZEN"),
            CgroupVersion::V2 => Ok(self
                .read("cgroup.events")?
                .lines()
                .any(|l| l.trim() == "frozen 1")),
        }
    }

    /// Whether the cgroup is thawed (v1: `THAWED`, not `FREEZING`; v2: `frozen 0`).
    fn is_thawed(&self) -> std::io::Result<bool> {
        match self.version {
            CgroupVersion::V1 => Ok(self.read("freezer.state")?.trim() == "THAWED"),
            CgroupVersion::V2 => Ok(self
                .read("cgroup.events")?
                .lines()
                .any(|l| l.trim() == "frozen 0")),
        }
    }

    /// Freezes the cgroup and waits until it is frozen; one that will not freeze in time is
    /// thawed again and reported.
    pub async fn freeze(&self) -> Result<(), String> {
        self.request(true).map_err(|e| self.failed("freeze", &e))?;
        match self.settle(true).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.thaw_now();
                Err(e)
            }
        }
    }

    /// Thaws the cgroup and waits until it is.
    pub async fn thaw(&self) -> Result<(), String> {
        self.request(false).map_err(|e| self.failed("thaw", &e))?;
        self.settle(false).await
    }

    /// Thaws without waiting (for `Drop` and start-up).
    pub fn thaw_now(&self) -> std::io::Result<()> {
        self.request(false)
    }

    fn request(&self, frozen: bool) -> std::io::Result<()> {
        let (file, value) = match (self.version, frozen) {
            (CgroupVersion::V1, true) => ("freezer.state", "FROZEN"),
            (CgroupVersion::V1, false) => ("freezer.state", "THAWED"),
            (CgroupVersion::V2, true) => ("cgroup.freeze", "1"),
            (CgroupVersion::V2, false) => ("cgroup.freeze", "0"),
        };
        std::fs::write(self.dir.join(file), value)
    }

    async fn settle(&self, frozen: bool) -> Result<(), String> {
        let what = if frozen { "freeze" } else { "thaw" };
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let done = if frozen {
                self.is_frozen()
            } else {
                self.is_thawed()
            };
            match done {
                Ok(true) => return Ok(()),
                Ok(false) if Instant::now() < deadline => tokio::time::sleep(SETTLE_POLL).await,
                Ok(false) => {
                    return Err(format!(
                        "the container's cgroup {} did not {what} within {} s",
                        self.dir.display(),
                        SETTLE_TIMEOUT.as_secs()
                    ))
                }
                Err(e) => return Err(self.failed(what, &e)),
            }
        }
    }

    fn failed(&self, what: &str, e: &std::io::Error) -> String {
        format!(
            "cannot {what} the container's cgroup {}: {e}",
            self.dir.display()
        )
    }

    fn read(&self, file: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.dir.join(file))
    }
}

/// The pause hook of a save with `pause`: freezes the container's cgroup, records it in the
/// state directory first (so a killed agent's successor thaws it), thaws and forgets it after.
pub(crate) struct FreezeHook {
    freezer: CgroupFreezer,
    /// Whether this hook holds the cgroup frozen (shown as the job's `frozen`).
    frozen: Arc<AtomicBool>,
    /// `{state_dir}/frozen/<hash of the cgroup dir>`, holding the dir.
    record: Option<PathBuf>,
}

impl FreezeHook {
    pub(crate) fn new(
        freezer: CgroupFreezer,
        frozen: Arc<AtomicBool>,
        state_dir: Option<&Path>,
    ) -> Self {
        let record = state_dir.map(|dir| {
            let key = hex::encode(Sha256::digest(freezer.dir.as_os_str().as_encoded_bytes()));
            dir.join("frozen").join(&key[..32])
        });
        Self {
            freezer,
            frozen,
            record,
        }
    }
}

#[async_trait]
impl PauseHook for FreezeHook {
    async fn pause(&self) -> Result<(), String> {
        if let Some(record) = &self.record {
            let written = record
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| {
                    std::fs::write(record, self.freezer.dir.as_os_str().as_encoded_bytes())
                });
            written.map_err(|e| {
                format!(
                    "cannot record the freeze in {} (the agent's --state-dir): {e}",
                    record.display()
                )
            })?;
        }
        self.freezer.freeze().await?;
        self.frozen.store(true, Ordering::SeqCst);
        tracing::info!(cgroup = %self.freezer.dir.display(), "container frozen for the read");
        Ok(())
    }

    async fn resume(&self) -> Result<(), String> {
        self.freezer.thaw().await?;
        self.frozen.store(false, Ordering::SeqCst);
        if let Some(record) = &self.record {
            let _ = std::fs::remove_file(record);
        }
        tracing::info!(cgroup = %self.freezer.dir.display(), "container thawed");
        Ok(())
    }
}

impl Drop for FreezeHook {
    fn drop(&mut self) {
        // The job resumes after every successful pause; this catches a job task that was
        // dropped (the agent shutting down) between the two.
        if self.frozen.swap(false, Ordering::SeqCst) {
            match self.freezer.thaw_now() {
                Ok(()) => {
                    if let Some(record) = &self.record {
                        let _ = std::fs::remove_file(record);
                    }
                    tracing::warn!(cgroup = %self.freezer.dir.display(), "container thawed by a dropped save");
                }
                Err(e) => {
                    tracing::error!(cgroup = %self.freezer.dir.display(), error = %e, "cannot thaw a container")
                }
            }
        }
    }
}

/// At start-up: thaws every cgroup a previous run of the agent recorded as frozen in
/// `{state_dir}/frozen` (it was killed during a read) and forgets them. Returns how many.
pub fn thaw_recorded(state_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(state_dir.join("frozen")) else {
        return 0;
    };
    let mut thawed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(dir) = std::fs::read_to_string(&path) else {
            continue;
        };
        // A cgroup that is gone went with its container: nothing to thaw.
        if let Some(freezer) = CgroupFreezer::of_dir(PathBuf::from(&dir)) {
            match freezer.thaw_now() {
                Ok(()) => {
                    tracing::warn!(cgroup = %dir, "thawed a container a previous run of the agent left frozen");
                    thawed += 1;
                }
                Err(e) => {
                    // Kept: the next start tries again.
                    tracing::error!(cgroup = %dir, error = %e, "cannot thaw a container a previous run left frozen");
                    continue;
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    thawed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v1 freezer file written by hand: a freeze requested is done when it reads `FROZEN`.
    #[tokio::test]
    async fn a_recorded_freeze_is_thawed_at_the_next_start() {
        let cgroup = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        std::fs::write(cgroup.path().join("freezer.state"), "THAWED\n").unwrap();
        let freezer = CgroupFreezer::of_dir(cgroup.path().to_path_buf()).unwrap();
        assert_eq!(freezer.version(), CgroupVersion::V1);
        let frozen = Arc::new(AtomicBool::new(false));
        let hook = FreezeHook::new(freezer.clone(), Arc::clone(&frozen), Some(state.path()));
        hook.pause().await.unwrap();
        assert!(frozen.load(Ordering::SeqCst));
        assert!(freezer.is_frozen().unwrap());
        // The agent dies here: nothing thaws, but the record stays.
        std::mem::forget(hook);
        assert_eq!(thaw_recorded(state.path()), 1);
        assert!(!freezer.is_frozen().unwrap());
        assert_eq!(thaw_recorded(state.path()), 0, "the record is forgotten");
    }

    #[tokio::test]
    async fn a_dropped_hook_thaws_what_it_froze() {
        let cgroup = tempfile::tempdir().unwrap();
        std::fs::write(cgroup.path().join("freezer.state"), "THAWED\n").unwrap();
        let freezer = CgroupFreezer::of_dir(cgroup.path().to_path_buf()).unwrap();
        let hook = FreezeHook::new(freezer.clone(), Arc::default(), None);
        hook.pause().await.unwrap();
        drop(hook);
        assert_eq!(
            std::fs::read_to_string(cgroup.path().join("freezer.state")).unwrap(),
            "THAWED"
        );
    }
}
