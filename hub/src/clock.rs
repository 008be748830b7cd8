//! Timestamps: stored as microseconds since the Unix epoch, shown as JupyterHub's ISO 8601 UTC
//! with microseconds and a `Z` suffix.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// Now, in microseconds since the epoch.
pub fn now() -> Micros {
    Utc::now().timestamp_micros()
}

/// `2026-11-24T09:46:54.417075Z`, as JupyterHub renders timestamps.
pub fn iso(t: Micros) -> String {
    match Utc.timestamp_micros(t).single() {
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => String::new(),
    }
}

/// Optional timestamp as JSON (`null` when absent).
pub fn iso_json(t: Option<Micros>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| {
        serde_json::Value::String(iso(t))
    })
}

/// Parses an ISO 8601 timestamp; naive ones are taken as UTC (as JupyterHub does with dateutil).
pub fn parse_iso(text: &str) -> Option<Micros> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.with_timezone(&Utc).timestamp_micros());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc().timestamp_micros());
        }
    }
    if let Ok(dt) = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(dt.with_timezone(&Utc).timestamp_micros());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_like_jupyterhub_and_parse_back() {
        let t = 1_795_000_000_123_456;
        let text = iso(t);
        assert!(text.ends_with('Z') && text.contains(".123456"), "{text}");
        assert_eq!(parse_iso(&text), Some(t));
        assert_eq!(
            parse_iso("2026-11-24T09:46:54.417075"),
            parse_iso("2026-11-24T09:46:54.417075Z")
        );
        assert_eq!(
            parse_iso("2026-11-24T10:46:54.417075+01:00"),
            parse_iso("2026-11-24T09:46:54.417075Z")
        );
        assert_eq!(parse_iso("yesterday"), None);
    }
}
