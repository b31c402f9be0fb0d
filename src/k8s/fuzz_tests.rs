//! No-panic property tests (issue 10) for the Ingress side: the `ingress.pomerium.io/*`
//! annotation parser over any keys and (mostly mutated valid) values, and `rampart render`'s
//! whole path (manifest YAML → objects → reconciler → routes) over mutated manifests.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use proptest::prelude::*;

use super::annotations::{flags, parse_annotations, secret_refs};
use super::convert::ConvertOptions;
use super::render::{parse_documents, render};
use crate::fuzz_support::{config, mutated_text, YAML_TOKENS};

const PREFIX: &str = "ingress.pomerium.io";

/// Annotation keys (without the prefix): every group, plus unknown and removed ones.
const KEYS: &[&str] = &[
    "path_regex",
    "secure_upstream",
    "service_proxy_upstream",
    "tcp_upstream",
    "udp_upstream",
    "ssh_upstream",
    "subtle_allow_empty_host",
    "allow_any_authenticated_user",
    "allow_public_unauthenticated_access",
    "allow_spdy",
    "allow_websockets",
    "cors_allow_preflight",
    "preserve_host_header",
    "tls_skip_verify",
    "pass_identity_headers",
    "timeout",
    "idle_timeout",
    "bearer_token_format",
    "description",
    "host_rewrite",
    "host_rewrite_header",
    "host_path_regex_rewrite_pattern",
    "host_path_regex_rewrite_substitution",
    "prefix_rewrite",
    "regex_rewrite_pattern",
    "regex_rewrite_substitution",
    "tls_server_name",
    "load_balancing_policy",
    "depends_on",
    "remove_request_headers",
    "allow_upgrades",
    "rewrite_response_headers",
    "set_request_headers",
    "set_response_headers",
    "circuit_breaker_thresholds",
    "upstream_tunnel",
    "allowed_users",
    "allowed_domains",
    "allowed_idp_claims",
    "policy",
    "health_checks",
    "outlier_detection",
    "lb_policy",
    "least_request_lb_config",
    "ring_hash_lb_config",
    "maglev_lb_config",
    "healthy_panic_threshold",
    "tls_custom_ca_secret",
    "tls_client_secret",
    "tls_downstream_client_ca_secret",
    "set_request_headers_secret",
    "set_response_headers_secret",
    "kubernetes_service_account_token_secret",
    "identity_provider_secret",
    "mcp_server",
    "mcp_server_max_request_bytes",
    "mcp_server_upstream_oauth2_secret",
    "mcp_server_upstream_oauth2_scopes",
    "mcp_client",
    "allowed_groups",
    "timout",
    "",
];

/// Valid values of the various annotation types (booleans, durations, lists, maps, objects,
/// policies, Secret names).
const VALUES: &[&str] = &[
    "true", "false", "TRUE", "", "30s", "1h2m3.5s", "0", "ROUND_ROBIN", "MAGLEV", "/prefix",
    "^/(.*)$", "\\1", "x.internal", "[a@example.com, b@example.com]", "[\"example.com\"]",
    "{\"groups\": [\"admins\", 1]}", "{X-A: b, X-N: 1, X-T: true}", "[X-Remove]",
    "[{header: Location, prefix: 'http://a/', value: 'https://b/'}]",
    "{maxConnections: 10, max_requests: 5}",
    "[{timeout: 1s, interval: 5s, unhealthyThreshold: 3, healthyThreshold: 1, httpHealthCheck: {path: /healthz}}]",
    "{consecutive5xx: 3, interval: 10s}", "{choiceCount: 2}", "{minimumRingSize: 1024}", "42",
    "allow:\n  or:\n    - email: {is: alice@example.com}\n    - groups: {has: admins}\n",
    "[{\"allow\":{\"and\":[{\"domain\":{\"is\":\"example.com\"}}]}}]",
    "tls", "opaque", "sa", "missing", "{\"max_request_bytes\": 1024}", "[websockets, spdy/3.1]",
];

const VALUE_TOKENS: &[&str] = &[
    "allow",
    "deny",
    "or",
    "email",
    "is",
    "true",
    "1s",
    "-",
    "ms",
    "h",
    "[",
    "]",
    "{",
    "}",
    ":",
    "\"",
    ",",
    "max_connections",
    "unknownField",
    "interval",
    "path",
    "ROUND",
    "\\",
];

fn tokens() -> &'static [&'static str] {
    static ALL: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| VALUE_TOKENS.iter().chain(YAML_TOKENS).copied().collect())
}

