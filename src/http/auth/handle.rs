//! The session handle: the `_pomerium` cookie value, a JWT (HS256 with shared_secret) that points
//! at a stored session (spec 2.5). Signed, not encrypted; it holds no tokens. For the hop from the
//! authenticate host to a route host it travels encrypted (`pomerium_session_encrypted`).
//! Its audience is the authenticate host and the route host it was issued for: a handle is
//! accepted only there, or on hosts the session cookie's `cookie_domain` shares with them.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::crypto::{b64_decode_any, b64url, open, seal, Secret32};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionHandle {
    pub iss: String,
    pub aud: Vec<String>,
    pub iat: u64,
    /// Session id.
    pub jti: String,
    /// User id (IdP `sub`).
    pub sub: String,
    pub idp_id: String,
    #[serde(default)]
    pub databroker_server_version: u64,
    #[serde(default)]
    pub databroker_record_version: u64,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HandleError {
    #[error("invalid session cookie: {0}")]
    Invalid(String),
    #[error("cannot decrypt session")]
    Decrypt,
}

impl SessionHandle {
    pub fn sign(&self, shared_secret: &Secret32) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            self,
            &EncodingKey::from_secret(&shared_secret.0),
        )
        .expect("HS256 encoding of a plain struct cannot fail")
    }

    pub fn verify(token: &str, shared_secret: &Secret32) -> Result<SessionHandle, HandleError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_aud = false;
        jsonwebtoken::decode::<SessionHandle>(
            token,
            &DecodingKey::from_secret(&shared_secret.0),
            &v,
        )
        .map(|d| d.claims)
        .map_err(|e| HandleError::Invalid(e.to_string()))
    }

    /// Whether this handle may be used on `host` (lower-case, no port): `host` is one of its
    /// audiences, or `cookie_domain` covers both `host` and one of the audiences (the browser
    /// sends such a cookie to every host of that domain).
    pub fn valid_for_host(&self, host: &str, cookie_domain: Option<&str>) -> bool {
        if host.is_empty() {
            return false;
        }
        if self.aud.iter().any(|a| a.eq_ignore_ascii_case(host)) {
            return true;
        }
        cookie_domain
            .is_some_and(|d| domain_covers(d, host) && self.aud.iter().any(|a| domain_covers(d, a)))
    }

    /// `pomerium_session_encrypted` value: the signed JWT sealed with shared_secret.
    pub fn encrypt(&self, shared_secret: &Secret32) -> String {
        b64url(&seal(
            shared_secret,
            self.sign(shared_secret).as_bytes(),
            b"session",
        ))
    }

    pub fn decrypt(value: &str, shared_secret: &Secret32) -> Result<SessionHandle, HandleError> {
        let sealed = b64_decode_any(value).ok_or(HandleError::Decrypt)?;
        let jwt = open(shared_secret, &sealed, b"session").ok_or(HandleError::Decrypt)?;
        let jwt = String::from_utf8(jwt).map_err(|_| HandleError::Decrypt)?;
        SessionHandle::verify(&jwt, shared_secret)
    }
}

/// Whether a cookie with `Domain=domain` is sent to `host` (RFC 6265 domain match).
pub fn domain_covers(domain: &str, host: &str) -> bool {
    let d = domain.trim().trim_start_matches('.');
    if d.is_empty() || host.len() < d.len() {
        return false;
    }
    let (head, tail) = host.split_at(host.len() - d.len());
    tail.eq_ignore_ascii_case(d) && (head.is_empty() || head.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> SessionHandle {
        SessionHandle {
            iss: "authenticate.example.com".into(),
            aud: vec!["authenticate.example.com".into(), "app.example.com".into()],
            iat: 1_700_000_000,
            jti: "sess-1".into(),
            sub: "alice".into(),
            idp_id: "idp".into(),
            databroker_server_version: 1,
            databroker_record_version: 2,
        }
    }

    #[test]
    fn sign_verify_round_trip() {
        let k = Secret32([3; 32]);
        let t = handle().sign(&k);
        assert_eq!(SessionHandle::verify(&t, &k).unwrap(), handle());
    }

    #[test]
    fn tampered_or_foreign_cookie_is_rejected() {
        let k = Secret32([3; 32]);
        let t = handle().sign(&k);
        assert!(SessionHandle::verify(&t, &Secret32([4; 32])).is_err());
        // swap the payload for one naming another session
        let mut other = handle();
        other.jti = "sess-2".into();
        let t2 = other.sign(&Secret32([4; 32]));
        let parts: Vec<&str> = t.split('.').collect();
        let parts2: Vec<&str> = t2.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], parts2[1], parts[2]);
        assert!(SessionHandle::verify(&forged, &k).is_err());
        assert!(SessionHandle::verify("garbage", &k).is_err());
        // alg none is not accepted
        let none = format!("eyJhbGciOiJub25lIn0.{}.", parts[1]);
        assert!(SessionHandle::verify(&none, &k).is_err());
    }

    #[test]
    fn audience_is_checked_against_the_host_and_cookie_domain() {
        let h = handle();
        assert!(h.valid_for_host("app.example.com", None));
        assert!(h.valid_for_host("authenticate.example.com", None));
        assert!(!h.valid_for_host("other.example.com", None));
        assert!(!h.valid_for_host("evil.example", None));
        assert!(!h.valid_for_host("", None));
        // A shared cookie domain covers its hosts, not others.
        assert!(h.valid_for_host("other.example.com", Some("example.com")));
        assert!(h.valid_for_host("other.example.com", Some(".example.com")));
        assert!(!h.valid_for_host("evil.example", Some("example.com")));
        assert!(!h.valid_for_host("notexample.com", Some("example.com")));
        // The domain must also cover an audience.
        assert!(!h.valid_for_host("b.other.org", Some("other.org")));
    }

    #[test]
    fn cookie_domain_matching() {
        assert!(domain_covers("example.com", "example.com"));
        assert!(domain_covers(".example.com", "a.b.example.com"));
        assert!(domain_covers("Example.COM", "a.example.com"));
        assert!(!domain_covers("example.com", "badexample.com"));
        assert!(!domain_covers("a.example.com", "example.com"));
        assert!(!domain_covers("", "example.com"));
    }

    #[test]
    fn encrypted_transport() {
        let k = Secret32([3; 32]);
        let e = handle().encrypt(&k);
        assert!(!e.contains("alice"));
        assert_eq!(SessionHandle::decrypt(&e, &k).unwrap(), handle());
        assert_eq!(
            SessionHandle::decrypt(&e, &Secret32([9; 32])),
            Err(HandleError::Decrypt)
        );
        assert_eq!(SessionHandle::decrypt("!!", &k), Err(HandleError::Decrypt));
    }
}
