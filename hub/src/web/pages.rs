//! The home, token and admin pages. Their buttons call the REST API from `static/xiji.js`.
//!
//! The home page shows, above the reader's servers, the title and content administrators wrote
//! (`domain/home_page.rs`), and beside them the public projects and datasets with most stars and
//! the reader's recent projects.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use super::cluster::{cluster_view, spawn_form, ClusterView, FormRequest};
use super::{can_admin, login_url, redirect, PageError, PageRequest};
use crate::clock::{self, Micros};
use crate::db::{
    AccountRole, DatasetRow, ProjectRow, ServerRow, ServerStatus, UserQuery, UserSort,
};
use crate::domain::servers::{service_prefix, url_quote};
use crate::domain::{home_page, Services};

/// `/` and `/hub/`: home when logged in, else the login page.
pub(crate) async fn root(page: PageRequest) -> Response {
    if page.user().is_some() {
        redirect("/hub/home")
    } else {
        redirect(&login_url("/hub/home"))
    }
}

/// The status of a server row, stopped when there is none.
pub(crate) fn status_of(row: Option<&ServerRow>) -> ServerStatus {
    row.map_or(ServerStatus::Stopped, |r| r.status)
}

fn iso(t: Option<Micros>) -> Option<String> {
    t.map(clock::iso)
}

/// A server as the home and admin pages show it, with the URLs its buttons use.
#[derive(Serialize)]
pub(crate) struct ServerView {
    name: String,
    status: &'static str,
    url: String,
    api_url: String,
    progress_url: String,
    /// The spawn page (`/hub/spawn/{user}[/{server}]`).
    spawn_url: String,
    last_activity: Option<String>,
    /// A running cluster's image, size and nodes.
    cluster: Option<ClusterView>,
}

pub(crate) fn server_view(user: &str, name: &str, row: Option<&ServerRow>) -> ServerView {
    let user_q = url_quote(user);
    let (api_url, progress_url) = if name.is_empty() {
        (
            format!("/hub/api/users/{user_q}/server"),
            format!("/hub/api/users/{user_q}/server/progress"),
        )
    } else {
        let api = format!("/hub/api/users/{user_q}/servers/{}", url_quote(name));
        (api.clone(), format!("{api}/progress"))
    };
    ServerView {
        name: name.to_owned(),
        status: status_of(row).shown(),
        url: service_prefix(user, name),
        api_url,
        progress_url,
        spawn_url: super::spawn::spawn_path(user, name),
        last_activity: iso(row.and_then(|r| r.last_activity)),
        cluster: None,
    }
}

/// [`server_view`] with the cluster of a running server.
async fn server_view_with_cluster(
    hub: &Services,
    user: &str,
    name: &str,
    row: Option<&ServerRow>,
) -> Result<ServerView, PageError> {
    let mut view = server_view(user, name, row);
    if let Some(row) = row {
        view.cluster = cluster_view(hub, user, row).await?;
    }
    Ok(view)
}

/// A project or dataset as a card of the home page's lists.
#[derive(Serialize)]
struct CardView {
    owner: String,
    name: String,
    href: String,
    excerpt: String,
    stars: i64,
    public: bool,
    updated: Option<String>,
}

/// The longest excerpt of a description on a card, in characters.
const EXCERPT_CHARS: usize = 140;

/// The first line of text of a Markdown description, without its heading, list, emphasis and
/// code marks.
fn excerpt(markdown: &str) -> String {
    let line = markdown
        .lines()
        .map(|l| l.trim().trim_start_matches(['#', '>', '-', '*', '+', ' ']))
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    // Emphasis and code marks would show as they are typed.
    let line: String = line.chars().filter(|c| !matches!(c, '*' | '`')).collect();
    let mut text: String = line.chars().take(EXCERPT_CHARS).collect();
    if line.chars().count() > EXCERPT_CHARS {
        text.push('…');
    }
    text
}