fn secret(name: &str, type_: &str, data: &[(&str, &[u8])]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("apps".into()),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn secrets() -> Vec<Secret> {
    vec![
        secret(
            "tls",
            "kubernetes.io/tls",
            &[
                ("tls.crt", b"not a cert"),
                ("tls.key", b"\xff"),
                ("ca.crt", b""),
            ],
        ),
        secret("opaque", "Opaque", &[("X-Secret", b"v"), ("X-A", b"\r\n")]),
        secret(
            "sa",
            "kubernetes.io/service-account-token",
            &[("token", b"t")],
        ),
    ]
}

fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    let key = prop_oneof![
        8 => prop::sample::select(KEYS).prop_map(|k| format!("{PREFIX}/{k}")),
        1 => ".{0,12}",
        1 => prop::sample::select(KEYS).prop_map(|k| format!("other.io/{k}")),
    ];
    prop::collection::btree_map(key, mutated_text(VALUES, tokens()), 0..6)
}

/// An Ingress with many annotations and the objects it refers to.
const MANIFEST: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}, {port: 443, targetPort: https}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: apps, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1], conditions: {ready: true}}]
ports: [{name: http, port: 8080}, {name: https, port: 8443}]
---
apiVersion: v1
kind: Secret
metadata: {name: hdrs, namespace: apps}
type: Opaque
stringData: {X-From-Secret: s}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: apps
  annotations:
    ingress.pomerium.io/allowed_users: '[alice@example.com]'
    ingress.pomerium.io/timeout: 5s
    ingress.pomerium.io/secure_upstream: 'true'
    ingress.pomerium.io/path_regex: 'false'
    ingress.pomerium.io/set_request_headers_secret: hdrs
    ingress.pomerium.io/policy: '{allow: {or: [{domain: {is: example.com}}]}}'
spec:
  ingressClassName: pomerium
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
      - {path: /x, pathType: Exact, backend: {service: {name: web, port: {number: 443}}}}
  - host: '*.b.example.com'
    http:
      paths:
      - {path: '/api/[0-9]+', pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 80}}}}
";

const MANIFEST_SEEDS: &[&str] = &[
    MANIFEST,
    include_str!("../../tests/fixtures/k8s/good.yaml"),
    include_str!("../../tests/fixtures/k8s/pomerium.yaml"),
    include_str!("../../tests/fixtures/k8s/bad.yaml"),
];

const MANIFEST_TOKENS: &[&str] = &[
    "Ingress",
    "Service",
    "Secret",
    "List",
    "items:",
    "apiVersion: v1\n",
    "kind: ",
    "ExternalName",
    "pathType: ",
    "Exact",
    "Prefix",
    "ImplementationSpecific",
    "port: ",
    "number: ",
    "name: ",
    "host: ",
    "'*.'",
    "ingress.pomerium.io/",
    "---\n",
    "65536",
    "-1",
];

fn manifest_tokens() -> &'static [&'static str] {
    static ALL: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        MANIFEST_TOKENS
            .iter()
            .chain(VALUE_TOKENS)
            .chain(YAML_TOKENS)
            .copied()
            .collect()
    })
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn annotation_parser_never_panics(map in annotations()) {
        let secrets = secrets();
        let lookup = |name: &str| secrets.iter().find(|s| s.metadata.name.as_deref() == Some(name));
        let _ = flags(Some(&map), PREFIX);
        let _ = secret_refs(Some(&map), PREFIX);
        if let Ok(parsed) = parse_annotations(Some(&map), PREFIX, &lookup) {
            // What the annotations produced is a route template: checking and compiling it
            // must not panic either.
            let mut route = parsed.route;
            route.from = "https://a.example.com".into();
            route.to = Some(crate::config::OneOrMany::One("http://127.0.0.1:1".into()));
            let defaults = crate::config::RouteDefaults {
                timeout: std::time::Duration::from_secs(30),
            };
            let _ = crate::config::route::validate_route("fuzz", "fuzz".into(), &route, &defaults);
            let _ = crate::policy::compile_route_config(&route);
        }
    }
}

proptest! {
    #![proptest_config(config(800))]

    #[test]
    fn render_never_panics(text in mutated_text(MANIFEST_SEEDS, manifest_tokens())) {
        let Ok((objects, _)) = parse_documents(&text, Path::new("fuzz.yaml")) else {
            return Ok(());
        };
        let rendered = render(objects, ConvertOptions::default(), None);
        let _ = serde_yaml::to_string(&rendered.settings);
        let _ = crate::config::build_with(rendered.settings, false);
    }
}

#[test]
fn the_manifest_seed_renders_its_routes() {
    let (objects, _) = parse_documents(MANIFEST, Path::new("seed.yaml")).unwrap();
    let rendered = render(objects, ConvertOptions::default(), None);
    assert_eq!(rendered.errors, Vec::<String>::new());
    assert_eq!(rendered.settings.routes.len(), 3);
}
