//! [`ChpClient`]: the [`Proxy`] interface over configurable-http-proxy's REST API, for a hub
//! whose proxy runs in another process (Xiji's standalone proxy or CHP itself).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::api::{chp_path, routespec};
use crate::error::ProxyError;
use crate::table::{Proxy, Route};

/// Drives an external proxy through CHP's REST API (`/api/routes`).
#[derive(Debug, Clone)]
pub struct ChpClient {
    /// The API's base URL without trailing slash, e.g. `http://127.0.0.1:8001`.
    api_url: String,
    auth_token: Option<String>,
    http: reqwest::Client,
}

impl ChpClient {
    /// A client for the API at `api_url` (e.g. `http://127.0.0.1:8001`), sending
    /// `Authorization: token {auth_token}` when a token is given.
    ///
    /// # Errors
    /// If the HTTP client cannot be built (no TLS backend).
    pub fn new(api_url: &str, auth_token: Option<String>) -> Result<Self, ProxyError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ProxyError::Unavailable(e.to_string()))?;
        Ok(Self {
            api_url: api_url.trim_end_matches('/').to_owned(),
            auth_token,
            http,
        })
    }

    fn url(&self, routespec_or_path: &str) -> String {
        let path = chp_path(routespec_or_path);
        if path == "/" {
            format!("{}/api/routes/", self.api_url)
        } else {
            format!("{}/api/routes{path}", self.api_url)
        }
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.auth_token {
            Some(token) => builder.header("Authorization", format!("token {token}")),
            None => builder,
        }
    }

    /// Whether the API answers (with any status) right now.
    pub async fn is_reachable(&self) -> bool {
        self.request(
            reqwest::Method::GET,
            &format!("{}/api/routes", self.api_url),
        )
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok()
    }
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> ProxyError {
    ProxyError::Unavailable(format!("{what}: {error}"))
}

async fn check(what: &str, response: reqwest::Response) -> Result<reqwest::Response, ProxyError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(200).collect();
    Err(ProxyError::Unavailable(format!(
        "{what}: the proxy answered {status} {body}"
    )))
}

#[async_trait::async_trait]
impl Proxy for ChpClient {
    async fn add_route(
        &self,
        routespec: &str,
        target: &str,
        mut data: Map<String, Value>,
    ) -> Result<(), ProxyError> {
        data.remove("last_activity");
        data.remove(crate::OPEN_WEBSOCKETS_KEY);
        data.insert("target".to_owned(), Value::String(target.to_owned()));
        let what = format!("adding route {routespec}");
        let response = self
            .request(reqwest::Method::POST, &self.url(routespec))
            .json(&Value::Object(data))
            .send()
            .await
            .map_err(|e| unavailable(&what, e))?;
        check(&what, response).await?;
        Ok(())
    }

    async fn delete_route(&self, routespec: &str) -> Result<(), ProxyError> {
        let what = format!("deleting route {routespec}");
        let response = self
            .request(reqwest::Method::DELETE, &self.url(routespec))
            .send()
            .await
            .map_err(|e| unavailable(&what, e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        check(&what, response).await?;
        Ok(())
    }

    async fn get_all_routes(&self) -> Result<BTreeMap<String, Route>, ProxyError> {
        let what = "listing routes";
        let response = self
            .request(
                reqwest::Method::GET,
                &format!("{}/api/routes", self.api_url),
            )
            .send()
            .await
            .map_err(|e| unavailable(what, e))?;
        let all: Map<String, Value> = check(what, response)
            .await?
            .json()
            .await
            .map_err(|e| unavailable(what, e))?;
        let mut routes = BTreeMap::new();
        for (path, value) in all {
            let Value::Object(mut data) = value else {
                continue;
            };
            let Some(Value::String(target)) = data.remove("target") else {
                continue;
            };
            let spec = routespec(&path);
            routes.insert(
                spec.clone(),
                Route {
                    routespec: spec,
                    target,
                    data,
                },
            );
        }
        Ok(routes)
    }
}
