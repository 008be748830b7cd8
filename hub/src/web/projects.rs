//! The projects pages: the list with search, sort and the "mine"/"starred" tabs
//! (`/hub/projects`), the form that makes a new one (`/hub/projects/new`) and a project's own
//! page (`/hub/projects/{owner}/{name}`: its description, image and datasets, star, fork, run
//! and, for its owners, settings, members and delete); and their administration
//! (`/hub/admin/projects`: every project, private ones too, with search, export, delete and
//! import, through the same API from `static/admin_projects.js`).
//!
//! The handlers check that someone is logged in (and, for a project's page, that they may see
//! it: the same 404 as the API otherwise); the page's script (`static/projects.js`) reads and
//! changes everything through `/hub/api/projects`, with the login cookie and the XSRF header.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use super::{encode_query, PageError, PageRequest};
use crate::clock;
use crate::db::DatasetVisibility;
use crate::domain::access::administers_installation;
use crate::domain::datasets::Viewer;
use crate::domain::projects::{self, Access, SearchQuery};
use crate::domain::servers::url_quote;
use crate::domain::Services;

/// How many projects a page of the list shows.
const PAGE_SIZE: u64 = 24;

/// The list's tabs: every project the caller may see, their own, the ones they starred.
const FILTERS: [&str; 3] = ["all", "mine", "starred"];

/// The orders the API offers.
const SORTS: [&str; 2] = ["updated", "stars"];

/// What the list was asked for, as the search form and the script read it.
#[derive(Debug, Clone, Default, Serialize)]
struct ListQuery {
    q: String,
    sort: String,
    filter: String,
    offset: u64,
}

