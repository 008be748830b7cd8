//! `/hub/api/`, `/info`, `/user`, `/proxy`, `/services`, `/health`.

use std::sync::Arc;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::models::{bundle, service_model, user_model};
use super::{json, ApiCaller, Page, RequestUrl};
use crate::api::JUPYTERHUB_VERSION;
use crate::domain::identity::Principal;
use crate::domain::servers;
use crate::domain::Services;
use crate::error::ApiError;
use crate::rbac::{self, Entity, ListFilter, ListKind, Resource};

/// `GET /hub/api/`: the version, without authentication.
pub async fn root() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "accept, content-type, authorization",
            ),
        ],
        json!({"version": JUPYTERHUB_VERSION}).to_string(),
    )
        .into_response()
}

/// `GET /hub/api/health`.
pub async fn health(State(hub): State<Arc<Services>>) -> Result<Response, ApiError> {
    hub.store.count_users().await?;
    Ok(json(StatusCode::OK, json!({"status": "ok"})))
}

/// `GET /hub/api/info`.
pub async fn info(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    caller.require(&["read:hub"], &Resource::Hub)?;
    Ok(json(
        StatusCode::OK,
        json!({
            "version": JUPYTERHUB_VERSION,
            "python": "none (Xiji is written in Rust)",
            "sys_executable": std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
            "spawner": {"class": format!("xiji.{}", hub.spawner.backend_name()), "version": env!("CARGO_PKG_VERSION")},
            "authenticator": {"class": "xiji.LocalAuthenticator", "version": env!("CARGO_PKG_VERSION")},
            "xiji": {"version": env!("CARGO_PKG_VERSION")},
        }),
    ))
}

/// `GET /hub/api/user`: who the caller is, with its expanded scopes.
pub async fn whoami(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    let c = &caller.0;
    let mut model = match &c.principal {
        Principal::User(user) => {
            let mut view = c.scopes.clone();
            view.extend(&rbac::identify_scopes(Entity::User(&user.name)));
            // The fresh row: the cached caller's copy predates this request's activity.
            let fresh = hub.store.user_by_id(user.id).await?;
            let b = bundle(&hub, vec![fresh.unwrap_or_else(|| user.clone())]).await?;
            b.first()
                .map(|b| user_model(&view, b, false))
                .unwrap_or(Value::Null)
        }
        Principal::Service(service) => {
            let mut view = c.scopes.clone();
            view.extend(&rbac::identify_scopes(Entity::Service(&service.name)));
            let roles = hub.store.service_roles(service.id).await?;
            service_model(&view, service, &roles)
        }
    };
    if let Value::Object(m) = &mut model {
        m.insert("scopes".into(), json!(c.scopes.to_sorted_strings()));
        m.insert(
            "token_id".into(),
            json!(c.token_id.map(crate::domain::tokens::token_id)),
        );
        m.insert("session_id".into(), json!(c.session_id));
    }
    Ok(json(StatusCode::OK, model))
}

/// `GET /hub/api/proxy`: the route table, as JupyterHub reports it.
pub async fn get_proxy(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    caller.require(&["proxy"], &Resource::Hub)?;
    let page = Page::from_request(&hub, &query, &headers)?;
    let routes = hub.proxy.get_all_routes().await.map_err(|e| {
        tracing::error!(error = %e, "reading routes failed");
        ApiError::internal()
    })?;
    let total = i64::try_from(routes.len()).unwrap_or(i64::MAX);
    let mut all: Vec<(String, Value)> = vec![(
        "/".to_owned(),
        // CHP's form: the target without a trailing slash, and the time the route was last used
        // (this very request came through it).
        json!({"routespec": "/", "target": hub.internal_url().trim_end_matches('/'),
            "data": {"hub": true, "last_activity": crate::clock::iso_json(Some(crate::clock::now()))}}),
    )];
    all.extend(routes.into_iter().map(|(spec, r)| {
        (
            spec.clone(),
            json!({"routespec": spec, "target": r.target, "data": Value::Object(r.data)}),
        )
    }));
    let total = total + 1;
    let window: Map<String, Value> = all
        .into_iter()
        .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
        .take(usize::try_from(page.limit).unwrap_or(0))
        .collect();
    if !page.envelope {
        return Ok(json(StatusCode::OK, Value::Object(window)));
    }
    let url = RequestUrl::new(&hub, &headers, uri.path(), &query);
    let mut rendered = page.render(Vec::new(), total, &url);
    if let Value::Object(m) = &mut rendered {
        m.insert("items".into(), Value::Object(window));
    }
    Ok(json(StatusCode::OK, rendered))
}

/// `POST /hub/api/proxy`: reconcile the routes with the ready servers.
pub async fn sync_proxy(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    caller.require(&["proxy"], &Resource::Hub)?;
    servers::check_routes(&hub).await?;
    Ok(super::empty_json(StatusCode::OK))
}

/// `GET /hub/api/services`: a dict keyed by name, as JupyterHub answers.
pub async fn list_services(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    let filter = rbac::list_filter(&caller.0.scopes, ListKind::Services)
        .map_err(|f| ApiError::forbidden(f.message))?;
    let mut out = Map::new();
    for s in hub.store.services().await? {
        if filter == ListFilter::All || filter.allows(&s.name, &[]) {
            let roles = hub.store.service_roles(s.id).await?;
            out.insert(s.name.clone(), service_model(&caller.0.scopes, &s, &roles));
        }
    }
    Ok(json(StatusCode::OK, Value::Object(out)))
}

/// `GET /hub/api/services/{name}`.
pub async fn get_service(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(
        &["read:services", "read:services:name", "read:roles:services"],
        &Resource::Service { name: &name },
    )?;
    let s = hub
        .store
        .service(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such service: {name}")))?;
    let roles = hub.store.service_roles(s.id).await?;
    Ok(json(
        StatusCode::OK,
        service_model(&caller.0.scopes, &s, &roles),
    ))
}
