//! OAuth `state` (spec 2.4), the CSRF cookie it is bound to, the PKCE verifier cookie and the
//! OIDC nonce. All keyed with cookie_secret.
//!
//! state = base64url_padded(csrf "|" unixTime "|" traceID "|" AEAD(return URL, aad = csrf|unixTime|traceID|))

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::crypto::{
    b64_decode_any, b64url, b64url_padded, ct_eq, hmac_sha256, open, random_bytes, seal, Secret32,
};

/// Accepted clock distance for `state` timestamps (±5 min).
pub const STATE_MAX_AGE_SECS: u64 = 300;
/// CSRF cookie lifetime (`Max-Age=43200`).
pub const CSRF_MAX_AGE_SECS: u64 = 43200;
/// PKCE cookie lifetime.
pub const PKCE_MAX_AGE_SECS: u64 = 300;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StateError {
    #[error("state malformed, size: {0}")]
    Malformed(usize),
    #[error("state cannot be decrypted")]
    Decrypt,
    #[error("The request expired. This may be because a login attempt took too long, or because the server's clock is wrong.")]
    Expired,
    #[error("invalid CSRF token")]
    Csrf,
}

/// A decoded, authenticated `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    pub csrf: String,
    pub issued: u64,
    pub trace_id: String,
    pub return_url: String,
}

fn aad(csrf: &str, issued: u64, trace: &str) -> String {
    format!("{csrf}|{issued}|{trace}|")
}

pub fn encode_state(
    key: &Secret32,
    csrf: &str,
    issued: u64,
    trace_id: &str,
    return_url: &str,
) -> String {
    let prefix = aad(csrf, issued, trace_id);
    let mut raw = prefix.clone().into_bytes();
    raw.extend_from_slice(&seal(key, return_url.as_bytes(), prefix.as_bytes()));
    b64url_padded(&raw)
}

/// Decodes and authenticates `state`; checks its time is within ±5 min of `now`.
pub fn decode_state(key: &Secret32, state: &str, now: u64) -> Result<OAuthState, StateError> {
    let raw = b64_decode_any(state).ok_or(StateError::Malformed(0))?;
    let parts: Vec<&[u8]> = raw.splitn(4, |b| *b == b'|').collect();
    if parts.len() != 4 {
        return Err(StateError::Malformed(parts.len()));
    }
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| StateError::Malformed(4));
    let csrf = text(parts[0])?;
    let issued: u64 = text(parts[1])?
        .parse()
        .map_err(|_| StateError::Malformed(4))?;
    let trace_id = text(parts[2])?;
    let plain =
        open(key, parts[3], aad(&csrf, issued, &trace_id).as_bytes()).ok_or(StateError::Decrypt)?;
    if now.abs_diff(issued) > STATE_MAX_AGE_SECS {
        return Err(StateError::Expired);
    }
    Ok(OAuthState {
        csrf,
        issued,
        trace_id,
        return_url: String::from_utf8(plain).map_err(|_| StateError::Decrypt)?,
    })
}

/// A fresh CSRF token (base64url of 32 random bytes).
pub fn new_csrf_token() -> String {
    b64url(&random_bytes::<32>())
}

fn csrf_mac(key: &Secret32, name: &str, token: &str, ts: u64) -> Vec<u8> {
    hmac_sha256(&key.0, format!("csrf|{name}|{token}|{ts}").as_bytes())
}

/// CSRF cookie value: `token.ts.mac` (signed with cookie_secret).
pub fn csrf_cookie_value(key: &Secret32, name: &str, token: &str, now: u64) -> String {
    format!("{token}.{now}.{}", b64url(&csrf_mac(key, name, token, now)))
}

/// Verifies the CSRF cookie and that it matches the token carried in `state`.
pub fn check_csrf(
    key: &Secret32,
    name: &str,
    cookie: Option<&str>,
    state_csrf: &str,
    now: u64,
) -> Result<(), StateError> {
    let cookie = cookie.ok_or(StateError::Csrf)?;
    let mut it = cookie.splitn(3, '.');
    let (token, ts, mac) = match (it.next(), it.next(), it.next()) {
        (Some(t), Some(ts), Some(m)) => (t, ts, m),
        _ => return Err(StateError::Csrf),
    };
    let ts: u64 = ts.parse().map_err(|_| StateError::Csrf)?;
    let mac = b64_decode_any(mac).ok_or(StateError::Csrf)?;
    if !ct_eq(&csrf_mac(key, name, token, ts), &mac)
        || now.saturating_sub(ts) > CSRF_MAX_AGE_SECS
        || !ct_eq(token.as_bytes(), state_csrf.as_bytes())
    {
        return Err(StateError::Csrf);
    }
    Ok(())
}

