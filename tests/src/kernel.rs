//! A minimal Jupyter kernel client: the REST call that starts a kernel and the kernel websocket
//! (`/api/kernels/{id}/channels`, Jupyter messaging v5 as JSON text frames), both through the
//! hub's proxy like JupyterLab does.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{expect_json, random_hex, Hub};

/// What one `execute_request` produced.
#[derive(Debug, Clone, Default)]
pub struct Execution {
    /// `stream` output on stdout.
    pub stdout: String,
    /// `stream` output on stderr.
    pub stderr: String,
    /// `text/plain` of `execute_result`.
    pub result: Option<String>,
    /// `execute_reply`'s status: `ok`, `error` or `aborted`.
    pub status: String,
    /// `ename: evalue` of an `error` message.
    pub error: Option<String>,
}

/// A kernel of a single-user server, with an open websocket.
pub struct Kernel {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    /// The kernel id.
    pub id: String,
}

impl Kernel {
    /// Starts a `python3` kernel on the server at `prefix` (e.g. `/user/alice/`) and connects.
    pub async fn start(hub: &Hub, prefix: &str, token: &str) -> Result<Kernel> {
        let resp = hub
            .with_token(Method::POST, &format!("{prefix}api/kernels"), token)
            .json(&json!({ "name": "python3" }))
            .send()
            .await?;
        let model = expect_json(resp, StatusCode::CREATED, "start a kernel").await?;
        let id = model["id"]
            .as_str()
            .context("the kernel model has no id")?
            .to_owned();
        Self::connect(hub, prefix, token, &id).await
    }

    /// Opens a websocket to an existing kernel.
    pub async fn connect(hub: &Hub, prefix: &str, token: &str, id: &str) -> Result<Kernel> {
        let session = random_hex(16);
        let url = hub.ws_url(&format!(
            "{prefix}api/kernels/{id}/channels?session_id={session}"
        ));
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("token {token}"))?,
        );
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_tungstenite::connect_async(request),
        )
        .await
        .context("the kernel websocket did not open within 30 s")?
        .with_context(|| format!("cannot open the kernel websocket {url}"))?;
        Ok(Kernel {
            ws,
            session,
            id: id.to_owned(),
        })
    }

    /// Sends an `execute_request` for `code`; returns its `msg_id`.
    pub async fn send_execute(&mut self, code: &str) -> Result<String> {
        let msg_id = random_hex(16);
        let message = json!({
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": "xiji-tests",
                "session": self.session,
                "date": crate::now_iso(),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": false,
                "store_history": true,
                "user_expressions": {},
                "allow_stdin": false,
                "stop_on_error": true,
            },
            "buffers": [],
            "channel": "shell",
        });
        self.ws.send(Message::text(message.to_string())).await?;
        Ok(msg_id)
    }

    /// Reads messages until the reply to `msg_id` and the kernel's return to idle.
    pub async fn wait_for(&mut self, msg_id: &str, timeout: Duration) -> Result<Execution> {
        let deadline = Instant::now() + timeout;
        let mut out = Execution::default();
        let mut replied = false;
        let mut idle = false;
        while !(replied && idle) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no complete answer to {msg_id} within {timeout:?}; so far: {out:?}");
            }
            let frame = match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => continue,
                Ok(None) => bail!("the kernel websocket closed; so far: {out:?}"),
                Ok(Some(frame)) => frame?,
            };
            let text = match frame {
                Message::Text(text) => text.as_str().to_owned(),
                Message::Close(close) => bail!("the kernel websocket closed: {close:?}"),
                _ => continue,
            };
            let msg: Value = serde_json::from_str(&text)?;
            if msg["parent_header"]["msg_id"] != json!(msg_id) {
                continue;
            }
            let content = &msg["content"];
            match msg["msg_type"].as_str().unwrap_or_default() {
                "stream" => {
                    let text = content["text"].as_str().unwrap_or_default();
                    if content["name"] == json!("stderr") {
                        out.stderr.push_str(text);
                    } else {
                        out.stdout.push_str(text);
                    }
                }
                "execute_result" => {
                    out.result = content["data"]["text/plain"].as_str().map(str::to_owned);
                }
                "error" => {
                    out.error = Some(format!(
                        "{}: {}",
                        content["ename"].as_str().unwrap_or_default(),
                        content["evalue"].as_str().unwrap_or_default()
                    ));
                }
                "execute_reply" => {
                    out.status = content["status"].as_str().unwrap_or_default().to_owned();
                    replied = true;
                }
                "status" if content["execution_state"] == json!("idle") => idle = true,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Runs `code` and waits (≤ `timeout`) for what it produced.
    pub async fn execute(&mut self, code: &str, timeout: Duration) -> Result<Execution> {
        let msg_id = self.send_execute(code).await?;
        self.wait_for(&msg_id, timeout).await
    }

    /// Closes the websocket (the kernel keeps running).
    pub async fn close(mut self) -> Result<()> {
        self.ws.close(None).await?;
        Ok(())
    }
}
