//! The hub's side of the node agent: a save on an agent is an ordinary [`SaveJob`], whose state
//! and progress are polled from the agent and whose cancel is a `DELETE`; a container's CPU time
//! is one `GET` ([`AgentClient::usage`]).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::wire::{ContainerUsage, ErrorBody, SaveSpec, SaveView};
use crate::error::{Error, Result};
use crate::job::{JobState, JobStatus, SaveJob, SavedImage};

/// How often a running save's state is read from the agent.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long the agent may stay unreachable during a save before the save is given up.
const UNREACHABLE_LIMIT: Duration = Duration::from_secs(60);
/// How long a cancelled save may take to end on the agent before it is reported cancelled
/// anyway.
const CANCEL_LIMIT: Duration = Duration::from_secs(60);
/// Per request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Per reading of a container's CPU time, connecting included: the agent answers it from a few
/// files, and a meter does not wait long for an agent that does not answer.
const USAGE_TIMEOUT: Duration = Duration::from_secs(3);

/// A client of one node agent. `Debug` never shows the token.
#[derive(Clone)]
pub struct AgentClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// A client of the agent at `url` (`http://10.0.0.5:8585`) presenting `token`.
    pub fn new(url: &str, token: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| Error::Agent(format!("cannot set up the node agent's client: {e}")))?;
        Ok(Self {
            base: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        })
    }

    /// The agent's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Starts a save on the agent (or finds the job of `spec.id` there, when a hub that
    /// restarted asks again) and follows it as a [`SaveJob`]: the job's state and progress are
    /// the agent's, `cancel` asks the agent to stop, `wait` gives the pushed image or the
    /// agent's reason. An agent that refuses the request (no such container, a save of it under
    /// way) is an error here, before any job exists.
    pub async fn start(&self, spec: &SaveSpec) -> Result<SaveJob> {
        let response = self
            .http
            .post(format!("{}/v1/saves", self.base))
            .bearer_auth(&self.token)
            .json(spec)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        let view: SaveView = self.answer(response).await?;
        let (status_tx, status_rx) = watch::channel(view.status.clone());
        let cancel = CancellationToken::new();
        let follower = Follower {
            client: self.clone(),
            id: view.id.clone(),
            status: status_tx,
            cancel: cancel.clone(),
        };
        let handle = tokio::spawn(async move { follower.run(view).await });
        Ok(SaveJob::from_parts(status_rx, cancel, handle))
    }

    /// A job's view (`GET /v1/saves/{id}`); `None` when the agent does not know the job (it
    /// restarted, or the job ended longer ago than its retention).
    pub async fn save(&self, id: &str) -> Result<Option<SaveView>> {
        let response = self
            .http
            .get(format!("{}/v1/saves/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.answer(response).await.map(Some)
    }

    /// Asks the agent to stop a job (`DELETE /v1/saves/{id}`).
    pub async fn cancel(&self, id: &str) -> Result<SaveView> {
        let response = self
            .http
            .delete(format!("{}/v1/saves/{id}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        self.answer(response).await
    }

    /// Container `container_id`'s CPU time on the agent's machine
    /// (`GET /v1/containers/{id}/usage`, the id as Kubernetes' `containerID` gives it);
    /// `None` when no process runs in it there (it ended, or runs on another node). At most
    /// a few seconds, connecting included.
    pub async fn usage(&self, container_id: &str) -> Result<Option<ContainerUsage>> {
        let mut url = reqwest::Url::parse(&self.base).map_err(|e| {
            Error::Agent(format!(
                "the node agent's URL {} is not one: {e}",
                self.base
            ))
        })?;
        url.path_segments_mut()
            .map_err(|()| Error::Agent(format!("the node agent's URL {} is not one", self.base)))?
            .pop_if_empty()
            .extend(["v1", "containers", container_id, "usage"]);
        let response = self
            .http
            .get(url)
            .timeout(USAGE_TIMEOUT)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.answer(response).await.map(Some)
    }

    fn unreachable(&self, e: &reqwest::Error) -> Error {
        Error::Agent(format!(
            "the node agent at {} cannot be reached: {e}",
            self.base
        ))
    }

    /// The body of a 2xx answer, or the agent's message.
    async fn answer<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T> {
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(|e| {
                Error::Agent(format!(
                    "the node agent at {} answered what it should not: {e}",
                    self.base
                ))
            });
        }
        let message = match response.json::<ErrorBody>().await {
            Ok(body) => body.message,
            Err(_) => status.to_string(),
        };
        Err(Error::Agent(match status {
            StatusCode::UNAUTHORIZED => format!(
                "the node agent at {} refused the hub's token; the hub's agent token and the \
                 agents' must be the same",
                self.base
            ),
            StatusCode::NOT_FOUND => message,
            _ => format!("the node agent at {}: {message}", self.base),
        }))
    }
}

/// Follows one job on the agent until it ends.
struct Follower {
    client: AgentClient,
    id: String,
    status: watch::Sender<JobStatus>,
    cancel: CancellationToken,
}

impl Follower {
    async fn run(self, first: SaveView) -> Result<SavedImage> {
        let mut view = first;
        let mut unreachable_since: Option<Instant> = None;
        let mut cancel_sent: Option<Instant> = None;
        loop {
            if view.status.state.is_finished() {
                return outcome(view.status);
            }
            if self.cancel.is_cancelled() {
                let sent = *cancel_sent.get_or_insert_with(Instant::now);
                if sent.elapsed() > CANCEL_LIMIT {
                    return Err(Error::Cancelled);
                }
                // Sent until the agent hears it; its answer is the job as it is.
                if let Ok(answer) = self.client.cancel(&self.id).await {
                    view = answer;
                    self.publish(&view);
                    if view.status.state.is_finished() {
                        continue;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL_INTERVAL) => {}
                () = self.cancel.cancelled(), if cancel_sent.is_none() => continue,
            }
            match self.client.save(&self.id).await {
                Ok(Some(answer)) => {
                    unreachable_since = None;
                    view = answer;
                    self.publish(&view);
                }
                Ok(None) => {
                    return Err(Error::Agent(
                        "the node agent restarted during the save and lost it; save again".into(),
                    ));
                }
                Err(e) => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > UNREACHABLE_LIMIT {
                        return Err(e);
                    }
                    tracing::debug!(agent = %self.client.base, error = %e, "node agent not answering; retrying");
                }
            }
        }
    }

    fn publish(&self, view: &SaveView) {
        self.status.send_if_modified(|current| {
            let changed = *current != view.status;
            *current = view.status.clone();
            changed
        });
    }
}

/// A finished job's result as the builder's own job would give it.
fn outcome(status: JobStatus) -> Result<SavedImage> {
    match status.state {
        JobState::Done => status
            .image
            .ok_or_else(|| Error::Agent("the node agent reported done without an image".into())),
        JobState::Cancelled => Err(Error::Cancelled),
        JobState::Failed { reason } => Err(Error::Agent(reason)),
        other => Err(Error::Internal(format!("not finished: {other:?}"))),
    }
}
