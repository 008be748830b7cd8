//! Which user, group and server names are acceptable. Names appear in URLs (`/user/{name}/`),
//! cookie names and file paths, so anything that could change a path's meaning is refused.

use super::{HubError, HubResult};

const MAX_NAME: usize = 255;

/// Checks a user or group name; `what` is "user" or "group" for the message.
pub fn check_name(what: &str, name: &str) -> HubResult<()> {
    if name.is_empty() {
        return Err(HubError::BadRequest(format!(
            "Invalid {what} name: the name is empty"
        )));
    }
    if name.len() > MAX_NAME {
        return Err(HubError::BadRequest(format!(
            "Invalid {what} name: longer than {MAX_NAME} bytes"
        )));
    }
    if name == "." || name == ".." {
        return Err(HubError::BadRequest(format!(
            "Invalid {what} name {name:?}: '.' and '..' are not names"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || matches!(c, '/' | '\\' | '?' | '#' | '%'))
    {
        return Err(HubError::BadRequest(format!(
            "Invalid {what} name {name:?}: the character {c:?} is not allowed"
        )));
    }
    if name.trim() != name || name.chars().any(char::is_whitespace) {
        return Err(HubError::BadRequest(format!(
            "Invalid {what} name {name:?}: no whitespace allowed"
        )));
    }
    Ok(())
}

/// JupyterHub lower-cases user names (its default `Authenticator.normalize_username`).
pub fn normalize_user(name: &str) -> String {
    name.to_lowercase()
}

/// Checks a named server's name: like JupyterHub 6, 1–30 of `[a-z0-9-]`, starting with a letter or
/// digit — the name becomes part of URLs, cookie names and, later, container host names.
pub fn check_server_name(name: &str) -> HubResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 30
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.'
        })
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(HubError::BadRequest(format!(
            "Invalid server name {name:?}: use 1-30 lower-case letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_change_a_path_are_refused_with_a_reason() {
        for bad in ["", ".", "..", "a/b", "a\\b", "a\u{7}b", "a b", "x?y", "%2e"] {
            assert!(check_name("user", bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "alice",
            "bob-2",
            "张三",
            "o'neil",
            "a.b",
            "user@example.edu",
        ] {
            assert!(check_name("user", good).is_ok(), "{good:?} refused");
        }
        assert!(check_server_name("gpu-1").is_ok());
        for bad in ["", "../x", "A", "a/b", "-x", &"x".repeat(31)] {
            assert!(check_server_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
