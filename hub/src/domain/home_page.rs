//! The home page (PRODUCT "home page administration"): the title, content and footer that
//! administrators write in English and in Chinese, which of them a reader gets, and what the
//! signed-in home page lists besides the reader's servers — the public projects and datasets
//! with most stars and the reader's own recent projects.
//!
//! A reader gets each text in the page's language; an empty one falls back to the other
//! language's, then (`None` here) to the pages' built-in text. Content and footer are Markdown,
//! given to pages only as safe HTML ([`markdown::to_safe_html`]).

use super::{markdown, HubError, HubResult};
use crate::clock::{self, Micros};
use crate::db::{
    DatasetRow, HomePageTexts, ProjectRow, ProjectSearch, Store, TextLanguage, UserRow,
};
use crate::rbac::ScopeSet;

/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// The longest content or footer, in characters.
pub const MAX_TEXT_CHARS: usize = 20_000;
/// How many projects or datasets each list of the home page shows.
pub const LIST_SIZE: i64 = 6;

/// Whether the caller may change the home page: administrators, as for the image library and
/// the storage pools (JupyterHub's unfiltered `admin:users`).
pub fn may_edit(scopes: &ScopeSet) -> bool {
    scopes.get("admin:users").is_some_and(|g| g.is_unfiltered())
}

/// The home page's texts in both languages, and their last change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HomePage {
    /// The English texts (empty: not written).
    pub en: HomePageTexts,
    /// The Chinese texts (empty: not written).
    pub zh: HomePageTexts,
    /// When an administrator last saved them; `None` before the first save.
    pub updated: Option<Micros>,
    /// Who did.
    pub updated_by: Option<String>,
}

impl HomePage {
    /// The texts of a language.
    pub fn texts(&self, lang: TextLanguage) -> &HomePageTexts {
        match lang {
            TextLanguage::En => &self.en,
            TextLanguage::Zh => &self.zh,
        }
    }

    /// What a reader of `lang` sees: each text in that language, else in the other one; `None`
    /// when neither has it (the page shows its built-in text).
    pub fn shown(&self, lang: TextLanguage) -> ShownTexts {
        let first = self.texts(lang);
        let second = self.texts(other(lang));
        let pick = |get: fn(&HomePageTexts) -> &str| {
            [get(first), get(second)]
                .into_iter()
                .find(|t| !t.is_empty())
                .map(str::to_owned)
        };
        ShownTexts {
            title: pick(|t| &t.title),
            content_html: pick(|t| &t.content).map(|m| markdown::to_safe_html(&m)),
            footer_html: pick(|t| &t.footer).map(|m| markdown::to_safe_html(&m)),
        }
    }
}

/// The texts one reader sees, ready for a page.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShownTexts {
    /// The title (plain text).
    pub title: Option<String>,
    /// The content as safe HTML.
    pub content_html: Option<String>,
    /// The footer as safe HTML.
    pub footer_html: Option<String>,
}

fn other(lang: TextLanguage) -> TextLanguage {
    match lang {
        TextLanguage::En => TextLanguage::Zh,
        TextLanguage::Zh => TextLanguage::En,
    }
}

fn language_name(lang: TextLanguage) -> &'static str {
    match lang {
        TextLanguage::En => "English",
        TextLanguage::Zh => "Chinese",
    }
}

/// The stored texts (empty before an administrator's first save).
pub async fn get(store: &Store) -> HubResult<HomePage> {
    let mut page = HomePage::default();
    for row in store.home_page_texts().await? {
        let texts = HomePageTexts {
            title: row.title,
            content: row.content,
            footer: row.footer,
        };
        match row.lang {
            TextLanguage::En => page.en = texts,
            TextLanguage::Zh => page.zh = texts,
        }
        if page.updated.is_none_or(|u| u < row.updated) {
            page.updated = Some(row.updated);
            page.updated_by = row.updated_by;
        }
    }
    Ok(page)
}

/// The footer of every page for a reader of `lang`, as safe HTML; `None`: the built-in one.
pub async fn footer_html(store: &Store, lang: TextLanguage) -> HubResult<Option<String>> {
    let footers = store.home_page_footers().await?;
    let of = |l: TextLanguage| {
        footers
            .iter()
            .find(|(k, f)| *k == l && !f.is_empty())
            .map(|(_, f)| f.as_str())
    };
    Ok(of(lang)
        .or_else(|| of(other(lang)))
        .map(markdown::to_safe_html))
}

