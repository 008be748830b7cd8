//! The API error: JupyterHub's JSON body `{"status": N, "message": "..."}`. Internal failures are
//! logged once here and answered with a generic message.

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
            HubError::Spawner(m) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, m),
            HubError::Db(e) => e.into(),
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
}
