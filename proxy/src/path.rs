//! Request path normalisation: the one path that is both routed and forwarded.
//!
//! Every request path goes through [`normalize_path`] before routing. The result is the path used
//! to find the route *and* the path sent to the backend (or to the fallback), so the backend can
//! never see a path other than the one that chose it. The rules:
//!
//! - The path must start with `/` (origin-form); `*` and the like are rejected.
//! - Duplicate slashes are collapsed (`/user//alice///x` → `/user/alice/x`); a trailing slash is
//!   kept. Collapsing rather than rejecting keeps sloppy links working, and since the collapsed
//!   path is what gets forwarded, routing and forwarding still agree.
//! - Percent escapes are normalised per RFC 3986 §6.2.2: escapes of unreserved characters
//!   (`A-Z a-z 0-9 - . _ ~`) are decoded, every other escape is upper-cased (`%2f` → `%2F`).
//!   So `/user/%61lice/` and `/user/alice/` are the same path.
//! - Rejected (the caller answers 400): a `.` or `..` segment, raw or encoded (`%2e%2E`); a
//!   backslash, raw or encoded (`%5C`), because some servers treat it as a separator; an encoded
//!   slash (`%2F`), because a backend that decodes it would see segments that were never routed;
//!   an encoded NUL; a `%` not followed by two hex digits.
//! - Matching is case-sensitive (`/user/Alice/` is not `/user/alice/`), as in CHP; the hub
//!   normalises user names to lower case itself.

use std::borrow::Cow;
use std::fmt;

/// Why a request path (or a routespec) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathRejection {
    /// The path does not start with `/`.
    NotOriginForm,
    /// A `.` or `..` segment, raw or percent-encoded.
    DotSegment,
    /// A backslash, raw or percent-encoded.
    Backslash,
    /// A percent-encoded `/`.
    EncodedSlash,
    /// A percent-encoded NUL byte.
    EncodedNul,
    /// A `%` not followed by two hex digits.
    BadPercentEscape,
}

impl PathRejection {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::NotOriginForm => "the path must start with '/'",
            Self::DotSegment => "'.' and '..' path segments are not allowed",
            Self::Backslash => "backslashes are not allowed in paths",
            Self::EncodedSlash => "encoded slashes (%2F) are not allowed in paths",
            Self::EncodedNul => "encoded NUL bytes are not allowed in paths",
            Self::BadPercentEscape => "'%' must be followed by two hex digits",
        }
    }
}

impl fmt::Display for PathRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Normalises a raw (still percent-encoded) request path; see the module docs for the rules.
pub(crate) fn normalize_path(raw: &str) -> Result<String, PathRejection> {
    normalize_path_cow(raw).map(Cow::into_owned)
}

/// [`normalize_path`] without an allocation when the path is already normal (the common case):
/// `Cow::Borrowed(raw)` then.
pub(crate) fn normalize_path_cow(raw: &str) -> Result<Cow<'_, str>, PathRejection> {
    if is_already_normal(raw) {
        Ok(Cow::Borrowed(raw))
    } else {
        normalize_slow(raw).map(Cow::Owned)
    }
}

/// Whether [`normalize_slow`] would return `raw` unchanged: it starts with `/`, holds no `%`, no
/// backslash, no `//` and no `.`/`..` segment.
fn is_already_normal(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    // `segment_len` counts the bytes since the last `/`; `dots` how many of them are `.`.
    let mut segment_len = 0usize;
    let mut dots = 0usize;
    for &b in &bytes[1..] {
        match b {
            b'%' | b'\\' => return false,
            b'/' => {
                if segment_len == 0 || (dots == segment_len && dots <= 2) {
                    return false;
                }
                segment_len = 0;
                dots = 0;
            }
            b'.' => {
                segment_len += 1;
                dots += 1;
            }
            _ => segment_len += 1,
        }
    }
    !(segment_len > 0 && dots == segment_len && dots <= 2)
}

