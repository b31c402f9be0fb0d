//! No-panic property tests (issue 10) for the config file parser and checker: any text, most of
//! it a valid config with random edits, is parsed and checked (routes, durations, URLs, regexes,
//! headers, policies, sign-in settings) into a config or an error, never a panic.

use std::path::Path;

use proptest::prelude::*;

use crate::fuzz_support::{config, mutated_text, YAML_TOKENS};
use crate::http::auth::AuthSettings;

const CONFIG_SEEDS: &[&str] = &[
    include_str!("../../examples/config.yaml"),
    "address: ':8443'
insecure_server: false
http_redirect_addr: 127.0.0.1:8080
metrics_address: '[::1]:9090'
default_upstream_timeout: 1m30s
timeout_idle: 5m
cookie_expire: 14h
cookie_same_site: lax
set_response_headers: {X-Frame-Options: DENY}
authenticate_service_url: https://authenticate.example.com
idp_provider: oidc
idp_provider_url: https://idp.example.com
idp_client_id: rampart
idp_client_secret: secret
idp_request_params: {prompt: consent}
shared_secret: ZGVtby1zaGFyZWQtc2VjcmV0LWRvLW5vdC11c2UhISE=
cookie_secret: ZGVtby1jb29raWUtc2VjcmV0LWRvLW5vdC11c2UhISE=
jwt_claims_headers: {X-Email: email, X-Groups: groups}
databroker_storage_type: redis
databroker_storage_connection_string: redis://127.0.0.1:6379/0
routes:
  - from: https://*.example.com
    to: ['http://a:80,2', 'https://b:8443,1']
    regex: '^/api/(v[0-9]+)/.*$'
    regex_rewrite_pattern: '^/api/(.*)'
    regex_rewrite_substitution: '/\\1'
    host_path_regex_rewrite_pattern: '^/(.+)/.*'
    host_path_regex_rewrite_substitution: '\\1'
    timeout: 0s
    idle_timeout: 1h
    allow_websockets: true
    load_balancing_policy: RING_HASH
    set_request_headers: {X-A: b}
    remove_request_headers: [X-B]
    rewrite_response_headers: [{header: Location, prefix: 'http://a/', value: 'https://x/'}]
    tls_skip_verify: true
    tls_server_name: b.internal
    allowed_users: [alice@example.com]
    allowed_domains: [example.com]
    allowed_idp_claims: {groups: [admins, 1]}
    policy: |
      allow:
        or:
          - email: {ends_with: '@example.com'}
  - from: https://a.example.com
    to: http://127.0.0.1:9000/base/
    path: /exact
    id: exact
    preserve_host_header: true
    cors_allow_preflight: true
    allow_any_authenticated_user: true
  - from: https://*
    to: h2c://127.0.0.1:9001
    prefix: /p
    prefix_rewrite: /q
    host_rewrite_header: X-Host
    allow_public_unauthenticated_access: true
",
    r#"{"address":"127.0.0.1:0","insecure_server":true,"routes":[{"from":"https://j.example.com","to":"http://127.0.0.1:1","timeout":"10ms","policy":[{"allow":{"and":[{"http_method":{"in":["GET"]}}]}},{"deny":{"or":[{"source_ip":"10.0.0.0/8"}]}}]}]}"#,
];

const CONFIG_TOKENS: &[&str] = &[
    "routes:\n  - ",
    "from: ",
    "to: ",
    "https://",
    "http://",
    "h2c://",
    "*.",
    "https://*",
    ":443",
    ":0",
    "[::]:",
    "/",
    "path",
    "prefix",
    "regex",
    "(",
    ")",
    "\\1",
    "$",
    "^",
    "timeout",
    "1h",
    "-1s",
    "5x",
    "0.5ms",
    "9999999999999h",
    "policy",
    "allowed_users",
    "allowed_domains",
    "allowed_idp_claims",
    "allow_public_unauthenticated_access",
    "allow_any_authenticated_user",
    "set_request_headers",
    "load_balancing_policy",
    ",0",
    ",-1",
    ",99999999999",
    "tls_",
    "_file",
    "certificates",
    "jwt_claims_headers",
    "cookie_same_site",
    "none",
    "databroker_storage_type",
    "memory",
    "redis://",
    "rediss://",
    "redis+unix://",
    "idp_provider",
    "google",
];

fn tokens() -> &'static [&'static str] {
    static ALL: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| CONFIG_TOKENS.iter().chain(YAML_TOKENS).copied().collect())
}

proptest! {
    #![proptest_config(config(2500))]

    #[test]
    fn config_text_never_panics(text in mutated_text(CONFIG_SEEDS, tokens())) {
        let Ok(settings) = super::parse(&text, Path::new("fuzz.yaml")) else {
            return Ok(());
        };
        let _ = AuthSettings::from_settings(&settings);
        let _ = super::build_with(settings.clone(), false);
        if let Ok(config) = super::build(settings) {
            for route in &config.routes {
                let _ = route.host.matches("a.example.com");
                let _ = route.path.matches("/api/v1/x");
            }
        }
    }
}

#[test]
fn seeds_are_valid_configs() {
    for seed in CONFIG_SEEDS {
        let settings = super::parse(seed, Path::new("seed.yaml")).unwrap();
        super::build(settings.clone()).unwrap();
        AuthSettings::from_settings(&settings).unwrap();
    }
}

/// Regression (found by `http::fuzz_tests`): a wildcard route's suffix compared against a host
/// whose byte at the cut is inside a multi-byte character sliced the string off a character
/// boundary and panicked.
#[test]
fn wildcard_host_match_with_multibyte_host_does_not_panic() {
    let suffix = super::route::HostMatch::Wildcard(".example.com".into());
    // 12 bytes from the end falls inside `é` (2 bytes).
    assert!(!suffix.matches("éxample.com"));
    assert!(!suffix.matches("aé.xample.com"));
    assert!(!suffix.matches("ԧ���;�a.b"));
    assert!(suffix.matches("é.example.com"));
    assert!(suffix.matches("A.EXAMPLE.com"));
    assert!(!suffix.matches(".example.com"));
}
