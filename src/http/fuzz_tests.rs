//! No-panic property tests (issue 10) for what the proxy parses from a downstream request before
//! and while routing: the path normaliser, route lookup and path/Host rewrites, header value
//! templates, authorities and `Accept` headers. Inputs are arbitrary or edited valid values.

use std::path::Path;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::errors::{accept_quality, ClientKind};
use super::headers::{render_template, resolve_reference};
use super::request::{host_part, host_without_port, normalize_path, rewrite_path, upstream_host};
use super::routes::RouteTable;
use crate::fuzz_support::{config, mutated_text};

const PATHS: &[&str] = &[
    "/",
    "/a/b/../c/./d//e",
    "/api/v1/x?y",
    "/%2e%2E/%2f",
    "/..",
    "/a/.",
    "//",
    "/é/ü",
    "/a%5Cb",
];
const PATH_TOKENS: &[&str] = &[
    "/", ".", "..", "%", "%2", "%2F", "%5c", "\\", "?", "#", "é", "\0",
];

const TEMPLATES: &[&str] = &[
    "plain",
    "$$ ${pomerium.request.headers[\"X-A\"]} $pomerium.jwt. ${ unknown } $",
    "a$b${c}$$${",
    "é$é${é}",
];
const TEMPLATE_TOKENS: &[&str] = &[
    "$",
    "$$",
    "${",
    "}",
    "{",
    ".",
    "_",
    "é",
    "pomerium.",
    "[",
    "]",
    "\"",
];

const AUTHORITIES: &[&str] = &[
    "app.example.com:8443",
    "[::1]:443",
    "[::1",
    "a.b.",
    "é:1",
    ":",
    "",
];
const ACCEPTS: &[&str] = &[
    "text/html,application/json;q=0.9,*/*;q=0.8",
    "application/json;q=NaN, text/plain;q=1e9;level=1",
    "*/*;q=-1,text/*;q=",
];
const SEP_TOKENS: &[&str] = &[",", ";", "q=", "/", "*", " ", "=", "é", "0.5", "NaN", "inf"];

/// Routes with every path matcher and rewrite kind.
const ROUTES: &str = "
routes:
  - {from: 'https://a.example.com', to: 'http://127.0.0.1:1/base/', prefix: /p}
  - {from: 'https://a.example.com', to: 'http://127.0.0.1:1', path: /exact, prefix_rewrite: ''}
  - {from: 'https://a.example.com', to: 'http://127.0.0.1:1', regex: '/r/(.*)', regex_rewrite_pattern: '^/r/(.*)$', regex_rewrite_substitution: 'é\\1'}
  - {from: 'https://*.example.com', to: 'http://127.0.0.1:1', host_path_regex_rewrite_pattern: '^/(\\w+)/.*', host_path_regex_rewrite_substitution: '\\1.internal', prefix_rewrite: /x}
  - {from: 'https://*', to: 'http://127.0.0.1:1', host_rewrite_header: X-Host}
";

fn table() -> &'static RouteTable {
    static T: std::sync::OnceLock<RouteTable> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let settings = crate::config::parse(ROUTES, Path::new("routes.yaml")).unwrap();
        let config = crate::config::build(settings).unwrap();
        RouteTable::new(config.routes, &[]).unwrap()
    })
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn paths_normalise_once_route_and_rewrite_without_panics(
        raw in mutated_text(PATHS, PATH_TOKENS),
        host in mutated_text(AUTHORITIES, SEP_TOKENS),
    ) {
        let rules = crate::config::request_rules::PathRules::default();
        let Ok(normal) = normalize_path(&raw, &rules) else {
            return Ok(());
        };
        let path = normal.path;
        prop_assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
        let again = normalize_path(&path, &rules).map(|n| n.path);
        prop_assert_eq!(again, Ok(path.clone()), "not idempotent: {:?}", raw);
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&host) {
            headers.insert(HeaderName::from_static("x-host"), v);
        }
        for h in [host_without_port(&host), "a.example.com".into(), "b.example.com".into()] {
            if let Some(entry) = table().find(&h, &path) {
                let rewritten = rewrite_path(&entry.route, &path);
                prop_assert!(rewritten.starts_with('/'), "{path:?} -> {rewritten:?}");
                for up in &entry.route.upstreams {
                    let _ = upstream_host(&entry.route, up, &host, &headers, &path);
                }
            }
        }
    }

    #[test]
    fn header_templates_authorities_and_accept_never_panic(
        template in mutated_text(TEMPLATES, TEMPLATE_TOKENS),
        authority in mutated_text(AUTHORITIES, SEP_TOKENS),
        accept in mutated_text(ACCEPTS, SEP_TOKENS),
    ) {
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("x-a"), HeaderValue::from_static("va"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            headers.insert(HeaderName::from_static("accept"), v);
        }
        let out = render_template(&template, &|r| resolve_reference(r, &headers));
        if !template.contains('$') {
            prop_assert_eq!(out, template);
        }
        let _ = host_part(&authority);
        let _ = host_without_port(&authority);
        let _ = accept_quality(&accept, "application", "json");
        let _ = ClientKind::detect(&headers);
    }
}
