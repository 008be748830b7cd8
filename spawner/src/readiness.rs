//! JupyterHub's readiness check (`utils.wait_for_http_server`): the server is up once
//! `GET {url}{prefix}api` answers with any status below 500.

use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::{Spawner, SpawnerError};

/// Pause between attempts. Refused loopback connections cost microseconds, so polling often
/// adds at most this much latency to a spawn.
const RETRY_INTERVAL: Duration = Duration::from_millis(20);
/// Longest time one attempt (connect + response head) may take before it is retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often [`wait_until_ready`] asks the backend whether the server still runs.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Waits until `GET url_with_prefix_api` answers with a status below 500 (even 404 counts as
/// up; redirects are not followed). Connection errors and 5xx are retried every ~20 ms until
/// `timeout`. Only `http://` URLs are supported.
pub async fn wait_for_http_server(
    url_with_prefix_api: &str,
    timeout: Duration,
) -> Result<(), SpawnerError> {
    let target = Target::parse(url_with_prefix_api)?;
    let deadline = Instant::now() + timeout;
    let mut last_error = String::from("no attempt made");
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(SpawnerError::HttpTimeout {
                url: url_with_prefix_api.to_owned(),
                timeout,
                last_error,
            });
        }
        let attempt_timeout = ATTEMPT_TIMEOUT.min(deadline - now);
        match tokio::time::timeout(attempt_timeout, target.get_status()).await {
            Ok(Ok(status)) if status < 500 => {
                tracing::debug!(url = url_with_prefix_api, status, "server is up");
                return Ok(());
            }
            Ok(Ok(status)) => {
                tracing::debug!(url = url_with_prefix_api, status, "server answered 5xx");
                last_error = format!("HTTP status {status}");
            }
            Ok(Err(e)) => last_error = e,
            Err(_) => last_error = format!("no response within {attempt_timeout:?}"),
        }
        tokio::time::sleep(RETRY_INTERVAL.min(deadline.saturating_duration_since(Instant::now())))
            .await;
    }
}

/// [`wait_for_http_server`], but gives up early with [`SpawnerError::ExitedBeforeReady`] if
/// `spawner.poll(state)` reports the server gone meanwhile, so a server that crashes while
/// starting fails the spawn at once instead of after `timeout`.
pub async fn wait_until_ready(
    spawner: &dyn Spawner,
    state: &serde_json::Value,
    url_with_prefix_api: &str,
    timeout: Duration,
) -> Result<(), SpawnerError> {
    let http = wait_for_http_server(url_with_prefix_api, timeout);
    let exited = async {
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            match spawner.poll(state).await {
                Ok(Some(status)) => return SpawnerError::ExitedBeforeReady { status },
                Ok(None) => {}
                Err(e) => return e,
            }
        }
    };
    tokio::select! {
        ready = http => ready,
        err = exited => Err(err),
    }
}

/// A parsed `http://host:port/path` to GET.
struct Target {
    /// `host:port` to connect to (IPv6 hosts keep their brackets).
    authority: String,
    /// Value of the `Host` header.
    host_header: String,
    /// Path and query.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, SpawnerError> {
        let invalid = |reason: &str| SpawnerError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(invalid("only http:// is supported"));
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Self {
            authority: format!("{}:{port}", authority.host()),
            host_header: authority.as_str().to_owned(),
            path,
        })
    }

    /// One attempt: connect, send the GET, return the status code.
    async fn get_status(&self) -> Result<u16, String> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        // Drives the connection; it ends when `sender` is dropped or the peer closes.
        let driver = tokio::spawn(connection);
        let request = http::Request::get(self.path.as_str())
            .header(http::header::HOST, self.host_header.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let result = sender
            .send_request(request)
            .await
            .map(|response| response.status().as_u16())
            .map_err(|e| format!("request: {e}"));
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_split_into_connect_address_host_header_and_path() {
        let t = Target::parse("http://127.0.0.1:43121/user/alice/api").unwrap();
        assert_eq!(t.authority, "127.0.0.1:43121");
        assert_eq!(t.host_header, "127.0.0.1:43121");
        assert_eq!(t.path, "/user/alice/api");

        let t = Target::parse("http://[::1]:8888/user/a%20b/api").unwrap();
        assert_eq!(t.authority, "[::1]:8888");
        assert_eq!(t.path, "/user/a%20b/api");

        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(t.authority, "localhost:80");
        assert_eq!(t.path, "/");
    }

    #[test]
    fn https_and_garbage_urls_are_refused() {
        assert!(matches!(
            Target::parse("https://127.0.0.1:1/api"),
            Err(SpawnerError::InvalidUrl { .. })
        ));
        assert!(matches!(
            Target::parse("not a url"),
            Err(SpawnerError::InvalidUrl { .. })
        ));
    }
}
