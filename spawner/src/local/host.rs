//! The hub's own host as the local backend's one compute node, read from `/proc`.
//!
//! Local servers run without limits: they reserve no CPU or memory of the host, so only their
//! count is reported as used. The host is always in the pool `default`.

use crate::docker::compute::{kubernetes_arch, DEFAULT_POOL};
use crate::{Capacity, ComputeNode, NodeCondition};

/// The host as a compute node; `running`: the servers this hub started that still run.
pub(super) fn host_node(running: u32) -> ComputeNode {
    let proc_text = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    };
    let capacity = Capacity {
        nodes: None,
        cpu_millis: crate::host_cpu_millis(),
        memory_mib: crate::host_memory_mib(),
        gpus: Some(0),
    };
    ComputeNode {
        name: proc_text("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".into()),
        pool: Some(DEFAULT_POOL.into()),
        schedulable: true,
        allocatable: capacity.clone(),
        capacity,
        used: Capacity {
            nodes: Some(u64::from(running)),
            cpu_millis: Some(0),
            memory_mib: Some(0),
            gpus: Some(0),
        },
        xiji_nodes: running,
        conditions: vec![NodeCondition {
            kind: "Ready".into(),
            status: "True".into(),
            reason: Some("HubHost".into()),
            message: Some("servers run as processes of the hub's host".into()),
        }],
        version: proc_text("/proc/sys/kernel/osrelease")
            .map(|r| format!("Linux {r}"))
            .unwrap_or_else(|| "Linux".into()),
        platform: format!(
            "{}/{}",
            std::env::consts::OS,
            kubernetes_arch(std::env::consts::ARCH)
        ),
        gpu_model: None,
        labels: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_host_reports_its_name_cpus_memory_and_kernel() {
        let node = host_node(2);
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(node.name, hostname.trim());
        assert_eq!(node.pool.as_deref(), Some("default"));
        assert!(node.schedulable);
        assert_eq!(node.capacity.cpu_millis, crate::host_cpu_millis());
        assert!(node.capacity.memory_mib.is_some_and(|m| m > 0));
        assert_eq!(node.xiji_nodes, 2);
        assert_eq!(node.used.nodes, Some(2));
        assert!(node.version.starts_with("Linux "), "{}", node.version);
        assert!(node.platform.starts_with("linux/"), "{}", node.platform);
    }
}
