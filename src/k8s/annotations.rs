//! `ingress.pomerium.io/*` annotations (ingress-controller spec §3): classification, value
//! parsing (YAML, then protojson-like typing), policy checks, and Secret-backed options.
//!
//! rampart accepts the union of every upstream version's keys, except the load-balancer keys
//! Pomerium v0.32 removed (rejected with what to use instead). Options that `RouteConfig`
//! cannot carry yet are returned in `ParsedAnnotations::extras` under their route key name.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Map, Value};

use crate::config::duration::parse_go_duration;
use crate::config::RouteConfig;
use crate::k8s::convert::context::{secret_bytes, secret_keys, secret_type};

/// Boolean switches (group F). True iff the lower-cased value is `true`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub path_regex: bool,
    pub secure_upstream: bool,
    pub service_proxy_upstream: bool,
    pub tcp_upstream: bool,
    pub udp_upstream: bool,
    pub ssh_upstream: bool,
    /// `h2c_upstream`: upstream URLs use `h2c://` (HTTP/2 without TLS).
    pub h2c_upstream: bool,
    pub subtle_allow_empty_host: bool,
}

/// The result of parsing an Ingress's annotations: a route template applied to every route.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedAnnotations {
    pub route: RouteConfig,
    /// Accepted options with no `RouteConfig` field yet (key = Pomerium route option name).
    pub extras: BTreeMap<String, Value>,
    pub flags: Flags,
}

const FLAG_KEYS: &[&str] = &[
    "path_regex",
    "secure_upstream",
    "service_proxy_upstream",
    "tcp_upstream",
    "udp_upstream",
    "ssh_upstream",
    "h2c_upstream",
    "subtle_allow_empty_host",
];

/// Group B/P/E keys: values parsed as YAML.
const VALUE_KEYS: &[&str] = &[
    // B: bools
    "allow_any_authenticated_user",
    "allow_public_unauthenticated_access",
    "allow_spdy",
    "allow_websockets",
    "cors_allow_preflight",
    "preserve_host_header",
    "tls_skip_verify",
    "enable_google_cloud_serverless_authentication",
    "pass_identity_headers",
    // B: durations
    "timeout",
    "idle_timeout",
    // rampart only
    "max_request_body_bytes",
    "cors",
    "return_redirect",
    "sticky_cookie",
    // B: strings / enums
    "bearer_token_format",
    "description",
    "logo_url",
    "name",
    "host_rewrite",
    "host_rewrite_header",
    "host_path_regex_rewrite_pattern",
    "host_path_regex_rewrite_substitution",
    "prefix_rewrite",
    "regex_rewrite_pattern",
    "regex_rewrite_substitution",
    "tls_server_name",
    "load_balancing_policy",
    "upstream_tunnel_ssh_policy",
    // B: lists, maps, objects
    "depends_on",
    "idp_access_token_allowed_audiences",
    "remove_request_headers",
    "allow_upgrades",
    "rewrite_response_headers",
    "set_request_headers",
    "set_response_headers",
    "circuit_breaker_thresholds",
    "upstream_tunnel",
    // P
    "allowed_users",
    "allowed_domains",
    "allowed_idp_claims",
    "policy",
    // E (B in v0.32+)
    "health_checks",
    "outlier_detection",
    "healthy_panic_threshold",
];

/// Keys Pomerium removed, with the version and what to use instead.
const REMOVED_KEYS: &[(&str, &str)] = &[
    (
        "lb_policy",
        "was removed in Pomerium v0.32, use ingress.pomerium.io/load_balancing_policy (round_robin, least_request, ring_hash, random, maglev)",
    ),
    (
        "least_request_lb_config",
        "was removed in Pomerium v0.32 (load balancer tuning is no longer configurable), use ingress.pomerium.io/load_balancing_policy",
    ),
    (
        "ring_hash_lb_config",
        "was removed in Pomerium v0.32 (load balancer tuning is no longer configurable), use ingress.pomerium.io/load_balancing_policy",
    ),
    (
        "maglev_lb_config",
        "was removed in Pomerium v0.32 (load balancer tuning is no longer configurable), use ingress.pomerium.io/load_balancing_policy",
    ),
];

