//! Linux process facts from `/proc`, and signalling a server's process group.
//!
//! A process is identified by its pid *and* its start time (field 22 of `/proc/<pid>/stat`,
//! clock ticks since boot), so a pid reused by an unrelated process is never mistaken for the
//! server, nor signalled.

use std::collections::HashMap;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::SpawnerError;

/// The fields of `/proc/<pid>/stat` the spawner needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProcStat {
    /// One-letter state: `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Process group id.
    pub pgrp: u32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcStat {
    /// A zombie or dead process has exited; it only waits to be reaped.
    fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted from the last `)`.
pub(super) fn parse_stat(text: &str) -> Option<ProcStat> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(5 - 3)?.parse().ok()?,
        start_time: fields.get(22 - 3)?.parse().ok()?,
    })
}

/// `/proc/<pid>/stat`, or `None` if there is no such process.
pub(super) fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Linux reports `/proc` times in clock ticks of `USER_HZ`, which is 100 on every architecture
/// it supports.
const USER_HZ: u64 = 100;

/// User and system CPU time of `pid` and of its children it has reaped (fields 14 to 17 of its
/// stat), in nanoseconds.
#[cfg(test)]
fn cpu_ns_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ns(&text)
}

/// Fields 14 to 17 of a stat text in nanoseconds.
fn parse_cpu_ns(text: &str) -> Option<u64> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let mut ticks = 0u64;
    for n in 14..=17 {
        ticks += fields.get(n - 3)?.parse::<u64>().ok()?;
    }
    Some(ticks * (1_000_000_000 / USER_HZ))
}

/// One live process of the table [`cpu_by_group`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GroupMember {
    /// Its start time in clock ticks since boot.
    pub start_time: u64,
    /// Its CPU time and that of the children it reaped, in nanoseconds.
    pub cpu_ns: u64,
}

/// Live processes by process group.
pub(super) type GroupTable = HashMap<u32, Vec<GroupMember>>;

/// Every live process by process group, read from `/proc` in one pass: what metering asks of
/// many servers at once (one pass instead of one per server).
pub(super) fn cpu_by_group() -> GroupTable {
    let mut groups = GroupTable::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(stat), Some(cpu_ns)) = (parse_stat(&text), parse_cpu_ns(&text)) else {
            continue;
        };
        if !stat.has_exited() {
            groups.entry(stat.pgrp).or_default().push(GroupMember {
                start_time: stat.start_time,
                cpu_ns,
            });
        }
    }
    groups
}

/// CPU time used so far by the server's process group whose leader started at `start_time`
/// (its live members and what they reaped), in nanoseconds, from a table of [`cpu_by_group`].
pub(super) fn group_cpu_ns(
    table: &HashMap<u32, Vec<GroupMember>>,
    pgid: u32,
    start_time: u64,
) -> u64 {
    table.get(&pgid).map_or(0, |members| {
        members
            .iter()
            .filter(|m| m.start_time >= start_time)
            .map(|m| m.cpu_ns)
            .sum()
    })
}

/// When a process that started `start_time` ticks after boot started, in microseconds since
/// the epoch (the boot time is `btime` of `/proc/stat`).
pub(super) fn started_at_micros(start_time: u64) -> Option<i64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let since_boot = i64::try_from(start_time * (1_000_000 / USER_HZ)).ok()?;
    Some(btime * 1_000_000 + since_boot)
}

/// Whether the process `pid` that started at `start_time` still runs (exists, is not a zombie,
/// and is not a newer process that reused the pid).
pub(super) fn is_alive(pid: u32, start_time: u64) -> bool {
    read_stat(pid).is_some_and(|s| s.start_time == start_time && !s.has_exited())
}

/// Live (non-zombie) members of the process group `pgid` whose leader started at `start_time`.
///
/// The kernel never hands out a pid that is still in use as a process group id, so if a
/// process with pid `pgid` exists but started at another time, the server's group emptied long
/// ago and the id now belongs to someone else: nothing is ours. Members started before the
/// leader cannot belong to it either.
pub(super) fn group_members(pgid: u32, start_time: u64) -> Vec<u32> {
    if read_stat(pgid).is_some_and(|leader| leader.start_time != start_time) {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            read_stat(pid)
                .is_some_and(|s| s.pgrp == pgid && !s.has_exited() && s.start_time >= start_time)
        })
        .collect()
}

