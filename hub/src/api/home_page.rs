//! `/hub/api/home-page`: the home page's title, content and footer in English and Chinese (a
//! Xiji extension; see `docs/home-page.md`). Anyone signed in reads them; administrators
//! replace them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json as j, Value};

use super::{body_as, json, ApiCaller, JsonBody};
use crate::clock;
use crate::db::HomePageTexts;
use crate::domain::home_page::{self, HomePage};
use crate::domain::Services;
use crate::error::ApiError;

/// One language's texts as `PUT` takes them; a missing text is empty.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextsBody {
    #[serde(default)]
    title: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    footer: String,
}

impl From<TextsBody> for HomePageTexts {
    fn from(b: TextsBody) -> Self {
        HomePageTexts {
            title: b.title,
            content: b.content,
            footer: b.footer,
        }
    }
}

/// The body of `PUT /home-page`: both languages (a missing one is emptied).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HomePageBody {
    #[serde(default)]
    en: TextsBody,
    #[serde(default)]
    zh: TextsBody,
}

fn texts(t: &HomePageTexts) -> Value {
    j!({"title": t.title, "content": t.content, "footer": t.footer})
}

fn model(page: &HomePage) -> Value {
    j!({
        "en": texts(&page.en),
        "zh": texts(&page.zh),
        "updated": page.updated.map(clock::iso),
        "updated_by": page.updated_by,
        "limits": {
            "title": home_page::MAX_TITLE_CHARS,
            "content": home_page::MAX_TEXT_CHARS,
            "footer": home_page::MAX_TEXT_CHARS,
        },
    })
}

/// `GET /home-page`: the stored texts (empty ones fall back when shown).
pub async fn get(
    State(hub): State<Arc<Services>>,
    _caller: ApiCaller,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        model(&home_page::get(&hub.store).await?),
    ))
}

/// `PUT /home-page`: replaces both languages' texts (administrators only).
pub async fn put(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    if !home_page::may_edit(&caller.0.scopes) {
        return Err(ApiError::forbidden(
            "Only administrators may change the home page",
        ));
    }
    let body: HomePageBody = body_as(body)?
        .ok_or_else(|| ApiError::bad_request("The body must be the texts as JSON"))?;
    let page = home_page::save(
        &hub.store,
        caller.0.principal.name(),
        body.en.into(),
        body.zh.into(),
    )
    .await?;
    Ok(json(StatusCode::OK, model(&page)))
}
