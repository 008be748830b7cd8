//! `/hub/admin/home-page`: administrators write the home page's title, content and footer in
//! English and in Chinese (the rules are `domain/home_page.rs`); and the footer every page
//! shows in its reader's language.
//!
//! The form is posted with the XSRF token, then a redirect back with a message; refused texts
//! (too long) are shown again as typed, with the reason and a 400.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use minijinja::context;
use serde::Serialize;

use super::auth::{check_xsrf, parse_form};
use super::i18n::Lang;
use super::{redirect, PageError, PageRequest};
use crate::clock;
use crate::db::{HomePageTexts, TextLanguage};
use crate::domain::home_page::{self, HomePage};
use crate::domain::{HubError, Services};

/// The texts' language for a page language.
pub(crate) fn text_language(lang: Lang) -> TextLanguage {
    match lang {
        Lang::En => TextLanguage::En,
        Lang::Zh => TextLanguage::Zh,
    }
}

/// The administrators' footer for a reader of `lang`, as safe HTML; `None` (the built-in one)
/// when none is written or it cannot be read: a page never fails for its footer.
pub(crate) async fn footer_html(hub: &Services, lang: Lang) -> Option<String> {
    match home_page::footer_html(&hub.store, text_language(lang)).await {
        Ok(footer) => footer,
        Err(e) => {
            tracing::warn!(error = %e, "the home page's footer could not be read; the built-in one is shown");
            None
        }
    }
}

/// The form's six fields, as typed or stored.
#[derive(Debug, Clone, Default, Serialize)]
struct FormValues {
    en_title: String,
    en_content: String,
    en_footer: String,
    zh_title: String,
    zh_content: String,
    zh_footer: String,
}

impl FormValues {
    fn of(page: &HomePage) -> Self {
        FormValues {
            en_title: page.en.title.clone(),
            en_content: page.en.content.clone(),
            en_footer: page.en.footer.clone(),
            zh_title: page.zh.title.clone(),
            zh_content: page.zh.content.clone(),
            zh_footer: page.zh.footer.clone(),
        }
    }

    fn read(form: &HashMap<String, String>) -> Self {
        let field = |key: &str| form.get(key).cloned().unwrap_or_default();
        FormValues {
            en_title: field("en_title"),
            en_content: field("en_content"),
            en_footer: field("en_footer"),
            zh_title: field("zh_title"),
            zh_content: field("zh_content"),
            zh_footer: field("zh_footer"),
        }
    }

    fn texts(&self) -> (HomePageTexts, HomePageTexts) {
        (
            HomePageTexts {
                title: self.en_title.clone(),
                content: self.en_content.clone(),
                footer: self.en_footer.clone(),
            },
            HomePageTexts {
                title: self.zh_title.clone(),
                content: self.zh_content.clone(),
                footer: self.zh_footer.clone(),
            },
        )
    }
}

/// The caller's name if they may edit the home page; 403 otherwise.
fn require_admin(page: &PageRequest) -> Result<String, PageError> {
    let (user, caller) = page.require_user()?;
    if home_page::may_edit(&caller.scopes) {
        Ok(user.name.clone())
    } else {
        Err(PageError::status(StatusCode::FORBIDDEN))
    }
}

fn render(
    page: &PageRequest,
    status: StatusCode,
    stored: &HomePage,
    values: &FormValues,
    error: Option<String>,
    saved: bool,
) -> Response {
    page.render_with_status(
        status,
        "admin_home_page.html",
        context! {
            page => "admin-home-page",
            values => values,
            error => error,
            saved => saved,
            updated => stored.updated.map(clock::iso),
            updated_by => stored.updated_by.clone(),
            max_title => home_page::MAX_TITLE_CHARS,
            max_text => home_page::MAX_TEXT_CHARS,
        },
    )
}

/// `GET /hub/admin/home-page[?done=saved]`: the form with the stored texts.
pub(crate) async fn admin_form(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    require_admin(&page)?;
    let stored = home_page::get(&hub.store).await?;
    let saved = query.iter().any(|(k, v)| k == "done" && v == "saved");
    Ok(render(
        &page,
        StatusCode::OK,
        &stored,
        &FormValues::of(&stored),
        None,
        saved,
    ))
}

