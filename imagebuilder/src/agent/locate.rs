//! Finding a container on this machine through the kernel, without the runtime's API.
//!
//! 1. Its processes: every `{host_proc}/<pid>/cgroup` whose path names the container id, as
//!    runtimes name their cgroups — containerd/CRI `…/cri-containerd-<id>.scope` (systemd
//!    driver) or `…/kubepods/…/pod<uid>/<id>` (cgroupfs), Docker `docker-<id>.scope` or
//!    `/docker/<id>`, CRI-O `crio-<id>.scope`.
//! 2. Its writable layer: the `upperdir=` option of the overlay mounted at `/` in such a
//!    process's `{host_proc}/<pid>/mountinfo` — containerd's overlayfs snapshotter gives
//!    `/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/<n>/fs`, Docker's
//!    overlay2 `/var/lib/docker/overlay2/<layer>/diff`. That is a path on the host: the agent
//!    reads it below `host_root` (`/` when the host's `/var/lib/containerd` is mounted into the
//!    agent at the same path, as the DaemonSet does).
//! 3. Its cgroup directory, for the freezer and for its CPU time ([`locate_cgroup`]): the
//!    process's cgroup path below the host's cgroup filesystem (`host_cgroup`, `/sys/fs/cgroup`):
//!    cgroup v2's unified hierarchy, or v1's hierarchy of the controller (`freezer`, `cpuacct`).
//!    A path seen through a cgroup namespace (leading `/..` steps) is looked for below the root;
//!    the directory must hold the process (`cgroup.procs`, when the agent shares the host's PID
//!    namespace) or be named after the container.

use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};

use super::freeze::{CgroupFreezer, CgroupVersion};
use super::AgentError;
use crate::source::upper_dir_from_mountinfo;

/// Where the agent sees the host: its `/proc`, its filesystem, its cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The host's `/proc` (the agent runs with the host's PID namespace; `/proc` then, or
    /// `/host/proc` when mounted there).
    pub proc: PathBuf,
    /// Where the host's root filesystem is seen: layer paths from mountinfo are read below it.
    /// `/` when the host's container storage is mounted at the same path.
    pub root: PathBuf,
    /// The host's cgroup filesystem (`/sys/fs/cgroup`).
    pub cgroup: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self {
            proc: PathBuf::from("/proc"),
            root: PathBuf::from("/"),
            cgroup: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

/// A container id as Kubernetes names it (`containerd://<id>`), parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerId {
    /// The runtime named before `://` (`containerd`, `docker`, `cri-o`), if any.
    pub runtime: Option<String>,
    /// The 64 hexadecimal digits.
    pub id: String,
}

impl ContainerId {
    /// Parses `runtime://id` or a bare id; the id must be the full 64 lower-case hexadecimal
    /// digits (a short prefix could name two containers).
    pub fn parse(text: &str) -> Result<Self, AgentError> {
        let (runtime, id) = match text.split_once("://") {
            Some((runtime, id)) => (Some(runtime.to_owned()), id),
            None => (None, text),
        };
        let valid = id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(AgentError::BadRequest(format!(
                "{text:?} is not a container id: give it as the pod's \
                 status.containerStatuses[].containerID does (runtime://<64 hexadecimal digits>)"
            )));
        }
        Ok(Self {
            runtime,
            id: id.to_owned(),
        })
    }
}

impl std::fmt::Display for ContainerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.runtime {
            Some(runtime) => write!(f, "{runtime}://{}", self.id),
            None => f.write_str(&self.id),
        }
    }
}

/// Where a running container is on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerLocation {
    /// A process of the container (the lowest pid: its init, normally).
    pub pid: u32,
    /// Its writable layer, as the agent reads it (below [`HostPaths::root`]).
    pub layer_dir: PathBuf,
    /// Its cgroup, for freezing it, or why it was not found (a save without `pause` does not
    /// need it).
    pub freezer: Result<CgroupFreezer, String>,
}

