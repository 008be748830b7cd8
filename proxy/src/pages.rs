//! The pages the proxy answers itself: a short built-in HTML page, or one fetched from the error
//! target (CHP's `--error-target`).

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{boxed, full, ResponseBody};
use crate::config::ProxyConfig;

/// Renders the proxy's own error answers.
pub(crate) struct ErrorPages {
    /// The error target with a trailing `/`.
    target: Option<String>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl ErrorPages {
    pub(crate) fn new(config: &ProxyConfig) -> Self {
        let target = config
            .error_target
            .as_ref()
            .map(|t| format!("{}/", t.trim_end_matches('/')));
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.backend_idle_timeout)
            .build(connector);
        Self { target, client }
    }

    /// The answer for `status` to a request for `url` (path and query as the client sent it).
    /// With an error target, its page for `status`; without one or if it fails, the built-in page.
    pub(crate) async fn render(
        &self,
        status: StatusCode,
        url: &str,
        title: &'static str,
        message: &'static str,
    ) -> Response<ResponseBody> {
        if let Some(target) = &self.target {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("url", url)
                .finish();
            let page_url = format!("{target}{}?{query}", status.as_u16());
            match self.fetch(&page_url).await {
                Ok(mut response) => {
                    *response.status_mut() = status;
                    return response;
                }
                Err(error) => {
                    tracing::warn!(error_target = %target, %error, "could not fetch the error page");
                }
            }
        }
        page(status, title, message)
    }

    async fn fetch(&self, page_url: &str) -> Result<Response<ResponseBody>, String> {
        let request = Request::get(page_url)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let upstream = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.client.request(request),
        )
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        let (parts, body) = upstream.into_parts();
        let mut response = Response::new(boxed(body));
        for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING] {
            if let Some(value) = parts.headers.get(&name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    }
}

/// A short HTML page for errors the proxy itself answers. Only static text goes in, so nothing
/// needs escaping.
pub(crate) fn page(
    status: StatusCode,
    title: &'static str,
    message: &'static str,
) -> Response<ResponseBody> {
    let code = status.as_u16();
    let html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{code} {title}</title></head>\
         <body><h1>{code} {title}</h1><p>{message}</p></body></html>\n"
    );
    let mut response = Response::new(full(html));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether an error the proxy answers itself should be JSON: API paths (`…/api/…`, where
/// JupyterHub's and Jupyter's clients expect `{"status", "message"}`) or an `Accept` naming JSON.
pub(crate) fn wants_json<B>(req: &Request<B>) -> bool {
    req.uri().path().contains("/api/")
        || req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("json") && !accept.contains("text/html"))
}

/// JupyterHub's error body `{"status": N, "message": "..."}` for errors the proxy answers itself.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({ "status": status.as_u16(), "message": message });
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `{"status": "OK"}`, CHP's health check answer.
pub(crate) fn health() -> Response<ResponseBody> {
    let mut response = Response::new(full(&b"{\"status\": \"OK\"}"[..]));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A fallback for the standalone proxy: every request no route matched gets 404 (from the error
/// target if there is one).
#[derive(Clone)]
pub(crate) struct NotFound(pub(crate) std::sync::Arc<ErrorPages>);

impl<B: Send + 'static> tower::Service<Request<B>> for NotFound {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let pages = std::sync::Arc::clone(&self.0);
        let url = req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Box::pin(async move {
            Ok(pages
                .render(
                    StatusCode::NOT_FOUND,
                    &url,
                    "Not Found",
                    "No route matches this address.",
                )
                .await)
        })
    }
}
