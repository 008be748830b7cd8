//! Header rewriting for forwarded requests and responses.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;

/// Headers that describe one hop, never the end-to-end message (RFC 9110 §7.6.1), plus the
/// `Proxy-*` family (matched by prefix in [`strip_hop_by_hop`]).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    // `Expect: 100-continue` was already answered by our own HTTP server when it read the body.
    header::EXPECT,
];

fn comma_tokens(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// `Connection: upgrade` (any case, possibly among other tokens) and `Upgrade: websocket`.
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    comma_tokens(headers, header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
        && comma_tokens(headers, header::UPGRADE).any(|t| t.eq_ignore_ascii_case("websocket"))
}

/// Removes hop-by-hop headers: the fixed list, `Keep-Alive`, every `Proxy-*` header and every
/// header named in `Connection`. With `keep_websocket_upgrade`, the message keeps
/// `Connection: upgrade` and its `Upgrade` header, which a websocket handshake needs end to end.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, keep_websocket_upgrade: bool) {
    let upgrade: Vec<HeaderValue> = if keep_websocket_upgrade {
        headers.get_all(header::UPGRADE).iter().cloned().collect()
    } else {
        Vec::new()
    };
    let listed: Vec<HeaderName> = comma_tokens(headers, header::CONNECTION)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        // A client cannot make us drop the Host header it sent.
        .filter(|name| *name != header::HOST)
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    let proxy_family: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-") || name.as_str() == "keep-alive")
        .cloned()
        .collect();
    for name in proxy_family {
        headers.remove(name);
    }
    if !upgrade.is_empty() {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        for value in upgrade {
            headers.append(header::UPGRADE, value);
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Adds `X-Forwarded-*`. The peer's address is appended to `X-Forwarded-For`. `-Proto`, `-Host`
/// and `-Port` are only set when absent, so values from a TLS terminator in front of the hub
/// survive (CHP appends to them instead, and tornado then reads the last, wrong, value).
pub(crate) fn add_forwarded_headers(headers: &mut HeaderMap, peer: SocketAddr, https: bool) {
    let peer_ip = peer.ip().to_canonical().to_string();
    let forwarded_for = {
        let earlier: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .into_iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if earlier.is_empty() {
            peer_ip
        } else {
            format!("{}, {peer_ip}", earlier.join(", "))
        }
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        let proto = if https { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    let host = headers.get(header::HOST).cloned();
    if let Some(host) = &host {
        if !headers.contains_key(&X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
    }
    if !headers.contains_key(&X_FORWARDED_PORT) {
        let explicit = host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<Authority>().ok())
            .and_then(|a| a.port_u16());
        let https = headers
            .get(&X_FORWARDED_PROTO)
            .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
        let port = explicit.unwrap_or(if https { 443 } else { 80 });
        headers.insert(X_FORWARDED_PORT, HeaderValue::from(port));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret, host"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("host", "hub.example.org"),
            ("cookie", "a=b"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["host", "cookie"]);
    }

    #[test]
    fn websocket_handshake_keeps_connection_upgrade() {
        let mut headers = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "abc"),
        ]);
        assert!(is_websocket_upgrade(&headers));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["sec-websocket-key"], "abc");
        assert!(!is_websocket_upgrade(&map(&[("upgrade", "websocket")])));
    }

    #[test]
    fn forwarded_headers_append_for_and_keep_upstream_proto() {
        let peer: SocketAddr = "[::ffff:10.0.0.7]:4000".parse().unwrap();
        let mut headers = map(&[
            ("host", "hub.example.org"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        add_forwarded_headers(&mut headers, peer, false);
        assert_eq!(headers["x-forwarded-for"], "1.2.3.4, 10.0.0.7");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "hub.example.org");
        assert_eq!(headers["x-forwarded-port"], "443");

        let mut direct = map(&[("host", "127.0.0.1:8000")]);
        add_forwarded_headers(&mut direct, "127.0.0.1:5000".parse().unwrap(), false);
        assert_eq!(direct["x-forwarded-for"], "127.0.0.1");
        assert_eq!(direct["x-forwarded-proto"], "http");
        assert_eq!(direct["x-forwarded-port"], "8000");
    }
}
