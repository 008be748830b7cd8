//! A container's CPU time, read from its cgroup on this machine — what the hub meters a
//! Kubernetes pod by (the metrics API gives only rates, and the kubelet's summary API needs
//! `nodes/proxy`).
//!
//! The container's cgroup is found as for the freezer ([`locate_cgroup`]): cgroup v2's
//! `cpu.stat` `usage_usec` (in every v2 cgroup, whether or not the `cpu` controller is
//! enabled), or cgroup v1's `cpuacct.usage` (nanoseconds). Both count every process the
//! cgroup ever held, from its creation: the container's CPU time since it started.

use super::freeze::CgroupVersion;
use super::locate::{locate_cgroup, ContainerId, HostPaths};
use super::wire::ContainerUsage;
use super::AgentError;

/// Container `id`'s CPU time now. [`AgentError::NotFound`] when no process runs in it here
/// (also when it ends while being read).
pub fn container_usage(id: &ContainerId, host: &HostPaths) -> Result<ContainerUsage, AgentError> {
    let cgroup = locate_cgroup(id, host, "cpuacct")?;
    let (file, parse): (&str, fn(&str) -> Option<u64>) = match cgroup.version {
        CgroupVersion::V2 => ("cpu.stat", usage_usec_ns),
        CgroupVersion::V1 => ("cpuacct.usage", |text| text.trim().parse().ok()),
    };
    let path = cgroup.dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if !cgroup.dir.is_dir() {
            // The container ended between finding its cgroup and reading it.
            AgentError::NotFound(format!("container {id}'s processes have exited"))
        } else {
            AgentError::Internal(format!("cannot read {}: {e}", path.display()))
        }
    })?;
    let cpu_ns = parse(&text).ok_or_else(|| {
        AgentError::Internal(format!(
            "{} does not hold the CPU time where the kernel puts it",
            path.display()
        ))
    })?;
    Ok(ContainerUsage {
        cpu_ns,
        read_at: chrono::Utc::now(),
    })
}

/// cgroup v2 `cpu.stat`'s `usage_usec`, in nanoseconds.
fn usage_usec_ns(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|usec| usec.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const ID: &str = "0f3e2d1c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";

    /// A fake host with one process of the container, its cgroup `dir` (below `cgroup`)
    /// holding `files`, and `proc_cgroup` as its `/proc/<pid>/cgroup`.
    fn host(
        root: &Path,
        top: &[&str],
        dir: &str,
        files: &[(&str, &str)],
        proc_cgroup: &str,
    ) -> HostPaths {
        let proc = root.join("proc");
        let cgroup = root.join("cgroup");
        std::fs::create_dir_all(proc.join("42")).unwrap();
        std::fs::write(proc.join("42/cgroup"), proc_cgroup).unwrap();
        for file in top {
            std::fs::create_dir_all(cgroup.join(Path::new(file).parent().unwrap())).unwrap();
            std::fs::write(cgroup.join(file), "").unwrap();
        }
        std::fs::create_dir_all(cgroup.join(dir)).unwrap();
        std::fs::write(cgroup.join(dir).join("cgroup.procs"), "42\n").unwrap();
        for (name, text) in files {
            std::fs::write(cgroup.join(dir).join(name), text).unwrap();
        }
        HostPaths {
            proc,
            root: root.to_path_buf(),
            cgroup,
        }
    }

    #[test]
    fn cgroup_v2_cpu_time_is_usage_usec_in_nanoseconds() {
        let root = tempfile::tempdir().unwrap();
        let scope = format!("kubepods.slice/pod1.slice/cri-containerd-{ID}.scope");
        let paths = host(
            root.path(),
            &["cgroup.controllers"],
            &scope,
            &[(
                "cpu.stat",
                "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n",
            )],
            &format!("0::/../../{scope}\n"),
        );
        let id = ContainerId::parse(&format!("containerd://{ID}")).unwrap();
        let usage = container_usage(&id, &paths).unwrap();
        assert_eq!(usage.cpu_ns, 1_234_567_000);
    }

    #[test]
    fn cgroup_v1_cpu_time_is_cpuacct_usage_of_the_co_mounted_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        let path = format!("kubepods/burstable/pod5/{ID}");
        let paths = host(
            root.path(),
            &[],
            &format!("cpu,cpuacct/{path}"),
            &[("cpuacct.usage", "987654321\n")],
            &format!("5:cpu,cpuacct:/{path}\n4:memory:/{path}\n0::/\n"),
        );
        let id = ContainerId::parse(&format!("docker://{ID}")).unwrap();
        assert_eq!(container_usage(&id, &paths).unwrap().cpu_ns, 987_654_321);
    }

    #[test]
    fn a_container_without_processes_here_is_not_found() {
        let root = tempfile::tempdir().unwrap();
        let paths = host(
            root.path(),
            &["cgroup.controllers"],
            "system.slice/sshd.service",
            &[("cpu.stat", "usage_usec 1\n")],
            "0::/system.slice/sshd.service\n",
        );
        let err = container_usage(&ContainerId::parse(ID).unwrap(), &paths).unwrap_err();
        assert_eq!(err.status(), 404);
        assert!(
            err.to_string().contains("no process on this machine"),
            "{err}"
        );
    }
}
