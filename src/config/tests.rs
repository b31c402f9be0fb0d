use std::path::Path;
use std::time::Duration;

use super::route::{HostMatch, PathMatch, PathRewrite};
use super::*;

fn build_yaml(text: &str) -> Result<Config, ConfigError> {
    build(parse(text, Path::new("test.yaml"))?)
}

#[test]
fn minimal_route_defaults() {
    let cfg = build_yaml(
        "address: ':8443'\nroutes:\n  - from: https://app.example.com\n    to: http://127.0.0.1:9000\n",
    )
    .unwrap();
    assert_eq!(cfg.proxy.address.port(), 8443);
    let r = &cfg.routes[0];
    assert_eq!(r.host, HostMatch::Exact("app.example.com".into()));
    assert!(matches!(&r.path, PathMatch::Prefix(p) if p == "/"));
    assert_eq!(r.timeout, Some(Duration::from_secs(30)));
    assert_eq!(r.idle_timeout, None);
    assert_eq!(r.upstreams[0].authority, "127.0.0.1:9000");
    assert!(!r.public);
    assert_eq!(r.id, "route-0");
}

#[test]
fn unknown_key_names_key_and_location() {
    let err =
        build_yaml("routes:\n  - from: https://a.example.com\n    to: http://x\n    timout: 5s\n")
            .unwrap_err()
            .to_string();
    assert!(err.contains("unknown field `timout`"), "{err}");
    assert!(err.contains("routes[0]"), "{err}");
    assert!(err.contains("line 4"), "{err}");
    let err = build_yaml("adress: ':443'\n").unwrap_err().to_string();
    assert!(err.contains("unknown field `adress`"), "{err}");
}

#[test]
fn route_errors_name_the_route() {
    let cases = [
        ("from: https://a.example.com/x\n    to: http://x", "contains a path, but it should be set using the path field instead"),
        ("from: https://a.example.com", "policy should have either `to` or `redirect` or `response` defined"),
        ("from: https://a.example.com\n    to: 'not a url'", "invalid `to` URL \"not a url\""),
        ("from: https://a.example.com\n    to: http://x\n    timeout: 5x", "`timeout`: invalid duration \"5x\""),
        ("from: https://a.example.com\n    to: http://x\n    idle_timeout: '10'", "`idle_timeout`: invalid duration \"10\": missing unit"),
        ("from: https://a.example.com\n    to: http://x\n    regex: '(['", "`regex`: regex \"([\" does not compile"),
        ("from: https://a.example.com\n    to: http://x\n    prefix_rewrite: /a\n    regex_rewrite_pattern: x\n    regex_rewrite_substitution: y", "only prefix_rewrite or regex_rewrite_pattern"),
        ("from: https://a.example.com\n    to: http://x\n    tls_client_cert: /nonexistent/c.pem", "client certificate key and cert both must be non-empty"),
        ("from: https://a.example.com\n    to: http://x\n    tls_custom_ca_file: /nonexistent/ca.pem", "`tls_custom_ca`: cannot read /nonexistent/ca.pem"),
        ("from: https://a.example.com\n    to: ['http://x,0']", "zero load balancing weight not permitted"),
        ("from: ftp://a.example.com\n    to: http://x", "must start with https://"),
        ("from: tcp+https://db.example.com:5432\n    to: tcp://db:5432", "TCP and UDP routes (tcp+https://, udp+https://; the tcp_upstream and udp_upstream annotations) are not supported by rampart yet"),
        ("from: https://a.example.com\n    to: http://x\n    set_request_headers: {'bad header': x}", "invalid header name \"bad header\""),
        ("from: https://a.example.com\n    to: http://x\n    load_balancing_policy: FASTEST", "unknown policy \"FASTEST\""),
        ("from: https://a.example.com\n    to: http://x\n    health_checks: [{timeout: 1s, interval: 1s, healthy_threshold: 1, unhealthy_threshold: 1}]", "`health_checks[0]`: http_health_check or tcp_health_check is required"),
        ("from: https://a.example.com\n    to: http://x\n    outlier_detection: {base_ejection_time: soon}", "`outlier_detection.base_ejection_time`: invalid duration \"soon\""),
        ("from: https://a.example.com\n    to: http://x\n    healthy_panic_threshold: 150", "`healthy_panic_threshold`: 150 is not a percentage (0-100)"),
        ("from: https://a.example.com\n    to: http://x\n    bearer_token_format: jwt", "`bearer_token_format`: invalid bearer token format: jwt"),
        ("from: https://a.example.com\n    to: http://x\n    tls_downstream_client_ca_file: /nonexistent/ca.pem", "`tls_downstream_client_ca`: cannot read /nonexistent/ca.pem"),
        ("from: https://a.example.com\n    to: http://x\n    tls_downstream_client_ca: LS0tLS1CRUdJTiBOT1RISU5HLS0tLS0KeHgKLS0tLS1FTkQgTk9USElORy0tLS0tCg==", "`tls_downstream_client_ca`: no PEM certificate found"),
        ("from: https://a.example.com\n    to: http://x\n    kubernetes_service_account_token: a\n    kubernetes_service_account_token_file: /t", "are both set; use one"),
    ];
    for (route, want) in cases {
        let text =
            format!("routes:\n  - from: https://ok.example.com\n    to: http://ok\n  - {route}\n");
        let err = build_yaml(&text).unwrap_err().to_string();
        assert!(err.contains("routes[1] (from "), "{route}: {err}");
        assert!(err.contains(want), "{route}: expected {want:?} in {err}");
        assert!(!err.contains("routes[0]"), "{err}");
    }
}

