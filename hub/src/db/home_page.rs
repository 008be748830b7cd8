//! The home page: the texts administrators write for it (per page language) and the public
//! projects and datasets it shows first (most stars).

use super::{DatasetRow, ProjectRow, Result, Store};
use crate::clock::Micros;

stored_words! {
    /// A language the home page's texts are written in (the pages' two languages).
    pub enum TextLanguage ("language") {
        /// English.
        En = "en",
        /// Simplified Chinese.
        Zh = "zh",
    }
}

/// The home page's texts in one language, as stored; empty means "not written".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HomePageTexts {
    /// The page's title.
    pub title: String,
    /// Markdown shown under the title.
    pub content: String,
    /// Markdown shown at the foot of every page.
    pub footer: String,
}

/// A stored row of texts, with who last changed them and when.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HomePageTextsRow {
    /// The language.
    #[sqlx(try_from = "String")]
    pub lang: TextLanguage,
    /// The page's title.
    pub title: String,
    /// Markdown shown under the title.
    pub content: String,
    /// Markdown shown at the foot of every page.
    pub footer: String,
    /// Last change.
    pub updated: Micros,
    /// The administrator who made it.
    pub updated_by: Option<String>,
}

impl Store {
    /// The stored texts of every language that has some (none before the first save).
    pub async fn home_page_texts(&self) -> Result<Vec<HomePageTextsRow>> {
        Ok(sqlx::query_as::<_, HomePageTextsRow>(
            "SELECT lang, title, content, footer, updated, updated_by FROM home_page_texts \
             ORDER BY lang",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every stored language's footer, without the rest (every page shows one).
    pub async fn home_page_footers(&self) -> Result<Vec<(TextLanguage, String)>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT lang, footer FROM home_page_texts ORDER BY lang")
                .fetch_all(&self.pool)
                .await?;
        // A word this hub does not know (written by a newer one) is skipped.
        Ok(rows
            .into_iter()
            .filter_map(|(lang, footer)| TextLanguage::parse(&lang).ok().map(|l| (l, footer)))
            .collect())
    }

    /// Replaces the texts of the given languages in one transaction.
    pub async fn set_home_page_texts(
        &self,
        texts: &[(TextLanguage, HomePageTexts)],
        by: &str,
        now: Micros,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for (lang, t) in texts {
            sqlx::query("DELETE FROM home_page_texts WHERE lang = $1")
                .bind(lang.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO home_page_texts (lang, title, content, footer, updated, updated_by) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(lang.as_str())
            .bind(t.title.as_str())
            .bind(t.content.as_str())
            .bind(t.footer.as_str())
            .bind(now)
            .bind(by)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The public projects with most stars (then most recently changed), at most `limit`.
    pub async fn most_starred_public_projects(&self, limit: i64) -> Result<Vec<ProjectRow>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT p.id FROM projects p WHERE p.visibility = 'public' ORDER BY \
             (SELECT COUNT(*) FROM project_stars s WHERE s.project_id = p.id) DESC, \
             p.updated DESC, p.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        // Read through `project` so the row keeps one definition; a row deleted in between is
        // left out.
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = self.project(id).await? {
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// The public datasets with most stars (then most recently changed), at most `limit`.
    pub async fn most_starred_public_datasets(&self, limit: i64) -> Result<Vec<DatasetRow>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT d.id FROM datasets d WHERE d.visibility = 'public' ORDER BY \
             (SELECT COUNT(*) FROM dataset_stars s WHERE s.dataset_id = d.id) DESC, \
             d.updated DESC, d.id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(row) = self.dataset(id).await? {
                rows.push(row);
            }
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::stores;
    use crate::db::{DatasetFields, DatasetVisibility, ProjectFields};

    fn texts(title: &str, content: &str, footer: &str) -> HomePageTexts {
        HomePageTexts {
            title: title.into(),
            content: content.into(),
            footer: footer.into(),
        }
    }

    #[tokio::test]
    async fn home_page_texts_are_replaced_per_language_with_who_and_when_on_both_engines() {
        for (store, _dir) in stores().await {
            assert!(store.home_page_texts().await.unwrap().is_empty());
            assert!(store.home_page_footers().await.unwrap().is_empty());
            store
                .set_home_page_texts(
                    &[
                        (TextLanguage::En, texts("Welcome", "# Hi", "© School")),
                        (TextLanguage::Zh, texts("欢迎", "", "")),
                    ],
                    "admin",
                    5,
                )
                .await
                .unwrap();
            store
                .set_home_page_texts(
                    &[(TextLanguage::Zh, texts("欢迎使用", "**你好**", "© 学校"))],
                    "root",
                    7,
                )
                .await
                .unwrap();
            let rows = store.home_page_texts().await.unwrap();
            assert_eq!(rows.len(), 2, "{:?}", store.engine());
            assert_eq!(rows[0].lang, TextLanguage::En);
            assert_eq!(
                (
                    rows[0].title.as_str(),
                    rows[0].updated,
                    rows[0].updated_by.as_deref()
                ),
                ("Welcome", 5, Some("admin"))
            );
            assert_eq!(
                (
                    rows[1].content.as_str(),
                    rows[1].updated,
                    rows[1].updated_by.as_deref()
                ),
                ("**你好**", 7, Some("root"))
            );
            assert_eq!(
                store.home_page_footers().await.unwrap(),
                [
                    (TextLanguage::En, "© School".to_owned()),
                    (TextLanguage::Zh, "© 学校".to_owned())
                ]
            );
            store.close().await;
        }
    }

    #[tokio::test]
    async fn only_public_projects_and_datasets_are_listed_most_starred_first_on_both_engines() {
        for (store, _dir) in stores().await {
            let ann = store.create_user("ann", false, 1).await.unwrap();
            let ben = store.create_user("ben", false, 1).await.unwrap();
            let project = |name: &str, visibility| ProjectFields {
                name: name.into(),
                description: String::new(),
                tags: String::new(),
                image_id: None,
                visibility,
            };
            let dataset = |name: &str, visibility| DatasetFields {
                name: name.into(),
                description: String::new(),
                tags: String::new(),
                license: String::new(),
                visibility,
            };
            let mut projects = Vec::new();
            let mut datasets = Vec::new();
            for (i, (name, visibility)) in [
                ("quiet", DatasetVisibility::Public),
                ("loved", DatasetVisibility::Public),
                ("hidden", DatasetVisibility::Private),
                ("liked", DatasetVisibility::Public),
            ]
            .into_iter()
            .enumerate()
            {
                let now = 10 + i as i64;
                projects.push(
                    store
                        .create_project(ann.id, &project(name, visibility), &[], None, now)
                        .await
                        .unwrap(),
                );
                datasets.push(
                    store
                        .create_dataset(ann.id, &dataset(name, visibility), now)
                        .await
                        .unwrap(),
                );
            }
            // loved: 2 stars, liked: 1, hidden (private): 2, quiet: none.
            for (index, users) in [
                (1, vec![ann.id, ben.id]),
                (3, vec![ben.id]),
                (2, vec![ann.id, ben.id]),
            ] {
                for user in users {
                    store
                        .set_project_star(projects[index].id, user, true, 20)
                        .await
                        .unwrap();
                    store
                        .set_dataset_star(datasets[index].id, user, true, 20)
                        .await
                        .unwrap();
                }
            }
            let top_projects = store.most_starred_public_projects(6).await.unwrap();
            assert_eq!(
                top_projects
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>(),
                ["loved", "liked", "quiet"],
                "{:?}",
                store.engine()
            );
            assert_eq!(top_projects[0].stars, 2);
            let top_datasets = store.most_starred_public_datasets(2).await.unwrap();
            assert_eq!(
                top_datasets
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>(),
                ["loved", "liked"]
            );
            assert_eq!(top_datasets[1].stars, 1);
            store.close().await;
        }
    }
}
