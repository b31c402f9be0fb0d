//! Pure request checks and rewrites: header-name and path checks (spec 3.4), path
//! normalisation, upstream path and Host rewriting (spec 4).

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::{Uri, Version};
use thiserror::Error;

use crate::config::request_rules::{EscapedSlashesAction, PathRules, UnderscoreHeadersAction};
use crate::config::route::{HostRewrite, PathMatch, PathRewrite, Upstream};
use crate::config::Route;

/// A request refused before routing (answered with 400).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("header name {0:?} contains an underscore")]
    UnderscoreHeader(String),
    #[error("path contains an escaped slash or backslash")]
    EscapedSlash,
    #[error("path {0:?} is not an absolute path")]
    BadPath(String),
    #[error("path contains an escaped NUL (%00)")]
    EscapedNul,
    #[error("HTTP/2 :authority {authority:?} and Host {host:?} differ")]
    AuthorityMismatch { authority: String, host: String },
}

/// Applies `headers_with_underscores_action` to the request header names: `Ok(true)` when
/// headers must be dropped before authorization and forwarding.
pub fn check_header_names(
    headers: &HeaderMap,
    action: UnderscoreHeadersAction,
) -> Result<bool, RequestError> {
    if action == UnderscoreHeadersAction::Allow {
        return Ok(false);
    }
    let Some(name) = headers.keys().find(|n| n.as_str().contains('_')) else {
        return Ok(false);
    };
    match action {
        UnderscoreHeadersAction::RejectRequest => {
            Err(RequestError::UnderscoreHeader(name.as_str().to_string()))
        }
        _ => Ok(true),
    }
}

/// `headers` without the names that contain `_`.
pub fn without_underscore_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers.iter() {
        if !name.as_str().contains('_') {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The authority a request is for: the request target's (HTTP/2 `:authority`, or an HTTP/1.1
/// absolute-form target, RFC 9112 §3.2.2), else the `Host` header.
pub fn request_authority<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> &'a str {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        .unwrap_or_default()
}

/// RFC 9113 §8.3.1: an HTTP/2 request with both `:authority` and `Host` must name the same
/// authority.
pub fn check_authority(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), RequestError> {
    if version != Version::HTTP_2 {
        return Ok(());
    }
    let (Some(authority), Some(host)) = (uri.authority(), headers.get(header::HOST)) else {
        return Ok(());
    };
    if host
        .as_bytes()
        .eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        return Ok(());
    }
    Err(RequestError::AuthorityMismatch {
        authority: authority.as_str().to_string(),
        host: String::from_utf8_lossy(host.as_bytes()).into_owned(),
    })
}

/// A checked, normalised request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    pub path: String,
    /// `unescape_and_redirect` unescaped a slash: send the client to `path` instead.
    pub redirect: bool,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The byte a `%XY` at `bytes[i..]` encodes.
fn escaped_at(bytes: &[u8], i: usize) -> Option<u8> {
    if bytes.get(i) != Some(&b'%') {
        return None;
    }
    Some(hex(*bytes.get(i + 1)?)? << 4 | hex(*bytes.get(i + 2)?)?)
}

