//! What each node of a cluster really did, for metering: its container's start and stop times
//! (`State.StartedAt`/`FinishedAt`) and the CPU time its cgroup used (the stats API's
//! `cpu_usage.total_usage`, read once without waiting for a second sample).

use bollard::container::{InspectContainerOptions, StatsOptions};
use bollard::models::ContainerStateStatusEnum;
use futures_util::StreamExt as _;

use super::state::NodeState;
use super::{is_not_found, DockerSpawner};
use crate::nodes::node_index;
use crate::{Capacity, NodeUsage, SpawnerError};

impl DockerSpawner {
    /// The host's CPUs (times the configured overcommit), memory and GPUs as the engine
    /// reported them at connection; a node count is not bounded by the engine.
    pub(super) fn host_capacity(&self) -> Capacity {
        let host = self.host();
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let cpu_millis = (host.cpus * self.cfg.cpu_overcommit.max(0.0) * 1000.0)
            .round()
            .max(0.0) as u64;
        Capacity {
            nodes: None,
            cpu_millis: Some(cpu_millis),
            memory_mib: Some(host.memory_bytes / (1024 * 1024)),
            gpus: host.gpus.map(u64::from),
        }
    }

    /// One node's usage, or `None` when its container is gone.
    pub(super) async fn usage_of(
        &self,
        node: &NodeState,
    ) -> Result<Option<NodeUsage>, SpawnerError> {
        let Some(index) = node_index(&node.name) else {
            return Ok(None);
        };
        let info = match self
            .docker
            .inspect_container(&node.container_id, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => info,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => {
                return Err(SpawnerError::docker(
                    format!("inspecting {}", node.container_name),
                    e,
                ))
            }
        };
        let state = info.state.unwrap_or_default();
        let running = matches!(
            state.status,
            Some(
                ContainerStateStatusEnum::RUNNING
                    | ContainerStateStatusEnum::PAUSED
                    | ContainerStateStatusEnum::RESTARTING
            )
        );
        let started_at = state.started_at.as_deref().and_then(docker_time);
        let finished_at = if running {
            None
        } else {
            state.finished_at.as_deref().and_then(docker_time)
        };
        let cpu_ns = if running {
            self.cpu_ns(&node.container_id).await
        } else {
            None
        };
        Ok(Some(NodeUsage {
            index,
            running,
            started_at,
            finished_at,
            cpu_ns,
        }))
    }

    /// The container's CPU time so far, from one stats sample; `None` if the engine gives none.
    async fn cpu_ns(&self, id: &str) -> Option<u64> {
        let options = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stats = self.docker.stats(id, Some(options));
        match stats.next().await {
            Some(Ok(sample)) => Some(sample.cpu_stats.cpu_usage.total_usage),
            Some(Err(e)) => {
                tracing::debug!(container.id = %id, error = %e, "no CPU sample");
                None
            }
            None => None,
        }
    }
}

/// Docker's RFC 3339 times in microseconds since the epoch; its zero time
/// (`0001-01-01T00:00:00Z`, "never") is `None`.
fn docker_time(text: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    let micros = t.timestamp_micros();
    (micros > 0).then_some(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_times_parse_with_nanoseconds_and_the_zero_time_is_none() {
        assert_eq!(
            docker_time("2026-12-04T10:00:01.123456789Z"),
            Some(1_796_378_401_123_456)
        );
        assert_eq!(docker_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(docker_time("garbage"), None);
    }
}
