//! Pure request checks and rewrites: header-name and path checks (spec 3.4), path
//! normalisation, upstream path and Host rewriting (spec 4).

use actix_web::http::header::HeaderMap;
use thiserror::Error;

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
}

/// Rejects header names containing `_` (Envoy's default `headers_with_underscores_action`).
pub fn check_header_names(headers: &HeaderMap) -> Result<(), RequestError> {
    for name in headers.keys() {
        if name.as_str().contains('_') {
            return Err(RequestError::UnderscoreHeader(name.as_str().to_string()));
        }
    }
    Ok(())
}

/// Checks and normalises a request path (no query): `%2F`/`%5C` are refused; dot segments are
/// resolved and runs of `/` merged.
pub fn normalize_path(raw: &str) -> Result<String, RequestError> {
    let escaped_slash = raw.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && ((w[1] == b'2' && w[2] | 0x20 == b'f') || (w[1] == b'5' && w[2] | 0x20 == b'c'))
    });
    if escaped_slash {
        return Err(RequestError::EscapedSlash);
    }
    if !raw.starts_with('/') {
        return Err(RequestError::BadPath(raw.to_string()));
    }
    // Most paths are already normal: no empty, `.` or `..` segment.
    let clean = !raw.contains("//")
        && !raw.contains("/./")
        && !raw.contains("/../")
        && !raw.ends_with("/.")
        && !raw.ends_with("/..");
    if clean {
        return Ok(raw.to_string());
    }
    let segments: Vec<&str> = raw[1..].split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let mut trailing = false;
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i == last;
        match *seg {
            "" | "." => trailing = is_last,
            ".." => {
                out.pop();
                trailing = is_last;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut path = String::with_capacity(raw.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    Ok(path)
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
pub fn upstream_host(
    route: &Route,
    upstream: &Upstream,
    client_host: &str,
    headers: &HeaderMap,
    path: &str,
) -> (String, bool) {
    match &route.host_rewrite {
        HostRewrite::Preserve => (client_host.to_string(), false),
        HostRewrite::UpstreamHost => (upstream.authority.clone(), true),
        HostRewrite::Literal(h) => (h.clone(), true),
        HostRewrite::FromHeader(name) => match headers.get(name).and_then(|v| v.to_str().ok()) {
            Some(v) if !v.is_empty() => (v.to_string(), true),
            _ => (upstream.authority.clone(), true),
        },
        HostRewrite::FromPath(re, sub) => {
            if re.is_match(path) {
                (re.replace(path, sub.as_str()).into_owned(), true)
            } else {
                (upstream.authority.clone(), true)
            }
        }
    }
}

/// `host[:port]` → lower-cased host without port (IPv6 brackets kept).
pub fn host_without_port(authority: &str) -> String {
    host_part(authority).to_ascii_lowercase()
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
        match a.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
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
        ];
        for (input, want) in cases {
            assert_eq!(normalize_path(input).unwrap(), want, "{input}");
        }
        assert_eq!(normalize_path("/a%2Fb"), Err(RequestError::EscapedSlash));
        assert_eq!(normalize_path("/a%5cb"), Err(RequestError::EscapedSlash));
        assert!(normalize_path("*").is_err());
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
    }
}
