//! Waiting for a new cluster: every pod scheduled, started, Ready and answering HTTP within
//! `ready_timeout`. The pods' status (a watch on the cluster's label) and their Events (a watch
//! on the namespace's Events made since the cluster's owner, matched by `involvedObject`) tell
//! each node's progress; the first failure
//! ends the wait with its reason: an image that cannot be pulled, a container that exited (with
//! the end of its log), a pod deleted or evicted. At the deadline, each node that is not ready
//! says why: the scheduler's reason for a pod left Unschedulable, the container's waiting
//! reason, or a server that does not answer.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::LogParams;
use kube::Api;
use tokio::time::Instant;

use super::progress::{Progress, Step};
use super::watch::{Seen, Watch};
use super::LABEL_CLUSTER;
use crate::SpawnerError;

/// Lines of a failed node's log quoted in the error.
const LOG_TAIL_LINES: i64 = 25;

/// Container waiting reasons that will not get better on their own.
const FATAL_WAITING: [&str; 10] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
    "RunContainerError",
    "PreCreateHookError",
    "PostStartHookError",
];

/// One node of the cluster being started: its pod as created.
pub(super) struct Member {
    /// `node-k`.
    pub(super) name: String,
    pub(super) pod: String,
    pub(super) uid: String,
    /// The node's URL prefix (its server answers at `{prefix}api`).
    pub(super) prefix: String,
}

/// Where a ready node runs.
#[derive(Clone, Debug)]
pub(super) struct ReadyNode {
    pub(super) ip: String,
    /// The Kubernetes node.
    pub(super) host: String,
    /// `http://{ip}:{port}`.
    pub(super) url: String,
}

/// What is known of each member so far.
#[derive(Default)]
struct Tracked {
    host: Option<String>,
    /// Why the scheduler has not placed it (the last reason given).
    unschedulable: Option<String>,
    /// The container's waiting reason and message, while it waits.
    waiting: Option<String>,
    started: bool,
    /// Where its server is checked, once the pod is Ready with an address.
    checking: Option<ReadyNode>,
    /// Its server answered.
    ready: Option<ReadyNode>,
}

/// The wait for one cluster.
pub(super) struct Wait<'a> {
    pub(super) pods: Api<Pod>,
    pub(super) events: Api<Event>,
    /// A resourceVersion from before the pods were made: their Events come after it.
    pub(super) events_since: String,
    pub(super) cluster_id: &'a str,
    pub(super) members: &'a [Member],
    pub(super) port: u16,
    pub(super) timeout: Duration,
    pub(super) progress: &'a Progress,
}

type Check = futures_util::future::BoxFuture<'static, (usize, Result<(), SpawnerError>)>;