/// Group T: Secret name; data passed base64, type not checked.
const TLS_SECRET_KEYS: &[&str] = &[
    "tls_custom_ca_secret",
    "tls_client_secret",
    "tls_downstream_client_ca_secret",
];

/// Group S: Secret name; type checked.
const SECRET_KEYS: &[&str] = &[
    "set_request_headers_secret",
    "set_response_headers_secret",
    "kubernetes_service_account_token_secret",
    "mcp_server_upstream_oauth2_secret",
    "identity_provider_secret",
];

/// Group M: raw strings.
const MCP_KEYS: &[&str] = &[
    "mcp_server",
    "mcp_server_max_request_bytes",
    "mcp_server_path",
    "mcp_server_upstream_oauth2_auth_url",
    "mcp_server_upstream_oauth2_token_url",
    "mcp_server_upstream_oauth2_scopes",
    "mcp_server_upstream_oauth2_authorization_url_params",
    "mcp_server_upstream_oauth2_auth_style",
    "mcp_server_authorization_server_url",
    "mcp_client",
];

const ALLOWED_GROUPS_TEXT: &str = "ingress.pomerium.io/allowed_groups no longer supported, see https://docs.pomerium.com/docs/overview/upgrading#idp-directory-sync";

/// The `‹prefix›/…` annotations, prefix stripped, sorted by key.
pub fn prefixed<'a>(
    annotations: Option<&'a BTreeMap<String, String>>,
    prefix: &str,
) -> Vec<(&'a str, &'a str)> {
    let Some(annotations) = annotations else {
        return Vec::new();
    };
    annotations
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(prefix)?.strip_prefix('/')?;
            Some((rest, v.as_str()))
        })
        .collect()
}

/// Secret names referenced by annotations: every prefixed key ending in `_secret`
/// (spec §4.1), in key order, empty values skipped.
pub fn secret_refs<'a>(
    annotations: Option<&'a BTreeMap<String, String>>,
    prefix: &str,
) -> Vec<(&'a str, &'a str)> {
    prefixed(annotations, prefix)
        .into_iter()
        .filter(|(k, v)| k.ends_with("_secret") && !v.trim().is_empty())
        .map(|(k, v)| (k, v.trim()))
        .collect()
}

/// Group F flags only (no validation).
pub fn flags(annotations: Option<&BTreeMap<String, String>>, prefix: &str) -> Flags {
    let mut f = Flags::default();
    for (k, v) in prefixed(annotations, prefix) {
        let on = v.to_lowercase() == "true";
        match k {
            "path_regex" => f.path_regex = on,
            "secure_upstream" => f.secure_upstream = on,
            "service_proxy_upstream" => f.service_proxy_upstream = on,
            "tcp_upstream" => f.tcp_upstream = on,
            "udp_upstream" => f.udp_upstream = on,
            "ssh_upstream" => f.ssh_upstream = on,
            "h2c_upstream" => f.h2c_upstream = on,
            "subtle_allow_empty_host" => f.subtle_allow_empty_host = on,
            _ => {}
        }
    }
    f
}

/// Parses every `‹prefix›/…` annotation. `secret` looks up a Secret of the Ingress's namespace
/// by name. The error text is what follows `parsing ingress: annotations: `.
pub fn parse_annotations<'s>(
    annotations: Option<&BTreeMap<String, String>>,
    prefix: &str,
    secret: &dyn Fn(&str) -> Option<&'s Secret>,
) -> Result<ParsedAnnotations, String> {
    let entries = prefixed(annotations, prefix);
    // Classify first: an unknown key rejects the Ingress whatever else is wrong.
    for (k, _) in &entries {
        if *k == "allowed_groups" {
            return Err(ALLOWED_GROUPS_TEXT.into());
        }
        if let Some((_, why)) = REMOVED_KEYS.iter().find(|(key, _)| key == k) {
            return Err(format!("{prefix}/{k} {why}"));
        }
        let known = FLAG_KEYS.contains(k)
            || VALUE_KEYS.contains(k)
            || TLS_SECRET_KEYS.contains(k)
            || SECRET_KEYS.contains(k)
            || MCP_KEYS.contains(k);
        if !known {
            return Err(format!("unknown {prefix}/{k}"));
        }
    }
    let mut out = ParsedAnnotations {
        flags: flags(annotations, prefix),
        ..Default::default()
    };
    let mut policy_raw: Option<&str> = None;
    for (k, raw) in &entries {
        if *k == "policy" {
            policy_raw = Some(raw);
        } else if VALUE_KEYS.contains(k) {
            let v = yaml_value(k, raw)?;
            apply_value(&mut out, k, v)?;
        }
    }
    if let Some(raw) = policy_raw {
        let v = parse_policy(raw).map_err(|e| format!("applying policy annotations: {e}"))?;
        out.route.policy = Some(v);
    }
    apply_tls_secrets(&mut out, &entries, secret)?;
    apply_secrets(&mut out, &entries, secret)?;
    apply_mcp(&mut out, &entries)?;
    Ok(out)
}