#[test]
fn wildcard_and_any_hosts() {
    let cfg = build_yaml("routes:\n  - from: https://*.example.com\n    to: http://x\n  - from: https://*\n    to: http://y\n").unwrap();
    let hosts: Vec<_> = cfg.routes.iter().map(|r| r.host.clone()).collect();
    assert!(hosts.contains(&HostMatch::Wildcard(".example.com".into())));
    assert!(hosts.contains(&HostMatch::Any));
    assert!(HostMatch::Wildcard(".example.com".into()).matches("a.b.example.com"));
    assert!(!HostMatch::Wildcard(".example.com".into()).matches("example.com"));
}

#[test]
fn routes_sorted_like_pomerium() {
    let cfg = build_yaml(
        "routes:
  - {from: https://b.test, to: http://x, id: b}
  - {from: https://a.test, to: http://x, prefix: /a, id: a-prefix-a}
  - {from: https://a.test, to: http://x, prefix: /a/b, id: a-prefix-ab}
  - {from: https://a.test, to: http://x, path: /exact, id: a-exact}
  - {from: https://a.test, to: http://x, regex: '/r.*', id: a-regex}
  - {from: https://a.test, to: http://x, id: a-none}
",
    )
    .unwrap();
    let ids: Vec<_> = cfg.routes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "a-exact",
            "a-regex",
            "a-prefix-ab",
            "a-prefix-a",
            "a-none",
            "b"
        ]
    );
}

#[test]
fn to_path_acts_as_prefix_rewrite_and_regex_substitution_converts() {
    let cfg = build_yaml(
        "routes:
  - {from: https://a.test, to: http://x/base, prefix: /app}
  - {from: https://b.test, to: http://x, regex_rewrite_pattern: '^/old/(.*)$', regex_rewrite_substitution: '/new/\\1'}
",
    )
    .unwrap();
    let a = cfg
        .routes
        .iter()
        .find(|r| r.from == "https://a.test")
        .unwrap();
    assert!(matches!(&a.path_rewrite, PathRewrite::Prefix(p) if p == "/base"));
    let b = cfg
        .routes
        .iter()
        .find(|r| r.from == "https://b.test")
        .unwrap();
    match &b.path_rewrite {
        PathRewrite::Regex(re, sub) => assert_eq!(re.replace("/old/x/y", sub.as_str()), "/new/x/y"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn global_settings_checked() {
    let err = build_yaml("default_upstream_timeout: forever\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`default_upstream_timeout`"), "{err}");
    let err = build_yaml("address: 'nohost:notaport'\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`address`"), "{err}");
    let err = build_yaml("certificate_file: /x.pem\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("certificate_key_file"), "{err}");
    let cfg = build_yaml("set_response_headers: {disable: 'true'}\n").unwrap();
    assert!(cfg.proxy.set_response_headers.is_empty());
    let cfg = build_yaml("{}").unwrap();
    assert_eq!(cfg.proxy.set_response_headers.len(), 3);
    assert_eq!(cfg.proxy.address.port(), 443);
}

#[test]
fn websocket_routes_have_no_default_timeout() {
    let cfg = build_yaml(
        "routes:\n  - {from: https://a.example.com, to: http://x, allow_websockets: true}\n  - {from: https://b.example.com, to: http://x, allow_websockets: true, timeout: 5s}\n",
    )
    .unwrap();
    assert_eq!(cfg.routes[0].timeout, None);
    assert_eq!(cfg.routes[1].timeout, Some(Duration::from_secs(5)));
}

#[test]
fn bad_policies_reject_the_file_naming_route_and_place() {
    let err = build_yaml(
        "routes:
  - {from: https://ok.test, to: http://x, allow_public_unauthenticated_access: true}
  - from: https://bad.test
    to: http://x
    policy:
      allow:
        maybe:
          - email: {is: a@b.c}
",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("routes[1] (from https://bad.test)"), "{err}");
    assert!(
        err.contains(
            "unsupported conditional \"maybe\", only and, or, not, nor and action are allowed"
        ),
        "{err}"
    );
    let err = build_yaml(
        "routes:
  - {from: https://a.test, to: http://x, allow_public_unauthenticated_access: true, allowed_users: [a@b.c]}
",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("config: policy route marked as public but contains whitelists"),
        "{err}"
    );
    // A policy given as text (as annotations carry it) is parsed and checked too.
    let err = build_yaml(
        "routes:
  - {from: https://a.test, to: http://x, policy: '{\"allow\":{\"or\":[{\"emial\":\"x\"}]}}'}
",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unknown policy criterion: emial"), "{err}");
}

#[test]
fn request_rules_defaults_settings_and_errors() {
    use super::request_rules::{EscapedSlashesAction, UnderscoreHeadersAction};
    let cfg = build_yaml("log_level: info\n").unwrap();
    assert_eq!(cfg.proxy.request_rules, RequestRules::default());
    assert!(cfg.proxy.request_rules.path.normalize);
    assert!(cfg.proxy.request_rules.path.merge_slashes);
    assert_eq!(
        cfg.proxy.request_rules.body_idle_timeout,
        Some(Duration::from_secs(30))
    );
    let cfg = build_yaml(
        "normalize_path: false\nmerge_slashes: false\npath_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT\nheaders_with_underscores_action: drop_header\nrequest_body_idle_timeout: 0s\n",
    )
    .unwrap();
    let r = cfg.proxy.request_rules;
    assert!(!r.path.normalize && !r.path.merge_slashes);
    assert_eq!(
        r.path.escaped_slashes,
        EscapedSlashesAction::UnescapeAndRedirect
    );
    assert_eq!(r.underscore_headers, UnderscoreHeadersAction::DropHeader);
    assert_eq!(r.body_idle_timeout, None);
    for (text, want) in [
        (
            "path_with_escaped_slashes_action: decode\n",
            "config: `path_with_escaped_slashes_action`: unknown value \"decode\", expected one of keep_unchanged, reject_request, unescape_and_redirect, unescape_and_forward",
        ),
        (
            "headers_with_underscores_action: yes\n",
            "config: `headers_with_underscores_action`: unknown value \"yes\"",
        ),
        (
            "request_body_idle_timeout: 5x\n",
            "config: `request_body_idle_timeout`: invalid duration \"5x\"",
        ),
    ] {
        let err = build_yaml(text).unwrap_err().to_string();
        assert!(err.starts_with(want), "{text}: {err}");
    }
}

#[test]
fn allow_upgrades_folds_in_websockets_and_spdy() {
    let cfg = build_yaml(
        "routes:
  - {from: https://a.test, to: http://x, allow_upgrades: [WebSocket, connect-udp], allow_spdy: true}
  - {from: https://b.test, to: http://x}
",
    )
    .unwrap();
    let a = cfg
        .routes
        .iter()
        .find(|r| r.from == "https://a.test")
        .unwrap();
    assert_eq!(
        a.allow_upgrades,
        vec!["connect-udp", "spdy/3.1", "websocket"]
    );
    assert_eq!(a.timeout, None, "upgrade routes get no default deadline");
    let b = cfg
        .routes
        .iter()
        .find(|r| r.from == "https://b.test")
        .unwrap();
    assert!(b.allow_upgrades.is_empty());
}

#[test]
fn health_options_and_token_reach_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k\n").unwrap();
    let cfg = build_yaml(&format!(
        "routes:
  - from: https://a.test
    to: [http://x, http://y]
    kubernetes_service_account_token_file: {}
    bearer_token_format: IDP_ACCESS_TOKEN
    healthy_panic_threshold: 0
    outlier_detection: {{consecutive_5xx: 2}}
    health_checks: [{{timeout: 1s, interval: 5s, healthy_threshold: 2, unhealthy_threshold: 3, tcp_health_check: {{}}}}]
",
        token.display()
    ))
    .unwrap();
    let r = &cfg.routes[0];
    assert_eq!(r.service_account_token.as_ref().unwrap(), "Bearer t0k");
    assert_eq!(r.bearer_token_format.as_deref(), Some("idp_access_token"));
    assert_eq!(r.health.panic_threshold, 0.0);
    assert_eq!(r.health.outlier.as_ref().unwrap().consecutive_5xx, 2);
    assert_eq!(r.health.checks[0].unhealthy_threshold, 3);
    assert_eq!(r.health.checks[0].kind, super::health::CheckKind::Tcp);
}
