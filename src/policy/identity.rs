//! The identity data session criteria read (spec 1.6).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The signed-in user as the policy engine sees it. `None` in place of an identity means
/// "no (valid) session": session criteria then fail with `user-unauthenticated`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// IdP `sub` (may be empty: `authenticated_user` is then false).
    pub user_id: String,
    /// IdP `email` claim, matched exactly (not lower-cased).
    pub email: String,
    /// Group ids for the `groups` criterion. Deviation from Pomerium OSS (spec 1.6): filled from
    /// the `groups` claim so `groups: {has: x}` works.
    pub groups: Vec<String>,
    /// Flattened claims: nested objects become dotted keys, scalars one-element lists.
    pub claims: HashMap<String, Vec<Value>>,
}

impl Identity {
    /// Builds an identity from a raw claims object (ID token ∪ UserInfo): `sub` → user_id,
    /// `email` → email, string elements of `groups` → groups, everything → flattened claims.
    /// A non-object value yields an identity with empty fields.
    pub fn from_claims(raw: &Value) -> Identity {
        let empty = Map::new();
        let obj = raw.as_object().unwrap_or(&empty);
        let text = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Identity {
            user_id: text("sub"),
            email: text("email"),
            groups: groups_from_claim(obj.get("groups")),
            claims: flatten_claims(obj),
        }
    }

    /// The value list of a claim: the literal key first, then `alternate` (the subpath split
    /// at `/` and joined with `.`), else the empty list.
    pub fn claim_values(&self, literal: &str, alternate: Option<&str>) -> &[Value] {
        if let Some(v) = self.claims.get(literal) {
            return v;
        }
        if let Some(alt) = alternate {
            if let Some(v) = self.claims.get(alt) {
                return v;
            }
        }
        &[]
    }
}

/// The string elements of a `groups` claim (a string counts as one group).
pub fn groups_from_claim(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Flattens a claims object like Pomerium's `identity.FlattenedClaims`: nested objects become
/// dotted keys (`{"a":{"b":1}}` → `a.b: [1]`), arrays stay lists, scalars become one-element lists.
pub fn flatten_claims(raw: &Map<String, Value>) -> HashMap<String, Vec<Value>> {
    let mut out = HashMap::new();
    flatten_into(&mut out, None, raw);
    out
}

fn flatten_into(
    out: &mut HashMap<String, Vec<Value>>,
    prefix: Option<&str>,
    obj: &Map<String, Value>,
) {
    for (k, v) in obj {
        let key = match prefix {
            Some(p) => format!("{p}.{k}"),
            None => k.clone(),
        };
        match v {
            Value::Object(inner) => flatten_into(out, Some(&key), inner),
            Value::Array(items) => {
                out.insert(key, items.clone());
            }
            scalar => {
                out.insert(key, vec![scalar.clone()]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattening_follows_pomerium() {
        let raw = json!({
            "sub": "u1", "email": "a@x.com", "groups": ["g1", 2, "g2"],
            "org": {"team": {"name": "core"}, "ids": [1, 2]},
            "n": null, "flag": true
        });
        let id = Identity::from_claims(&raw);
        assert_eq!(id.user_id, "u1");
        assert_eq!(id.email, "a@x.com");
        assert_eq!(id.groups, vec!["g1", "g2"]);
        assert_eq!(id.claims["org.team.name"], vec![json!("core")]);
        assert_eq!(id.claims["org.ids"], vec![json!(1), json!(2)]);
        assert_eq!(
            id.claims["groups"],
            vec![json!("g1"), json!(2), json!("g2")]
        );
        assert_eq!(id.claims["n"], vec![Value::Null]);
        assert_eq!(id.claims["flag"], vec![json!(true)]);
        assert!(!id.claims.contains_key("org"));
        assert_eq!(
            id.claim_values("org/team/name", Some("org.team.name")),
            &[json!("core")]
        );
        assert_eq!(id.claim_values("missing", None), &[] as &[Value]);
    }

    #[test]
    fn non_object_claims_give_empty_identity() {
        assert_eq!(Identity::from_claims(&json!(3)), Identity::default());
    }
}