impl CardView {
    fn project(p: &ProjectRow) -> Self {
        CardView {
            href: format!(
                "/hub/projects/{}/{}",
                url_quote(&p.owner),
                url_quote(&p.name)
            ),
            owner: p.owner.clone(),
            name: p.name.clone(),
            excerpt: excerpt(&p.description),
            stars: p.stars,
            public: p.visibility == crate::db::DatasetVisibility::Public,
            updated: iso(Some(p.updated)),
        }
    }

    fn dataset(d: &DatasetRow) -> Self {
        CardView {
            href: format!(
                "/hub/datasets/{}/{}",
                url_quote(&d.owner),
                url_quote(&d.name)
            ),
            owner: d.owner.clone(),
            name: d.name.clone(),
            excerpt: excerpt(&d.description),
            stars: d.stars,
            public: d.visibility == crate::db::DatasetVisibility::Public,
            updated: iso(Some(d.updated)),
        }
    }
}

/// `GET /hub/home[?image=ID]`: the administrators' title and content; the default server (with the spawn form when stopped, its
/// cluster's nodes when running) and the named ones, with start/stop/open; the public projects
/// and datasets with most stars, and the reader's recent projects.
pub(crate) async fn home(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let (user, _) = page.require_user()?;
    let rows = hub
        .store
        .servers_of(&[user.id])
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    let default_row = rows.iter().find(|r| r.name.is_empty());
    let default = server_view_with_cluster(&hub, &user.name, "", default_row).await?;
    let mut named = Vec::new();
    for r in rows.iter().filter(|r| !r.name.is_empty()) {
        named.push(server_view_with_cluster(&hub, &user.name, &r.name, Some(r)).await?);
    }
    let wanted_image = query
        .iter()
        .rev()
        .find(|(k, _)| k == "image")
        .map(|(_, v)| v.as_str());
    let spawn = spawn_form(
        &hub,
        FormRequest {
            user: &user.name,
            server: "",
            row: default_row,
            values: None,
            wanted_image,
            error: None,
            next: None,
        },
    )
    .await?;
    let texts = home_page::get(&hub.store)
        .await?
        .shown(super::home_page::text_language(page.lang));
    let lists = home_page::lists(&hub.store, user).await?;
    let quota = super::quotas::home_card(&hub, user).await?;
    let release = super::release::home_view(&hub, user).await?;
    Ok(page.render(
        "home.html",
        context! {
            page => "home",
            // `None`: the built-in title and introduction.
            custom_title => texts.title,
            custom_content => texts.content_html.map(minijinja::Value::from_safe_string),
            top_projects => lists.projects.iter().map(CardView::project).collect::<Vec<_>>(),
            top_datasets => lists.datasets.iter().map(CardView::dataset).collect::<Vec<_>>(),
            recent_projects => lists.recent.iter().map(CardView::project).collect::<Vec<_>>(),
            default => default,
            named => named,
            spawn => spawn,
            // The card the script copies for a new named server.
            placeholder => server_view(&user.name, "new", None),
            allow_named => hub.config.allow_named_servers,
            named_limit => hub.config.named_server_limit_per_user,
            user_api_url => format!("/hub/api/users/{}", url_quote(&user.name)),
            quota => quota,
            release => release,
        },
    ))
}

#[derive(Serialize)]
struct TokenView {
    id: String,
    note: String,
    oauth_client: Option<String>,
    scopes: Vec<String>,
    all_permissions: bool,
    created: Option<String>,
    last_used: Option<String>,
    expires: Option<String>,
}

