//! Processes the tests start, and how they are all found and killed again.
//!
//! The hub runs in its own process group; the single-user servers it spawns run in theirs (so a
//! killed hub leaves them running, which the restart test relies on). To clean up regardless,
//! every process carries `XIJI_TEST_RUN=<marker>` in its environment — the hub gets it from the
//! harness, servers from `[spawner.local.environment]`, kernels inherit it — and
//! [`kill_marked`] kills every process of this user whose environment holds that marker.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Runs `program args…` to its end: its standard output, or an error with its status and both
/// outputs.
pub fn output_of(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the tests run as root (mounting, `--allow-root` for Jupyter).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The environment variable that marks processes belonging to one test hub.
pub const MARKER_VAR: &str = "XIJI_TEST_RUN";

/// Makes the command start its own process group, so it and its children can be killed at once.
pub fn own_process_group(cmd: &mut Command) {
    cmd.process_group(0);
}

/// Sends `signal` to one process.
pub fn signal_pid(pid: u32, sig: Signal) -> Result<()> {
    let pid = i32::try_from(pid)?;
    signal::kill(Pid::from_raw(pid), sig)?;
    Ok(())
}

/// SIGKILLs the process group led by `pid` (ignores a group that is already gone).
pub fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself contain ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Pids of live processes whose environment contains `XIJI_TEST_RUN=<marker>`.
pub fn marked_pids(marker: &str) -> Vec<u32> {
    let needle = format!("{MARKER_VAR}={marker}");
    pids_where(|pid| {
        std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
            environ
                .split(|b| *b == 0)
                .any(|var| var == needle.as_bytes())
        })
    })
}

/// Live processes whose working directory is `dir` or below it (the servers of a hub started
/// without a generated configuration, which carry no marker).
pub fn pids_inside(dir: &Path) -> Vec<u32> {
    pids_where(|pid| {
        std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
    })
}

fn pids_where(wanted: impl Fn(u32) -> bool) -> Vec<u32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && wanted(pid) && is_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// SIGKILLs every process (and its process group) carrying the marker; waits ≤ 10 s for them to go.
pub fn kill_marked(marker: &str) {
    kill_all(|| marked_pids(marker));
}

/// SIGKILLs every process (and its process group) working in `dir` or below; waits ≤ 10 s.
pub fn kill_inside(dir: &Path) {
    kill_all(|| pids_inside(dir));
}

fn kill_all(find: impl Fn() -> Vec<u32>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = find();
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            if let Ok(raw) = i32::try_from(pid) {
                let pid = Pid::from_raw(raw);
                if let Ok(pgid) = nix::unistd::getpgid(Some(pid)) {
                    // Never our own group (the test binary's).
                    if pgid != nix::unistd::getpgrp() {
                        let _ = signal::killpg(pgid, Signal::SIGKILL);
                    }
                }
                let _ = signal::kill(pid, Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
