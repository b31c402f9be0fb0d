//! The Pomerium Policy Language engine (spec section 1).
//!
//! A route's policy (legacy fields plus PPL documents) is compiled once into a
//! [`CompiledPolicy`]; evaluating it for a request ([`RequestView`]) and an optional
//! [`Identity`] never allocates and yields an [`Evaluation`] (decision plus allow/deny reasons).
//!
//! Deviations from Pomerium, on purpose: `groups` reads the `groups` claim (OSS Pomerium needs
//! Enterprise directory sync); `device` compiles but is always false with
//! `device-unauthenticated` (no WebAuthn), which rampart turns into a deny; `pomerium_routes`
//! (removed upstream) is accepted with a warning; `mcp_tool` is accepted with a warning and never
//! matches; `starts_with`/`ends_with`/`contains` with a non-string operand are rejected at
//! compile time (Pomerium's Rego compiler rejects them later with a type error).

mod compile;
mod criterion;
mod error;
mod eval;
mod identity;
mod legacy;
mod matcher;
mod reason;
mod request;
mod route;
pub mod route_choice;

pub mod cli;

use serde_json::{json, Value};

pub use compile::Action;
pub use criterion::Criterion;
pub use error::{go_type, CriterionError, DocPath, PolicyError, RulesError, ValueError};
pub use eval::{CompiledPolicy, Decision, Evaluation, Operator};
pub use identity::{flatten_claims, groups_from_claim, ClaimKeyHasher, ClaimsMap, Identity};
pub use legacy::LegacyPolicy;
pub use matcher::{json_eq, CertMatcher, IpRanges, ListMatcher, StringMatcher};
pub use reason::{Reason, Reasons};
pub use request::{ActixRequestView, ClientCertificate, OwnedRequest, RequestView};
pub use route::{compile_route_config, route_documents};

/// Options for [`compile_route_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompileOptions {
    /// Downstream mTLS with default enforcement (`policy_with_default_deny`): add
    /// `deny: or: [invalid_client_certificate]` (spec 1.8).
    pub enforce_client_certificate: bool,
}

/// Parses YAML or JSON policy text into a value (structure is checked by [`compile`]).
/// Duplicate keys are an error, as in Pomerium's YAML parser.
pub fn parse_document(text: &str) -> Result<Value, PolicyError> {
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| PolicyError::Yaml(e.to_string()))?;
    serde_json::to_value(yaml).map_err(|e| PolicyError::Yaml(e.to_string()))
}

/// Compiles one PPL document (an object or an array of rule sets).
pub fn compile(value: &Value) -> Result<CompiledPolicy, PolicyError> {
    let mut builder = compile::Builder::default();
    builder.add_document(value, &DocPath::root())?;
    builder.finish()
}

/// Parses and compiles PPL text.
pub fn compile_text(text: &str) -> Result<CompiledPolicy, PolicyError> {
    compile(&parse_document(text)?)
}

/// Compiles a route: one `allow: or:` rule from the legacy fields followed by every policy
/// document's rules, as Pomerium does. No legacy field and no rules ⇒ deny everyone.
/// With several documents, error paths start with `policy[i]`.
pub fn compile_route(
    legacy: &LegacyPolicy,
    policies: &[Value],
) -> Result<CompiledPolicy, PolicyError> {
    compile_route_with(legacy, policies, CompileOptions::default())
}

/// [`compile_route`] with options.
pub fn compile_route_with(
    legacy: &LegacyPolicy,
    policies: &[Value],
    options: CompileOptions,
) -> Result<CompiledPolicy, PolicyError> {
    legacy.validate()?;
    let mut builder = compile::Builder::default();
    builder.add_operator(compile::RawOperator {
        action: Action::Allow,
        op: Operator::Or,
        label: "legacy fields".to_string(),
        criteria: legacy.criteria(),
    });
    for (i, doc) in policies.iter().enumerate() {
        if policies.len() > 1 {
            let prefix = format!("policy[{i}]");
            builder.add_document(doc, &DocPath(prefix))?;
        } else {
            builder.add_document(doc, &DocPath::root())?;
        }
    }
    let implicit = json!({"invalid_client_certificate": true});
    if options.enforce_client_certificate {
        builder.add_operator(compile::RawOperator {
            action: Action::Deny,
            op: Operator::Or,
            label: "implicit mTLS enforcement".to_string(),
            criteria: vec![compile::RawCriterion {
                key: "invalid_client_certificate".to_string(),
                value: std::borrow::Cow::Owned(implicit),
                path: DocPath("implicit".to_string()),
            }],
        });
    }
    builder.finish()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
