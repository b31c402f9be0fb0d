use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::k8s::convert::testutil::{ingress, state, CLASS, SVC};
use crate::k8s::convert::{convert_ingress, ConversionContext, ConvertOptions};

const P: &str = "ingress.pomerium.io";

fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| {
            let key = if k.contains('/') {
                k.to_string()
            } else {
                format!("{NGINX_PREFIX}/{k}")
            };
            (key, v.to_string())
        })
        .collect()
}

fn tr(pairs: &[(&str, &str)]) -> Translation {
    translate(&ann(pairs), P, &AllowList::default())
}

fn ok(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let t = tr(pairs);
    assert!(t.errors.is_empty(), "{:?}", t.errors);
    t.annotations
}

fn policy(a: &BTreeMap<String, String>) -> Value {
    serde_json::from_str(a.get("policy").expect("policy")).unwrap()
}

fn one_error(pairs: &[(&str, &str)]) -> String {
    let t = tr(pairs);
    assert_eq!(t.errors.len(), 1, "{:?}", t.errors);
    t.errors[0].to_string()
}

#[test]
fn no_nginx_annotations_translate_to_nothing() {
    let t = translate(
        &ann(&[("ingress.pomerium.io/timeout", "5s")]),
        P,
        &AllowList::default(),
    );
    assert!(t.is_empty());
    assert!(t.annotations.is_empty());
}

