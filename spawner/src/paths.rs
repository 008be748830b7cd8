//! Mapping untrusted names (user names, server names) onto file-system paths.

/// `name` as exactly one path component, safe to join onto a parent directory, or `None` if
/// `name` is empty.
///
/// ASCII letters, digits, `-` and `_` are kept, and so is `.` except as the first byte; every
/// other byte (including `/`, `\`, `%`, `@`, NUL and each byte of a non-ASCII character) becomes
/// `%XX` (upper-case hex). Why: user names come from authenticators and are attacker-chosen, so
/// the result must never contain a separator and never be `.` or `..` (a leading `.` is escaped,
/// so it cannot climb out of the parent or hide as a dot-file); and because `%` itself is
/// escaped the mapping is injective, so two different users never share a directory.
pub(crate) fn path_component(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    for (i, byte) in name.bytes().enumerate() {
        let keep =
            byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_') || (byte == b'.' && i > 0);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::path_component;

    #[test]
    fn ordinary_names_are_kept() {
        assert_eq!(path_component("alice").as_deref(), Some("alice"));
        assert_eq!(path_component("a.b-c_d").as_deref(), Some("a.b-c_d"));
    }

    #[test]
    fn names_cannot_climb_out_of_the_parent_directory() {
        assert_eq!(path_component(".").as_deref(), Some("%2E"));
        assert_eq!(path_component("..").as_deref(), Some("%2E."));
        assert_eq!(path_component("../x").as_deref(), Some("%2E.%2Fx"));
        assert_eq!(path_component("a/b").as_deref(), Some("a%2Fb"));
        assert_eq!(path_component("a\\b").as_deref(), Some("a%5Cb"));
        assert_eq!(path_component(".hidden").as_deref(), Some("%2Ehidden"));
    }

    #[test]
    fn every_other_byte_is_escaped() {
        assert_eq!(path_component("bob@x.org").as_deref(), Some("bob%40x.org"));
        assert_eq!(path_component("50%").as_deref(), Some("50%25"));
        assert_eq!(path_component("é").as_deref(), Some("%C3%A9"));
        assert_eq!(path_component("a\0b").as_deref(), Some("a%00b"));
    }

    #[test]
    fn distinct_names_map_to_distinct_components() {
        assert_ne!(path_component("a.b"), path_component("a-b"));
        assert_ne!(path_component("a%2Fb"), path_component("a/b"));
        assert_ne!(path_component("%2E."), path_component(".."));
    }

    #[test]
    fn an_empty_name_has_no_component() {
        assert_eq!(path_component(""), None);
    }
}
