//! Whether a running cluster's nodes can reach the hub: each node runs a short Python check
//! against its own `JUPYTERHUB_API_URL`, as its single-user server would.

use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt as _;

use super::state::ClusterState;
use super::DockerSpawner;
use crate::SpawnerError;

/// How long one node's check may take (the script's own HTTP timeout is shorter).
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// Prints the URL on the first line, then `ok` or the error. A hub answers `GET {api}/` with
/// JSON carrying its `version`; anything else at that address is not the hub.
const CHECK_SCRIPT: &str = r#"
import json, os, sys, urllib.request
url = os.environ.get("JUPYTERHUB_API_URL", "")
print(url)
try:
    with urllib.request.urlopen(url.rstrip("/") + "/", timeout=10) as response:
        body = json.load(response)
    if not isinstance(body, dict) or "version" not in body:
        raise ValueError("something answers there, but not a hub")
    print("ok")
except Exception as error:
    print(error)
    sys.exit(1)
"#;

impl DockerSpawner {
    /// Runs [`CHECK_SCRIPT`] in every node of `cluster` at once; the first node that cannot
    /// reach the hub is reported.
    pub(super) async fn check_nodes_reach_hub(
        &self,
        cluster: &ClusterState,
    ) -> Result<(), SpawnerError> {
        let checks = cluster.nodes.iter().map(|node| async move {
            let (url, outcome) =
                match tokio::time::timeout(CHECK_TIMEOUT, self.run_check(&node.container_id)).await
                {
                    Ok(result) => result?,
                    Err(_) => (
                        String::new(),
                        Err(format!(
                            "the check did not finish within {}s",
                            CHECK_TIMEOUT.as_secs()
                        )),
                    ),
                };
            outcome.map_err(|reason| SpawnerError::HubUnreachable {
                node: node.name.clone(),
                url,
                reason,
            })
        });
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .collect()
    }

    /// The node's hub URL and `Ok` or the reason the check failed.
    async fn run_check(
        &self,
        container: &str,
    ) -> Result<(String, Result<(), String>), SpawnerError> {
        let exec = self
            .docker
            .create_exec(
                container,
                CreateExecOptions {
                    cmd: Some(vec!["python3", "-c", CHECK_SCRIPT]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| SpawnerError::docker(format!("checking the hub from {container}"), e))?;
        let mut text = String::new();
        match self
            .docker
            .start_exec(&exec.id, Some(StartExecOptions::default()))
            .await
            .map_err(|e| SpawnerError::docker(format!("checking the hub from {container}"), e))?
        {
            StartExecResults::Attached { mut output, .. } => {
                while let Some(chunk) = output.next().await {
                    match chunk {
                        Ok(chunk) => text.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                        Err(_) => break,
                    }
                }
            }
            StartExecResults::Detached => {}
        }
        let code = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| SpawnerError::docker(format!("checking the hub from {container}"), e))?
            .exit_code;
        let mut lines = text.lines();
        let url = lines.next().unwrap_or_default().trim().to_owned();
        let rest: Vec<&str> = lines.map(str::trim).filter(|l| !l.is_empty()).collect();
        let outcome = if code == Some(0) {
            Ok(())
        } else if rest.is_empty() {
            Err(format!("the check exited with status {code:?}"))
        } else {
            Err(rest.join(" "))
        };
        Ok((url, outcome))
    }
}