/// Finds container `id`'s processes, writable layer and cgroup on this machine.
/// [`AgentError::NotFound`] when no process runs in it here.
pub fn locate(id: &ContainerId, host: &HostPaths) -> Result<ContainerLocation, AgentError> {
    let pids = running_processes_of(id, host)?;
    let mut first_error = None;
    for pid in pids {
        let path = host.proc.join(format!("{pid}/mountinfo"));
        // A process may exit between the scan and now; try the next one.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        match upper_dir_from_mountinfo(&text) {
            Ok(upper) => {
                let layer_dir = below(&host.root, &upper);
                if !layer_dir.is_dir() {
                    return Err(AgentError::Internal(format!(
                        "container {id}'s writable layer {} is not visible to the agent at {}: \
                         mount the host's container storage (e.g. /var/lib/containerd) into the \
                         agent at the same path",
                        upper.display(),
                        layer_dir.display()
                    )));
                }
                let freezer = freezer_of(pid, &id.id, host);
                return Ok(ContainerLocation {
                    pid,
                    layer_dir,
                    freezer,
                });
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(match first_error {
        Some(e) => AgentError::Unprocessable(format!("container {id} cannot be saved: {e}")),
        None => AgentError::NotFound(format!("container {id}'s processes have exited")),
    })
}

/// A container's cgroup for one controller, found through one of its processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// The process it was found through (the lowest pid that still runs).
    pub pid: u32,
    /// The cgroup interface.
    pub version: CgroupVersion,
    /// The cgroup's directory below [`HostPaths::cgroup`].
    pub dir: PathBuf,
}

/// Finds container `id`'s cgroup for the v1 `controller` (`freezer`, `cpuacct`; on cgroup v2
/// the container's one unified cgroup). [`AgentError::NotFound`] when no process runs in it
/// here, [`AgentError::Internal`] when its cgroup is not where the agent looks.
pub fn locate_cgroup(
    id: &ContainerId,
    host: &HostPaths,
    controller: &str,
) -> Result<ContainerCgroup, AgentError> {
    let mut first_error = None;
    for pid in running_processes_of(id, host)? {
        // A process may exit between the scan and now; try the next one.
        let Ok(text) = std::fs::read_to_string(host.proc.join(format!("{pid}/cgroup"))) else {
            continue;
        };
        match cgroup_in(&text, pid, &id.id, host, controller) {
            Ok((version, dir)) => return Ok(ContainerCgroup { pid, version, dir }),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(match first_error {
        Some(e) => AgentError::Internal(format!("container {id}'s {controller} cgroup: {e}")),
        None => AgentError::NotFound(format!("container {id}'s processes have exited")),
    })
}

/// The pids (ascending) of container `id`; [`AgentError::NotFound`] when there are none.
fn running_processes_of(id: &ContainerId, host: &HostPaths) -> Result<Vec<u32>, AgentError> {
    let pids = processes_of(&id.id, &host.proc)?;
    if pids.is_empty() {
        return Err(AgentError::NotFound(format!(
            "no process on this machine runs in container {id}: it is not running, or runs on \
             another node"
        )));
    }
    Ok(pids)
}

/// The pids (ascending) whose cgroup path names container `id`.
fn processes_of(id: &str, proc: &Path) -> Result<Vec<u32>, AgentError> {
    let entries = std::fs::read_dir(proc).map_err(|e| {
        AgentError::Internal(format!(
            "cannot list the host's processes in {}: {e}",
            proc.display()
        ))
    })?;
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(proc.join(format!("{pid}/cgroup"))).is_ok_and(|text| {
                text.lines().any(|line| {
                    cgroup_line(line).is_some_and(|(_, path)| names_container(path, id))
                })
            })
        })
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// `hierarchy-id:controllers:path` → (controllers, path).
fn cgroup_line(line: &str) -> Option<(&str, &str)> {
    let (_, rest) = line.split_once(':')?;
    rest.split_once(':')
}

/// Whether a cgroup path names the container: a component that is the id, or the id with a
/// runtime's prefix and `.scope` (`cri-containerd-<id>.scope`, `docker-<id>.scope`).
fn names_container(path: &str, id: &str) -> bool {
    path.split('/').any(|component| {
        component == id
            || component.strip_suffix(".scope").is_some_and(|scope| {
                scope == id
                    || scope
                        .strip_suffix(id)
                        .is_some_and(|prefix| prefix.ends_with('-'))
            })
    })
}

/// The freezer of process `pid`'s cgroup (of container `id`), or why there is none.
fn freezer_of(pid: u32, id: &str, host: &HostPaths) -> Result<CgroupFreezer, String> {
    let file = host.proc.join(format!("{pid}/cgroup"));
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let (version, dir) = cgroup_in(&text, pid, id, host, "freezer")?;
    Ok(CgroupFreezer::new(version, dir))
}

/// The cgroup directory for the v1 `controller` of process `pid` (of container `id`) whose
/// `/proc/<pid>/cgroup` is `text`, or why there is none: the unified hierarchy when the host
/// has only cgroup v2; else the controller's v1 hierarchy (mounted as its co-mounted list,
/// `cpu,cpuacct`, or by its name); else a hybrid host's `unified` one.
fn cgroup_in(
    text: &str,
    pid: u32,
    id: &str,
    host: &HostPaths,
    controller: &str,
) -> Result<(CgroupVersion, PathBuf), String> {
    let unified = text
        .lines()
        .filter_map(cgroup_line)
        .find(|(controllers, _)| controllers.is_empty())
        .map(|(_, path)| path);
    let root = &host.cgroup;
    let v1 = text
        .lines()
        .filter_map(cgroup_line)
        .find(|(controllers, _)| controllers.split(',').any(|c| c == controller))
        .and_then(|(controllers, path)| {
            [controllers, controller]
                .into_iter()
                .map(|mount| root.join(mount))
                .find(|base| base.is_dir())
                .map(|base| (base, path))
        });
    let (version, base, path) = if root.join("cgroup.controllers").is_file() {
        (CgroupVersion::V2, root.clone(), unified)
    } else if let Some((base, path)) = v1 {
        (CgroupVersion::V1, base, Some(path))
    } else if root.join("unified/cgroup.controllers").is_file() {
        (CgroupVersion::V2, root.join("unified"), unified)
    } else {
        return Err(format!(
            "no cgroup {controller} under {}: mount the host's /sys/fs/cgroup there",
            root.display()
        ));
    };
    let path = path.ok_or_else(|| {
        format!(
            "process {pid} has no {} cgroup",
            match version {
                CgroupVersion::V1 => controller,
                CgroupVersion::V2 => "unified (v2)",
            }
        )
    })?;
    let dir = cgroup_dir(&base, path, pid, id).ok_or_else(|| {
        format!(
            "cannot find the cgroup {path} of process {pid} below {}",
            base.display()
        )
    })?;
    Ok((version, dir))
}

/// The directory below `base` of the cgroup `path` of process `pid` in container `id`. The
/// path is relative to the reader's cgroup namespace: seen from a namespace it starts with
/// `/..` steps, so the rest is looked for at `base` first, then (bounded) deeper down.
fn cgroup_dir(base: &Path, path: &str, pid: u32, id: &str) -> Option<PathBuf> {
    let rest: PathBuf = Path::new(path)
        .components()
        .skip_while(|c| matches!(c, Component::RootDir | Component::ParentDir))
        .collect();
    if rest.as_os_str().is_empty() {
        // The root cgroup is the host's own: never frozen.
        return None;
    }
    // The process is listed in its cgroup when the agent shares the host's PID namespace;
    // otherwise (the host's /proc mounted elsewhere) it shows as another pid or not at all,
    // and the directory's name, which names the container, tells.
    let ours = |dir: &Path| {
        dir.is_dir()
            && (holds(dir, pid)
                || dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| names_container(n, id)))
    };
    let direct = base.join(&rest);
    if ours(&direct) {
        return Some(direct);
    }
    const MAX_DEPTH: usize = 8;
    const MAX_DIRS: usize = 50_000;
    let mut queue = VecDeque::from([(base.to_path_buf(), 0usize)]);
    let mut seen = 0;
    while let Some((dir, depth)) = queue.pop_front() {
        seen += 1;
        if seen > MAX_DIRS {
            return None;
        }
        if dir.ends_with(&rest) && ours(&dir) {
            return Some(dir);
        }
        if depth >= MAX_DEPTH {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                queue.push_back((entry.path(), depth + 1));
            }
        }
    }
    None
}