/// `POST /hub/admin/home-page`: saves the six texts, then back to the form.
pub(crate) async fn admin_save(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let editor = require_admin(&page)?;
    let form = parse_form(&body)?;
    check_xsrf(&headers, &form)?;
    let values = FormValues::read(&form);
    let (en, zh) = values.texts();
    match home_page::save(&hub.store, &editor, en, zh).await {
        Ok(_) => Ok(redirect("/hub/admin/home-page?done=saved")),
        Err(HubError::BadRequest(message)) => {
            let stored = home_page::get(&hub.store).await?;
            Ok(render(
                &page,
                StatusCode::BAD_REQUEST,
                &stored,
                &values,
                Some(message),
                false,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::super::tests::{body_text, form, location, test_hub, ADMIN_PASSWORD};

    #[tokio::test]
    async fn an_administrator_saves_the_texts_and_readers_see_them_in_their_language() {
        let t = test_hub(|_| {}).await;
        t.create_user("ann", "ann-password-42").await;
        let admin = t.login("admin", ADMIN_PASSWORD).await;
        let ann = t.login("ann", "ann-password-42").await;

        // Before any save: the built-in title and footer.
        let html = body_text(t.get(&ann, "/hub/home").await).await;
        assert!(
            html.contains("Xiji · a JupyterHub-compatible compute hub"),
            "{html}"
        );

        // Only administrators reach the form.
        assert_eq!(
            t.get(&ann, "/hub/admin/home-page").await.status(),
            StatusCode::FORBIDDEN
        );
        let r = t.get(&admin, "/hub/admin/home-page").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(body_text(r).await.contains(r#"id="home-page-form""#));

        let xsrf = admin.get("_xsrf").unwrap().to_owned();
        let fields = |en_title: &str| {
            form(&[
                ("_xsrf", xsrf.as_str()),
                ("en_title", en_title),
                ("en_content", "Read the **guide** <script>x</script>"),
                ("en_footer", "© Example University"),
                ("zh_title", "欢迎"),
                ("zh_content", ""),
                ("zh_footer", "© 示例大学"),
            ])
        };
        // A form without the XSRF token is refused.
        let r = t
            .post_form(&admin, "/hub/admin/home-page", "en_title=x".into())
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        // A title too long is a 400 that keeps what was typed.
        let long = "t".repeat(201);
        let r = t
            .post_form(&admin, "/hub/admin/home-page", fields(&long))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let html = body_text(r).await;
        assert!(html.contains("at most 200"), "{html}");
        assert!(html.contains(&long), "the typed title is kept");
        // A good save goes back to the form with a message.
        let r = t
            .post_form(&admin, "/hub/admin/home-page", fields("Welcome"))
            .await;
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(location(&r), "/hub/admin/home-page?done=saved");

        let html = body_text(t.get(&ann, "/hub/home").await).await;
        assert!(html.contains("Welcome"), "{html}");
        assert!(html.contains("<strong>guide</strong>"), "{html}");
        assert!(!html.contains("<script>x"), "the content is safe HTML");
        assert!(html.contains("© Example University"), "{html}");
        // In Chinese: the Chinese title and footer, the English content (no Chinese one).
        let mut zh = ann.clone();
        zh.0.insert("xiji-lang".into(), "zh".into());
        let html = body_text(t.get(&zh, "/hub/home").await).await;
        assert!(html.contains("欢迎"), "{html}");
        assert!(html.contains("<strong>guide</strong>"), "{html}");
        assert!(html.contains("© 示例大学"), "{html}");
        // The footer is on every page, the login page too.
        let html = body_text(t.get(&zh, "/hub/token").await).await;
        assert!(html.contains("© 示例大学"), "{html}");
        let html = body_text(t.get(&Default::default(), "/hub/login").await).await;
        assert!(html.contains("© Example University"), "{html}");
    }
}