fn normalize_slow(raw: &str) -> Result<String, PathRejection> {
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathRejection::NotOriginForm);
    };
    let mut out = String::with_capacity(raw.len());
    for segment in rest.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        let start = out.len();
        push_normalized_segment(segment, &mut out)?;
        let normalized = &out[start..];
        if normalized == "." || normalized == ".." {
            return Err(PathRejection::DotSegment);
        }
    }
    if out.is_empty() || raw.ends_with('/') {
        out.push('/');
    }
    Ok(out)
}

fn push_normalized_segment(segment: &str, out: &mut String) -> Result<(), PathRejection> {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathRejection::Backslash),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathRejection::BadPercentEscape);
                };
                let decoded = hi << 4 | lo;
                match decoded {
                    b'/' => return Err(PathRejection::EncodedSlash),
                    b'\\' => return Err(PathRejection::Backslash),
                    0 => return Err(PathRejection::EncodedNul),
                    b if is_unreserved(b) => out.push(char::from(b)),
                    b => {
                        out.push('%');
                        out.push(hex_digit(b >> 4));
                        out.push(hex_digit(b & 0x0f));
                    }
                }
                i += 3;
            }
            _ => {
                // Copy the run up to the next escape or backslash in one go (keeps UTF-8 intact).
                let end = bytes[i..]
                    .iter()
                    .position(|&b| b == b'%' || b == b'\\')
                    .map_or(bytes.len(), |p| i + p);
                out.push_str(&segment[i..end]);
                i = end;
            }
        }
    }
    Ok(())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(n & 0x0f)])
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The lookup keys a normalised path can match, longest first: `/a/b/c` gives `/a/b/c`,
/// `/a/b`, `/a`, `` (the root route). Only keys with at most `max_depth` segments are produced.
pub(crate) fn prefix_keys(path: &str, max_depth: usize) -> impl Iterator<Item = &str> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    // The `/` that starts segment `max_depth + 1`, if any, ends the longest key worth trying.
    let cut = trimmed
        .match_indices('/')
        .nth(max_depth)
        .map_or(trimmed.len(), |(i, _)| i);
    let mut next = Some(&trimmed[..cut]);
    std::iter::from_fn(move || {
        let key = next?;
        next = (!key.is_empty()).then(|| &key[..key.rfind('/').unwrap_or(0)]);
        Some(key)
    })
}

