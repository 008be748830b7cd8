//! What the Docker host can give: CPUs, memory, GPUs, whether storage can be limited.

use std::path::Path;

/// The Docker host's capacity, read from `docker info` (and `/dev/nvidia*` when the engine is
/// on this machine) when the spawner connects.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HostCapacity {
    /// CPU cores the engine reports (`NCPU`).
    pub cpus: f64,
    /// Memory the engine reports, in bytes (`MemTotal`).
    pub memory_bytes: u64,
    /// GPUs: `Some(0)` none, `Some(n)` counted, `None` present but not counted.
    pub gpus: Option<u32>,
    /// The storage driver, e.g. `overlay2`.
    pub storage_driver: String,
    /// The filesystem under the storage driver, e.g. `extfs` or `xfs`.
    pub backing_filesystem: String,
    /// Whether `--storage-opt size=` can limit a container's writable layer on this host.
    pub storage_limit_supported: bool,
}

impl HostCapacity {
    /// Reads the capacity from `docker info`; `gpus_override` replaces GPU detection.
    pub fn from_info(info: &bollard::models::SystemInfo, gpus_override: Option<u32>) -> Self {
        let driver = info.driver.clone().unwrap_or_default();
        let backing_filesystem = info
            .driver_status
            .iter()
            .flatten()
            .find(|pair| pair.first().is_some_and(|k| k == "Backing Filesystem"))
            .and_then(|pair| pair.get(1).cloned())
            .unwrap_or_default();
        let has_nvidia_runtime = info
            .runtimes
            .as_ref()
            .is_some_and(|r| r.keys().any(|k| k.contains("nvidia")));
        let gpus = gpus_override.or_else(|| {
            let devices = count_nvidia_devices(Path::new("/dev"));
            match (devices, has_nvidia_runtime) {
                (0, false) => Some(0),
                (0, true) => None,
                (n, _) => Some(n),
            }
        });
        // Only these drivers honour `size=`; overlay2 needs xfs mounted with pquota, which
        // `docker info` does not show (creation fails with a clear error without it).
        let storage_limit_supported = matches!(
            driver.as_str(),
            "btrfs" | "zfs" | "devicemapper" | "windowsfilter"
        ) || (driver == "overlay2" && backing_filesystem == "xfs");
        // The engine's numbers are small positive integers; clamp negative nonsense to 0.
        #[allow(clippy::cast_precision_loss)]
        let cpus = info.ncpu.unwrap_or(0).max(0) as f64;
        Self {
            cpus,
            memory_bytes: u64::try_from(info.mem_total.unwrap_or(0)).unwrap_or(0),
            gpus,
            storage_driver: driver,
            backing_filesystem,
            storage_limit_supported,
        }
    }
}

/// `/dev/nvidia0`, `/dev/nvidia1`, … (not `nvidiactl`, `nvidia-uvm`).
fn count_nvidia_devices(dev: &Path) -> u32 {
    let Ok(entries) = std::fs::read_dir(dev) else {
        return 0;
    };
    let count = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("nvidia"))
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    u32::try_from(count).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_comes_from_docker_info() {
        let info: bollard::models::SystemInfo = serde_json::from_value(serde_json::json!({
            "NCPU": 8,
            "MemTotal": 8_000_000_000_i64,
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "xfs"], ["Supports d_type", "true"]],
            "Runtimes": {"runc": {"path": "runc"}}
        }))
        .unwrap();
        let host = HostCapacity::from_info(&info, Some(0));
        assert_eq!(host.cpus, 8.0);
        assert_eq!(host.memory_bytes, 8_000_000_000);
        assert_eq!(host.gpus, Some(0));
        assert!(host.storage_limit_supported);

        let info: bollard::models::SystemInfo = serde_json::from_value(serde_json::json!({
            "Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]
        }))
        .unwrap();
        assert!(!HostCapacity::from_info(&info, Some(2)).storage_limit_supported);
        assert_eq!(HostCapacity::from_info(&info, Some(2)).gpus, Some(2));
    }

    #[test]
    fn only_numbered_nvidia_devices_are_gpus() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(count_nvidia_devices(dir.path()), 2);
    }
}
