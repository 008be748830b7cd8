//! Markdown written by users (dataset and project descriptions), rendered to HTML that is safe
//! to put in a page: raw HTML is shown as text, images become their text, and links keep only
//! `http`, `https`, `mailto` and in-page targets.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd};

/// Whether a link target may be followed from a page.
fn safe_link(dest: &str) -> bool {
    let lower = dest.trim_start().to_ascii_lowercase();
    match lower.split_once(':') {
        // A scheme: only these; a colon after a `/`, `?` or `#` is not a scheme.
        Some((scheme, _)) if !scheme.contains(['/', '?', '#']) => {
            matches!(scheme, "http" | "https" | "mailto")
        }
        _ => true,
    }
}

/// Safe HTML for a user's Markdown.
pub fn to_safe_html(markdown: &str) -> String {
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let events = Parser::new_ext(markdown, options).filter_map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Some(Event::Text(raw)),
        Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => None,
        Event::Start(Tag::Link {
            link_type,
            dest_url,
            title,
            id,
        }) => {
            let dest_url = if safe_link(&dest_url) {
                dest_url
            } else {
                CowStr::Borrowed("#")
            };
            Some(Event::Start(Tag::Link {
                link_type,
                dest_url,
                title,
                id,
            }))
        }
        other => Some(other),
    });
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

#[cfg(test)]
mod tests {
    use super::to_safe_html;

    #[test]
    fn markdown_renders_headings_lists_and_links() {
        let html = to_safe_html("# MNIST\n\n- *train* set\n- [site](https://example.org)");
        assert!(html.contains("<h1>MNIST</h1>"), "{html}");
        assert!(html.contains("<em>train</em>"), "{html}");
        assert!(
            html.contains("<a href=\"https://example.org\">site</a>"),
            "{html}"
        );
    }

    #[test]
    fn raw_html_and_scripts_are_shown_as_text_never_run() {
        let html = to_safe_html("hi <script>alert(1)</script>\n\n<img src=x onerror=alert(1)>");
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
    }

    #[test]
    fn javascript_and_data_links_lose_their_target() {
        for dest in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            " data:text/html,x",
            "vbscript:x",
        ] {
            let html = to_safe_html(&format!("[x]({dest})"));
            assert!(html.contains("href=\"#\""), "{dest}: {html}");
        }
        assert!(to_safe_html("[x](/hub/datasets)").contains("href=\"/hub/datasets\""));
        assert!(to_safe_html("[x](mailto:a@b.c)").contains("href=\"mailto:a@b.c\""));
    }

    #[test]
    fn images_become_their_alternative_text() {
        let html = to_safe_html("![a cat](https://tracker.example/p.png)");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("a cat"), "{html}");
    }
}