impl ListQuery {
    fn read(query: &[(String, String)]) -> Self {
        let last = |key: &str| {
            query
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        let pick = |value: String, words: &[&str]| {
            if words.contains(&value.as_str()) {
                value
            } else {
                words[0].to_owned()
            }
        };
        ListQuery {
            q: last("q"),
            sort: pick(last("sort"), &SORTS),
            filter: pick(last("filter"), &FILTERS),
            offset: last("offset").parse().unwrap_or(0),
        }
    }

    /// The list's address with `filter` changed, the search and order kept.
    fn href(&self, filter: &str) -> String {
        let mut pairs = Vec::new();
        if !self.q.is_empty() {
            pairs.push(("q", self.q.as_str()));
        }
        if self.sort != SORTS[0] {
            pairs.push(("sort", self.sort.as_str()));
        }
        if filter != FILTERS[0] {
            pairs.push(("filter", filter));
        }
        if pairs.is_empty() {
            "/hub/projects".to_owned()
        } else {
            format!("/hub/projects?{}", encode_query(&pairs))
        }
    }
}

/// One tab of the list.
#[derive(Debug, Serialize)]
struct Tab {
    filter: &'static str,
    href: String,
    current: bool,
}

/// `GET /hub/projects`: the projects the caller may see.
pub(crate) async fn list(
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    page.require_user()?;
    let query = ListQuery::read(&query);
    let tabs: Vec<Tab> = FILTERS
        .iter()
        .map(|filter| Tab {
            filter,
            href: query.href(filter),
            current: *filter == query.filter,
        })
        .collect();
    Ok(page.render(
        "projects.html",
        context! {
            page => "projects",
            query => &query,
            tabs => tabs,
            sorts => SORTS,
            page_size => PAGE_SIZE,
        },
    ))
}

/// `GET /hub/projects/new`: the form of a new project.
pub(crate) async fn new_form(page: PageRequest) -> Result<Response, PageError> {
    page.require_user()?;
    Ok(page.render("project_new.html", context! { page => "project-new" }))
}

/// `GET /hub/projects/{owner}/{name}`: one project, if the caller may see it (a 404 page
/// otherwise, whether or not it exists, as the API answers).
pub(crate) async fn show(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (user, caller) = page.require_user()?;
    let viewer = Viewer {
        user: user.clone(),
        admin: administers_installation(&caller.scopes),
    };
    projects::reach(&hub, &viewer, &owner, &name, Access::Read).await?;
    let release = super::cluster::release_choices(&hub, Some(user), "").await?;
    let pools = super::cluster::pool_choices(&hub).await?;
    Ok(page.render(
        "project.html",
        context! {
            page => "project",
            release => release,
            pools => pools,
            owner_href => format!("/hub/projects?{}", encode_query(&[("q", &owner)])),
            owner => owner,
            name => name,
        },
    ))
}

/// How many projects a page of the administration lists.
const ADMIN_PAGE_SIZE: i64 = 50;

/// A project as a row of the administration.
#[derive(Debug, Serialize)]
struct AdminProjectView {
    owner: String,
    name: String,
    href: String,
    api_url: String,
    public: bool,
    stars: i64,
    forks: i64,
    updated: String,
    /// Who runs a cluster of it now.
    running: Vec<String>,
}

/// `GET /hub/admin/projects?q=&offset=`: every project, private ones too, a page at a time
/// (storage administrators only, who may change every project through the API).
pub(crate) async fn admin_list(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let (user, caller) = page.require_user()?;
    if !administers_installation(&caller.scopes) {
        return Err(PageError::status(StatusCode::FORBIDDEN));
    }
    let viewer = Viewer {
        user: user.clone(),
        admin: true,
    };
    let last = |key: &str| {
        query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let q = last("q");
    let offset = last("offset")
        .and_then(|o| o.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0);
    let (rows, total, offset, limit) = projects::search(
        &hub,
        &viewer,
        &SearchQuery {
            q: q.clone(),
            offset: Some(offset.to_string()),
            limit: Some(ADMIN_PAGE_SIZE.to_string()),
            ..SearchQuery::default()
        },
    )
    .await?;
    // One read of the running servers for the whole page.
    let active = hub.store.active_servers().await?;
    let views: Vec<AdminProjectView> = rows
        .iter()
        .map(|p| {
            let server = projects::server_name(p);
            let (owner, name) = (url_quote(&p.owner), url_quote(&p.name));
            AdminProjectView {
                href: format!("/hub/projects/{owner}/{name}"),
                api_url: format!("/hub/api/projects/{owner}/{name}"),
                owner: p.owner.clone(),
                name: p.name.clone(),
                public: p.visibility == DatasetVisibility::Public,
                stars: p.stars,
                forks: p.forks,
                updated: clock::iso(p.updated),
                running: active
                    .iter()
                    .filter(|(_, row)| row.name == server)
                    .map(|(user, _)| user.clone())
                    .collect(),
            }
        })
        .collect();
    let page_link = |offset: i64| {
        let offset = offset.to_string();
        let mut pairs = vec![("offset", offset.as_str())];
        if let Some(q) = &q {
            pairs.push(("q", q.as_str()));
        }
        format!("/hub/admin/projects?{}", encode_query(&pairs))
    };
    let shown = views.len() as i64;
    Ok(page.render(
        "admin_projects.html",
        context! {
            page => "admin-projects",
            projects => views,
            q => q,
            total => total,
            from => if shown == 0 { 0 } else { offset + 1 },
            to => offset + shown,
            prev => (offset > 0).then(|| page_link((offset - limit).max(0))),
            next => (offset + limit < total).then(|| page_link(offset + limit)),
        },
    ))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::super::i18n::CATALOGUE;
    use super::super::tests::{body_text, location, test_hub, ADMIN_PASSWORD};
    use super::*;
    use crate::domain::projects::ProjectRequest;

    #[test]
    fn the_list_keeps_known_words_and_falls_back_on_unknown_ones() {
        let q = |pairs: &[(&str, &str)]| {
            ListQuery::read(
                &pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>(),
            )
        };
        let read = q(&[("q", " 模型 "), ("sort", "stars"), ("filter", "mine")]);
        assert_eq!(read.q, "模型");
        assert_eq!(
            read.href("starred"),
            "/hub/projects?q=%E6%A8%A1%E5%9E%8B&sort=stars&filter=starred"
        );
        let read = q(&[("sort", "name"), ("filter", "x"), ("offset", "-3")]);
        assert_eq!(read.sort, "updated");
        assert_eq!(read.filter, "all");
        assert_eq!(read.offset, 0);
        assert_eq!(read.href("all"), "/hub/projects");
    }

    #[tokio::test]
    async fn the_projects_pages_need_a_login_hide_private_ones_and_render_in_both_languages() {
        let t = test_hub(|_| {}).await;
        let anonymous = Default::default();
        for path in [
            "/hub/projects",
            "/hub/projects/new",
            "/hub/projects/alice/p",
        ] {
            let r = t.get(&anonymous, path).await;
            assert_eq!(r.status(), StatusCode::FOUND, "{path}");
            assert!(location(&r).starts_with("/hub/login?next="), "{path}");
        }
        t.create_user("alice", "alice-password-1").await;
        t.create_user("bob", "bob-password-12").await;
        let alice = t.hub.store.user("alice").await.unwrap().unwrap();
        let viewer = Viewer {
            user: alice,
            admin: false,
        };
        projects::create(
            &t.hub,
            &viewer,
            ProjectRequest {
                name: Some("模型".into()),
                ..ProjectRequest::default()
            },
        )
        .await
        .unwrap();
        projects::create(
            &t.hub,
            &viewer,
            ProjectRequest {
                name: Some("secret".into()),
                ..ProjectRequest::default()
            },
        )
        .await
        .unwrap();
        let jar = t.login("admin", ADMIN_PASSWORD).await;
        for (lang, title) in [("en", "Projects"), ("zh", "项目")] {
            let mut jar = jar.clone();
            jar.0.insert("xiji-lang".into(), lang.into());
            for (path, marker) in [
                ("/hub/projects?q=%3Cb%3E&sort=stars", r#"id="project-list""#),
                ("/hub/projects/new", r#"id="project-new-form""#),
                ("/hub/projects/alice/%E6%A8%A1%E5%9E%8B", r#"id="project""#),
            ] {
                let r = t.get(&jar, path).await;
                assert_eq!(r.status(), StatusCode::OK, "{path} {lang}");
                let html = body_text(r).await;
                assert!(html.contains(marker), "{path} {lang}: {html}");
                assert!(html.contains(title), "{path} {lang}");
                assert!(html.contains("/hub/static/projects.js?v="), "{path}");
                assert!(!html.contains("<b>"), "{path}: the search is escaped");
            }
        }
        // A private project bob may not see is the same 404 page as a missing one.
        let bob = t.login("bob", "bob-password-12").await;
        let mut texts = Vec::new();
        for path in ["/hub/projects/alice/secret", "/hub/projects/alice/nothing"] {
            let r = t.get(&bob, path).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            let html = body_text(r).await;
            assert!(!html.contains(r#"id="project""#), "{path}: {html}");
            texts.push(html.replace("secret", "nothing"));
        }
        assert_eq!(texts[0], texts[1], "the two 404 pages differ");
    }

    #[tokio::test]
    async fn administrators_find_every_project_private_ones_too_and_others_get_403() {
        let t = test_hub(|_| {}).await;
        t.create_user("alice", "alice-password-1").await;
        let alice = t.hub.store.user("alice").await.unwrap().unwrap();
        let viewer = Viewer {
            user: alice,
            admin: false,
        };
        for name in ["secret-model", "other"] {
            projects::create(
                &t.hub,
                &viewer,
                ProjectRequest {
                    name: Some(name.into()),
                    ..ProjectRequest::default()
                },
            )
            .await
            .unwrap();
        }
        let alice_jar = t.login("alice", "alice-password-1").await;
        assert_eq!(
            t.get(&alice_jar, "/hub/admin/projects").await.status(),
            StatusCode::FORBIDDEN
        );
        let jar = t.login("admin", ADMIN_PASSWORD).await;
        for (lang, title) in [("en", "Projects"), ("zh", "项目管理")] {
            let mut jar = jar.clone();
            jar.0.insert("xiji-lang".into(), lang.into());
            let r = t.get(&jar, "/hub/admin/projects?q=secret").await;
            assert_eq!(r.status(), StatusCode::OK);
            let html = body_text(r).await;
            assert!(html.contains(title), "{lang}: {html}");
            assert!(
                html.contains(r#"data-project="alice/secret-model""#),
                "{html}"
            );
            assert!(
                !html.contains(r#"data-project="alice/other""#),
                "the search applies"
            );
            assert!(html.contains("/hub/api/projects/alice/secret-model/export"));
            assert!(html.contains("/hub/static/admin_projects.js?v="));
        }
    }

    /// Every key `admin_projects.js` asks for (`t('…')`) is in the catalogue.
    #[test]
    fn every_message_key_of_the_admin_projects_script_exists() {
        let keys: std::collections::BTreeSet<&str> = CATALOGUE.iter().map(|m| m.0).collect();
        let script = include_str!("../../static/admin_projects.js");
        let used: Vec<String> = script
            .match_indices("t('")
            // `closest('tr')` is no message.
            .filter(|(i, _)| {
                let before = script[..*i].chars().last().unwrap_or(' ');
                !(before.is_ascii_alphanumeric() || before == '_' || before == '.')
            })
            .map(|(i, _)| {
                script[i + 3..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect();
        assert!(used.len() >= 5, "the scan found too little: {used:?}");
        let missing: Vec<_> = used.iter().filter(|k| !keys.contains(k.as_str())).collect();
        assert!(missing.is_empty(), "missing message keys: {missing:?}");
    }

    /// Every key `projects.js` and `project_files.js` ask for (`t('…')`) is in the catalogue.
    #[test]
    fn every_message_key_of_the_projects_script_exists() {
        let keys: std::collections::BTreeSet<&str> = CATALOGUE.iter().map(|m| m.0).collect();
        let script = concat!(
            include_str!("../../static/projects.js"),
            include_str!("../../static/project_files.js")
        );
        let mut used = Vec::new();
        for (i, _) in script.match_indices("t('") {
            let before = script[..i].chars().last().unwrap_or(' ');
            if before.is_ascii_alphanumeric() || before == '_' || before == '.' {
                continue;
            }
            let key: String = script[i + 3..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !key.ends_with('_') {
                used.push(key);
            }
        }
        assert!(used.len() > 15, "the scan found too little: {used:?}");
        let missing: Vec<_> = used.iter().filter(|k| !keys.contains(k.as_str())).collect();
        assert!(missing.is_empty(), "missing message keys: {missing:?}");
    }
}
