//! The config file as written by users: Pomerium's config.yaml key names, deserialized with
//! unknown keys rejected. Values are kept as written (strings for durations, URLs, PEM); the
//! `validate` module turns them into checked runtime types. The same structs are what
//! `rampart render` prints, so a rendered file is a valid config file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One value or a list of values (`to: http://a` or `to: [http://a, http://b]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `certificates: [{cert, key}]`: each a file path or base64-encoded PEM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatePair {
    pub cert: String,
    pub key: String,
}

/// A route's `redirect` (Pomerium's keys, plus rampart's `prefix_match`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_redirect: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme_redirect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_redirect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_redirect: Option<u16>,
    /// Replaces the whole path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_redirect: Option<String>,
    /// Replaces the matched prefix (the route's `prefix`, or `prefix_match`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    /// rampart only: the path prefix `prefix_rewrite` replaces when the route matches by regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_match: Option<String>,
    /// 301 (default), 302, 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_query: Option<bool>,
}

/// rampart only: a header or query parameter match of a route (`match_headers`,
/// `match_query`): `value` exact, or `regex` (whole value); neither: present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestValueMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// `rewrite_response_headers` entry: replace a leading `prefix` of response header `header`
/// with `value` (e.g. fix an upstream's `Location`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteResponseHeader {
    pub header: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub value: String,
}

/// Global settings (top level of config.yaml).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    // --- listeners and TLS ---
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_redirect_addr: Option<String>,
    /// rampart only: port named in the redirects of `http_redirect_addr` (default: none,
    /// `https://host/…`, as Pomerium).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_redirect_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_server: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificatePair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,

    // --- timeouts and headers ---
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_upstream_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_read: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_write: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_idle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_response_headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xff_num_trusted_hops: Option<u32>,

    // --- request normalisation and limits (Envoy's names) ---
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalize_path: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_slashes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_with_escaped_slashes_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_with_underscores_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body_idle_timeout: Option<String>,

    // --- authentication (see spec §2) ---
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticate_service_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_provider_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_client_id_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_client_secret_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_request_params: Option<BTreeMap<String, String>>,
    /// `idp_provider: apple` with a private key as `idp_client_secret`: the Apple team id
    /// (issuer of the generated client-secret JWT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_apple_team_id: Option<String>,
    /// The id of that private key (`kid` of the generated client-secret JWT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_apple_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_secret_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_secret_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_expire: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_http_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_secure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_same_site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<String>,
    /// Map `{Header-Name: claim}`, list `[claim]` or string `"email,groups"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_claims_headers: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_identity_headers: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databroker_storage_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databroker_storage_connection_string: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databroker_storage_connection_string_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signout_redirect_url: Option<String>,

    /// rampart only: forward-auth endpoints for other proxies (nginx, Traefik, Caddy, Envoy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_auth: Option<super::forward_auth::ForwardAuthConfig>,

    // --- routes ---
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
}

/// One route, Pomerium key names (spec §4). Policy-related keys are kept raw and compiled by the
/// policy engine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<OneOrMany>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex_rewrite_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex_rewrite_substitution: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_rewrite: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_rewrite_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path_regex_rewrite_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path_regex_rewrite_substitution: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_host_header: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_request_headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_request_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_response_headers: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_response_headers: Option<Vec<RewriteResponseHeader>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// rampart only: request bodies longer than this get 413 (no limit when unset or 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    /// rampart only: CORS answered by the proxy (preflights, response headers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<crate::http::cors::CorsConfig>,
    /// rampart only: sticky upstream selection by this cookie (set when missing); implies
    /// `load_balancing_policy: ring_hash` (or give `maglev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_cookie: Option<String>,
    /// rampart only: answer with this redirect instead of proxying (all paths or one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_redirect: Option<crate::http::redirect::ReturnRedirectConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_websockets: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_spdy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_skip_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_upstream_server_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_custom_ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_custom_ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_client_key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_identity_headers: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing_policy: Option<String>,
    /// Active health checks: a list of Envoy `HealthCheck` objects (see `http::health`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_checks: Option<serde_json::Value>,
    /// Passive health: an Envoy `OutlierDetection` object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<serde_json::Value>,
    /// Percent of healthy upstreams below which health is ignored (Envoy panic mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_panic_threshold: Option<f64>,
    /// Upgrade protocols allowed besides `allow_websockets`/`allow_spdy` (`websocket`, `spdy/3.1`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_upgrades: Option<Vec<String>>,
    /// CA (PEM or base64 PEM) that downstream client certificates for this host are checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_downstream_client_ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_downstream_client_ca_file: Option<String>,
    /// Sent upstream as `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_service_account_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_service_account_token_file: Option<String>,
    /// How a client's `Authorization: Bearer` token is read: `default`, `idp_access_token`,
    /// `idp_identity_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_format: Option<String>,
    /// Envoy circuit breaker limits: `{max_connections, max_pending_requests, max_requests,
    /// max_retries, max_connection_pools}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker_thresholds: Option<serde_json::Value>,
    /// Per-route identity provider client (overrides the global `idp_client_id`/`_secret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_client_secret: Option<String>,
    /// Answer with a redirect instead of proxying (after the policy check); `to` is then
    /// optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<RedirectConfig>,
    /// rampart only: the request method must be this one (Gateway API `method` match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_method: Option<String>,
    /// rampart only: request headers that must match (names are case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_headers: Option<Vec<RequestValueMatch>>,
    /// rampart only: query parameters that must match (the first value of each name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_query: Option<Vec<RequestValueMatch>>,
    /// rampart only: request headers appended (kept beside a client's value of the same name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_request_headers: Option<BTreeMap<String, String>>,
    /// rampart only: response headers appended to the upstream's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_response_headers: Option<BTreeMap<String, String>>,
    /// rampart only: response headers removed from the upstream's response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_response_headers: Option<Vec<String>>,

    // --- policy (compiled by `crate::policy`) ---
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_public_unauthenticated_access: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_any_authenticated_user: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_allow_preflight: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_users: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_idp_claims: Option<BTreeMap<String, Vec<serde_json::Value>>>,
    /// One PPL document or a list of them (YAML or JSON structure, or a string holding either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<serde_json::Value>,
}