/// Checks and normalises a request path (no query), as Envoy does for Pomerium with
/// `normalize_path`, `merge_slashes` and `path_with_escaped_slashes_action`:
/// `%2F`/`%5C` are handled per `rules.escaped_slashes`; with `normalize`, percent-encoded
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded and then `.`/`..` segments
/// resolved (so `/%2e%2e/` is `/../`); with `merge_slashes`, runs of `/` become one.
pub fn normalize_path(raw: &str, rules: &PathRules) -> Result<NormalPath, RequestError> {
    if !raw.starts_with('/') {
        return Err(RequestError::BadPath(raw.to_string()));
    }
    let bytes = raw.as_bytes();
    let has_escape = bytes.contains(&b'%');
    // Fast path: most paths have no escape, no backslash, no empty and no dot segment.
    let plain = !has_escape && !raw.contains('\\') && !raw.contains("//") && !raw.contains("/.");
    if plain {
        return Ok(NormalPath {
            path: raw.to_string(),
            redirect: false,
        });
    }

    // 1. Escaped slashes and (with `normalize`) unreserved characters.
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut unescaped_slash = false;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(b) = escaped_at(bytes, i) {
            if b == b'/' || b == b'\\' {
                match rules.escaped_slashes {
                    EscapedSlashesAction::RejectRequest => return Err(RequestError::EscapedSlash),
                    EscapedSlashesAction::KeepUnchanged => {
                        decoded.extend_from_slice(&bytes[i..i + 3]);
                    }
                    EscapedSlashesAction::UnescapeAndForward
                    | EscapedSlashesAction::UnescapeAndRedirect => {
                        decoded.push(b);
                        unescaped_slash = true;
                    }
                }
                i += 3;
                continue;
            }
            if rules.normalize && b == 0 {
                return Err(RequestError::EscapedNul);
            }
            if rules.normalize && is_unreserved(b) {
                decoded.push(b);
                i += 3;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    if rules.normalize {
        // As Envoy (Chromium's URL canonicalizer): a backslash is a path separator.
        for b in decoded.iter_mut() {
            if *b == b'\\' {
                *b = b'/';
            }
        }
    }
    // Only ASCII bytes replaced ASCII escapes: still UTF-8.
    let decoded = String::from_utf8(decoded)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());

    // 2. Dot segments (RFC 3986 §5.2.4; `.;params` and `..;params` count too, as some
    // upstreams such as Tomcat read them as dot segments), then 3. merged slashes.
    let segments = decoded[1..].split('/');
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    let mut segments = segments.peekable();
    while let Some(seg) = segments.next() {
        let is_last = segments.peek().is_none();
        let dots = seg.split(';').next().unwrap_or(seg);
        match (seg, dots) {
            (_, ".") if rules.normalize => trailing = is_last,
            (_, "..") if rules.normalize => {
                out.pop();
                trailing = is_last;
            }
            ("", _) if rules.merge_slashes => trailing = is_last,
            (s, _) => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    Ok(NormalPath {
        path,
        redirect: unescaped_slash
            && rules.escaped_slashes == EscapedSlashesAction::UnescapeAndRedirect,
    })
}

/// The upstream path for a (normalised) request path, per the route's rewrite.
pub fn rewrite_path(route: &Route, path: &str) -> String {
    match &route.path_rewrite {
        PathRewrite::None => path.to_string(),
        PathRewrite::Prefix(new) => {
            let matched = match &route.path {
                PathMatch::Prefix(p) | PathMatch::Exact(p) if path.starts_with(p.as_str()) => {
                    p.len()
                }
                _ => 1.min(path.len()),
            };
            let rest = &path[matched..];
            let mut out = String::with_capacity(new.len() + rest.len());
            out.push_str(new);
            out.push_str(rest);
            if out.is_empty() {
                out.push('/');
            }
            out
        }
        PathRewrite::Regex(re, sub) => {
            let out = re.replace_all(path, sub.as_str()).into_owned();
            if out.starts_with('/') {
                out
            } else {
                format!("/{out}")
            }
        }
    }
}

/// The Host header to send upstream, and whether Host was rewritten (which adds
/// `X-Forwarded-Host`).
pub fn upstream_host<'a>(
    route: &'a Route,
    upstream: &'a Upstream,
    client_host: &'a str,
    headers: &'a HeaderMap,
    path: &str,
) -> (std::borrow::Cow<'a, str>, bool) {
    use std::borrow::Cow;
    match &route.host_rewrite {
        HostRewrite::Preserve => (Cow::Borrowed(client_host), false),
        HostRewrite::UpstreamHost => (Cow::Borrowed(&upstream.authority), true),
        HostRewrite::Literal(h) => (Cow::Borrowed(h), true),
        HostRewrite::FromHeader(name) => match headers.get(name).and_then(|v| v.to_str().ok()) {
            Some(v) if !v.is_empty() => (Cow::Borrowed(v), true),
            _ => (Cow::Borrowed(&upstream.authority), true),
        },
        HostRewrite::FromPath(re, sub) => {
            if re.is_match(path) {
                (
                    Cow::Owned(re.replace(path, sub.as_str()).into_owned()),
                    true,
                )
            } else {
                (Cow::Borrowed(&upstream.authority), true)
            }
        }
    }
}

/// `host[:port]` → lower-cased host without port (IPv6 brackets kept).
pub fn host_without_port(authority: &str) -> std::borrow::Cow<'_, str> {
    let host = host_part(authority);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        host.to_ascii_lowercase().into()
    } else {
        host.into()
    }
}