/// Parses an annotation value as YAML (JSON is YAML too).
fn yaml_value(key: &str, raw: &str) -> Result<Value, String> {
    if raw.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_yaml::from_str::<Value>(raw).map_err(|e| format!("{key}: yaml: {e}"))
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn proto_err(key: &str, what: &str, v: &Value) -> String {
    format!("proto: ({key}): invalid value for {what}: {}", compact(v))
}

fn want_bool(key: &str, v: &Value) -> Result<Option<bool>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        _ => Err(proto_err(key, "bool type", v)),
    }
}

fn want_string(key: &str, v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(proto_err(key, "string type", v)),
    }
}

fn want_duration(key: &str, v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => match parse_go_duration(s) {
            Ok(_) => Ok(Some(s.clone())),
            Err(_) => Err(proto_err(key, "google.protobuf.Duration", v)),
        },
        _ => Err(proto_err(key, "google.protobuf.Duration", v)),
    }
}

fn want_string_list(key: &str, v: &Value) -> Result<Option<Vec<String>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => Err(proto_err(key, "string type", i)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(proto_err(key, "repeated string", v)),
    }
}

/// `map<string,string>`: scalar values are stringified (`true` → `"true"`).
fn want_string_map(key: &str, v: &Value) -> Result<Option<BTreeMap<String, String>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => m
            .iter()
            .map(|(k, item)| {
                let s = match item {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    Value::Null => String::new(),
                    _ => return Err(proto_err(key, "string type", item)),
                };
                Ok((k.clone(), s))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some),
        _ => Err(proto_err(key, "map<string,string>", v)),
    }
}

