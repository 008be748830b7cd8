//! Paths that never go into a saved image.

use serde::{Deserialize, Serialize};

/// The user's persistent work directory in a node: a volume, never part of an image.
pub const WORK_DIR: &str = "/home/jovyan/work";

/// The paths excluded by default: the work directory (a volume), scratch space, caches, and
/// mount points a runtime may have created in the writable layer.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    WORK_DIR,
    "/tmp",
    "/var/tmp",
    "/root/.cache",
    "/home/*/.cache",
    "/root/.conda/pkgs",
    "/opt/conda/pkgs",
    "/var/cache/apt/archives",
    "/proc",
    "/sys",
    "/dev",
    "/run/secrets",
    "/var/run/secrets",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
];

/// Absolute container paths left out of the layer, each with everything below it.
///
/// A pattern is matched component by component; a component may use `*` (any run of
/// characters) and `?` (one character), e.g. `/home/*/.cache`. `/data` excludes `/data` and
/// `/data/x`, not `/database`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExcludeRules {
    patterns: Vec<String>,
}

impl Default for ExcludeRules {
    fn default() -> Self {
        Self::new(DEFAULT_EXCLUDES.iter().copied())
    }
}

impl ExcludeRules {
    /// Exactly these patterns (no defaults).
    pub fn new<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            patterns: patterns.into_iter().map(Into::into).collect(),
        }
    }

    /// No exclusions at all.
    pub fn none() -> Self {
        Self::new(Vec::<String>::new())
    }

    /// Adds patterns (e.g. the node's dataset mount points).
    pub fn with<I, S>(mut self, more: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.patterns.extend(more.into_iter().map(Into::into));
        self
    }

    /// The patterns, in order.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `path` (absolute, as seen inside the container) is excluded.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path: Vec<&str> = components(path).collect();
        self.patterns.iter().any(|pattern| {
            let pattern: Vec<&str> = components(pattern).collect();
            !pattern.is_empty()
                && pattern.len() <= path.len()
                && pattern
                    .iter()
                    .zip(&path)
                    .all(|(p, c)| glob_match(p.as_bytes(), c.as_bytes()))
        })
    }
}

fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// `*` and `?` within one path component.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_excludes_the_path_and_below_but_not_siblings_with_the_same_prefix() {
        let rules = ExcludeRules::new(["/data", "/home/*/.cache"]);
        assert!(rules.is_excluded("/data"));
        assert!(rules.is_excluded("/data/x/y"));
        assert!(!rules.is_excluded("/database"));
        assert!(rules.is_excluded("/home/jovyan/.cache/pip/x"));
        assert!(!rules.is_excluded("/home/jovyan/.cachet"));
        assert!(!rules.is_excluded("/home"));
    }

    #[test]
    fn globs_match_within_one_component() {
        assert!(glob_match(b"*.log", b"a.log"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"a*", b"b"));
        assert!(glob_match(b"*", b""));
    }
}
