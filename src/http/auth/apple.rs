//! Sign in with Apple (`idp_provider: apple`, Pomerium's `apple` provider).
//!
//! Apple is an OpenID provider at `https://appleid.apple.com` with two quirks handled here and
//! in [`super::oidc`]: the client secret is an ES256 JWT signed with the team's private key
//! (`iss` = team id, `sub` = client id, `aud` = `https://appleid.apple.com`, at most six months
//! long), sent in the token request body; and when `name`/`email` are requested the callback
//! arrives as a form POST (`response_mode=form_post`).
//!
//! `idp_client_secret` is either that JWT, made by the user (as with Pomerium), or the private
//! key itself (the `.p8` file Apple hands out, PEM or base64 PEM) together with
//! `idp_apple_team_id` and `idp_apple_key_id`: rampart then signs a fresh short-lived secret
//! whenever it fetches the provider metadata.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::Serialize;

use super::crypto::b64_decode_any;
use super::settings::AuthConfigError;

pub const APPLE_ISSUER: &str = "https://appleid.apple.com";
/// Pomerium's defaults for Apple.
pub const APPLE_SCOPES: [&str; 2] = ["name", "email"];
/// How long a generated client secret is valid (Apple allows up to 6 months; metadata, and so
/// the secret, is refreshed every 10 minutes).
pub const CLIENT_SECRET_TTL_SECS: u64 = 3600;

/// The team's private key for signing client secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct AppleKey {
    pub team_id: String,
    pub key_id: String,
    pub key: p256::SecretKey,
}

impl std::fmt::Debug for AppleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppleKey")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct SecretClaims<'a> {
    iss: &'a str,
    iat: u64,
    exp: u64,
    aud: &'a str,
    sub: &'a str,
}

impl AppleKey {
    /// The client secret JWT for `client_id` at time `now`.
    pub fn client_secret(&self, client_id: &str, now: u64) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = SecretClaims {
            iss: &self.team_id,
            iat: now,
            exp: now + CLIENT_SECRET_TTL_SECS,
            aud: APPLE_ISSUER,
            sub: client_id,
        };
        let der = self
            .key
            .to_pkcs8_der()
            .expect("a P-256 key encodes as PKCS#8");
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(der.as_bytes()))
            .expect("ES256 signing with a valid P-256 key")
    }
}

/// Whether `idp_client_secret` holds a private key rather than a ready client secret.
pub fn looks_like_key(secret: &str) -> bool {
    let s = secret.trim();
    if s.contains("-----BEGIN") {
        return true;
    }
    b64_decode_any(s)
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|t| t.contains("-----BEGIN"))
}

/// Parses the team's private key (`AuthKey_<KEYID>.p8`: PKCS#8 PEM; SEC1 PEM also accepted;
/// either may be base64-encoded).
pub fn parse_key(text: &str) -> Result<p256::SecretKey, AuthConfigError> {
    let err = |m: &str| AuthConfigError {
        key: "idp_client_secret",
        message: format!("idp_provider apple: {m}"),
    };
    let text = text.trim();
    let pem = if text.contains("-----BEGIN") {
        text.to_string()
    } else {
        b64_decode_any(text)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| err("expected a PEM private key or base64-encoded PEM"))?
    };
    if pem.contains("RSA PRIVATE KEY") {
        return Err(err(
            "an RSA key cannot sign Apple client secrets; use the EC P-256 key (.p8) from the Apple developer account",
        ));
    }
    p256::SecretKey::from_pkcs8_pem(&pem)
        .ok()
        .or_else(|| p256::SecretKey::from_sec1_pem(&pem).ok())
        .ok_or_else(|| {
            err("not an EC P-256 private key in PEM form (the AuthKey_<KEYID>.p8 file from Apple)")
        })
}

/// The signing key of an Apple configuration whose client secret is a private key; `None`
/// when the secret is a ready JWT (used as is). Missing team or key ids are errors.
pub fn apple_key(
    secret: &str,
    team_id: Option<&str>,
    key_id: Option<&str>,
) -> Result<Option<AppleKey>, AuthConfigError> {
    if !looks_like_key(secret) {
        return Ok(None);
    }
    let key = parse_key(secret)?;
    let need = |k: &'static str, v: Option<&str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| AuthConfigError {
                key: k,
                message: "required for idp_provider apple when idp_client_secret is a private key"
                    .into(),
            })
    };
    Ok(Some(AppleKey {
        team_id: need("idp_apple_team_id", team_id)?,
        key_id: need("idp_apple_key_id", key_id)?,
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    fn key() -> p256::SecretKey {
        p256::SecretKey::from_slice(&[3; 32]).unwrap()
    }

    #[test]
    fn client_secret_is_an_es256_jwt_apple_accepts() {
        let k = AppleKey {
            team_id: "TEAM123456".into(),
            key_id: "KEY1234567".into(),
            key: key(),
        };
        let jwt = k.client_secret("com.example.web", 1_700_000_000);
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some("KEY1234567"));
        let public = key()
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[APPLE_ISSUER]);
        v.set_issuer(&["TEAM123456"]);
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &DecodingKey::from_ec_pem(public.as_bytes()).unwrap(),
            &v,
        )
        .expect("signature verifies with the team's public key");
        let c = data.claims;
        assert_eq!(c["iss"], "TEAM123456");
        assert_eq!(c["sub"], "com.example.web");
        assert_eq!(c["aud"], APPLE_ISSUER);
        assert_eq!(c["iat"], 1_700_000_000u64);
        assert_eq!(c["exp"], 1_700_000_000u64 + CLIENT_SECRET_TTL_SECS);
        const {
            assert!(
                CLIENT_SECRET_TTL_SECS <= 180 * 86400,
                "Apple's 6-month limit"
            )
        };

        // Another key's signature does not verify.
        let other = p256::SecretKey::from_slice(&[4; 32])
            .unwrap()
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        assert!(jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &DecodingKey::from_ec_pem(other.as_bytes()).unwrap(),
            &v
        )
        .is_err());
    }

    #[test]
    fn keys_in_pem_and_base64_pem_and_clear_errors() {
        use base64::Engine;
        let pem = key().to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        assert!(looks_like_key(&pem));
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem.as_bytes());
        assert!(looks_like_key(&b64));
        assert_eq!(parse_key(&b64).unwrap(), key());
        let sec1 = key().to_sec1_pem(LineEnding::LF).unwrap().to_string();
        assert_eq!(parse_key(&sec1).unwrap(), key());
        // A ready JWT secret is not a key: used as is.
        assert!(!looks_like_key("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ0In0.c2ln"));
        assert_eq!(
            apple_key("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ0In0.c2ln", None, None).unwrap(),
            None
        );

        let e = parse_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap_err();
        assert_eq!(e.key, "idp_client_secret");
        assert!(e.message.contains("not an EC P-256 private key"), "{e}");
        let e = parse_key("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")
            .unwrap_err();
        assert!(e.message.contains("RSA"), "{e}");

        let e = apple_key(&pem, None, Some("K")).unwrap_err();
        assert_eq!(e.key, "idp_apple_team_id");
        let e = apple_key(&pem, Some("T"), Some(" ")).unwrap_err();
        assert_eq!(e.key, "idp_apple_key_id");
        let k = apple_key(&pem, Some("T"), Some("K")).unwrap().unwrap();
        assert_eq!((k.team_id.as_str(), k.key_id.as_str()), ("T", "K"));
    }
}