/// Name of the PKCE cookie bound to one sign-in attempt (`<cookie_name>_pkce_<hash>`).
pub fn pkce_cookie_name(prefix: &str, csrf: &str) -> String {
    let h = Sha256::digest(csrf.as_bytes());
    format!("{prefix}{}", &b64url(&h)[..16])
}

pub fn pkce_cookie_value(key: &Secret32, name: &str, verifier: &str) -> String {
    b64url(&seal(key, verifier.as_bytes(), name.as_bytes()))
}

pub fn pkce_verifier(key: &Secret32, name: &str, value: &str) -> Option<String> {
    let sealed = b64_decode_any(value)?;
    String::from_utf8(open(key, &sealed, name.as_bytes())?).ok()
}

/// The OIDC nonce for a sign-in attempt, derived from its CSRF token and time so the callback can
/// recompute it without another cookie.
pub fn nonce_for(key: &Secret32, csrf: &str, issued: u64) -> String {
    b64url(&hmac_sha256(
        &key.0,
        format!("nonce|{csrf}|{issued}").as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: Secret32 = Secret32([1; 32]);

    #[test]
    fn state_round_trip() {
        let s = encode_state(&K, "tok", 1000, "trace", "https://a.example.com/x?y");
        let d = decode_state(&K, &s, 1100).unwrap();
        assert_eq!(d.return_url, "https://a.example.com/x?y");
        assert_eq!(d.csrf, "tok");
        assert_eq!(d.issued, 1000);
    }

    #[test]
    fn expired_state() {
        let s = encode_state(&K, "tok", 1000, "t", "u");
        assert_eq!(decode_state(&K, &s, 1301), Err(StateError::Expired));
        assert_eq!(decode_state(&K, &s, 699), Err(StateError::Expired));
        assert!(decode_state(&K, &s, 1300).is_ok());
    }

    #[test]
    fn malformed_or_foreign_state() {
        assert_eq!(
            decode_state(&K, &b64url_padded(b"a|b"), 0),
            Err(StateError::Malformed(2))
        );
        let s = encode_state(&K, "tok", 1000, "t", "u");
        assert_eq!(
            decode_state(&Secret32([2; 32]), &s, 1000),
            Err(StateError::Decrypt)
        );
        // Changing the clear csrf part breaks the AEAD binding.
        let raw = b64_decode_any(&s).unwrap();
        let mut forged = b"tak".to_vec();
        forged.extend_from_slice(&raw[3..]);
        assert_eq!(
            decode_state(&K, &b64url_padded(&forged), 1000),
            Err(StateError::Decrypt)
        );
        assert_eq!(decode_state(&K, "%%%", 0), Err(StateError::Malformed(0)));
    }

    #[test]
    fn csrf_cookie_checks() {
        let tok = new_csrf_token();
        let v = csrf_cookie_value(&K, "_pomerium_csrf", &tok, 1000);
        assert_eq!(
            check_csrf(&K, "_pomerium_csrf", Some(&v), &tok, 1000),
            Ok(())
        );
        // wrong CSRF: cookie from another attempt
        let other = new_csrf_token();
        assert_eq!(
            check_csrf(&K, "_pomerium_csrf", Some(&v), &other, 1000),
            Err(StateError::Csrf)
        );
        // missing cookie
        assert_eq!(
            check_csrf(&K, "_pomerium_csrf", None, &tok, 1000),
            Err(StateError::Csrf)
        );
        // forged cookie (token swapped, mac kept)
        let forged = v.replacen(&tok, &other, 1);
        assert_eq!(
            check_csrf(&K, "_pomerium_csrf", Some(&forged), &other, 1000),
            Err(StateError::Csrf)
        );
        // too old
        assert_eq!(
            check_csrf(
                &K,
                "_pomerium_csrf",
                Some(&v),
                &tok,
                1000 + CSRF_MAX_AGE_SECS + 1
            ),
            Err(StateError::Csrf)
        );
    }

    #[test]
    fn pkce_cookie_round_trip() {
        let name = pkce_cookie_name("_pomerium_pkce_", "tok");
        assert!(name.starts_with("_pomerium_pkce_"));
        assert_ne!(name, pkce_cookie_name("_pomerium_pkce_", "tok2"));
        let v = pkce_cookie_value(&K, &name, "verifier");
        assert_eq!(pkce_verifier(&K, &name, &v).as_deref(), Some("verifier"));
        assert_eq!(pkce_verifier(&K, "_pomerium_pkce_other", &v), None);
        assert_eq!(pkce_verifier(&Secret32([3; 32]), &name, &v), None);
    }

    #[test]
    fn nonce_is_deterministic_per_attempt() {
        assert_eq!(nonce_for(&K, "a", 1), nonce_for(&K, "a", 1));
        assert_ne!(nonce_for(&K, "a", 1), nonce_for(&K, "a", 2));
        assert_ne!(nonce_for(&K, "a", 1), nonce_for(&Secret32([5; 32]), "a", 1));
    }
}
