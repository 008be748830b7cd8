//! The API error: JupyterHub's JSON body `{"status": N, "message": "..."}`. Internal failures
//! (the database, a backend's or Docker Engine's error text) are logged once here and answered
//! with a generic message: a 5xx never carries internals. 4xx messages are for the user and
//! pass through unchanged.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::db::DbError;
use crate::domain::HubError;

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What the client should know.
    pub message: String,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// JupyterHub's answer to a missing or unknown credential.
    pub fn missing_credentials() -> Self {
        Self::forbidden("Missing or invalid credentials.")
    }
    /// JupyterHub's answer when a filtered scope does not cover the resource.
    pub fn no_access() -> Self {
        Self::not_found("No access to resources or resources not found")
    }
    /// 500 with no internals.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::BadRequest(m) => Self::bad_request(m),
            HubError::NotFound(m) => Self::not_found(m),
            HubError::Conflict(m) => Self::new(StatusCode::CONFLICT, m),
            HubError::Forbidden(m) => Self::forbidden(m),
            HubError::TooManyRequests(m) => Self::new(StatusCode::TOO_MANY_REQUESTS, m),
            HubError::InsufficientStorage(m) => Self::new(StatusCode::INSUFFICIENT_STORAGE, m),
            HubError::PayloadTooLarge(m) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, m),
            HubError::Upstream(m) => Self::new(StatusCode::BAD_GATEWAY, m),
            HubError::Internal(detail) => {
                tracing::error!(error = %detail, "hub failure answered with a 500");
                Self::internal()
            }
            HubError::Spawner(detail) => {
                tracing::error!(error = %detail, "backend failure answered with a 500");
                Self::internal()
            }
            HubError::Db(e) => e.into(),
        }
    }
}

impl From<crate::http::CallerError> for ApiError {
    fn from(e: crate::http::CallerError) -> Self {
        match e {
            crate::http::CallerError::Xsrf => ApiError::forbidden(e.to_string()),
            crate::http::CallerError::Hub(e) => e.into(),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Conflict => Self::new(StatusCode::CONFLICT, "Already exists"),
            other => {
                tracing::error!(error = %other, "database failure");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"status": self.status.as_u16(), "message": self.message});
        let mut response = (self.status, body.to_string()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_map_to_jupyterhub_status_codes_and_hide_database_internals() {
        assert_eq!(
            ApiError::from(HubError::NotFound("x".into())).status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::from(HubError::Conflict("x".into())).status,
            StatusCode::CONFLICT
        );
        assert_eq!(
            ApiError::from(HubError::BadRequest("x".into())).status,
            StatusCode::BAD_REQUEST
        );
        let hidden = ApiError::from(DbError::UnsupportedUrl);
        assert_eq!(hidden.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(hidden.message, "Internal Server Error");
    }

    #[test]
    fn a_backend_failure_is_a_500_without_the_backends_error_text() {
        let detail = "Docker responded with status code 500: driver failed programming \
                      external connectivity on endpoint jupyter-alice (10.0.0.7)";
        let e = ApiError::from(HubError::Spawner(detail.into()));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.message, "Internal Server Error");
        assert!(!e.message.contains("Docker"));
    }

    #[test]
    fn client_errors_keep_their_message() {
        for (e, status) in [
            (HubError::BadRequest("m1".into()), StatusCode::BAD_REQUEST),
            (HubError::NotFound("m2".into()), StatusCode::NOT_FOUND),
            (HubError::Conflict("m3".into()), StatusCode::CONFLICT),
            (HubError::Forbidden("m4".into()), StatusCode::FORBIDDEN),
            (
                HubError::TooManyRequests("m5".into()),
                StatusCode::TOO_MANY_REQUESTS,
            ),
        ] {
            let want = e.to_string();
            let api = ApiError::from(e);
            assert_eq!((api.status, api.message), (status, want));
        }
    }
}
