//! Release policies and forced release (a Xiji extension; see `docs/release-policies.md`):
//!
//! - `GET /release-policies`, `PUT /release-policies/default`: the default policy and grace
//!   period, with every user's exception (administrators);
//! - `GET|PUT|DELETE /users/{name}/release-policy`: a user's policy (they and administrators
//!   read it; administrators set or remove the exception);
//! - `POST /users/{name}/server/release`, `POST /users/{name}/servers/{server}/release`: an
//!   administrator (`admin:servers`) releases a cluster with a reason its user is shown;
//! - `GET /users/{name}/releases`: the releases the user is shown (`read:servers`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json as j, Value};

use super::{body_as, empty, json, ApiCaller, JsonBody};
use crate::clock;
use crate::db::{ReleaseExceptionRow, ReleaseRow, ReleaseSettingsRow};
use crate::domain::access::administers_installation;
use crate::domain::release::{self, ReleasePolicy, UserPolicy};
use crate::domain::servers::Outcome;
use crate::domain::{access, Services};
use crate::error::ApiError;

fn require_admin(caller: &ApiCaller) -> Result<(), ApiError> {
    if administers_installation(&caller.0.scopes) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "Only administrators may change release policies",
        ))
    }
}

fn settings_model(s: &ReleaseSettingsRow) -> Value {
    j!({
        "policy": s.policy,
        "grace_seconds": s.grace_seconds,
        "updated": (s.updated > 0).then(|| clock::iso(s.updated)),
        "updated_by": s.updated_by,
    })
}

fn exception_model(e: &ReleaseExceptionRow) -> Value {
    j!({
        "user": e.user_name,
        "policy": e.policy,
        "updated": clock::iso(e.updated),
        "updated_by": e.updated_by,
    })
}

fn user_policy_model(name: &str, p: &UserPolicy) -> Value {
    j!({
        "user": name,
        "policy": p.policy,
        "exception": p.exception,
        "grace_seconds": p.grace_seconds,
        "manual_release_allowed": p.manual_release_allowed(),
    })
}

/// A release as the API shows it.
pub(crate) fn release_model(r: &ReleaseRow) -> Value {
    j!({
        "user": r.user_name,
        "server": r.server_name,
        "cause": r.cause,
        "reason": r.reason,
        "released_by": r.released_by,
        "released": clock::iso(r.created),
    })
}

/// `GET /release-policies`.
pub async fn list(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let all = release::policies(&hub.store).await?;
    Ok(json(
        StatusCode::OK,
        j!({
            "default": settings_model(&all.settings),
            "exceptions": all.exceptions.iter().map(exception_model).collect::<Vec<_>>(),
            "policies": ReleasePolicy::ALL,
            "grace_seconds_limits": [release::MIN_GRACE_SECONDS, release::MAX_GRACE_SECONDS],
        }),
    ))
}

/// The body of `PUT /release-policies/default`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultBody {
    policy: ReleasePolicy,
    #[serde(default)]
    grace_seconds: Option<i64>,
}

/// `PUT /release-policies/default`.
pub async fn put_default(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let body: DefaultBody = body_as(body)?.ok_or_else(|| {
        ApiError::bad_request("The body must be {\"policy\": …, \"grace_seconds\": …}")
    })?;
    let settings = release::set_default(
        &hub.store,
        body.policy,
        body.grace_seconds,
        caller.0.principal.name(),
    )
    .await?;
    Ok(json(StatusCode::OK, settings_model(&settings)))
}

/// `GET /users/{name}/release-policy`: the user themself or an administrator.
pub async fn get_user(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let own = caller.0.user().is_some_and(|u| u.name == name);
    if !own {
        require_admin(&caller)?;
    }
    let user = hub
        .store
        .user(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))?;
    let policy = release::policy_of(&hub.store, user.id).await?;
    Ok(json(StatusCode::OK, user_policy_model(&user.name, &policy)))
}

/// The body of `PUT /users/{name}/release-policy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionBody {
    policy: ReleasePolicy,
}

/// `PUT /users/{name}/release-policy`: sets the user's exception.
pub async fn put_user(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let body: ExceptionBody =
        body_as(body)?.ok_or_else(|| ApiError::bad_request("The body must be {\"policy\": …}"))?;
    let exception =
        release::set_exception(&hub.store, &name, body.policy, caller.0.principal.name()).await?;
    Ok(json(StatusCode::OK, exception_model(&exception)))
}

/// `DELETE /users/{name}/release-policy`: removes the user's exception.
pub async fn delete_user(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    release::remove_exception(&hub.store, &name, caller.0.principal.name()).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// The body of a forced release.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    reason: String,
}

async fn force(
    hub: Arc<Services>,
    caller: ApiCaller,
    name: String,
    server: String,
    body: Option<Value>,
) -> Result<Response, ApiError> {
    access::check_server(&hub.store, &caller.0, &["admin:servers"], &name, &server).await?;
    let body: ReleaseBody = body_as(body)?.ok_or_else(|| {
        ApiError::bad_request("The body must be {\"reason\": …}: its user is shown the reason")
    })?;
    let user = hub
        .store
        .user(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))?;
    let (outcome, record) = release::force_release(
        &hub,
        &user,
        &server,
        &body.reason,
        caller.0.principal.name(),
    )
    .await?;
    let status = match outcome {
        Outcome::Done => StatusCode::OK,
        Outcome::Pending => StatusCode::ACCEPTED,
    };
    Ok(json(status, release_model(&record)))
}

/// `POST /users/{name}/server/release`.
pub async fn release_default(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    force(hub, caller, name, String::new(), body).await
}

/// `POST /users/{name}/servers/{server}/release`.
pub async fn release_named(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((name, server)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    force(hub, caller, name, server, body).await
}

/// `GET /users/{name}/releases`: what the user's home page shows.
pub async fn list_releases(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    access::check_user(&hub.store, &caller.0, &["read:servers"], &name).await?;
    let user = hub
        .store
        .user(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))?;
    let shown = release::notices(&hub.store, &user).await?;
    Ok(json(
        StatusCode::OK,
        Value::Array(shown.iter().map(release_model).collect()),
    ))
}
