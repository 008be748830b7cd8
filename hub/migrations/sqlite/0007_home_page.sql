-- The home page's texts as administrators write them, one row per page language ('en', 'zh'):
-- a title, the content below it and the footer of every page (both Markdown, rendered safe).
-- An empty text falls back to the other language's, then to the hub's built-in one.
CREATE TABLE home_page_texts (
    lang TEXT PRIMARY KEY,            -- 'en' | 'zh'
    title TEXT NOT NULL DEFAULT '',
    content TEXT NOT NULL DEFAULT '',
    footer TEXT NOT NULL DEFAULT '',
    updated BIGINT NOT NULL,
    updated_by TEXT                   -- the administrator's name, kept if the account goes
);
