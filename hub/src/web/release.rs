//! Release policies on the pages: `/hub/admin/release` (the default policy and grace period,
//! users' exceptions, and every running cluster with a forced release and its reason), and what
//! the home page says (the user's policy, the releases they are shown).
//!
//! Every change is a form posted with the XSRF token, then a redirect back with a message; a
//! refused change is shown with the reason.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use minijinja::context;
use serde::Serialize;

use super::auth::{check_xsrf, parse_form};
use super::{redirect, PageError, PageRequest};
use crate::clock;
use crate::db::{ReleaseRow, ServerStatus, UserRow};
use crate::domain::access::administers_installation;
use crate::domain::release::{self, ReleasePolicy};
use crate::domain::{HubError, Services};

/// The changes a `?done=` can report, each with its `release_done_*` message.
const DONE: [&str; 4] = ["default", "exception", "removed", "released"];

/// A running cluster as the administration page shows it.
#[derive(Debug, Serialize)]
struct ClusterView {
    user: String,
    server: String,
    policy: ReleasePolicy,
    started: Option<String>,
}

/// A release as the home page shows it.
#[derive(Debug, Serialize)]
pub(crate) struct ReleaseNotice {
    server: String,
    cause: release::ReleaseCause,
    reason: String,
    by: Option<String>,
    at: String,
}

impl From<&ReleaseRow> for ReleaseNotice {
    fn from(r: &ReleaseRow) -> Self {
        ReleaseNotice {
            server: r.server_name.clone(),
            cause: r.cause,
            reason: r.reason.clone(),
            by: r.released_by.clone(),
            at: clock::iso(r.created),
        }
    }
}

/// What the home page says about release: the policy the user's next cluster gets, and the
/// releases they are shown.
#[derive(Debug, Serialize)]
pub(crate) struct HomeRelease {
    policy: ReleasePolicy,
    grace_seconds: i64,
    notices: Vec<ReleaseNotice>,
}

/// The home page's release section for `user`.
pub(crate) async fn home_view(hub: &Services, user: &UserRow) -> Result<HomeRelease, PageError> {
    let policy = release::policy_of(&hub.store, user.id).await?;
    let notices = release::notices(&hub.store, user).await?;
    Ok(HomeRelease {
        policy: policy.policy,
        grace_seconds: policy.grace_seconds,
        notices: notices.iter().map(ReleaseNotice::from).collect(),
    })
}

fn require_admin(page: &PageRequest) -> Result<String, PageError> {
    let (user, caller) = page.require_user()?;
    if administers_installation(&caller.scopes) {
        Ok(user.name.clone())
    } else {
        Err(PageError::status(StatusCode::FORBIDDEN))
    }
}

async fn clusters(hub: &Services) -> Result<Vec<ClusterView>, PageError> {
    let mut views = Vec::new();
    for (user, server) in hub.store.active_servers().await? {
        if server.status != ServerStatus::Running {
            continue;
        }
        views.push(ClusterView {
            policy: release::held_policy(hub, &server).await?,
            started: server.started.map(clock::iso),
            user,
            server: server.name,
        });
    }
    views.sort_by(|a, b| (&a.user, &a.server).cmp(&(&b.user, &b.server)));
    Ok(views)
}

async fn render(
    hub: &Services,
    page: &PageRequest,
    status: StatusCode,
    done: Option<&'static str>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let all = release::policies(&hub.store).await?;
    Ok(page.render_with_status(
        status,
        "admin_release.html",
        context! {
            page => "admin-release",
            policy => all.settings.policy,
            grace_seconds => all.settings.grace_seconds,
            grace_min => release::MIN_GRACE_SECONDS,
            grace_max => release::MAX_GRACE_SECONDS,
            reason_max => release::MAX_REASON_CHARS,
            exceptions => all.exceptions.iter().map(|e| context! {
                user => e.user_name, policy => e.policy, updated_by => e.updated_by,
            }).collect::<Vec<_>>(),
            policies => ReleasePolicy::ALL,
            clusters => clusters(hub).await?,
            done => done,
            error => error,
        },
    ))
}

/// `GET /hub/admin/release`.
pub(crate) async fn admin_page(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    require_admin(&page)?;
    let done = query
        .iter()
        .rev()
        .find(|(k, _)| k == "done")
        .and_then(|(_, v)| DONE.iter().find(|d| **d == v.as_str()))
        .map(|d| page.lang.text(&format!("release_done_{d}")));
    render(&hub, &page, StatusCode::OK, done, None).await
}

/// `POST /hub/admin/release`: one change, named by the form's `action` (`default`, `exception`,
/// `remove`, `release`).
pub(crate) async fn admin_post(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let admin = require_admin(&page)?;
    let form: HashMap<String, String> = parse_form(&body)?;
    check_xsrf(&headers, &form)?;
    let text = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let policy = || ReleasePolicy::parse(&text("policy")).map_err(HubError::BadRequest);
    let result: Result<&'static str, HubError> = match text("action").as_str() {
        "default" => {
            let grace = text("grace_seconds");
            match grace.parse::<i64>() {
                Ok(grace) => match policy() {
                    Ok(p) => release::set_default(&hub.store, p, Some(grace), &admin)
                        .await
                        .map(|_| "default"),
                    Err(e) => Err(e),
                },
                Err(_) => Err(HubError::BadRequest(
                    page.lang.text("release_grace_invalid").to_owned(),
                )),
            }
        }
        "exception" => match policy() {
            Ok(p) => release::set_exception(&hub.store, &text("user"), p, &admin)
                .await
                .map(|_| "exception"),
            Err(e) => Err(e),
        },
        "remove" => release::remove_exception(&hub.store, &text("user"), &admin)
            .await
            .map(|()| "removed"),
        "release" => {
            force(
                &hub,
                &text("user"),
                &text("server"),
                &text("reason"),
                &admin,
            )
            .await
        }
        _ => Err(HubError::BadRequest("Unknown action".into())),
    };
    match result {
        Ok(done) => Ok(redirect(&format!("/hub/admin/release?done={done}"))),
        Err(HubError::BadRequest(m) | HubError::NotFound(m) | HubError::Conflict(m)) => {
            render(&hub, &page, StatusCode::BAD_REQUEST, None, Some(m)).await
        }
        Err(other) => Err(other.into()),
    }
}

async fn force(
    hub: &Arc<Services>,
    user: &str,
    server: &str,
    reason: &str,
    admin: &str,
) -> Result<&'static str, HubError> {
    let owner = hub
        .store
        .user(user)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such user: {user}")))?;
    release::force_release(hub, &owner, server, reason, admin).await?;
    Ok("released")
}
