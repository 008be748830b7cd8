//! Finding a running container's writable layer: the overlay upper directory.
//!
//! Two ways, so the same builder serves a Docker host and a Kubernetes (containerd) node:
//! - Docker's overlay2 driver reports it in `docker inspect` (`GraphDriver.Data.UpperDir`);
//! - any overlay-rooted container shows it in its init process's `/proc/<pid>/mountinfo`, as the
//!   `upperdir=` option of the mount at `/`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// A container's writable layer as the builder reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritableLayer {
    /// The overlay upper directory, as a path on the machine running the builder.
    pub upper_dir: PathBuf,
}

impl WritableLayer {
    /// A writable layer at a known path (e.g. a containerd snapshot's `fs` directory).
    pub fn at(upper_dir: impl Into<PathBuf>) -> Self {
        Self {
            upper_dir: upper_dir.into(),
        }
    }

    /// From a container's init process: reads `/proc/<pid>/mountinfo` under `host_root`
    /// (`/` normally; the host's root as mounted into a node agent's container otherwise) and
    /// maps the upper directory below `host_root` too.
    pub fn from_pid(pid: u32, host_root: &Path) -> Result<Self> {
        let path = host_root.join(format!("proc/{pid}/mountinfo"));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::MountInfo(format!("cannot read {}: {e}", path.display())))?;
        let upper = upper_dir_from_mountinfo(&text)?;
        Ok(Self::at(rebase(host_root, &upper)))
    }
}

/// Joins an absolute host path below `host_root` (`/` leaves it as it is).
fn rebase(host_root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(relative) => host_root.join(relative),
        Err(_) => path.to_path_buf(),
    }
}

/// What the builder takes from `docker inspect <container>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerContainer {
    /// The container id.
    pub id: String,
    /// The overlay2 upper directory.
    pub upper_dir: PathBuf,
    /// The image the container was created from, as given to `docker run` (`Config.Image`):
    /// the natural base for the saved image.
    pub image: String,
    /// The init process id on the host (0 when the container is not running).
    pub pid: u32,
    /// Whether the container is running.
    pub running: bool,
}

impl DockerContainer {
    /// The container's writable layer.
    pub fn writable_layer(&self) -> WritableLayer {
        WritableLayer::at(&self.upper_dir)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectContainer {
    id: String,
    #[serde(default)]
    state: Option<InspectState>,
    #[serde(default)]
    config: Option<InspectConfig>,
    #[serde(default)]
    graph_driver: Option<InspectGraphDriver>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectState {
    #[serde(default)]
    running: bool,
    #[serde(default)]
    pid: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectConfig {
    #[serde(default)]
    image: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectGraphDriver {
    name: String,
    #[serde(default)]
    data: Option<std::collections::HashMap<String, String>>,
}

/// Reads `docker inspect` output (the JSON array the CLI prints, or one container object as the
/// Engine API returns it).
pub fn docker_container_from_inspect(json: &str) -> Result<DockerContainer> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Error::DockerInspect(format!("not JSON: {e}")))?;
    let object = match value {
        serde_json::Value::Array(mut items) => {
            if items.len() != 1 {
                return Err(Error::DockerInspect(format!(
                    "expected one container, got {}",
                    items.len()
                )));
            }
            items.remove(0)
        }
        other => other,
    };
    let inspect: InspectContainer = serde_json::from_value(object)
        .map_err(|e| Error::DockerInspect(format!("unexpected shape: {e}")))?;
    let driver = inspect.graph_driver.ok_or_else(|| {
        Error::DockerInspect(
            "no GraphDriver (a containerd image store? use the container's mountinfo instead)"
                .into(),
        )
    })?;
    if driver.name != "overlay2" && driver.name != "overlay" {
        return Err(Error::DockerInspect(format!(
            "storage driver {:?} is not overlay2",
            driver.name
        )));
    }
    let upper = driver
        .data
        .as_ref()
        .and_then(|d| d.get("UpperDir"))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::DockerInspect("GraphDriver.Data.UpperDir is missing".into()))?;
    let state = inspect.state.unwrap_or(InspectState {
        running: false,
        pid: 0,
    });
    Ok(DockerContainer {
        id: inspect.id,
        upper_dir: PathBuf::from(upper),
        image: inspect.config.map(|c| c.image).unwrap_or_default(),
        pid: state.pid,
        running: state.running,
    })
}

/// One line of `/proc/<pid>/mountinfo` (see proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfoEntry {
    /// Mount id.
    pub mount_id: u32,
    /// Parent mount id.
    pub parent_id: u32,
    /// Where it is mounted, in the process's view (unescaped).
    pub mount_point: String,
    /// The filesystem type (`overlay`, `ext4`, …).
    pub fs_type: String,
    /// The mount source (unescaped).
    pub source: String,
    /// Per-superblock options, split at commas and unescaped (`upperdir=/…`).
    pub super_options: Vec<String>,
}

impl MountInfoEntry {
    /// The value of a `key=value` super option.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.super_options.iter().find_map(|o| {
            o.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, value)| value)
        })
    }
}

/// Parses mountinfo text. Malformed lines are an error: a half-understood mount table could
/// point the builder at the wrong directory.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountInfoEntry>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_mountinfo_line)
        .collect()
}

fn parse_mountinfo_line(line: &str) -> Result<MountInfoEntry> {
    let bad = |why: &str| Error::MountInfo(format!("{why} in line {line:?}"));
    let fields: Vec<&str> = line.split(' ').collect();
    let separator = fields
        .iter()
        .position(|f| *f == "-")
        .ok_or_else(|| bad("no '-' separator"))?;
    if separator < 6 || fields.len() < separator + 4 {
        return Err(bad("too few fields"));
    }
    let number = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| bad("a mount id is not a number"))
    };
    Ok(MountInfoEntry {
        mount_id: number(fields[0])?,
        parent_id: number(fields[1])?,
        mount_point: unescape_octal(fields[4]),
        fs_type: fields[separator + 1].to_string(),
        source: unescape_octal(fields[separator + 2]),
        // The kernel escapes ',' inside option values (as \054), so splitting first is safe.
        super_options: fields[separator + 3]
            .split(',')
            .map(unescape_octal)
            .collect(),
    })
}

/// Undoes the kernel's `\ooo` escaping of spaces, tabs, newlines, backslashes and commas.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The upper directory of the overlay mounted at `/` in a mountinfo table (the topmost one,
/// when several mounts are stacked there).
pub fn upper_dir_from_mountinfo(text: &str) -> Result<PathBuf> {
    let entries = parse_mountinfo(text)?;
    let root = entries
        .iter()
        .rev()
        .find(|e| e.mount_point == "/")
        .ok_or_else(|| Error::MountInfo("nothing is mounted at /".into()))?;
    if root.fs_type != "overlay" {
        return Err(Error::MountInfo(format!(
            "the root filesystem is {:?}, not overlay",
            root.fs_type
        )));
    }
    let upper = root
        .option("upperdir")
        .ok_or_else(|| Error::MountInfo("the root overlay has no upperdir (read-only?)".into()))?;
    let upper = PathBuf::from(upper);
    if !upper.is_absolute() {
        // Docker shortens long mount data with paths relative to its layer directory; the
        // caller must then use `docker inspect` (or `WritableLayer::at`).
        return Err(Error::MountInfo(format!(
            "upperdir {} is relative; locate the layer from the runtime instead",
            upper.display()
        )));
    }
    Ok(upper)
}