#[test]
fn plain_nginx_ingress_is_public_with_websockets() {
    let a = ok(&[("ssl-redirect", "true")]);
    assert_eq!(
        a.get("allow_public_unauthenticated_access")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(a.get("allow_websockets").map(String::as_str), Some("true"));
    assert!(!a.contains_key("policy"));
}

#[test]
fn oauth2_proxy_auth_url_requires_sign_in() {
    let a = ok(&[
        ("auth-url", "https://$host/oauth2/auth"),
        (
            "auth-signin",
            "https://$host/oauth2/start?rd=$escaped_request_uri",
        ),
    ]);
    assert_eq!(
        a.get("allow_any_authenticated_user").map(String::as_str),
        Some("true")
    );
    assert!(!a.contains_key("allow_public_unauthenticated_access"));
}

#[test]
fn auth_url_with_allowed_emails_and_groups() {
    let a = ok(&[
        (
            "auth-url",
            "http://oauth2-proxy.auth.svc.cluster.local/oauth2/auth?allowed_groups=admins",
        ),
        ("auth-signin", "https://auth.example.com/oauth2/start"),
        (ALLOWED_EMAILS, "alice@example.com, carol@example.com"),
        (ALLOWED_EMAIL_DOMAINS, "corp.example.com"),
    ]);
    assert!(!a.contains_key("allow_any_authenticated_user"));
    assert_eq!(
        policy(&a),
        json!([{"allow": {"or": [
            {"email": {"is": "alice@example.com"}},
            {"email": {"is": "carol@example.com"}},
            {"domain": {"is": "corp.example.com"}},
            {"groups": {"has": "admins"}},
        ]}}])
    );
}

#[test]
fn convert_flags_add_to_the_allow_list_and_star_domain_means_anyone_signed_in() {
    let extra = AllowList {
        emails: vec!["bob@example.com".into()],
        ..Default::default()
    };
    let t = translate(&ann(&[("auth-url", "https://x/oauth2/auth")]), P, &extra);
    assert_eq!(
        policy(&t.annotations),
        json!([{"allow": {"or": [{"email": {"is": "bob@example.com"}}]}}])
    );
    let star = AllowList {
        domains: vec!["*".into()],
        ..Default::default()
    };
    let t = translate(&ann(&[("auth-url", "https://x/oauth2/auth")]), P, &star);
    assert_eq!(
        policy(&t.annotations),
        json!([{"allow": {"or": [{"authenticated_user": true}]}}])
    );
}

#[test]
fn explicit_pomerium_policy_is_kept_and_merged_with_source_ranges() {
    let a = ok(&[
        ("auth-url", "https://x/oauth2/auth"),
        ("whitelist-source-range", "10.0.0.0/8"),
        (
            "ingress.pomerium.io/policy",
            "allow:\n  and:\n    - email:\n        is: a@b.c\n",
        ),
    ]);
    assert!(!a.contains_key("allow_any_authenticated_user"));
    assert_eq!(
        policy(&a),
        json!([
            {"allow": {"and": [{"email": {"is": "a@b.c"}}]}},
            {"deny": {"not": [{"source_ip": ["10.0.0.0/8"]}]}}
        ])
    );
}

#[test]
fn non_oauth2_proxy_auth_url_is_rejected() {
    let e = one_error(&[("auth-url", "https://auth.example.com/verify")]);
    assert!(e.starts_with("nginx.ingress.kubernetes.io/auth-url: invalid value \"https://auth.example.com/verify\": only oauth2-proxy"), "{e}");
}

#[test]
fn auth_signin_without_auth_url_is_rejected() {
    let e = one_error(&[("auth-signin", "https://x/oauth2/start")]);
    assert!(
        e.contains("needs nginx.ingress.kubernetes.io/auth-url"),
        "{e}"
    );
}

#[test]
fn allowed_emails_without_auth_url_is_rejected() {
    let e = one_error(&[("ssl-redirect", "true"), (ALLOWED_EMAILS, "a@b.c")]);
    assert!(
        e.contains("rampart.io/allowed-emails needs an oauth2-proxy auth-url"),
        "{e}"
    );
}

#[test]
fn auth_response_headers() {
    let a = ok(&[
        ("auth-url", "https://x/oauth2/auth"),
        (
            "auth-response-headers",
            "X-Auth-Request-User, X-Auth-Request-Email, Authorization",
        ),
    ]);
    assert_eq!(
        a.get("pass_identity_headers").map(String::as_str),
        Some("true")
    );
    let h: Value = serde_json::from_str(&a["set_request_headers"]).unwrap();
    assert_eq!(h, json!({"Authorization": "Bearer ${pomerium.id_token}"}));
    let e = one_error(&[
        ("auth-url", "https://x/oauth2/auth"),
        ("auth-response-headers", "X-Custom"),
    ]);
    assert!(
        e.contains("header X-Custom is not an oauth2-proxy header"),
        "{e}"
    );
}

#[test]
fn source_ranges_become_source_ip_deny_rules() {
    let a = ok(&[
        ("whitelist-source-range", "10.0.0.0/8, 192.168.1.1"),
        ("denylist-source-range", "10.1.0.0/16"),
    ]);
    assert_eq!(
        a.get("allow_public_unauthenticated_access")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        policy(&a),
        json!([
            {"deny": {"or": [{"source_ip": ["10.1.0.0/16"]}]}},
            {"deny": {"not": [{"source_ip": ["10.0.0.0/8", "192.168.1.1"]}]}}
        ])
    );
    let e = one_error(&[("whitelist-source-range", "10.0.0.0/8,nope")]);
    assert!(e.contains("nope is not an IP address or CIDR range"), "{e}");
}

#[test]
fn rewrite_target_and_use_regex() {
    let t = tr(&[("rewrite-target", "/$2"), ("use-regex", "true")]);
    assert!(t.errors.is_empty());
    assert!(t.regex_paths);
    assert_eq!(t.rewrite_target.as_deref(), Some("/\\2"));
    let e = one_error(&[("rewrite-target", "/$host/x")]);
    assert!(
        e.contains("nginx variable $host has no rampart equivalent"),
        "{e}"
    );
    let t = tr(&[("use-regex", "true")]);
    assert!(t.regex_paths && t.rewrite_target.is_none());
    assert!(one_error(&[("use-regex", "yes")]).contains("expected true or false"));
}

#[test]
fn apply_to_route_sets_regex_path_and_rewrite() {
    let t = tr(&[("rewrite-target", "/$2")]);
    let mut r = RouteConfig {
        prefix: Some("/api(/|$)(.*)".into()),
        ..Default::default()
    };
    t.apply_to_route(&mut r);
    assert_eq!(r.prefix, None);
    assert_eq!(r.regex.as_deref(), Some("(?i)/api(/|$)(.*).*"));
    assert_eq!(
        r.regex_rewrite_pattern.as_deref(),
        Some("(?i)^/api(/|$)(.*).*")
    );
    assert_eq!(r.regex_rewrite_substitution.as_deref(), Some("/\\2"));
    // Exact paths stay exact.
    let mut r = RouteConfig {
        path: Some("/x".into()),
        ..Default::default()
    };
    t.apply_to_route(&mut r);
    assert_eq!(r.path.as_deref(), Some("/x"));
    assert_eq!(r.regex, None);
}

#[test]
fn ssl_redirect() {
    ok(&[("ssl-redirect", "true"), ("force-ssl-redirect", "true")]);
    ok(&[("force-ssl-redirect", "false")]);
    let e = one_error(&[("ssl-redirect", "false")]);
    assert!(e.contains("HTTPS only"), "{e}");
}

#[test]
fn backend_protocol() {
    assert_eq!(
        ok(&[("backend-protocol", "HTTPS")])
            .get("secure_upstream")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        ok(&[("backend-protocol", "GRPCS")])
            .get("secure_upstream")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        ok(&[("backend-protocol", "grpc")])
            .get("h2c_upstream")
            .map(String::as_str),
        Some("true")
    );
    let a = ok(&[("backend-protocol", "HTTP")]);
    assert!(!a.contains_key("secure_upstream") && !a.contains_key("h2c_upstream"));
    assert!(one_error(&[("backend-protocol", "FCGI")]).contains("HTTP, HTTPS, GRPC, GRPCS and H2C"));
}

#[test]
fn proxy_timeouts_use_nginx_seconds() {
    let a = ok(&[
        ("proxy-read-timeout", "3600"),
        ("proxy-send-timeout", "120"),
    ]);
    assert_eq!(a.get("idle_timeout").map(String::as_str), Some("3600s"));
    assert_eq!(a.get("timeout").map(String::as_str), Some("0s"));
    let t = tr(&[("proxy-connect-timeout", "5")]);
    assert!(t.errors.is_empty());
    assert_eq!(t.notes.len(), 1);
    assert!(!t.annotations.contains_key("idle_timeout"));
    assert!(
        one_error(&[("proxy-read-timeout", "a while")]).contains("expected a number of seconds")
    );
    assert_eq!(parse_nginx_seconds("90s").unwrap(), Duration::from_secs(90));
    assert_eq!(
        parse_nginx_seconds("500ms").unwrap(),
        Duration::from_millis(500)
    );
    assert_eq!(parse_nginx_seconds("2m").unwrap(), Duration::from_secs(120));
}

#[test]
fn explicit_pomerium_annotation_wins() {
    let a = ok(&[
        ("proxy-read-timeout", "30"),
        ("ingress.pomerium.io/idle_timeout", "1m"),
    ]);
    assert!(!a.contains_key("idle_timeout"));
}

#[test]
fn proxy_body_size() {
    let get = |v: &str| {
        ok(&[("proxy-body-size", v)])
            .get("max_request_body_bytes")
            .cloned()
    };
    assert_eq!(get("0"), None);
    assert_eq!(get("8m").as_deref(), Some("8388608"));
    assert_eq!(get("512K").as_deref(), Some("524288"));
    assert_eq!(get("1g").as_deref(), Some("1073741824"));
    assert_eq!(get("1000").as_deref(), Some("1000"));
    let e = one_error(&[("proxy-body-size", "lots")]);
    assert!(
        e.starts_with(
            "nginx.ingress.kubernetes.io/proxy-body-size: invalid value \"lots\": expected a size"
        ),
        "{e}"
    );
}

#[test]
fn cors() {
    assert!(!ok(&[("enable-cors", "false")]).contains_key("cors"));
    let a = ok(&[("enable-cors", "true")]);
    assert_eq!(
        serde_json::from_str::<Value>(&a["cors"]).unwrap(),
        json!({})
    );
    let a = ok(&[
        ("enable-cors", "true"),
        (
            "cors-allow-origin",
            "https://a.example.com, https://b.example.com",
        ),
        ("cors-allow-methods", "GET, POST"),
        ("cors-allow-headers", "X-Custom"),
        ("cors-expose-headers", "X-Total"),
        ("cors-allow-credentials", "false"),
        ("cors-max-age", "600"),
    ]);
    assert_eq!(
        serde_json::from_str::<Value>(&a["cors"]).unwrap(),
        json!({"allow_origin": ["https://a.example.com", "https://b.example.com"],
               "allow_methods": "GET, POST", "allow_headers": "X-Custom",
               "expose_headers": "X-Total", "allow_credentials": false, "max_age": 600})
    );
    assert!(one_error(&[("cors-allow-origin", "*")])
        .contains("needs nginx.ingress.kubernetes.io/enable-cors"));
    let t = tr(&[("enable-cors", "true"), ("cors-max-age", "soon")]);
    assert!(
        t.errors[0].to_string().contains("cors-max-age"),
        "{:?}",
        t.errors
    );
    let t = tr(&[
        ("enable-cors", "true"),
        ("cors-allow-origin", "a.example.com"),
    ]);
    assert!(
        t.errors[0]
            .to_string()
            .contains("must be * or start with http"),
        "{:?}",
        t.errors
    );
}

#[test]
fn upstream_vhost() {
    assert_eq!(
        ok(&[("upstream-vhost", "internal.example.com")])
            .get("host_rewrite")
            .map(String::as_str),
        Some("internal.example.com")
    );
    assert!(one_error(&[("upstream-vhost", "$host")]).contains("nginx variables are not supported"));
}

#[test]
fn redirects() {
    let rd = |pairs: &[(&str, &str)]| -> Value {
        serde_json::from_str(&ok(pairs)["return_redirect"]).unwrap()
    };
    assert_eq!(
        rd(&[("permanent-redirect", "https://new.example.com/")]),
        json!({"location": "https://new.example.com/", "code": 301})
    );
    assert_eq!(
        rd(&[
            ("permanent-redirect", "https://n.example.com"),
            ("permanent-redirect-code", "308")
        ]),
        json!({"location": "https://n.example.com", "code": 308})
    );
    assert_eq!(
        rd(&[("temporal-redirect", "https://t.example.com")]),
        json!({"location": "https://t.example.com", "code": 302})
    );
    assert_eq!(
        rd(&[("app-root", "/app")]),
        json!({"location": "/app", "code": 302, "path": "/"})
    );
    assert!(one_error(&[
        ("permanent-redirect", "https://a"),
        ("permanent-redirect-code", "200")
    ])
    .contains("not a redirect status"));
    assert!(
        one_error(&[("app-root", "/a"), ("temporal-redirect", "https://b")])
            .contains("only one of")
    );
    assert!(one_error(&[("permanent-redirect-code", "301")])
        .contains("needs nginx.ingress.kubernetes.io/permanent-redirect"));
    assert!(one_error(&[("app-root", "app")]).contains("must be a path or an http(s) URL"));
    assert!(one_error(&[("from-to-www-redirect", "true")]).contains("not supported by rampart"));
}

#[test]
fn cookie_affinity_is_sticky() {
    let t = tr(&[
        ("affinity", "cookie"),
        ("session-cookie-name", "route"),
        ("session-cookie-max-age", "3600"),
    ]);
    assert!(t.errors.is_empty());
    assert_eq!(
        t.annotations
            .get("load_balancing_policy")
            .map(String::as_str),
        Some("ring_hash")
    );
    assert_eq!(
        t.annotations.get("sticky_cookie").map(String::as_str),
        Some("route")
    );
    assert_eq!(t.notes.len(), 1, "{:?}", t.notes);
    let t = tr(&[("affinity", "cookie")]);
    assert_eq!(
        t.annotations.get("sticky_cookie").map(String::as_str),
        Some("INGRESSCOOKIE")
    );
    assert!(one_error(&[("affinity", "ip")]).contains("only cookie affinity"));
    assert!(one_error(&[("session-cookie-name", "x")])
        .contains("needs nginx.ingress.kubernetes.io/affinity"));
}

#[test]
fn snippets_are_rejected_by_name() {
    for k in ["configuration-snippet", "server-snippet", "auth-snippet"] {
        let e = one_error(&[(k, "more_set_headers \"X: y\";")]);
        assert!(
            e.starts_with(&format!("{NGINX_PREFIX}/{k} is not supported: snippets")),
            "{e}"
        );
    }
}

#[test]
fn unknown_and_unsupported_annotations_are_rejected() {
    assert_eq!(
        one_error(&[("made-up", "1")]),
        "nginx.ingress.kubernetes.io/made-up is not a supported ingress-nginx annotation"
    );
    assert!(one_error(&[("limit-rps", "5")]).contains("rate limiting"));
    assert!(one_error(&[("canary", "true")]).contains("canary"));
    ok(&[
        ("proxy-buffering", "off"),
        ("proxy-request-buffering", "on"),
    ]);
    assert!(one_error(&[("proxy-http-version", "1.0")]).contains("rampart streams"));
}

#[test]
fn every_error_is_reported() {
    let t = tr(&[
        ("server-snippet", "x"),
        ("limit-rps", "1"),
        ("proxy-read-timeout", "60"),
    ]);
    assert_eq!(t.errors.len(), 2);
    let text = t.check().unwrap_err().to_string();
    assert!(
        text.contains("limit-rps") && text.contains("server-snippet"),
        "{text}"
    );
    assert_eq!(t.used, vec!["proxy-read-timeout".to_string()]);
}

// --- through the Ingress conversion ---------------------------------------------------------

const NGINX_ING: &str = "
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ing
  namespace: default
  annotations:
    nginx.ingress.kubernetes.io/auth-url: https://$host/oauth2/auth
    nginx.ingress.kubernetes.io/auth-signin: https://$host/oauth2/start?rd=$escaped_request_uri
    nginx.ingress.kubernetes.io/rewrite-target: /$2
    nginx.ingress.kubernetes.io/proxy-body-size: 8m
    rampart.io/allowed-emails: alice@example.com
spec:
  ingressClassName: pomerium
  rules:
  - host: a.example.com
    http:
      paths:
      - path: /api(/|$)(.*)
        pathType: ImplementationSpecific
        backend: {service: {name: svc, port: {name: http}}}
";

fn convert(
    ing: &str,
    compat: bool,
    class: &str,
) -> Result<crate::k8s::convert::ConvertedIngress, String> {
    let st = state(&format!("{class}\n---\n{SVC}"));
    let opts = ConvertOptions {
        ingress_nginx_compat: compat,
        ..Default::default()
    };
    let ctx = ConversionContext::new(&st, &opts);
    convert_ingress(&ingress(ing), &ctx).map_err(|e| e.to_string())
}

#[test]
fn ingress_converts_with_compat() {
    let c = convert(NGINX_ING, true, CLASS).unwrap();
    let r = &c.routes[0];
    assert_eq!(r.regex.as_deref(), Some("(?i)/api(/|$)(.*).*"));
    assert_eq!(r.regex_rewrite_substitution.as_deref(), Some("/\\2"));
    assert_eq!(r.allow_websockets, Some(true));
    assert_eq!(r.max_request_body_bytes, Some(8 << 20));
    assert_eq!(
        r.policy,
        Some(json!([{"allow": {"or": [{"email": {"is": "alice@example.com"}}]}}]))
    );
    // The route loads: the rewrite works on a real path.
    let route = crate::config::route::validate_route(
        "t",
        "t".into(),
        r,
        &crate::config::route::RouteDefaults::default(),
    )
    .unwrap();
    assert!(route.path.matches("/API/v1/users"));
    assert!(!route.path.matches("/apix"));
    assert_eq!(
        crate::http::request::rewrite_path(&route, "/api/v1/users"),
        "/v1/users"
    );
}

#[test]
fn without_compat_nginx_annotations_are_ignored() {
    let c = convert(NGINX_ING, false, CLASS).unwrap();
    let r = &c.routes[0];
    assert_eq!(r.prefix.as_deref(), Some("/api(/|$)(.*)"));
    assert_eq!(r.policy, None);
    assert_eq!(r.regex_rewrite_pattern, None);
}

#[test]
fn class_annotation_turns_compat_on() {
    let class = format!("{}\nmetadata: {{name: pomerium, annotations: {{{COMPAT_CLASS_ANNOTATION}: \"true\"}}}}\n", "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nspec: {controller: pomerium.io/ingress-controller}");
    let c = convert(NGINX_ING, false, &class).unwrap();
    assert!(c.routes[0].regex.is_some());
}

#[test]
fn snippet_rejects_the_ingress() {
    let ing = NGINX_ING.replace(
        "    rampart.io/allowed-emails",
        "    nginx.ingress.kubernetes.io/configuration-snippet: 'more_set_headers \"X: y\";'\n    rampart.io/allowed-emails",
    );
    let e = convert(&ing, true, CLASS).unwrap_err();
    assert!(
        e.starts_with("parsing ingress: annotations: ingress-nginx annotations: nginx.ingress.kubernetes.io/configuration-snippet is not supported"),
        "{e}"
    );
}