/// Whether the cgroup directory lists `pid` among its processes.
fn holds(dir: &Path, pid: u32) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .is_ok_and(|procs| procs.lines().any(|l| l.trim().parse() == Ok(pid)))
}

/// An absolute host path as the agent reads it below `root`.
fn below(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(relative) => root.join(relative),
        Err(_) => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0f3e2d1c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";

    #[test]
    fn container_ids_are_taken_as_kubernetes_gives_them() {
        let parsed = ContainerId::parse(&format!("containerd://{ID}")).unwrap();
        assert_eq!(parsed.runtime.as_deref(), Some("containerd"));
        assert_eq!(parsed.id, ID);
        assert_eq!(parsed.to_string(), format!("containerd://{ID}"));
        assert!(ContainerId::parse(ID).unwrap().runtime.is_none());
        for bad in [
            "docker://abc",
            "",
            "containerd://",
            &ID.to_uppercase(),
            "../../etc",
        ] {
            let err = ContainerId::parse(bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
            assert!(err.to_string().contains("containerID"), "{err}");
        }
    }

    #[test]
    fn every_runtimes_cgroup_names_are_recognised() {
        for path in [
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{ID}.scope"),
            format!("/kubepods/burstable/pod5c0ffee0-1111-2222-3333-444455556666/{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
            format!("/../../kubepods-besteffort-pod2.slice/crio-{ID}.scope"),
        ] {
            assert!(names_container(&path, ID), "{path}");
        }
        for path in [
            "/".to_owned(),
            format!("/docker/{}", &ID[..63]),
            format!("/docker/{ID}x"),
            format!("/docker/x{ID}.scope"),
        ] {
            assert!(!names_container(&path, ID), "{path}");
        }
    }

    /// A fake host: `/proc` with two processes of the container (and one other), a v2 cgroup
    /// tree seen through a cgroup namespace (`/..` steps), an overlay root.
    #[test]
    fn a_container_is_found_by_its_cgroup_and_its_layer_by_mountinfo() {
        let host = tempfile::tempdir().unwrap();
        let proc = host.path().join("proc");
        let cgroup = host.path().join("cgroup");
        let layer = host.path().join("var/lib/containerd/snapshots/7/fs");
        std::fs::create_dir_all(&layer).unwrap();
        let scope = format!("kubepods.slice/pod1.slice/cri-containerd-{ID}.scope");
        std::fs::create_dir_all(cgroup.join(&scope)).unwrap();
        std::fs::write(cgroup.join("cgroup.controllers"), "cpu memory\n").unwrap();
        std::fs::write(cgroup.join(&scope).join("cgroup.procs"), "41\n42\n").unwrap();
        let mountinfo = "97 69 0:41 / / rw,relatime - overlay overlay \
             rw,lowerdir=/l1:/l2,upperdir=/var/lib/containerd/snapshots/7/fs,workdir=/w\n\
             98 97 0:44 / /proc rw - proc proc rw\n";
        for (pid, path) in [
            (42, format!("0::/../../{scope}")),
            (41, format!("0::/../../{scope}")),
            (7, "0::/system.slice/sshd.service".to_owned()),
        ] {
            std::fs::create_dir_all(proc.join(pid.to_string())).unwrap();
            std::fs::write(proc.join(format!("{pid}/cgroup")), format!("{path}\n")).unwrap();
            std::fs::write(proc.join(format!("{pid}/mountinfo")), mountinfo).unwrap();
        }
        let paths = HostPaths {
            proc,
            root: host.path().to_path_buf(),
            cgroup: cgroup.clone(),
        };
        let found = locate(
            &ContainerId::parse(&format!("containerd://{ID}")).unwrap(),
            &paths,
        )
        .unwrap();
        assert_eq!(found.pid, 41);
        assert_eq!(found.layer_dir, layer);
        let freezer = found.freezer.unwrap();
        assert_eq!(freezer.dir(), cgroup.join(&scope));
        assert_eq!(freezer.version(), CgroupVersion::V2);

        let other = "1".repeat(64);
        let err = locate(&ContainerId::parse(&other).unwrap(), &paths).unwrap_err();
        assert_eq!(err.status(), 404);
        assert!(err.to_string().contains("no process"), "{err}");
    }
}
