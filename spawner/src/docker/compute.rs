//! The Docker host as the backend's one compute node: what `docker info` reports now, and what
//! this hub's running containers reserve (their `HostConfig` limits: CPUs, memory, GPUs).
//!
//! The host is always in the pool `default` and takes new clusters while the engine answers;
//! there is no other machine to add or to take out.

use std::collections::{BTreeMap, HashMap};

use bollard::container::{InspectContainerOptions, ListContainersOptions};
use bollard::models::HostConfig;

use super::{is_not_found, DockerSpawner, LABEL_HUB};
use crate::{Capacity, ComputeNode, NodeCondition, SpawnerError};

/// The pool a single-machine backend's host is in.
pub(crate) const DEFAULT_POOL: &str = "default";

impl DockerSpawner {
    /// The Docker host as a compute node, read now.
    pub(super) async fn host_node(&self) -> Result<ComputeNode, SpawnerError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| SpawnerError::docker("reading `docker info`", e))?;
        let used = self.reserved_by_xiji().await?;
        let host = self.host();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let cpu_millis = (host.cpus * 1000.0).round().max(0.0) as u64;
        let labels = info
            .labels
            .iter()
            .flatten()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (l.clone(), String::new()),
            })
            .collect::<BTreeMap<_, _>>();
        let os = info.os_type.clone().unwrap_or_else(|| "linux".into());
        let arch = info
            .architecture
            .as_deref()
            .map(kubernetes_arch)
            .unwrap_or_default();
        Ok(ComputeNode {
            name: info.name.clone().unwrap_or_else(|| "docker".into()),
            pool: Some(DEFAULT_POOL.into()),
            schedulable: true,
            capacity: Capacity {
                nodes: None,
                cpu_millis: Some(cpu_millis),
                memory_mib: Some(host.memory_bytes / (1024 * 1024)),
                gpus: host.gpus.map(u64::from),
            },
            allocatable: self.host_capacity(),
            xiji_nodes: u32::try_from(used.containers).unwrap_or(u32::MAX),
            used: Capacity {
                nodes: Some(used.containers),
                cpu_millis: Some(used.cpu_millis),
                memory_mib: Some(used.memory_bytes / (1024 * 1024)),
                gpus: Some(used.gpus),
            },
            conditions: vec![NodeCondition {
                kind: "Ready".into(),
                status: "True".into(),
                reason: Some("EngineAnswered".into()),
                message: Some(match &info.operating_system {
                    Some(os) => format!("Docker Engine answers on {os}"),
                    None => "Docker Engine answers".into(),
                }),
            }],
            version: info
                .server_version
                .as_deref()
                .map(|v| format!("Docker {v}"))
                .unwrap_or_else(|| "Docker".into()),
            platform: format!("{os}/{arch}"),
            gpu_model: None,
            labels,
        })
    }

    /// What this hub's running containers reserve, summed.
    async fn reserved_by_xiji(&self) -> Result<Reserved, SpawnerError> {
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions::<String> {
                all: false,
                filters: HashMap::from([(
                    "label".to_owned(),
                    vec![format!("{LABEL_HUB}={}", self.cfg.instance)],
                )]),
                ..Default::default()
            }))
            .await
            .map_err(|e| SpawnerError::docker("listing Xiji's containers", e))?;
        let inspections = futures_util::future::join_all(containers.iter().filter_map(|c| {
            let id = c.id.clone()?;
            Some(async move {
                let found = self
                    .docker
                    .inspect_container(&id, None::<InspectContainerOptions>)
                    .await;
                (id, found)
            })
        }))
        .await;
        let mut reserved = Reserved::default();
        for (id, found) in inspections {
            let info = match found {
                Ok(info) => info,
                // Stopped and removed since the listing.
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(SpawnerError::docker(format!("inspecting {id}"), e)),
            };
            if !info.state.and_then(|s| s.running).unwrap_or(false) {
                continue;
            }
            reserved.add(info.host_config.as_ref(), self.host().gpus);
        }
        Ok(reserved)
    }
}

/// What running containers reserve.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reserved {
    containers: u64,
    cpu_millis: u64,
    memory_bytes: u64,
    gpus: u64,
}

impl Reserved {
    /// Adds one container's limits; a request for all GPUs (`count: -1`) counts the host's.
    fn add(&mut self, host_config: Option<&HostConfig>, host_gpus: Option<u32>) {
        self.containers += 1;
        let Some(hc) = host_config else {
            return;
        };
        let nanos = hc
            .nano_cpus
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        self.cpu_millis = self.cpu_millis.saturating_add(nanos.div_ceil(1_000_000));
        let memory = hc.memory.and_then(|m| u64::try_from(m).ok()).unwrap_or(0);
        self.memory_bytes = self.memory_bytes.saturating_add(memory);
        for request in hc.device_requests.iter().flatten() {
            let gpus = match request.count {
                Some(-1) => host_gpus.map_or(0, u64::from),
                Some(n) => u64::try_from(n).unwrap_or(0),
                None => 0,
            };
            self.gpus = self.gpus.saturating_add(gpus);
        }
    }
}

/// The machine's architecture in Kubernetes' (Go's) words: `x86_64` → `amd64`,
/// `aarch64` → `arm64`; others as given.
pub(crate) fn kubernetes_arch(machine: &str) -> String {
    match machine {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armhf" => "arm",
        "i386" | "i686" => "386",
        other => other,
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::DeviceRequest;

    #[test]
    fn a_containers_limits_count_as_reserved_and_all_gpus_count_the_hosts() {
        let mut reserved = Reserved::default();
        reserved.add(
            Some(&HostConfig {
                nano_cpus: Some(1_500_000_000),
                memory: Some(512 * 1024 * 1024),
                device_requests: Some(vec![DeviceRequest {
                    count: Some(2),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            Some(4),
        );
        reserved.add(
            Some(&HostConfig {
                device_requests: Some(vec![DeviceRequest {
                    count: Some(-1),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            Some(4),
        );
        reserved.add(None, Some(4));
        assert_eq!(
            reserved,
            Reserved {
                containers: 3,
                cpu_millis: 1500,
                memory_bytes: 512 * 1024 * 1024,
                gpus: 6
            }
        );
    }

    #[test]
    fn machine_names_become_kubernetes_architectures() {
        assert_eq!(kubernetes_arch("x86_64"), "amd64");
        assert_eq!(kubernetes_arch("aarch64"), "arm64");
        assert_eq!(kubernetes_arch("riscv64"), "riscv64");
    }
}
