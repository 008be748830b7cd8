//! The datasets pages: the list with search, sort and the "mine"/"starred" tabs
//! (`/hub/datasets`), the form that makes a new one (`/hub/datasets/new`) and a dataset's own
//! page (`/hub/datasets/{owner}/{name}`: its description, files, uploads and, for its owner, its
//! settings and shares).
//!
//! The handlers check that someone is logged in (and, for a dataset's page, that they may read
//! it: the same 404 as the API otherwise) and hand the page what it needs to find the dataset;
//! the page's script (`static/datasets.js`) reads and changes everything through
//! `/hub/api/datasets`, with the login cookie and the XSRF header, so the pages and the API
//! answer to one set of rules.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use super::cluster::number_text;
use super::{encode_query, PageError, PageRequest};
use crate::domain::access::administers_installation;
use crate::domain::datasets::{self, Access, Viewer};
use crate::domain::Services;

/// How many datasets a page of the list shows.
const PAGE_SIZE: u64 = 24;

/// The list's tabs: every dataset the caller may read, their own, the ones they starred.
const FILTERS: [&str; 3] = ["all", "mine", "starred"];

/// The orders the API offers.
const SORTS: [&str; 3] = ["updated", "stars", "name"];

/// What the list was asked for, as the search form and the script read it.
#[derive(Debug, Clone, Default, Serialize)]
struct ListQuery {
    q: String,
    sort: String,
    filter: String,
    tag: String,
    /// Only this owner's datasets (the "mine" tab is the caller's).
    owner: String,
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
            tag: last("tag"),
            owner: last("owner"),
            offset: last("offset").parse().unwrap_or(0),
        }
    }

    /// The list's address with `filter` and `tag` changed, the search and order kept.
    fn href(&self, filter: &str, tag: &str) -> String {
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
        if !tag.is_empty() {
            pairs.push(("tag", tag));
        }
        if !self.owner.is_empty() && filter != "mine" {
            pairs.push(("owner", self.owner.as_str()));
        }
        if pairs.is_empty() {
            "/hub/datasets".to_owned()
        } else {
            format!("/hub/datasets?{}", encode_query(&pairs))
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

/// `GET /hub/datasets`: the datasets the caller may read (administrators: all of them).
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
            href: query.href(filter, &query.tag),
            current: *filter == query.filter,
        })
        .collect();
    Ok(page.render(
        "datasets.html",
        context! {
            page => "datasets",
            query => &query,
            tabs => tabs,
            sorts => SORTS,
            untagged_href => query.href(&query.filter, ""),
            unowned_href => ListQuery { owner: String::new(), ..query.clone() }.href(&query.filter, &query.tag),
            page_size => PAGE_SIZE,
        },
    ))
}

/// `2 MB`, `512 KB`: a size as the page's script writes them (units of 1024).
fn bytes_text(bytes: u64) -> String {
    // Exact enough for display: sizes are far below 2^53.
    if bytes >= 1 << 20 {
        format!("{} MB", number_text(bytes as f64 / f64::from(1u32 << 20)))
    } else {
        format!("{} KB", number_text(bytes as f64 / 1024.0))
    }
}

/// The largest cover image, as the forms say it and check it before sending.
fn cover_limit(hub: &Services) -> minijinja::Value {
    let bytes = hub.config.datasets.cover_max_kb.saturating_mul(1024);
    context! { bytes => bytes, text => bytes_text(bytes) }
}

/// `GET /hub/datasets/new`: the form of a new dataset.
pub(crate) async fn new_form(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
) -> Result<Response, PageError> {
    page.require_user()?;
    Ok(page.render(
        "dataset_new.html",
        context! { page => "dataset-new", cover_max => cover_limit(&hub) },
    ))
}

/// `GET /hub/datasets/{owner}/{name}`: one dataset, if the caller may read it (a 404 page
/// otherwise, whether or not it exists, as the API answers).
pub(crate) async fn show(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let (user, caller) = page.require_user()?;
    // Administrators (unfiltered `admin:users`) reach every dataset, as in the API.
    let viewer = Viewer {
        user: user.clone(),
        admin: administers_installation(&caller.scopes),
    };
    datasets::reach(&hub, &viewer, &owner, &name, Access::Read).await?;
    Ok(page.render(
        "dataset.html",
        context! {
            page => "dataset",
            cover_max => cover_limit(&hub),
            owner_href => format!("/hub/datasets?{}", encode_query(&[("owner", &owner)])),
            owner => owner,
            name => name,
        },
    ))
}

#[cfg(test)]
mod tests {
    use axum::http::{header, StatusCode};

    use super::super::i18n::CATALOGUE;
    use super::super::tests::{body_text, location, test_hub, ADMIN_PASSWORD};
    use super::*;
    use crate::domain::datasets::DatasetRequest;