/// Trims a text and checks its length and characters; the message names the field.
fn checked(lang: TextLanguage, field: &str, text: &str, max: usize) -> HubResult<String> {
    let text = text.trim();
    let what = format!("The {} {field}", language_name(lang));
    let chars = text.chars().count();
    if chars > max {
        return Err(HubError::BadRequest(format!(
            "{what} is {chars} characters long: at most {max} are allowed"
        )));
    }
    // A title is one line; Markdown keeps its line breaks and tabs. NUL is refused everywhere
    // (PostgreSQL cannot store it).
    let bad = |c: char| {
        if field == "title" {
            c.is_control()
        } else {
            c.is_control() && !matches!(c, '\n' | '\r' | '\t')
        }
    };
    if text.chars().any(bad) {
        return Err(HubError::BadRequest(format!(
            "{what} cannot contain control characters"
        )));
    }
    Ok(text.to_owned())
}

/// Replaces the texts of both languages (trimmed; empty ones fall back when shown), as
/// `editor` (the administrator's or service's name). A text
/// over its limit or with control characters is a 400 naming it, and nothing is saved.
pub async fn save(
    store: &Store,
    editor: &str,
    en: HomePageTexts,
    zh: HomePageTexts,
) -> HubResult<HomePage> {
    let mut checked_texts = Vec::with_capacity(2);
    for (lang, texts) in [(TextLanguage::En, en), (TextLanguage::Zh, zh)] {
        let texts = HomePageTexts {
            title: checked(lang, "title", &texts.title, MAX_TITLE_CHARS)?,
            content: checked(lang, "content", &texts.content, MAX_TEXT_CHARS)?,
            footer: checked(lang, "footer", &texts.footer, MAX_TEXT_CHARS)?,
        };
        checked_texts.push((lang, texts));
    }
    store
        .set_home_page_texts(&checked_texts, editor, clock::now())
        .await?;
    tracing::info!(editor, "home page texts saved");
    get(store).await
}

/// The lists of the home page.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    /// Public projects, most starred first.
    pub projects: Vec<ProjectRow>,
    /// Public datasets, most starred first.
    pub datasets: Vec<DatasetRow>,
    /// The reader's own projects and those they are a member of, last changed first.
    pub recent: Vec<ProjectRow>,
}