fn want_uint32(key: &str, v: &Value) -> Result<(), String> {
    let ok = match v {
        Value::Number(n) => n.as_u64().is_some_and(|n| n <= u32::MAX as u64),
        Value::String(s) => s.parse::<u32>().is_ok(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(proto_err(key, "uint32 type", v))
    }
}

fn snake(k: &str) -> String {
    let mut out = String::with_capacity(k.len() + 4);
    for c in k.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Checks an object's field names (snake or lowerCamel) and returns it with snake keys.
fn want_object(key: &str, v: &Value, fields: &[&str]) -> Result<Map<String, Value>, String> {
    let Value::Object(m) = v else {
        return Err(proto_err(key, "object", v));
    };
    let mut out = Map::new();
    for (k, item) in m {
        let s = snake(k);
        if !fields.is_empty() && !fields.contains(&s.as_str()) {
            return Err(format!("proto: ({key}): unknown field {k:?}"));
        }
        out.insert(s, item.clone());
    }
    Ok(out)
}

// Envoy field names, shared with the config file's parser.
use crate::config::health::{CIRCUIT_BREAKER_FIELDS, HEALTH_CHECK_FIELDS};

const HEALTH_CHECK_DURATIONS: &[&str] = &[
    "timeout",
    "interval",
    "initial_jitter",
    "interval_jitter",
    "no_traffic_interval",
    "no_traffic_healthy_interval",
    "unhealthy_interval",
    "unhealthy_edge_interval",
    "healthy_edge_interval",
];

const LB_POLICIES: &[&str] = &[
    "ROUND_ROBIN",
    "LEAST_REQUEST",
    "RING_HASH",
    "RANDOM",
    "MAGLEV",
];

fn apply_value(out: &mut ParsedAnnotations, key: &str, v: Value) -> Result<(), String> {
    if v.is_null() {
        // An empty value leaves the option unset (protojson `null`).
        return Ok(());
    }
    let r = &mut out.route;
    match key {
        "allow_any_authenticated_user" => r.allow_any_authenticated_user = want_bool(key, &v)?,
        "allow_public_unauthenticated_access" => {
            r.allow_public_unauthenticated_access = want_bool(key, &v)?
        }
        "allow_spdy" => r.allow_spdy = want_bool(key, &v)?,
        "allow_websockets" => r.allow_websockets = want_bool(key, &v)?,
        "cors_allow_preflight" => r.cors_allow_preflight = want_bool(key, &v)?,
        "preserve_host_header" => r.preserve_host_header = want_bool(key, &v)?,
        "tls_skip_verify" => r.tls_skip_verify = want_bool(key, &v)?,
        "pass_identity_headers" => r.pass_identity_headers = want_bool(key, &v)?,
        "enable_google_cloud_serverless_authentication" => {
            if let Some(b) = want_bool(key, &v)? {
                out.extras.insert(key.into(), Value::Bool(b));
            }
        }
        "timeout" => r.timeout = want_duration(key, &v)?,
        "idle_timeout" => r.idle_timeout = want_duration(key, &v)?,
        "cors" => {
            let c: crate::http::cors::CorsConfig =
                serde_json::from_value(v.clone()).map_err(|e| format!("cors: {e}"))?;
            crate::http::cors::Cors::compile(&c)?;
            r.cors = Some(c);
        }
        "sticky_cookie" => r.sticky_cookie = want_string(key, &v)?,
        "return_redirect" => {
            let c: crate::http::redirect::ReturnRedirectConfig =
                serde_json::from_value(v.clone()).map_err(|e| format!("return_redirect: {e}"))?;
            crate::http::redirect::ReturnRedirect::compile(&c)?;
            r.return_redirect = Some(c);
        }
        "max_request_body_bytes" => {
            let n = match &v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            };
            r.max_request_body_bytes = Some(n.ok_or_else(|| proto_err(key, "uint64 type", &v))?);
        }
        "description" => r.description = want_string(key, &v)?,
        "name" => r.name = want_string(key, &v)?,
        "host_rewrite" => r.host_rewrite = want_string(key, &v)?,
        "host_rewrite_header" => r.host_rewrite_header = want_string(key, &v)?,
        "host_path_regex_rewrite_pattern" => {
            r.host_path_regex_rewrite_pattern = want_string(key, &v)?
        }
        "host_path_regex_rewrite_substitution" => {
            r.host_path_regex_rewrite_substitution = want_string(key, &v)?
        }
        "prefix_rewrite" => r.prefix_rewrite = want_string(key, &v)?,
        "regex_rewrite_pattern" => r.regex_rewrite_pattern = want_string(key, &v)?,
        "regex_rewrite_substitution" => r.regex_rewrite_substitution = want_string(key, &v)?,
        "tls_server_name" => r.tls_server_name = want_string(key, &v)?,
        "remove_request_headers" => r.remove_request_headers = want_string_list(key, &v)?,
        "set_request_headers" => r.set_request_headers = want_string_map(key, &v)?,
        "set_response_headers" => r.set_response_headers = want_string_map(key, &v)?,
        "allowed_users" => r.allowed_users = want_string_list(key, &v)?,
        "allowed_domains" => r.allowed_domains = want_string_list(key, &v)?,
        "allowed_idp_claims" => match &v {
            Value::Null => {}
            Value::Object(m) => {
                let mut claims = BTreeMap::new();
                for (claim, values) in m {
                    match values {
                        Value::Array(list) => {
                            claims.insert(claim.clone(), list.clone());
                        }
                        other => return Err(proto_err(key, "google.protobuf.ListValue", other)),
                    }
                }
                r.allowed_idp_claims = Some(claims);
            }
            _ => return Err(proto_err(key, "map<string,ListValue>", &v)),
        },
        "load_balancing_policy" => {
            if let Some(s) = want_string(key, &v)? {
                let up = s.to_ascii_uppercase();
                if !LB_POLICIES.contains(&up.as_str()) {
                    return Err(proto_err(key, "enum LoadBalancingPolicy", &v));
                }
                r.load_balancing_policy = Some(up);
            }
        }
        "bearer_token_format" => {
            if let Some(s) = want_string(key, &v)? {
                let norm = s
                    .strip_prefix("BEARER_TOKEN_FORMAT_")
                    .map(str::to_ascii_lowercase)
                    .unwrap_or_else(|| s.clone());
                if !["default", "idp_access_token", "idp_identity_token"].contains(&norm.as_str()) {
                    return Err(proto_err(key, "enum BearerTokenFormat", &v));
                }
                r.bearer_token_format = Some(norm);
            }
        }
        "upstream_tunnel_ssh_policy" => {
            // PPL or a string; passed through.
            out.extras.insert(key.into(), v);
        }
        "logo_url" => {
            if let Some(s) = want_string(key, &v)? {
                out.extras.insert(key.into(), Value::String(s));
            }
        }
        "allow_upgrades" => r.allow_upgrades = want_string_list(key, &v)?,
        "depends_on" | "idp_access_token_allowed_audiences" => {
            if let Some(list) = want_string_list(key, &v)? {
                if key == "depends_on" && list.len() > 5 {
                    return Err(format!(
                        "depends_on: at most 5 hosts are allowed, got {}",
                        list.len()
                    ));
                }
                out.extras.insert(key.into(), serde_json::json!(list));
            }
        }
        "rewrite_response_headers" => match &v {
            Value::Null => {}
            Value::Array(items) => {
                let mut list = Vec::new();
                for item in items {
                    let obj = want_object(key, item, &["header", "prefix", "value"])?;
                    for field in obj.values() {
                        want_string(key, field)?;
                    }
                    let text = |f: &str| {
                        obj.get(f)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    list.push(crate::config::file::RewriteResponseHeader {
                        header: text("header"),
                        prefix: text("prefix"),
                        value: text("value"),
                    });
                }
                r.rewrite_response_headers = Some(list);
            }
            _ => return Err(proto_err(key, "repeated RouteRewriteHeader", &v)),
        },
        "circuit_breaker_thresholds" => {
            let obj = want_object(key, &v, CIRCUIT_BREAKER_FIELDS)?;
            for field in obj.values() {
                want_uint32(key, field)?;
            }
            r.circuit_breaker_thresholds = Some(Value::Object(obj));
        }
        "health_checks" => match &v {
            Value::Null => {}
            Value::Array(items) => {
                let mut list = Vec::new();
                for item in items {
                    let obj = want_object(key, item, HEALTH_CHECK_FIELDS)?;
                    for d in HEALTH_CHECK_DURATIONS {
                        if let Some(dv) = obj.get(*d) {
                            want_duration(key, dv)?;
                        }
                    }
                    list.push(Value::Object(obj));
                }
                let list = Value::Array(list);
                // What the proxy serves: the checks must be usable, not only well-formed.
                crate::config::health::parse_health_checks(&list).map_err(|e| e.to_string())?;
                r.health_checks = Some(list);
            }
            _ => {
                return Err(proto_err(
                    key,
                    "repeated envoy.config.core.v3.HealthCheck",
                    &v,
                ))
            }
        },
        "outlier_detection" => {
            let obj = Value::Object(want_object(key, &v, &[])?);
            crate::config::health::parse_outlier_detection(&obj).map_err(|e| e.to_string())?;
            r.outlier_detection = Some(obj);
        }
        "upstream_tunnel" => {
            let obj = want_object(key, &v, &[])?;
            out.extras.insert(key.into(), Value::Object(obj));
        }
        // v0.32+: an integer percent; before: envoy.type.v3.Percent `{value: n}`.
        "healthy_panic_threshold" => {
            let n = match &v {
                Value::Number(n) => n.as_f64(),
                Value::Object(_) => {
                    let obj = want_object(key, &v, &["value"])?;
                    match obj.get("value") {
                        Some(Value::Number(n)) => n.as_f64(),
                        None => Some(0.0),
                        Some(other) => return Err(proto_err(key, "double type", other)),
                    }
                }
                _ => None,
            };
            match n.filter(|f| (0.0..=100.0).contains(f)) {
                Some(f) => r.healthy_panic_threshold = Some(f),
                None => return Err(proto_err(key, "int32 type", &v)),
            }
        }
        _ => {}
    }
    Ok(())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn lookup<'s>(
    key: &str,
    name: &str,
    secret: &dyn Fn(&str) -> Option<&'s Secret>,
) -> Result<&'s Secret, String> {
    secret(name)
        .ok_or_else(|| format!("annotation {key} references secret {name}, which was not fetched"))
}

fn apply_tls_secrets<'s>(
    out: &mut ParsedAnnotations,
    entries: &[(&str, &str)],
    secret: &dyn Fn(&str) -> Option<&'s Secret>,
) -> Result<(), String> {
    for (key, name) in entries {
        if !TLS_SECRET_KEYS.contains(key) || name.trim().is_empty() {
            continue;
        }
        let name = name.trim();
        let s = lookup(key, name, secret)?;
        // Quirk kept from upstream: the text always names ca.crt.
        let data = |k: &str| -> Result<String, String> {
            match secret_bytes(s, k) {
                Some(b) if !b.is_empty() => Ok(b64(b)),
                _ => Err(format!(
                    "annotation {key} references secret {name}, key ca.crt has no data"
                )),
            }
        };
        match *key {
            "tls_custom_ca_secret" => out.route.tls_custom_ca = Some(data("ca.crt")?),
            "tls_client_secret" => {
                out.route.tls_client_cert = Some(data("tls.crt")?);
                out.route.tls_client_key = Some(data("tls.key")?);
            }
            "tls_downstream_client_ca_secret" => {
                out.route.tls_downstream_client_ca = Some(data("ca.crt")?);
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_type(key: &str, s: &Secret, want: &str) -> Result<(), String> {
    let got = secret_type(s);
    if got != want {
        return Err(format!(
            "annotation {key} secret is expected to have type {want}, got {got}"
        ));
    }
    Ok(())
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn apply_secrets<'s>(
    out: &mut ParsedAnnotations,
    entries: &[(&str, &str)],
    secret: &dyn Fn(&str) -> Option<&'s Secret>,
) -> Result<(), String> {
    for (key, name) in entries {
        if !SECRET_KEYS.contains(key) || name.trim().is_empty() {
            continue;
        }
        let s = lookup(key, name.trim(), secret)?;
        match *key {
            "set_request_headers_secret" | "set_response_headers_secret" => {
                check_type(key, s, "Opaque")?;
                let map = if *key == "set_request_headers_secret" {
                    out.route
                        .set_request_headers
                        .get_or_insert_with(BTreeMap::new)
                } else {
                    out.route
                        .set_response_headers
                        .get_or_insert_with(BTreeMap::new)
                };
                for k in secret_keys(s) {
                    if map.contains_key(k) {
                        return Err(format!(
                            "annotation {key}: secret contains key {k} that was already specified by a non-secret rule"
                        ));
                    }
                    let v = secret_bytes(s, k).map(utf8).unwrap_or_default();
                    map.insert(k.to_string(), v);
                }
            }
            "kubernetes_service_account_token_secret" => {
                check_type(key, s, "kubernetes.io/service-account-token")?;
                let token = secret_bytes(s, "token")
                    .ok_or_else(|| format!("annotation {key}: secret must have token key"))?;
                out.route.kubernetes_service_account_token = Some(utf8(token));
            }
            "mcp_server_upstream_oauth2_secret" => {
                check_type(key, s, "Opaque")?;
                let id = secret_bytes(s, "client_id");
                let secret_value = secret_bytes(s, "client_secret");
                if id.is_none() && secret_value.is_none() {
                    return Err(format!(
                        "annotation {key}: secret must have at least one of client_id or client_secret keys"
                    ));
                }
                let oauth = mcp_oauth2(out);
                if let Some(id) = id {
                    oauth.insert("client_id".into(), Value::String(utf8(id)));
                }
                if let Some(sec) = secret_value {
                    oauth.insert("client_secret".into(), Value::String(utf8(sec)));
                }
            }
            "identity_provider_secret" => {
                // Both keys are optional: a missing one keeps the global setting.
                check_type(key, s, "Opaque")?;
                if let Some(id) = secret_bytes(s, "client_id") {
                    out.route.idp_client_id = Some(utf8(id));
                }
                if let Some(sec) = secret_bytes(s, "client_secret") {
                    out.route.idp_client_secret = Some(utf8(sec));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `extras.mcp.server.upstream_oauth2` (created on demand).
fn mcp_oauth2(out: &mut ParsedAnnotations) -> &mut Map<String, Value> {
    let server = mcp_section(out, "server");
    let oauth = server
        .entry("upstream_oauth2")
        .or_insert_with(|| Value::Object(Map::new()));
    match oauth {
        Value::Object(m) => m,
        _ => unreachable!("upstream_oauth2 is always an object"),
    }
}

fn mcp_section<'a>(out: &'a mut ParsedAnnotations, section: &str) -> &'a mut Map<String, Value> {
    let mcp = out
        .extras
        .entry("mcp".into())
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(mcp) = mcp else {
        unreachable!("mcp is always an object")
    };
    match mcp
        .entry(section.to_string())
        .or_insert_with(|| Value::Object(Map::new()))
    {
        Value::Object(m) => m,
        _ => unreachable!("mcp sections are objects"),
    }
}

fn apply_mcp(out: &mut ParsedAnnotations, entries: &[(&str, &str)]) -> Result<(), String> {
    let get = |k: &str| entries.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let true_or_empty = |k: &str| -> Result<bool, String> {
        match get(k) {
            None => Ok(false),
            Some(v) if v.is_empty() || v == "true" => Ok(true),
            Some(v) => Err(format!(
                "{k} annotation should be 'true' or omitted, got {v:?}"
            )),
        }
    };
    let server_flag = true_or_empty("mcp_server")?;
    let client = true_or_empty("mcp_client")?;
    let server = server_flag
        || entries.iter().any(|(k, _)| k.starts_with("mcp_server_"))
        || out
            .extras
            .get("mcp")
            .and_then(|m| m.get("server"))
            .is_some();
    if server && client {
        return Err("cannot specify both MCP server and client configurations".into());
    }
    if client {
        mcp_section(out, "client");
        return Ok(());
    }
    if !server {
        return Ok(());
    }
    mcp_section(out, "server");
    if let Some(v) = get("mcp_server_max_request_bytes") {
        let n: u32 = v.trim().parse().map_err(|e: std::num::ParseIntError| {
            let why = match e.kind() {
                std::num::IntErrorKind::PosOverflow => "value out of range",
                _ => "invalid syntax",
            };
            format!(
                "invalid max_request_bytes value {v:?}: strconv.ParseUint: parsing {v:?}: {why}"
            )
        })?;
        mcp_section(out, "server").insert("max_request_bytes".into(), Value::from(n));
    }
    for (key, field) in [
        ("mcp_server_path", "path"),
        (
            "mcp_server_authorization_server_url",
            "authorization_server_url",
        ),
    ] {
        if let Some(v) = get(key) {
            mcp_section(out, "server").insert(field.into(), Value::String(v.to_string()));
        }
    }
    for (key, field) in [
        ("mcp_server_upstream_oauth2_auth_url", "auth_url"),
        ("mcp_server_upstream_oauth2_token_url", "token_url"),
    ] {
        if let Some(v) = get(key) {
            mcp_oauth2(out).insert(field.into(), Value::String(v.to_string()));
        }
    }
    if let Some(v) = get("mcp_server_upstream_oauth2_scopes") {
        let scopes: Vec<Value> = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_string()))
            .collect();
        mcp_oauth2(out).insert("scopes".into(), Value::Array(scopes));
    }
    if let Some(v) = get("mcp_server_upstream_oauth2_auth_style") {
        let style = v.trim().to_ascii_lowercase();
        if style != "in_params" && style != "in_header" {
            return Err(format!(
                "mcp_server_upstream_oauth2_auth_style: expected in_params or in_header, got {v:?}"
            ));
        }
        mcp_oauth2(out).insert("auth_style".into(), Value::String(style));
    }
    if let Some(v) = get("mcp_server_upstream_oauth2_authorization_url_params") {
        let key = "mcp_server_upstream_oauth2_authorization_url_params";
        let value = yaml_value(key, v)?;
        if let Some(map) = want_string_map(key, &value)? {
            mcp_oauth2(out).insert("authorization_url_params".into(), serde_json::json!(map));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Policy (spec §3.3): structural check with upstream's parser messages.

/// Criteria known to the policy engine (policy-and-auth spec §1.3).
const CRITERIA: &[&str] = &[
    "accept",
    "reject",
    "authenticated_user",
    "email",
    "domain",
    "user",
    "groups",
    "claim",
    "http_method",
    "http_path",
    "cors_preflight",
    "source_ip",
    "client_certificate",
    "invalid_client_certificate",
    "device",
    "mcp_tool",
    "pomerium_routes",
];

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "parser.Null",
        Value::Bool(_) => "parser.Boolean",
        Value::Number(_) => "parser.Number",
        Value::String(_) => "parser.String",
        Value::Array(_) => "parser.Array",
        Value::Object(_) => "parser.Object",
    }
}

/// Parses a `policy` annotation (PPL as YAML or JSON). The error reads
/// `parsing policy: …` (the caller adds `applying policy annotations: `).
pub fn parse_policy(raw: &str) -> Result<Value, String> {
    if raw.trim().is_empty() {
        return Err("parsing policy: EOF".into());
    }
    let v: Value = serde_yaml::from_str(raw).map_err(|e| format!("parsing policy: yaml: {e}"))?;
    check_policy(&v).map_err(|e| format!("parsing policy: {e}"))?;
    // Full compile (matchers, values) by the policy engine.
    crate::policy::compile(&v).map_err(|e| format!("parsing policy: {e}"))?;
    Ok(v)
}

/// Checks a PPL document's shape and criterion names.
pub fn check_policy(v: &Value) -> Result<(), String> {
    let invalid = |m: String| format!("invalid rules in policy: {m}");
    match v {
        Value::Object(m) => check_rule_set(m).map_err(|e| match e {
            PolicyIssue::Shape(m) => invalid(m),
            PolicyIssue::Criterion(m) => m,
        }),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(m) => check_rule_set(m).map_err(|e| match e {
                        PolicyIssue::Shape(m) => invalid(m),
                        PolicyIssue::Criterion(m) => m,
                    })?,
                    other => {
                        return Err(invalid(format!(
                            "unsupported type for rules array: {}",
                            go_type(other)
                        )))
                    }
                }
            }
            Ok(())
        }
        other => Err(invalid(format!(
            "unsupported type for rule: {}",
            go_type(other)
        ))),
    }
}

enum PolicyIssue {
    Shape(String),
    Criterion(String),
}

fn check_rule_set(m: &Map<String, Value>) -> Result<(), PolicyIssue> {
    for (action, body) in m {
        if action != "allow" && action != "deny" {
            return Err(PolicyIssue::Shape(format!(
                "invalid action in rule: unsupported action: {action}"
            )));
        }
        let Value::Object(ops) = body else {
            return Err(PolicyIssue::Shape(format!(
                "invalid value for action in rule, expected Object, got {}",
                go_type(body)
            )));
        };
        for (op, criteria) in ops {
            if op == "action" {
                continue;
            }
            if !["and", "or", "not", "nor"].contains(&op.as_str()) {
                return Err(PolicyIssue::Shape(format!(
                    "unsupported conditional {op:?}, only and, or, not, nor and action are allowed"
                )));
            }
            let Value::Array(list) = criteria else {
                return Err(PolicyIssue::Shape(format!(
                    "invalid criteria in {op:?}): unsupported type for criteria: {}",
                    go_type(criteria)
                )));
            };
            for c in list {
                let Value::Object(cm) = c else {
                    return Err(PolicyIssue::Shape(format!(
                        "invalid criteria in {op:?}): unsupported type for criteria array: {}",
                        go_type(c)
                    )));
                };
                if cm.len() != 1 {
                    return Err(PolicyIssue::Shape(format!(
                        "invalid criteria in {op:?}): each criteria may only contain a single key and value"
                    )));
                }
                let key = cm.keys().next().map(String::as_str).unwrap_or("");
                let name = key.split('/').next().unwrap_or("");
                if !CRITERIA.contains(&name) {
                    return Err(PolicyIssue::Criterion(format!(
                        "unknown policy criterion: {name}"
                    )));
                }
            }
        }
    }
    Ok(())
}