/// Number of segments in a route key (`""` → 0, `/user/alice` → 2).
pub(crate) fn key_depth(key: &str) -> usize {
    key.matches('/').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_are_unchanged() {
        for p in [
            "/",
            "/user/alice",
            "/user/alice/",
            "/user/alice/lab/tree/a b.ipynb",
        ] {
            assert_eq!(normalize_path(p).as_deref(), Ok(p));
        }
    }

    #[test]
    fn duplicate_slashes_collapse_and_trailing_slash_stays() {
        assert_eq!(normalize_path("//").as_deref(), Ok("/"));
        assert_eq!(
            normalize_path("//user///alice//").as_deref(),
            Ok("/user/alice/")
        );
        assert_eq!(normalize_path("/user//alice").as_deref(), Ok("/user/alice"));
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        assert_eq!(
            normalize_path("/user/%61lice/%7e%3f%3F").as_deref(),
            Ok("/user/alice/~%3F%3F")
        );
    }

    #[test]
    fn dot_segments_are_rejected_raw_or_encoded() {
        for p in [
            "/user/alice/..",
            "/user/../alice",
            "/./user",
            "/user/%2e%2e/x",
            "/user/%2E%2e/x",
            "/user/.%2E/x",
            "/user/%2e/x",
            "/user/alice/%2e%2e/",
        ] {
            assert_eq!(normalize_path(p), Err(PathRejection::DotSegment), "{p}");
        }
        // Dots inside a name are fine.
        assert!(normalize_path("/user/a..b/.hidden/x.").is_ok());
    }

    #[test]
    fn separators_in_disguise_are_rejected() {
        assert_eq!(normalize_path("/a\\b"), Err(PathRejection::Backslash));
        assert_eq!(normalize_path("/a%5cb"), Err(PathRejection::Backslash));
        assert_eq!(normalize_path("/a%2fb"), Err(PathRejection::EncodedSlash));
        assert_eq!(
            normalize_path("/a%2F..%2Fb"),
            Err(PathRejection::EncodedSlash)
        );
        assert_eq!(normalize_path("/a%00"), Err(PathRejection::EncodedNul));
        assert_eq!(
            normalize_path("/a%zz"),
            Err(PathRejection::BadPercentEscape)
        );
        assert_eq!(normalize_path("/a%2"), Err(PathRejection::BadPercentEscape));
        assert_eq!(normalize_path("*"), Err(PathRejection::NotOriginForm));
    }

    #[test]
    fn prefix_keys_go_from_longest_to_root_within_depth() {
        let all: Vec<&str> = prefix_keys("/user/alice/lab", 10).collect();
        assert_eq!(all, ["/user/alice/lab", "/user/alice", "/user", ""]);
        let trailing: Vec<&str> = prefix_keys("/user/alice/", 10).collect();
        assert_eq!(trailing, ["/user/alice", "/user", ""]);
        let shallow: Vec<&str> = prefix_keys("/user/alice/lab", 2).collect();
        assert_eq!(shallow, ["/user/alice", "/user", ""]);
        let root: Vec<&str> = prefix_keys("/", 3).collect();
        assert_eq!(root, [""]);
        assert_eq!(key_depth(""), 0);
        assert_eq!(key_depth("/user/alice"), 2);
    }

    /// A tiny deterministic generator, so the property test needs no extra dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    #[test]
    fn the_fast_path_agrees_with_the_full_normalisation() {
        let pieces = [
            "/", "//", "a", "bc", ".", "..", "...", ".a", "a.", "%2e", "%41", "\\", "é", "?",
        ];
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for i in 0..50_000 {
            let len = rng.next() % 7;
            let mut raw = String::from(if i % 10 == 0 { "" } else { "/" });
            for _ in 0..len {
                raw.push_str(rng.pick(&pieces));
            }
            let fast = normalize_path_cow(&raw);
            let slow = normalize_slow(&raw);
            assert_eq!(
                fast.as_deref().map_err(|e| *e),
                slow.as_deref().map_err(|e| *e),
                "{raw:?}"
            );
            if matches!(fast, Ok(Cow::Borrowed(_))) {
                assert_eq!(slow.as_deref(), Ok(raw.as_str()));
            }
        }
        for clean in ["/", "/user/alice/lab", "/user/alice/", "/a.b/...", "/..a/"] {
            assert!(
                matches!(normalize_path_cow(clean), Ok(Cow::Borrowed(_))),
                "{clean}"
            );
        }
    }

    fn fully_decoded(path: &str) -> String {
        percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .into_owned()
    }

    #[test]
    fn normalized_paths_never_escape_their_prefix_over_many_generated_paths() {
        let pieces = [
            "/", "/", "//", "user", "alice", "alicex", "%61lice", ".", "..", "%2e", "%2E%2e",
            ".%2e", "%2f", "%2F", "\\", "%5c", "a.b", "~", "%7E", "%", "%4", "x%20y", "é", "?",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = 1 + rng.next() % 8;
            let mut raw = String::from("/");
            for _ in 0..len {
                raw.push_str(rng.pick(&pieces));
            }
            let Ok(path) = normalize_path(&raw) else {
                continue;
            };
            accepted += 1;
            // Idempotent: forwarding the normalised path and normalising again changes nothing.
            assert_eq!(normalize_path(&path).as_deref(), Ok(path.as_str()), "{raw}");
            // Even a backend that fully decodes sees no dot segment and no extra separator.
            let decoded = fully_decoded(&path);
            assert!(
                !decoded
                    .split('/')
                    .any(|s| s == "." || s == ".." || s.contains('\\')),
                "{raw} -> {path} -> {decoded}"
            );
            assert_eq!(
                decoded.matches('/').count(),
                path.matches('/').count(),
                "{raw} -> {path}"
            );
            // Every candidate route key is a segment-aligned prefix of the forwarded path.
            for key in prefix_keys(&path, usize::MAX) {
                assert!(path.starts_with(key), "{key} not a prefix of {path}");
                let rest = &path[key.len()..];
                assert!(rest.is_empty() || rest.starts_with('/'), "{key} vs {path}");
            }
        }
        assert!(
            accepted > 1000,
            "only {accepted} generated paths were accepted"
        );
    }
}
