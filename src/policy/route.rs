//! A configured route's policy inputs: the legacy allow-list fields and its `policy`
//! document(s), read from the route as written (`config::RouteConfig`).

use serde_json::Value;

use super::{compile_route, CompiledPolicy, LegacyPolicy, PolicyError};
use crate::config::RouteConfig;

/// The legacy fields and the `policy` documents of a route. A `policy` given as a string
/// (YAML/JSON text, as Ingress annotations carry it) is parsed; if it does not parse, the text
/// is kept so compiling reports the parse error for this route.
pub fn route_documents(c: &RouteConfig) -> (LegacyPolicy, Vec<Value>) {
    let legacy = LegacyPolicy {
        allow_public_unauthenticated_access: c.allow_public_unauthenticated_access.unwrap_or(false),
        cors_allow_preflight: c.cors_allow_preflight.unwrap_or(false),
        allow_any_authenticated_user: c.allow_any_authenticated_user.unwrap_or(false),
        allowed_domains: c.allowed_domains.clone().unwrap_or_default(),
        allowed_idp_claims: c.allowed_idp_claims.clone().unwrap_or_default(),
        allowed_users: c.allowed_users.clone().unwrap_or_default(),
    };
    let policies = match &c.policy {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => match super::parse_document(text) {
            Ok(v) => vec![v],
            Err(_) => vec![Value::String(text.clone())],
        },
        Some(v) => vec![v.clone()],
    };
    (legacy, policies)
}

/// Compiles a route's whole policy (legacy fields first, then `policy`).
pub fn compile_route_config(c: &RouteConfig) -> Result<CompiledPolicy, PolicyError> {
    let (legacy, policies) = route_documents(c);
    compile_route(&legacy, &policies)
}
