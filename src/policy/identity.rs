//! The identity data session criteria read (spec 1.6).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Flattened claims: claim name → values. Hashed with a small fast (non-keyed) hash: keys come
/// from the IdP's signed tokens, and lookups are on the request hot path.
pub type ClaimsMap = HashMap<String, Vec<Value>, BuildHasherDefault<ClaimKeyHasher>>;

/// FxHash-style hasher for claim names (short strings).
#[derive(Default, Clone, Copy)]
pub struct ClaimKeyHasher(u64);

impl Hasher for ClaimKeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().unwrap_or_default());
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

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
    pub claims: ClaimsMap,
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
pub fn flatten_claims(raw: &Map<String, Value>) -> ClaimsMap {
    let mut out = ClaimsMap::default();
    flatten_into(&mut out, None, raw);
    out
}

fn flatten_into(out: &mut ClaimsMap, prefix: Option<&str>, obj: &Map<String, Value>) {
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
