//! What the hub meters and admits against: the capacity a backend can give at once
//! ([`Capacity`]) and what each node of a running server really did ([`NodeUsage`]: when its
//! instance started and stopped, the CPU time it used).

/// What a backend can run at once, for admission. `None`: the backend sets no bound on it
/// (an administrator may still cap it).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capacity {
    /// Nodes (containers, processes) at once.
    pub nodes: Option<u64>,
    /// CPU, in thousandths of a core.
    pub cpu_millis: Option<u64>,
    /// Memory, in MiB.
    pub memory_mib: Option<u64>,
    /// GPUs.
    pub gpus: Option<u64>,
}

/// One node of a server as the backend sees it now.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeUsage {
    /// The node's index in its cluster (`node-{index}`; 0 for a single-node server).
    pub index: u32,
    /// Whether the node's instance runs.
    pub running: bool,
    /// When the instance started, in microseconds since the Unix epoch, if known.
    pub started_at: Option<i64>,
    /// When the instance stopped, if it has and the backend knows (Docker's
    /// `State.FinishedAt`).
    pub finished_at: Option<i64>,
    /// CPU time the instance has used since it started, in nanoseconds (its cgroup's
    /// `usage_usec`, or the process tree's user + system time), if known.
    pub cpu_ns: Option<u64>,
}

/// The host's memory in MiB from `/proc/meminfo`'s `MemTotal`, if readable.
pub fn host_memory_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total_mib(&text)
}

fn parse_mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The host's CPU cores in thousandths, as the scheduler lets this process use them.
pub fn host_cpu_millis() -> Option<u64> {
    std::thread::available_parallelism()
        .ok()
        .and_then(|n| u64::try_from(n.get()).ok())
        .map(|n| n * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_total_is_read_in_mib_from_meminfo() {
        let text = "MemTotal:       24576000 kB\nMemFree:        1000 kB\n";
        assert_eq!(parse_mem_total_mib(text), Some(24000));
        assert_eq!(parse_mem_total_mib("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn this_host_reports_some_cpus_and_memory() {
        assert!(host_cpu_millis().is_some_and(|m| m >= 1000));
        assert!(host_memory_mib().is_some_and(|m| m > 0));
    }
}
