//! The `next` parameter of the login, language and spawn pages: where to go afterwards. It is
//! user input, so the hub redirects only to targets that stay on this site (no open redirect).

/// `next` if it stays on this site, else `None`: a path that starts with exactly one `/` (not
/// `//` or `/\`, which browsers read as another host), has no `\` anywhere (browsers treat it
/// as `/`) and no control characters (a browser drops tabs and newlines, which could turn the
/// rest into `//host`). Absolute URLs (`https://…`) and schemes (`javascript:`) never start
/// with `/`, so they are refused too.
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control);
    ok.then_some(next)
}

/// The last `next` of a query string, if it is safe (see [`safe_next`]).
pub(crate) fn next_from_query(query: &[(String, String)]) -> Option<String> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == "next")
        .and_then(|(_, v)| safe_next(v))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::{next_from_query, safe_next};

    #[test]
    fn safe_next_accepts_only_local_paths() {
        assert_eq!(safe_next("/hub/home"), Some("/hub/home"));
        assert_eq!(
            safe_next("/user/alice/lab?x=1"),
            Some("/user/alice/lab?x=1")
        );
        assert_eq!(
            safe_next("/user/a/lab?x=%2F%2F"),
            Some("/user/a/lab?x=%2F%2F")
        );
        for bad in [
            "",
            "hub/home",
            "//evil",
            "//evil.example",
            "/\\evil",
            "\\\\evil",
            "http://x/",
            "https://evil",
            "javascript:alert(1)",
            "/a\nb",
            "/a\tb",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_last_next_of_a_query_is_used_only_if_safe() {
        let query = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(next_from_query(&query(&[])), None);
        assert_eq!(
            next_from_query(&query(&[("next", "/a"), ("x", "1"), ("next", "/b")])).as_deref(),
            Some("/b")
        );
        assert_eq!(
            next_from_query(&query(&[("next", "/a"), ("next", "//evil.example")])),
            None
        );
    }
}