/// The host of `host[:port]` as written (no port, no trailing dot; case kept).
pub fn host_part(authority: &str) -> &str {
    let a = authority.trim();
    let host = if a.starts_with('[') {
        match a.find(']') {
            Some(i) => &a[..=i],
            None => a,
        }
    } else {
        // Byte search: this runs several times per request.
        match a.bytes().rposition(|b| b == b':') {
            Some(i) if a.as_bytes()[i + 1..].iter().all(u8::is_ascii_digit) => &a[..i],
            _ => a,
        }
    };
    host.trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{build, parse};
    use std::path::Path;

    fn route(extra: &str) -> Route {
        let text =
            format!("routes:\n  - from: https://a.test\n    to: http://up.test:8080\n{extra}");
        build(parse(&text, Path::new("t.yaml")).unwrap())
            .unwrap()
            .routes
            .remove(0)
    }

    fn norm(raw: &str) -> Result<String, RequestError> {
        normalize_path(raw, &PathRules::default()).map(|p| p.path)
    }

    #[test]
    fn normalises_paths() {
        let cases = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a//b", "/a/b"),
            ("//sse", "/sse"),
            ("/a/./b/../c", "/a/c"),
            ("/a/b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../../x", "/x"),
            ("/a/.", "/a/"),
            ("/a%20b", "/a%20b"),
            // Percent-encoded dots are dot segments; unreserved characters are decoded.
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/public/%2e./admin", "/admin"),
            ("/%2e/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/adm%69n/x", "/admin/x"),
            ("/%41%5a%30%2D%5F%7E", "/AZ0-_~"),
            // Reserved and other characters stay escaped.
            ("/a%3Fb%23c%25", "/a%3Fb%23c%25"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/%2", "/%2"),
            ("/%zz", "/%zz"),
            // Backslashes are separators; dot segments with parameters are dot segments.
            ("/public\\..\\admin", "/admin"),
            ("/a/..\\c", "/c"),
            ("/public/..;x=y/admin", "/admin"),
            ("/a/.;x/b", "/a/b"),
            ("/a/..;", "/"),
            ("/a/..x/b;c", "/a/..x/b;c"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a/.b/..", "/a/"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).unwrap(), want, "{input}");
        }
        assert_eq!(norm("/a%2Fb"), Err(RequestError::EscapedSlash));
        assert_eq!(norm("/a%2fb"), Err(RequestError::EscapedSlash));
        assert_eq!(norm("/a%5cb"), Err(RequestError::EscapedSlash));
        assert_eq!(norm("/a%5Cb"), Err(RequestError::EscapedSlash));
        assert_eq!(norm("/a/.%00./b"), Err(RequestError::EscapedNul));
        assert_eq!(norm("/a%00"), Err(RequestError::EscapedNul));
        assert!(norm("*").is_err());
        assert!(norm("").is_err());
    }

    #[test]
    fn path_rules_switch_steps_off() {
        let rules = |normalize, merge_slashes, escaped_slashes| PathRules {
            normalize,
            merge_slashes,
            escaped_slashes,
        };
        use EscapedSlashesAction::*;
        let cases = [
            (rules(true, false, RejectRequest), "/a//b/./c", "/a//b/c"),
            (rules(true, false, RejectRequest), "/a//../b", "/a/b"),
            (
                rules(false, true, RejectRequest),
                "/a//%2e%2e/./b",
                "/a/%2e%2e/./b",
            ),
            (
                rules(false, false, RejectRequest),
                "/a//../%61",
                "/a//../%61",
            ),
            (
                rules(true, true, KeepUnchanged),
                "/a%2Fb/%2e%2E/c%5c",
                "/c%5c",
            ),
            (
                rules(true, true, UnescapeAndForward),
                "/a%2Fb/..//c",
                "/a/c",
            ),
            (rules(true, true, UnescapeAndForward), "/a%5Cb", "/a/b"),
            (
                rules(false, true, UnescapeAndForward),
                "/a%5Cb\\..",
                "/a\\b\\..",
            ),
            (rules(false, false, RejectRequest), "/a%00", "/a%00"),
            (
                rules(true, true, UnescapeAndForward),
                "/x/..%2f..%2fadmin",
                "/admin",
            ),
        ];
        for (r, input, want) in cases {
            let got = normalize_path(input, &r).unwrap();
            assert_eq!(got.path, want, "{input} with {r:?}");
            assert!(!got.redirect);
        }
        let got = normalize_path("/a%2Fb", &rules(true, true, UnescapeAndRedirect)).unwrap();
        assert_eq!((got.path.as_str(), got.redirect), ("/a/b", true));
        let got = normalize_path("/a//b", &rules(true, true, UnescapeAndRedirect)).unwrap();
        assert_eq!((got.path.as_str(), got.redirect), ("/a/b", false));
    }

    #[test]
    fn underscore_headers_per_action() {
        let mut h = HeaderMap::new();
        h.insert(
            header::HeaderName::from_static("x-ok"),
            header::HeaderValue::from_static("1"),
        );
        assert_eq!(
            check_header_names(&h, UnderscoreHeadersAction::RejectRequest),
            Ok(false)
        );
        h.insert(
            header::HeaderName::from_static("x_user"),
            header::HeaderValue::from_static("admin"),
        );
        assert_eq!(
            check_header_names(&h, UnderscoreHeadersAction::RejectRequest),
            Err(RequestError::UnderscoreHeader("x_user".into()))
        );
        assert_eq!(
            check_header_names(&h, UnderscoreHeadersAction::Allow),
            Ok(false)
        );
        assert_eq!(
            check_header_names(&h, UnderscoreHeadersAction::DropHeader),
            Ok(true)
        );
        let kept = without_underscore_headers(&h);
        assert!(kept.contains_key("x-ok") && !kept.contains_key("x_user"));
    }

    #[test]
    fn authority_from_target_and_h2_mismatch() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, header::HeaderValue::from_static("b.test"));
        let origin: Uri = "/x".parse().unwrap();
        let absolute: Uri = "http://a.test/x".parse().unwrap();
        assert_eq!(request_authority(&origin, &h), "b.test");
        assert_eq!(request_authority(&absolute, &h), "a.test");
        assert!(check_authority(Version::HTTP_11, &absolute, &h).is_ok());
        assert_eq!(
            check_authority(Version::HTTP_2, &absolute, &h),
            Err(RequestError::AuthorityMismatch {
                authority: "a.test".into(),
                host: "b.test".into()
            })
        );
        h.insert(header::HOST, header::HeaderValue::from_static("A.Test"));
        assert!(check_authority(Version::HTTP_2, &absolute, &h).is_ok());
        assert!(check_authority(Version::HTTP_2, &absolute, &HeaderMap::new()).is_ok());
    }

    #[test]
    fn prefix_rewrite_replaces_matched_prefix() {
        let r = route("    prefix: /api/\n    prefix_rewrite: /v2/\n");
        assert_eq!(rewrite_path(&r, "/api/users"), "/v2/users");
        let r = route("    prefix_rewrite: /base/\n");
        assert_eq!(rewrite_path(&r, "/x"), "/base/x");
        let r = route("    path: /exact\n    prefix_rewrite: /other\n");
        assert_eq!(rewrite_path(&r, "/exact"), "/other");
    }

    #[test]
    fn regex_rewrite_substitutes() {
        let r = route(
            "    regex_rewrite_pattern: '^/service/([^/]+)(/.*)$'\n    regex_rewrite_substitution: '\\2/instance/\\1'\n",
        );
        assert_eq!(
            rewrite_path(&r, "/service/foo/v1/api"),
            "/v1/api/instance/foo"
        );
    }

    #[test]
    fn host_rewrites() {
        let h = HeaderMap::new();
        let r = route("");
        let up = &r.upstreams[0];
        assert_eq!(
            upstream_host(&r, up, "a.test", &h, "/"),
            ("up.test:8080".into(), true)
        );
        let r = route("    preserve_host_header: true\n");
        assert_eq!(
            upstream_host(&r, up, "a.test", &h, "/"),
            ("a.test".into(), false)
        );
        let r = route("    host_rewrite: other.test\n");
        assert_eq!(
            upstream_host(&r, up, "a.test", &h, "/"),
            ("other.test".into(), true)
        );
    }

    #[test]
    fn strips_ports() {
        assert_eq!(host_without_port("A.Test:8443"), "a.test");
        assert_eq!(host_without_port("a.test"), "a.test");
        assert_eq!(host_without_port("[::1]:443"), "[::1]");
        assert_eq!(host_without_port("App.Example.com:8443"), "app.example.com");
        assert_eq!(host_without_port("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(host_without_port("a.test.:443"), "a.test");
    }
}
