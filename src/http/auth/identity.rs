//! The identity passed upstream (spec 3.1/3.2): the ES256 `X-Pomerium-Jwt-Assertion`, its JWKS
//! document, and the claim headers derived from its payload.

use actix_web::http::header::{HeaderName, HeaderValue};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::crypto::b64url;
use crate::store::Session;

/// Identity JWT lifetime (no `nbf`).
pub const IDENTITY_JWT_LIFETIME_SECS: u64 = 300;

/// Claims that IdP claims never override and that `jwt_claims_headers` does not add again.
pub const STANDARD_CLAIMS: [&str; 11] = [
    "iss", "aud", "jti", "iat", "exp", "sub", "user", "email", "groups", "sid", "name",
];

/// Signs identity JWTs and serves the matching JWKS.
pub struct IdentitySigner {
    /// ring's P-256 signer: several times faster than the pure-Rust one, and this runs for
    /// every request that carries identity headers.
    key: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
    jwk: Value,
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySigner")
            .field("kid", &self.kid)
            .finish()
    }
}

impl IdentitySigner {
    pub fn new(secret: &p256::SecretKey) -> IdentitySigner {
        let point = secret.public_key().to_encoded_point(false);
        let x = b64url(point.x().expect("uncompressed point has x"));
        let y = b64url(point.y().expect("uncompressed point has y"));
        // RFC 7638 thumbprint: required members, lexicographic order, no whitespace.
        let thumb_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = hex(&Sha256::digest(thumb_input.as_bytes()));
        let jwk = json!({"use": "sig", "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256", "x": x, "y": y});
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            secret.to_bytes().as_slice(),
            point.as_bytes(),
            &rng,
        )
        .expect("a valid P-256 secret key and its own public point");
        IdentitySigner { key, rng, kid, jwk }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `{"keys":[…]}` as served at `/.well-known/pomerium/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk.clone()] })
    }

    /// Compact JWS (ES256) over `claims`.
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(Value::Object(claims.clone()).to_string().as_bytes())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ECDSA signing with the system RNG");
        format!("{signing_input}.{}", b64url(sig.as_ref()))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A claim value as a list of strings (scalars → one element, arrays → elements).
pub fn claim_strings(v: &Value) -> Vec<String> {
    match v {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(claim_strings).collect(),
        other => vec![other.to_string()],
    }
}

/// Payload of the identity JWT for a request to `host` (no port), optionally with a session.
/// `extra_claims` are the claim names from `jwt_claims_headers`.
pub fn identity_claims(
    host: &str,
    issuer_uri_format: bool,
    session: Option<&Session>,
    extra_claims: &[String],
    now: u64,
    jti: &str,
) -> Map<String, Value> {
    let mut m = Map::new();
    let iss = if issuer_uri_format {
        format!("https://{host}/")
    } else {
        host.to_string()
    };
    m.insert("iss".into(), iss.into());
    m.insert("aud".into(), host.into());
    m.insert("jti".into(), jti.into());
    m.insert("iat".into(), now.into());
    m.insert("exp".into(), (now + IDENTITY_JWT_LIFETIME_SECS).into());
    let (user, email, groups, sid, name) = match session {
        Some(s) => (
            s.user_id.clone(),
            s.email.clone(),
            s.claims
                .get("groups")
                .map(claim_strings)
                .unwrap_or_default(),
            s.id.clone(),
            s.claims
                .get("name")
                .map(|v| claim_strings(v).join(","))
                .unwrap_or_default(),
        ),
        None => Default::default(),
    };
    m.insert("sub".into(), user.clone().into());
    m.insert("user".into(), user.into());
    m.insert("email".into(), email.into());
    m.insert("groups".into(), groups.into());
    m.insert("sid".into(), sid.into());
    m.insert("name".into(), name.into());
    if let Some(s) = session {
        for c in extra_claims {
            if STANDARD_CLAIMS.contains(&c.as_str()) {
                continue;
            }
            if let Some(v) = s.claims.get(c) {
                m.insert(c.clone(), claim_strings(v).join(",").into());
            }
        }
    }
    m
}

/// Header value for a claim of the JWT payload: arrays comma-joined, missing → "".
pub fn claim_header_value(payload: &Map<String, Value>, claim: &str) -> String {
    payload
        .get(claim)
        .map(|v| claim_strings(v).join(","))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    fn session() -> Session {
        let mut s = Session::new_for_test("sid-1", "alice@example.com");
        s.email = "alice@example.com".into();
        s.claims.insert("groups".into(), json!(["admins", "devs"]));
        s.claims.insert("name".into(), json!("Alice"));
        s.claims.insert("department".into(), json!(["eng", "ops"]));
        s.claims.insert("email".into(), json!("spoof@evil"));
        s
    }

    #[test]
    fn jwt_verifies_against_jwks_with_thumbprint_kid() {
        let key = p256::SecretKey::from_slice(&[7; 32]).unwrap();
        let signer = IdentitySigner::new(&key);
        let claims = identity_claims(
            "app.example.com",
            false,
            Some(&session()),
            &["department".into(), "email".into()],
            1_700_000_000,
            "j1",
        );
        let token = signer.sign(&claims);
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(signer.jwks()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(signer.kid()));
        assert_eq!(signer.kid().len(), 64);
        let jwk = jwks.find(signer.kid()).unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_exp = false;
        v.set_audience(&["app.example.com"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(
            &token,
            &DecodingKey::from_jwk(jwk).unwrap(),
            &v,
        )
        .unwrap();
        let c = data.claims;
        assert_eq!(c["iss"], "app.example.com");
        assert_eq!(c["exp"], 1_700_000_300u64);
        assert_eq!(c["sub"], "alice@example.com");
        assert_eq!(c["user"], "alice@example.com");
        assert_eq!(
            c["email"], "alice@example.com",
            "IdP claims never override standard ones"
        );
        assert_eq!(c["groups"], json!(["admins", "devs"]));
        assert_eq!(c["sid"], "sid-1");
        assert_eq!(c["name"], "Alice");
        assert_eq!(c["department"], "eng,ops");
        assert!(c.get("nbf").is_none());

        // Another key's JWKS does not verify it.
        let other = IdentitySigner::new(&p256::SecretKey::from_slice(&[8; 32]).unwrap());
        let other_jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(other.jwks()).unwrap();
        assert!(jsonwebtoken::decode::<Map<String, Value>>(
            &token,
            &DecodingKey::from_jwk(&other_jwks.keys[0]).unwrap(),
            &v
        )
        .is_err());
    }

    #[test]
    fn anonymous_identity_has_empty_fields() {
        let c = identity_claims("pub.example.com", true, None, &[], 10, "j");
        assert_eq!(c["iss"], "https://pub.example.com/");
        assert_eq!(c["aud"], "pub.example.com");
        assert_eq!(c["sub"], "");
        assert_eq!(c["groups"], json!([]));
        assert_eq!(claim_header_value(&c, "groups"), "");
        assert_eq!(claim_header_value(&c, "missing"), "");
    }

    #[test]
    fn claim_header_values() {
        let c = identity_claims("a", false, Some(&session()), &[], 10, "j");
        assert_eq!(claim_header_value(&c, "groups"), "admins,devs");
        assert_eq!(claim_header_value(&c, "email"), "alice@example.com");
        assert_eq!(claim_header_value(&c, "iat"), "10");
    }
}

/// How long a minted identity JWT is reused for the same session, version and host. The JWT
/// lives `IDENTITY_JWT_LIFETIME_SECS`, so an upstream always gets one valid for at least four
/// more minutes. (Pomerium mints one per request; signing per request cost two thirds of the
/// CPU of an authenticated request.)
pub const IDENTITY_REUSE_SECS: u64 = 60;
const IDENTITY_CACHE_MAX: usize = 50_000;

/// A minted identity: the JWT and the identity headers made from it.
#[derive(Debug)]
pub struct MintedIdentity {
    pub jwt: String,
    /// `X-Pomerium-Jwt-Assertion` and the `jwt_claims_headers`, ready to send.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    minted_at: u64,
}

/// What a minted identity depends on: the session (id and version), the route host and the
/// issuer format.
#[derive(Debug, Clone, Copy, Hash)]
pub struct IdentityKey<'a> {
    pub session: &'a str,
    pub version: u64,
    pub host: &'a str,
    pub issuer_uri_format: bool,
}

/// The owned form of `IdentityKey` held by the cache (hashes like it: `String` hashes as `str`).
#[derive(Debug, Hash, PartialEq, Eq)]
struct OwnedIdentityKey {
    session: String,
    version: u64,
    host: String,
    issuer_uri_format: bool,
}

impl quick_cache::Equivalent<OwnedIdentityKey> for IdentityKey<'_> {
    fn equivalent(&self, k: &OwnedIdentityKey) -> bool {
        self.session == k.session
            && self.version == k.version
            && self.host == k.host
            && self.issuer_uri_format == k.issuer_uri_format
    }
}

/// Recently minted identity JWTs (bounded, shared by the workers).
pub struct IdentityCache {
    entries: quick_cache::sync::Cache<OwnedIdentityKey, std::sync::Arc<MintedIdentity>>,
}

impl Default for IdentityCache {
    fn default() -> Self {
        IdentityCache {
            entries: quick_cache::sync::Cache::new(IDENTITY_CACHE_MAX),
        }
    }
}

impl std::fmt::Debug for IdentityCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCache")
            .field("len", &self.entries.len())
            .finish()
    }
}

impl IdentityCache {
    pub fn key<'a>(
        session: Option<&'a Session>,
        host: &'a str,
        issuer_uri_format: bool,
    ) -> IdentityKey<'a> {
        IdentityKey {
            session: session.map(|s| s.id.as_str()).unwrap_or(""),
            version: session.map(|s| s.version).unwrap_or(0),
            host,
            issuer_uri_format,
        }
    }

    /// The cached identity for `key` if minted less than `IDENTITY_REUSE_SECS` ago.
    pub fn get(&self, key: &IdentityKey<'_>, now: u64) -> Option<std::sync::Arc<MintedIdentity>> {
        self.entries
            .get(key)
            .filter(|m| now.saturating_sub(m.minted_at) < IDENTITY_REUSE_SECS)
    }

    pub fn insert(
        &self,
        key: &IdentityKey<'_>,
        jwt: String,
        headers: Vec<(HeaderName, HeaderValue)>,
        now: u64,
    ) -> std::sync::Arc<MintedIdentity> {
        let minted = std::sync::Arc::new(MintedIdentity {
            jwt,
            headers,
            minted_at: now,
        });
        let owned = OwnedIdentityKey {
            session: key.session.to_string(),
            version: key.version,
            host: key.host.to_string(),
            issuer_uri_format: key.issuer_uri_format,
        };
        self.entries.insert(owned, minted.clone());
        minted
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn reuse_window_and_keys() {
        let cache = IdentityCache::default();
        let mut s = Session::new_for_test("sid", "alice");
        let k = IdentityCache::key(Some(&s), "app.test", false);
        cache.insert(&k, "jwt1".into(), vec![], 1000);
        assert_eq!(cache.get(&k, 1059).unwrap().jwt, "jwt1");
        assert!(
            cache.get(&k, 1060).is_none(),
            "re-minted after the reuse window"
        );
        // A refreshed session (new version), another host, another issuer format or no
        // session: different identities.
        let s0 = s.clone();
        s.version = 1;
        assert!(cache
            .get(&IdentityCache::key(Some(&s), "app.test", false), 1001)
            .is_none());
        assert!(cache
            .get(&IdentityCache::key(None, "app.test", false), 1001)
            .is_none());
        assert!(cache
            .get(&IdentityCache::key(Some(&s0), "other.test", false), 1001)
            .is_none());
        assert!(cache
            .get(&IdentityCache::key(Some(&s0), "app.test", true), 1001)
            .is_none());
        assert!(cache
            .get(&IdentityCache::key(Some(&s0), "app.test", false), 1001)
            .is_some());
        const { assert!(IDENTITY_REUSE_SECS * 4 <= IDENTITY_JWT_LIFETIME_SECS) };
    }
}