impl Wait<'_> {
    /// Returns every node ready, in the members' order, or the first failure.
    pub(super) async fn run(self) -> Result<Vec<ReadyNode>, SpawnerError> {
        let deadline = Instant::now() + self.timeout;
        let by_pod: HashMap<&str, usize> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.pod.as_str(), i))
            .collect();
        let mut tracked: Vec<Tracked> = self.members.iter().map(|_| Tracked::default()).collect();
        let mut pods = Watch::start(
            self.pods.clone(),
            Some(format!("{LABEL_CLUSTER}={}", self.cluster_id)),
        );
        let mut events = Watch::since(self.events.clone(), self.events_since.clone());
        let mut checks: FuturesUnordered<Check> = FuturesUnordered::new();
        let mut trouble: Option<String> = None;
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                seen = pods.next() => {
                    let changed = match seen {
                        Some(Seen::Listed(list)) => {
                            let mut changed = Vec::new();
                            for (i, member) in self.members.iter().enumerate() {
                                match list.iter().find(|p| is_member(p, member)) {
                                    Some(pod) => changed.push((i, pod.clone())),
                                    None => return Err(self.gone(i).await),
                                }
                            }
                            changed
                        }
                        Some(Seen::Applied(pod)) => self.index_of(&by_pod, &pod).map(|i| (i, pod)).into_iter().collect(),
                        Some(Seen::Deleted(pod)) => match self.index_of(&by_pod, &pod) {
                            Some(i) => return Err(self.gone(i).await),
                            None => Vec::new(),
                        },
                        Some(Seen::Trouble(why)) => {
                            if trouble.is_none() {
                                tracing::warn!(cluster.id = %self.cluster_id, error = %why, "cannot watch the cluster's pods; trying again");
                            }
                            trouble = Some(why);
                            Vec::new()
                        }
                        None => return Err(self.late(&tracked, Some("the pods' watch ended")).await),
                    };
                    for (i, pod) in changed {
                        self.observe(i, &pod, &mut tracked[i]).await?;
                        let t = &mut tracked[i];
                        if t.checking.is_none() {
                            if let Some((node, check)) = self.http_check(i, &pod, deadline) {
                                t.checking = Some(node);
                                checks.push(check);
                            }
                        }
                    }
                }
                seen = events.next() => match seen {
                    Some(Seen::Listed(list)) => {
                        for event in &list {
                            self.on_event(&by_pod, event, &mut tracked)?;
                        }
                    }
                    Some(Seen::Applied(event)) => self.on_event(&by_pod, &event, &mut tracked)?,
                    // Events are read when they come and may go as they like.
                    Some(Seen::Deleted(_)) | None => {}
                    Some(Seen::Trouble(why)) => {
                        tracing::debug!(cluster.id = %self.cluster_id, error = %why, "cannot watch the events; trying again");
                    }
                },
                Some((i, result)) = checks.next(), if !checks.is_empty() => {
                    let member = &self.members[i];
                    if let Err(e) = result {
                        return Err(SpawnerError::NodeFailed {
                            node: member.name.clone(),
                            reason: e.to_string(),
                            log_tail: self.log_tail(&member.pod, false).await,
                        });
                    }
                    tracked[i].ready = tracked[i].checking.clone();
                    self.progress.reached(i, Step::Ready, format!("{} is ready", member.name));
                    tracing::info!(cluster.id = %self.cluster_id, node = %member.name, pod = %member.pod, "node ready");
                    if tracked.iter().all(|t| t.ready.is_some()) {
                        return Ok(tracked.into_iter().filter_map(|t| t.ready).collect());
                    }
                }
                () = &mut sleep => {
                    return Err(self.late(&tracked, trouble.as_deref()).await);
                }
            }
        }
    }

    fn index_of(&self, by_pod: &HashMap<&str, usize>, pod: &Pod) -> Option<usize> {
        let name = pod.metadata.name.as_deref()?;
        let i = *by_pod.get(name)?;
        is_member(pod, &self.members[i]).then_some(i)
    }

    /// Takes in what the pod's status says: progress, waiting reasons, and failures.
    async fn observe(
        &self,
        i: usize,
        pod: &Pod,
        tracked: &mut Tracked,
    ) -> Result<(), SpawnerError> {
        let member = &self.members[i];
        let node = &member.name;
        if pod.metadata.deletion_timestamp.is_some() {
            return Err(self.gone(i).await);
        }
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        if let Some(host) = spec.and_then(|s| s.node_name.clone()) {
            if tracked.host.is_none() {
                tracing::info!(cluster.id = %self.cluster_id, node = %node, pod = %member.pod, host = %host, "scheduled");
            }
            self.progress
                .reached(i, Step::Scheduled, format!("{node} is placed on {host}"));
            tracked.host = Some(host);
            tracked.unschedulable = None;
        } else if let Some(why) = unschedulable(pod) {
            self.progress
                .note(format!("{node} waits for room on a compute node: {why}"));
            tracked.unschedulable = Some(why);
        }
        let containers: &[ContainerStatus] = status
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default();
        tracked.waiting = None;
        for container in containers {
            let state = container.state.as_ref();
            if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
                let reason = waiting.reason.clone().unwrap_or_default();
                let message = waiting.message.clone().unwrap_or_default();
                if FATAL_WAITING.contains(&reason.as_str()) {
                    let what = if reason.contains("Image") {
                        "its image cannot be pulled"
                    } else {
                        "its container cannot start"
                    };
                    return Err(SpawnerError::NodeFailed {
                        node: node.clone(),
                        reason: format!("{what} ({reason}){}", colon(&message)),
                        log_tail: if reason == "CrashLoopBackOff" {
                            self.log_tail(&member.pod, true).await
                        } else {
                            String::new()
                        },
                    });
                }
                if !reason.is_empty() {
                    tracked.waiting = Some(format!("{reason}{}", colon(&message)));
                }
            }
            let terminated = state.and_then(|s| s.terminated.as_ref());
            let restarted = container.restart_count > 0;
            let last = container
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .filter(|_| restarted);
            if let Some(ended) = terminated.or(last) {
                let cause = ended
                    .reason
                    .as_deref()
                    .filter(|r| !r.is_empty())
                    .map_or_else(String::new, |r| format!(" ({r})"));
                return Err(SpawnerError::NodeFailed {
                    node: node.clone(),
                    reason: format!(
                        "its container exited with status {}{cause} before the server answered",
                        ended.exit_code
                    ),
                    log_tail: self
                        .log_tail(&member.pod, terminated.is_none() && last.is_some())
                        .await,
                });
            }
            if state.and_then(|s| s.running.as_ref()).is_some() && !tracked.started {
                tracked.started = true;
                let on = tracked
                    .host
                    .as_deref()
                    .map_or_else(String::new, |h| format!(" on {h}"));
                self.progress
                    .reached(i, Step::Started, format!("{node} started{on}"));
            }
        }
        if let Some(phase @ ("Failed" | "Succeeded")) = status.and_then(|s| s.phase.as_deref()) {
            let why = [
                status.and_then(|s| s.reason.as_deref()),
                status.and_then(|s| s.message.as_deref()),
            ]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
            return Err(SpawnerError::NodeFailed {
                node: node.clone(),
                reason: format!("its pod ended ({phase}){}", colon(&why)),
                log_tail: self.log_tail(&member.pod, false).await,
            });
        }
        Ok(())
    }

    /// The HTTP check of a pod that is Ready and has an address, if it is.
    fn http_check(&self, i: usize, pod: &Pod, deadline: Instant) -> Option<(ReadyNode, Check)> {
        let status = pod.status.as_ref()?;
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let ip = status.pod_ip.clone().filter(|ip| !ip.is_empty())?;
        let host = pod.spec.as_ref()?.node_name.clone()?;
        if !ready {
            return None;
        }
        let url = node_url(&ip, self.port);
        let api = format!("{url}{}api", self.members[i].prefix);
        let timeout = deadline.saturating_duration_since(Instant::now());
        let check: Check =
            Box::pin(async move { (i, crate::wait_for_http_server(&api, timeout).await) });
        Some((ReadyNode { ip, host, url }, check))
    }

    /// Takes in one Event: pulling, pulled, the scheduler's reasons, pull failures.
    fn on_event(
        &self,
        by_pod: &HashMap<&str, usize>,
        event: &Event,
        tracked: &mut [Tracked],
    ) -> Result<(), SpawnerError> {
        let involved = &event.involved_object;
        if involved.kind.as_deref().is_some_and(|k| k != "Pod") {
            return Ok(());
        }
        let Some(&i) = involved.name.as_deref().and_then(|n| by_pod.get(n)) else {
            return Ok(());
        };
        let member = &self.members[i];
        if involved
            .uid
            .as_deref()
            .is_some_and(|uid| !uid.is_empty() && uid != member.uid)
        {
            return Ok(());
        }
        let node = &member.name;
        let message = event.message.as_deref().unwrap_or_default().trim();
        match event.reason.as_deref().unwrap_or_default() {
            "Pulling" => self
                .progress
                .reached(i, Step::Pulling, format!("{node}: {message}")),
            "Pulled" => self
                .progress
                .reached(i, Step::Pulled, format!("{node}: {message}")),
            "FailedScheduling" if tracked[i].host.is_none() => {
                self.progress.note(format!(
                    "{node} waits for room on a compute node: {message}"
                ));
                tracked[i].unschedulable = Some(message.to_owned());
            }
            "Failed" | "BackOff" | "ErrImageNeverPull" | "InspectFailed"
                if is_pull_failure(message) =>
            {
                return Err(SpawnerError::NodeFailed {
                    node: node.clone(),
                    reason: format!("its image cannot be pulled: {message}"),
                    log_tail: String::new(),
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// The error for a member whose pod went away while starting.
    async fn gone(&self, i: usize) -> SpawnerError {
        let member = &self.members[i];
        SpawnerError::NodeFailed {
            node: member.name.clone(),
            reason: format!(
                "its pod {} was deleted while the cluster started (by someone else, or evicted)",
                member.pod
            ),
            log_tail: self.log_tail(&member.pod, false).await,
        }
    }

    /// The error at the deadline: each node that is not ready, and why.
    async fn late(&self, tracked: &[Tracked], trouble: Option<&str>) -> SpawnerError {
        let within = format!("within {:?}", self.timeout);
        // (how far it got, node, why): the node that got least far is named first.
        let mut late: Vec<(u8, usize, String)> = Vec::new();
        for (i, t) in tracked.iter().enumerate() {
            if t.ready.is_some() {
                continue;
            }
            late.push(match (&t.host, t.started, &t.checking) {
                (None, _, _) => (
                    0,
                    i,
                    format!(
                        "it was not placed on any compute node {within}: {}",
                        t.unschedulable
                            .as_deref()
                            .unwrap_or("the scheduler gave no reason")
                    ),
                ),
                (Some(host), false, _) => (
                    1,
                    i,
                    format!(
                        "it was placed on {host} but its container did not start {within}{}",
                        t.waiting.as_deref().map_or_else(String::new, colon)
                    ),
                ),
                (Some(_), true, None) => (2, i, format!("its pod did not become Ready {within}")),
                (Some(_), true, Some(_)) => (3, i, format!("its server did not answer {within}")),
            });
        }
        late.sort();
        let Some((_, first, why)) = late.first() else {
            return SpawnerError::NodeFailed {
                node: "the cluster".into(),
                reason: format!("it was not ready {within}"),
                log_tail: String::new(),
            };
        };
        let mut reason = why.clone();
        for (_, i, why) in late.iter().skip(1) {
            reason.push_str(&format!("; {}: {why}", self.members[*i].name));
        }
        if let Some(trouble) = trouble {
            reason.push_str(&format!(" (the API server: {trouble})"));
        }
        let member = &self.members[*first];
        let log_tail = if tracked[*first].started {
            self.log_tail(&member.pod, false).await
        } else {
            String::new()
        };
        SpawnerError::NodeFailed {
            node: member.name.clone(),
            reason,
            log_tail,
        }
    }

    /// The end of a pod's log (`previous`: its last instance's), empty if unavailable.
    async fn log_tail(&self, pod: &str, previous: bool) -> String {
        let params = LogParams {
            tail_lines: Some(LOG_TAIL_LINES),
            previous,
            ..LogParams::default()
        };
        match self.pods.logs(pod, &params).await {
            Ok(text) => text,
            Err(e) => {
                tracing::debug!(pod = %pod, error = %e, "cannot read the pod's log");
                String::new()
            }
        }
    }
}

/// Whether `pod` is the member's pod (same name and uid).
fn is_member(pod: &Pod, member: &Member) -> bool {
    pod.metadata.name.as_deref() == Some(member.pod.as_str())
        && pod.metadata.uid.as_deref().unwrap_or_default() == member.uid
}

/// The scheduler's reason for a pod it has not placed (`PodScheduled` is `False`).
fn unschedulable(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| {
            c.message
                .clone()
                .filter(|m| !m.is_empty())
                .or_else(|| c.reason.clone())
                .unwrap_or_else(|| "Unschedulable".into())
        })
}

/// An event message about an image that cannot be pulled.
fn is_pull_failure(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("pull") || lower.contains("errimage") || lower.contains("invalidimagename")
}

/// `: {text}`, or nothing for an empty text.
fn colon(text: &str) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", text.trim())
    }
}

/// `http://10.1.0.7:8888`, `http://[fd00::7]:8888`.
pub(super) fn node_url(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("http://[{ip}]:{port}")
    } else {
        format!("http://{ip}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_bracket_ipv6_addresses() {
        assert_eq!(node_url("10.1.0.7", 8888), "http://10.1.0.7:8888");
        assert_eq!(node_url("fd00::7", 8888), "http://[fd00::7]:8888");
    }

    #[test]
    fn the_schedulers_reason_is_read_from_the_pod_condition() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient cpu."
            }]}
        }))
        .unwrap();
        assert_eq!(
            unschedulable(&pod).as_deref(),
            Some("0/2 nodes are available: 2 Insufficient cpu.")
        );
        assert!(is_pull_failure("Failed to pull image \"x\": not found"));
        assert!(is_pull_failure("Error: ErrImagePull"));
        assert!(!is_pull_failure("Started container notebook"));
    }
}