/// Sends `signal` to every live process of the server's group. While the leader lives the group
/// is certainly ours and is signalled at once (`killpg`); after it has gone, the remaining
/// members are signalled one by one. A group that is already gone is not an error.
pub(super) fn signal_group(pgid: u32, start_time: u64, signal: Signal) -> Result<(), SpawnerError> {
    let failed = |errno: Errno| SpawnerError::Signal {
        pgid,
        source: errno.into(),
    };
    if is_alive(pgid, start_time) {
        return match signal::killpg(Pid::from_raw(to_pid_t(pgid)), signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(errno) => Err(failed(errno)),
        };
    }
    for pid in group_members(pgid, start_time) {
        match signal::kill(Pid::from_raw(to_pid_t(pid)), signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => return Err(failed(errno)),
        }
    }
    Ok(())
}

/// Whether nothing of the server's process group is left running.
pub(super) fn group_is_gone(pgid: u32, start_time: u64) -> bool {
    group_members(pgid, start_time).is_empty()
}

/// pids come from the kernel and fit in `pid_t`; an out-of-range value (a forged state blob)
/// maps to an impossible pid rather than to `-1`, which would mean "every process".
fn to_pid_t(pid: u32) -> i32 {
    i32::try_from(pid).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_a_command_name_with_spaces_and_parentheses() {
        let text = "4242 (python (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 1 0 0 20 0 3 0 987654 1000 200 rest";
        assert_eq!(
            parse_stat(text),
            Some(ProcStat {
                state: 'S',
                pgrp: 4242,
                start_time: 987654
            })
        );
    }

    #[test]
    fn truncated_stat_text_is_not_parsed() {
        assert_eq!(parse_stat("12 (sh) S 1 12"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn this_process_group_has_used_cpu_and_started_before_now() {
        let pid = std::process::id();
        let stat = read_stat(pid).unwrap();
        let start = started_at_micros(stat.start_time).unwrap();
        let now = chrono::Utc::now().timestamp_micros();
        assert!(start <= now && start > now - 86_400_000_000 * 365);
        let busy = std::time::Instant::now();
        let mut x = 0u64;
        while busy.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_ns_of(pid).unwrap() > 0);
        let table = cpu_by_group();
        assert!(group_cpu_ns(&table, stat.pgrp, 0) >= cpu_ns_of(pid).unwrap());
    }

    #[test]
    fn this_process_is_alive_with_its_own_start_time_only() {
        let pid = std::process::id();
        let stat = read_stat(pid).unwrap();
        assert!(is_alive(pid, stat.start_time));
        assert!(!is_alive(pid, stat.start_time + 1));
    }

    #[test]
    fn a_group_is_ours_only_while_its_leader_pid_has_the_recorded_start_time() {
        use std::os::unix::process::CommandExt as _;
        let mut leader = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = leader.id();
        let mut member = std::process::Command::new("sleep")
            .arg("30")
            .process_group(i32::try_from(pgid).unwrap())
            .spawn()
            .unwrap();
        let leader_start = read_stat(pgid).unwrap().start_time;

        let mut members = group_members(pgid, leader_start);
        members.sort_unstable();
        let mut expected = vec![pgid, member.id()];
        expected.sort_unstable();
        assert_eq!(members, expected);
        // Recorded with another start time: the id was reused, nothing is ours.
        assert!(group_members(pgid, leader_start + 1).is_empty());

        signal_group(pgid, leader_start, Signal::SIGKILL).unwrap();
        leader.wait().unwrap();
        member.wait().unwrap();
        assert!(group_is_gone(pgid, leader_start));
    }

    #[test]
    fn a_forged_huge_pid_never_becomes_minus_one() {
        assert_eq!(to_pid_t(u32::MAX), i32::MAX);
        assert!(!is_alive(u32::MAX, 0));
    }
}