/// `GET /hub/token`: the user's tokens, and the form to make one.
pub(crate) async fn token(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
) -> Result<Response, PageError> {
    let (user, _) = page.require_user()?;
    let now = clock::now();
    let mut rows = hub.store.tokens_of_user(user.id).await?;
    rows.sort_by_key(|t| std::cmp::Reverse(t.created));
    let tokens: Vec<TokenView> = rows
        .into_iter()
        .filter(|t| t.kind != "server" && t.expires_at.is_none_or(|e| e > now))
        .map(|t| {
            let scopes: Vec<String> = serde_json::from_str(&t.scopes).unwrap_or_default();
            TokenView {
                id: crate::domain::tokens::token_id(t.id),
                note: t.note,
                oauth_client: t.oauth_client,
                all_permissions: scopes.iter().any(|s| s == "inherit"),
                scopes,
                created: iso(Some(t.created)),
                last_used: iso(t.last_activity),
                expires: iso(t.expires_at),
            }
        })
        .collect();
    Ok(page.render(
        "token.html",
        context! {
            page => "token",
            tokens => tokens,
            tokens_api_url => format!("/hub/api/users/{}/tokens", url_quote(&user.name)),
            expiry_days => [1, 7, 30, 90, 365],
        },
    ))
}

#[derive(Serialize)]
struct UserView {
    name: String,
    admin: bool,
    account_role: AccountRole,
    is_self: bool,
    api_url: String,
    server: ServerView,
    last_activity: Option<String>,
}

const ADMIN_PAGE_SIZE: i64 = 50;

/// `GET /hub/admin?offset=&filter=`: users, a page at a time (admins only).
pub(crate) async fn admin(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let (me, caller) = page.require_user()?;
    if !can_admin(caller) {
        return Err(PageError::status(StatusCode::FORBIDDEN));
    }
    let get = |key: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_owned())
    };
    let offset = get("offset")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
    let filter = get("filter").filter(|f| !f.is_empty());
    let (rows, total) = hub
        .store
        .list_users(&UserQuery {
            name_filter: filter.clone(),
            sort: UserSort::Name,
            offset,
            limit: ADMIN_PAGE_SIZE,
            ..Default::default()
        })
        .await?;
    let ids: Vec<i64> = rows.iter().map(|u| u.id).collect();
    let mut servers = hub.store.servers_of(&ids).await?;
    let mut users: Vec<UserView> = Vec::with_capacity(rows.len());
    for u in rows {
        let own = servers.remove(&u.id).unwrap_or_default();
        let default = own.iter().find(|s| s.name.is_empty());
        users.push(UserView {
            server: server_view_with_cluster(&hub, &u.name, "", default).await?,
            api_url: format!("/hub/api/users/{}", url_quote(&u.name)),
            is_self: u.id == me.id,
            admin: u.is_admin(),
            last_activity: iso(u.last_activity),
            account_role: u.account_role,
            name: u.name,
        });
    }
    let page_link = |offset: i64| {
        let offset = offset.to_string();
        let mut pairs = vec![("offset", offset.as_str())];
        if let Some(f) = &filter {
            pairs.push(("filter", f.as_str()));
        }
        format!("/hub/admin?{}", super::encode_query(&pairs))
    };
    let prev = (offset > 0).then(|| page_link((offset - ADMIN_PAGE_SIZE).max(0)));
    let next = (offset + ADMIN_PAGE_SIZE < total).then(|| page_link(offset + ADMIN_PAGE_SIZE));
    let shown = users.len() as i64;
    Ok(page.render(
        "admin.html",
        context! {
            page => "admin",
            users => users,
            filter => filter,
            total => total,
            from => if shown == 0 { 0 } else { offset + 1 },
            to => offset + shown,
            prev => prev,
            next => next,
            roles => AccountRole::ALL,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn a_cards_excerpt_is_the_first_line_of_text_without_markdown_marks() {
        assert_eq!(
            excerpt("\n# A **rainfall** model\n\nmore"),
            "A rainfall model"
        );
        assert_eq!(excerpt("- `run.py` trains"), "run.py trains");
        assert_eq!(excerpt(""), "");
        let long = "字".repeat(200);
        assert_eq!(excerpt(&long).chars().count(), 141);
    }
}
