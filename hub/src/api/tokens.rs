//! `/hub/api/users/{name}/tokens…`: API tokens of a user.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::models::token_model;
use super::{body_as, empty, json, ApiCaller, JsonBody};
use crate::clock;
use crate::db::NewToken;
use crate::domain::tokens::{self, hash_secret, new_token};
use crate::domain::users::user_or_404;
use crate::domain::Services;
use crate::domain::{access, identity};
use crate::error::ApiError;
use crate::rbac::ScopeCatalog;

async fn require(
    hub: &Services,
    caller: &ApiCaller,
    scope: &str,
    name: &str,
) -> Result<(), ApiError> {
    Ok(access::check_user(&hub.store, &caller.0, &[scope], name).await?)
}

/// `GET /users/{name}/tokens`.
pub async fn list(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require(&hub, &caller, "read:tokens", &name).await?;
    let user = user_or_404(&hub, &name).await?;
    let now = clock::now();
    let mut rows: Vec<crate::db::TokenRow> = hub
        .store
        .tokens_of_user(user.id)
        .await?
        .into_iter()
        .filter(|t| t.kind != "server" && t.expires_at.is_none_or(|e| e > now))
        .collect();
    // JupyterHub's order: by last use, else by creation.
    rows.sort_by_key(|t| (t.last_activity.unwrap_or(t.created), t.id));
    let mut tokens: Vec<Value> = Vec::with_capacity(rows.len());
    for row in &rows {
        tokens.push(render(&hub, row).await?);
    }
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"api_tokens": tokens}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    note: Option<String>,
    expires_in: Option<i64>,
    scopes: Option<Vec<String>>,
    roles: Option<Vec<String>>,
}

/// `POST /users/{name}/tokens`: a new token, with scopes no wider than the owner's.
pub async fn create(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    // JupyterHub answers 403 both for an unknown user and for a caller without `tokens` on it.
    let denied = || {
        let kind = if caller.0.user().is_some() {
            "User"
        } else {
            "Service"
        };
        ApiError::forbidden(format!(
            "{kind} {name} not found or no permissions to generate tokens"
        ))
    };
    require(&hub, &caller, "tokens", &name)
        .await
        .map_err(|_| denied())?;
    let user = hub.store.user(&name).await?.ok_or_else(denied)?;
    let req: CreateToken = body_as(body)?.unwrap_or_default();
    let mut scopes: Vec<String> = req.scopes.unwrap_or_default();
    for role in req.roles.unwrap_or_default() {
        match crate::rbac::default_role(&role) {
            Some(r) if role != "admin" || user.is_admin() => {
                scopes.extend(r.scopes.iter().map(|s| (*s).to_owned()))
            }
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "Not assigning requested role {role}: {} does not hold it",
                    user.name
                )))
            }
            None => return Err(ApiError::bad_request(format!("Role {role} does not exist"))),
        }
    }
    if scopes.is_empty() {
        scopes.push("inherit".into());
    }
    ScopeCatalog::builtin()
        .check_scopes_exist(&scopes, Some("token"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !scopes.iter().any(|s| s == "inherit") {
        identity::check_requested_scopes(&hub.store, &user, &scopes).await?;
    }
    let expires_at = match req.expires_in {
        None | Some(0) => None,
        Some(s) if s < 0 => {
            return Err(ApiError::bad_request(
                "expires_in must be a positive number of seconds",
            ))
        }
        Some(s) => Some(clock::now().saturating_add(s.saturating_mul(1_000_000))),
    };
    let note = req.note.unwrap_or_else(|| match &caller.0.principal {
        identity::Principal::User(u) if u.id == user.id => "Requested via api".to_owned(),
        other => format!(
            "Requested via api by {} {}",
            if caller.0.user().is_some() {
                "user"
            } else {
                "service"
            },
            other.name()
        ),
    });
    if note.len() > 1000 {
        return Err(ApiError::bad_request(
            "note is too long (at most 1000 characters)",
        ));
    }
    let token = new_token();
    let id = hub
        .store
        .insert_token(&NewToken {
            hashed: &hash_secret(&token),
            kind: "api",
            user_id: Some(user.id),
            service_id: None,
            server_id: None,
            scopes: &scopes,
            note: &note,
            session_id: None,
            oauth_client: None,
            created: clock::now(),
            expires_at,
        })
        .await?;
    let row = hub
        .store
        .token_by_id(id)
        .await?
        .ok_or_else(ApiError::internal)?;
    let mut model = render(&hub, &row).await?;
    if let Value::Object(m) = &mut model {
        m.insert("token".into(), Value::String(token));
    }
    tracing::info!(user.name = %user.name, token.id = id, "token created");
    Ok(json(StatusCode::CREATED, model))
}

/// The token model with the token's effective scopes, as JupyterHub's `get_scopes_for(token)`.
async fn render(hub: &Services, row: &crate::db::TokenRow) -> Result<Value, ApiError> {
    let scopes = identity::token_caller(&hub.store, row)
        .await?
        .map(|c| c.scopes.to_sorted_strings());
    Ok(token_model(row, scopes))
}

/// `GET /users/{name}/tokens/{token_id}`.
pub async fn get_one(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((name, token_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    require(&hub, &caller, "read:tokens", &name).await?;
    let user = user_or_404(&hub, &name).await?;
    let row = tokens::find_owned(&hub.store, user.id, &token_id).await?;
    Ok(json(StatusCode::OK, render(&hub, &row).await?))
}

/// `DELETE /users/{name}/tokens/{token_id}`.
pub async fn delete(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((name, token_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    require(&hub, &caller, "tokens", &name).await?;
    let user = user_or_404(&hub, &name).await?;
    let row = tokens::find_owned(&hub.store, user.id, &token_id).await?;
    tokens::revoke(&hub, &row).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
