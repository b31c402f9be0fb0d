//! Legacy route fields (spec 1.7) → one `allow: or:` rule.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::compile::RawCriterion;
use super::error::{DocPath, PolicyError};

/// The pre-PPL allow-list fields of a route (and of its `sub_policies`, whose lists the caller
/// appends to these).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LegacyPolicy {
    pub allow_public_unauthenticated_access: bool,
    pub cors_allow_preflight: bool,
    pub allow_any_authenticated_user: bool,
    pub allowed_domains: Vec<String>,
    /// claim → accepted values; keys are visited sorted.
    pub allowed_idp_claims: BTreeMap<String, Vec<Value>>,
    pub allowed_users: Vec<String>,
}

impl LegacyPolicy {
    /// Pomerium's two validation errors for contradictory fields.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let lists = !self.allowed_domains.is_empty() || !self.allowed_users.is_empty();
        if self.allow_public_unauthenticated_access && (self.allow_any_authenticated_user || lists)
        {
            return Err(PolicyError::PublicWithWhitelists);
        }
        if self.allow_any_authenticated_user && lists {
            return Err(PolicyError::AnyAuthenticatedWithWhitelists);
        }
        Ok(())
    }

    /// The criteria of the `allow: or:` list, in Pomerium's order, each with a path naming the
    /// field it came from.
    pub(crate) fn criteria(&self) -> Vec<RawCriterion<'static>> {
        let mut out = Vec::new();
        let mut push = |key: String, value: Value, path: DocPath| {
            out.push(RawCriterion {
                key,
                value: Cow::Owned(value),
                path,
            })
        };
        let root = DocPath::root();
        if self.allow_public_unauthenticated_access {
            push(
                "accept".into(),
                json!(true),
                root.key("allow_public_unauthenticated_access"),
            );
        }
        if self.cors_allow_preflight {
            push(
                "cors_preflight".into(),
                json!(true),
                root.key("cors_allow_preflight"),
            );
        }
        if self.allow_any_authenticated_user {
            push(
                "authenticated_user".into(),
                json!(true),
                root.key("allow_any_authenticated_user"),
            );
        }
        for (i, d) in self.allowed_domains.iter().enumerate() {
            push(
                "domain".into(),
                json!({"is": d}),
                root.key("allowed_domains").index(i),
            );
        }
        for (claim, values) in &self.allowed_idp_claims {
            for (i, v) in values.iter().enumerate() {
                let path = root.key("allowed_idp_claims").key(claim).index(i);
                push(format!("claim/{claim}"), v.clone(), path);
            }
        }
        for (i, u) in self.allowed_users.iter().enumerate() {
            let path = root.key("allowed_users").index(i);
            push("user".into(), json!({"is": u}), path.clone());
            push("email".into(), json!({"is": u}), path);
        }
        out
    }

    /// The equivalent PPL rule set, or `None` when no legacy field is set.
    pub fn to_ppl(&self) -> Option<Value> {
        let criteria = self.criteria();
        if criteria.is_empty() {
            return None;
        }
        let list: Vec<Value> = criteria
            .into_iter()
            .map(|c| {
                let mut m = serde_json::Map::new();
                m.insert(c.key, c.value.into_owned());
                Value::Object(m)
            })
            .collect();
        Some(json!({"allow": {"or": list}}))
    }
}