    #[test]
    fn sizes_read_as_the_script_writes_them() {
        assert_eq!(bytes_text(2048 * 1024), "2 MB");
        assert_eq!(bytes_text(512 * 1024), "512 KB");
        assert_eq!(bytes_text(1536 * 1024), "1.5 MB");
    }

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
        let read = q(&[("q", " 天气 "), ("sort", "stars"), ("filter", "mine")]);
        assert_eq!(read.q, "天气");
        assert_eq!(read.sort, "stars");
        assert_eq!(read.filter, "mine");
        let read = q(&[("sort", "drop table"), ("filter", "x"), ("offset", "-3")]);
        assert_eq!(read.sort, "updated");
        assert_eq!(read.filter, "all");
        assert_eq!(read.offset, 0);
        assert_eq!(read.href("starred", ""), "/hub/datasets?filter=starred");
        let read = q(&[("q", "a b"), ("sort", "name")]);
        assert_eq!(
            read.href("all", "天气"),
            "/hub/datasets?q=a+b&sort=name&tag=%E5%A4%A9%E6%B0%94"
        );
    }

    #[tokio::test]
    async fn the_datasets_pages_need_a_login_and_render_in_both_languages() {
        let t = test_hub(|_| {}).await;
        let anonymous = Default::default();
        for path in [
            "/hub/datasets",
            "/hub/datasets/new",
            "/hub/datasets/alice/weather",
        ] {
            let r = t.get(&anonymous, path).await;
            assert_eq!(r.status(), StatusCode::FOUND, "{path}");
            assert!(location(&r).starts_with("/hub/login?next="), "{path}");
        }
        t.create_user("alice", "alice-password-1").await;
        let alice = t.hub.store.user("alice").await.unwrap().unwrap();
        let viewer = Viewer {
            user: alice,
            admin: false,
        };
        datasets::create(
            &t.hub,
            &viewer,
            DatasetRequest {
                name: Some("天气".into()),
                ..DatasetRequest::default()
            },
        )
        .await
        .unwrap();
        let jar = t.login("admin", ADMIN_PASSWORD).await;
        for (lang, title) in [("en", "Datasets"), ("zh", "数据集")] {
            let mut jar = jar.clone();
            jar.0.insert("xiji-lang".into(), lang.into());
            for (path, marker) in [
                ("/hub/datasets?q=%3Cb%3E&sort=stars", r#"id="dataset-list""#),
                ("/hub/datasets/new", r#"id="dataset-new-form""#),
                ("/hub/datasets/alice/%E5%A4%A9%E6%B0%94", r#"id="dataset""#),
            ] {
                let r = t.get(&jar, path).await;
                assert_eq!(r.status(), StatusCode::OK, "{path} {lang}");
                let csp = r
                    .headers()
                    .get(header::CONTENT_SECURITY_POLICY)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
                let html = body_text(r).await;
                assert!(html.contains(marker), "{path} {lang}: {html}");
                assert!(html.contains(title), "{path} {lang}");
                assert!(html.contains("/hub/static/datasets.js?v="), "{path}");
                assert!(!html.contains("<b>"), "{path}: the search is escaped");
            }
        }
        let r = t.get(&jar, "/hub/datasets/alice/%E5%A4%A9%E6%B0%94").await;
        let html = body_text(r).await;
        assert!(html.contains(r#"data-name="天气""#), "{html}");
        assert!(html.contains(r#"data-owner="alice""#), "{html}");
    }

    #[tokio::test]
    async fn a_dataset_page_the_caller_may_not_read_is_the_same_404_as_a_missing_one() {
        let t = test_hub(|_| {}).await;
        t.create_user("alice", "alice-password-1").await;
        t.create_user("bob", "bob-password-12").await;
        let alice = t.hub.store.user("alice").await.unwrap().unwrap();
        let viewer = Viewer {
            user: alice,
            admin: false,
        };
        datasets::create(
            &t.hub,
            &viewer,
            DatasetRequest {
                name: Some("notes".into()),
                ..DatasetRequest::default()
            },
        )
        .await
        .unwrap();
        let bob = t.login("bob", "bob-password-12").await;
        let mut texts = Vec::new();
        for path in ["/hub/datasets/alice/notes", "/hub/datasets/alice/nothing"] {
            let r = t.get(&bob, path).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            let html = body_text(r).await;
            assert!(!html.contains(r#"id="dataset""#), "{path}: {html}");
            texts.push(html.replace("notes", "nothing"));
        }
        assert_eq!(texts[0], texts[1], "the two 404 pages differ");
        // The owner, and an administrator, open it.
        let alice = t.login("alice", "alice-password-1").await;
        let r = t.get(&alice, "/hub/datasets/alice/notes").await;
        assert_eq!(r.status(), StatusCode::OK);
        let admin = t.login("admin", ADMIN_PASSWORD).await;
        let r = t.get(&admin, "/hub/datasets/alice/notes").await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// Every key `datasets.js` and `uploads.js` ask for (`t('…')`) is in the catalogue.
    #[test]
    fn every_message_key_of_the_datasets_script_exists() {
        let keys: std::collections::BTreeSet<&str> = CATALOGUE.iter().map(|m| m.0).collect();
        let script = concat!(
            include_str!("../../static/datasets.js"),
            include_str!("../../static/uploads.js")
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
        assert!(used.len() > 30, "the scan found too little: {used:?}");
        let missing: Vec<_> = used.iter().filter(|k| !keys.contains(k.as_str())).collect();
        assert!(missing.is_empty(), "missing message keys: {missing:?}");
    }
}