/// What the home page lists for `reader`, [`LIST_SIZE`] of each.
pub async fn lists(store: &Store, reader: &UserRow) -> HubResult<Lists> {
    let (recent, _) = store
        .search_projects(&ProjectSearch {
            viewer_id: reader.id,
            admin: false,
            words: Vec::new(),
            owner: None,
            mine: true,
            starred: false,
            by_stars: false,
            offset: 0,
            limit: LIST_SIZE,
        })
        .await?;
    Ok(Lists {
        projects: store.most_starred_public_projects(LIST_SIZE).await?,
        datasets: store.most_starred_public_datasets(LIST_SIZE).await?,
        recent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::stores;
    use crate::db::{DatasetVisibility, ProjectFields};

    fn texts(title: &str, content: &str, footer: &str) -> HomePageTexts {
        HomePageTexts {
            title: title.into(),
            content: content.into(),
            footer: footer.into(),
        }
    }

    #[test]
    fn each_text_falls_back_to_the_other_language_then_to_none() {
        let page = HomePage {
            en: texts("Welcome", "Read *this*", ""),
            zh: texts("", "", "© 学校"),
            ..HomePage::default()
        };
        let zh = page.shown(TextLanguage::Zh);
        assert_eq!(zh.title.as_deref(), Some("Welcome"));
        assert_eq!(
            zh.content_html.as_deref(),
            Some("<p>Read <em>this</em></p>\n")
        );
        assert_eq!(zh.footer_html.as_deref(), Some("<p>© 学校</p>\n"));
        assert_eq!(
            HomePage::default().shown(TextLanguage::En),
            ShownTexts::default()
        );
    }

    #[test]
    fn the_content_and_footer_are_safe_html() {
        let page = HomePage {
            en: texts(
                "<b>t</b>",
                "<script>alert(1)</script>",
                "[x](javascript:alert(1))",
            ),
            ..HomePage::default()
        };
        let shown = page.shown(TextLanguage::En);
        // The title stays text: the template escapes it.
        assert_eq!(shown.title.as_deref(), Some("<b>t</b>"));
        assert!(!shown.content_html.unwrap().contains("<script"));
        assert!(!shown.footer_html.unwrap().contains("javascript:"));
    }

    #[tokio::test]
    async fn an_administrator_saves_both_languages_and_too_long_texts_are_refused_on_both_engines()
    {
        for (store, _dir) in stores().await {
            let engine = store.engine();
            let admin = store.create_user("root", true, 1).await.unwrap();
            let saved = save(
                &store,
                &admin.name,
                texts("  Welcome  ", "# Hello\n\n- one", "© School"),
                texts("欢迎", "", ""),
            )
            .await
            .unwrap();
            assert_eq!(saved.en.title, "Welcome", "{engine:?}: trimmed");
            assert_eq!(saved.zh.title, "欢迎");
            assert_eq!(saved.updated_by.as_deref(), Some("root"));
            assert!(saved.updated.is_some());
            assert_eq!(get(&store).await.unwrap(), saved);
            assert_eq!(
                footer_html(&store, TextLanguage::Zh)
                    .await
                    .unwrap()
                    .as_deref(),
                Some("<p>© School</p>\n"),
                "the Chinese reader gets the English footer"
            );

            // 200 Chinese characters are a title; 201 are not.
            let long_title = "标".repeat(MAX_TITLE_CHARS + 1);
            let too_long = [
                (
                    texts(&long_title, "", ""),
                    texts("", "", ""),
                    "English title",
                ),
                (
                    texts("", "", ""),
                    texts("", &"x".repeat(MAX_TEXT_CHARS + 1), ""),
                    "Chinese content",
                ),
                (
                    texts("", "", &"页".repeat(MAX_TEXT_CHARS + 1)),
                    texts("", "", ""),
                    "English footer",
                ),
                (texts("a\0b", "", ""), texts("", "", ""), "English title"),
                (texts("", "a\0b", ""), texts("", "", ""), "English content"),
            ];
            for (en, zh, named) in too_long {
                match save(&store, &admin.name, en, zh).await {
                    Err(HubError::BadRequest(m)) => assert!(m.contains(named), "{m}"),
                    other => panic!("{engine:?}: {named} gave {other:?}"),
                }
            }
            assert!(save(
                &store,
                &admin.name,
                texts(&"标".repeat(MAX_TITLE_CHARS), "line\n\ttab", ""),
                texts("", "", "")
            )
            .await
            .is_ok());
            assert_eq!(get(&store).await.unwrap().en.content, "line\n\ttab");
            store.close().await;
        }
    }

    #[tokio::test]
    async fn the_lists_hold_public_ones_and_the_readers_own_recent_projects_on_both_engines() {
        for (store, _dir) in stores().await {
            let ann = store.create_user("ann", false, 1).await.unwrap();
            let ben = store.create_user("ben", false, 1).await.unwrap();
            let fields = |name: &str, visibility| ProjectFields {
                name: name.into(),
                description: String::new(),
                tags: String::new(),
                image_id: None,
                visibility,
            };
            for i in 0..8 {
                store
                    .create_project(
                        ann.id,
                        &fields(&format!("p{i}"), DatasetVisibility::Private),
                        &[],
                        None,
                        10 + i,
                    )
                    .await
                    .unwrap();
            }
            let public = store
                .create_project(
                    ben.id,
                    &fields("shared", DatasetVisibility::Public),
                    &[],
                    None,
                    5,
                )
                .await
                .unwrap();
            let for_ann = lists(&store, &ann).await.unwrap();
            let recent: Vec<_> = for_ann.recent.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(recent, ["p7", "p6", "p5", "p4", "p3", "p2"]);
            let top: Vec<_> = for_ann.projects.iter().map(|p| p.id).collect();
            assert_eq!(top, [public.id], "private ones are never listed");
            assert!(for_ann.datasets.is_empty());
            let for_ben = lists(&store, &ben).await.unwrap();
            assert_eq!(for_ben.recent.len(), 1);
            store.close().await;
        }
    }
}
