//! Signed URLs (spec 2.2): every cross-host redirect carries `pomerium_issued`,
//! `pomerium_expiry` and `pomerium_signature = base64url(HMAC-SHA-512/256(shared_secret,
//! url + issued + " " + expiry))`, with the query re-encoded Go-style (keys sorted).

use thiserror::Error;

use super::crypto::{b64_decode_any, b64url_padded, ct_eq, hmac_sha512_256};

pub const ISSUED: &str = "pomerium_issued";
pub const EXPIRY: &str = "pomerium_expiry";
pub const SIGNATURE: &str = "pomerium_signature";
/// Lifetime of a signed URL and the clock leeway, both 5 minutes.
pub const LIFETIME_SECS: u64 = 300;
pub const LEEWAY_SECS: u64 = 300;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignedUrlError {
    #[error("missing or malformed pomerium_signature")]
    MissingSignature,
    #[error("malformed pomerium_issued or pomerium_expiry")]
    MalformedTimes,
    #[error("signed URL expired")]
    Expired,
    #[error("signed URL issued in the future")]
    IssuedInFuture,
    #[error("invalid signature")]
    BadSignature,
}

/// Splits a URL string into (part before the query, query pairs, fragment).
fn split(url: &str) -> (&str, Vec<(String, String)>, Option<&str>) {
    let (rest, fragment) = match url.find('#') {
        Some(i) => (&url[..i], Some(&url[i + 1..])),
        None => (url, None),
    };
    let (base, query) = match rest.find('?') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let pairs = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (base, pairs, fragment)
}

/// Go's `url.QueryEscape`.
pub fn go_query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.Values.Encode`: keys sorted (stable, so repeated keys keep their order).
pub fn go_encode_query(pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", go_query_escape(k), go_query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn join(base: &str, query: &str, fragment: Option<&str>) -> String {
    let mut s = base.to_string();
    if !query.is_empty() {
        s.push('?');
        s.push_str(query);
    }
    if let Some(f) = fragment {
        s.push('#');
        s.push_str(f);
    }
    s
}

/// Builds `base?query` from parts, Go-encoded (useful for URLs that will be signed).
pub fn build_url(base: &str, params: &[(&str, &str)]) -> String {
    let pairs: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    join(base, &go_encode_query(&pairs), None)
}

fn mac(key: &[u8], url: &str, issued: u64, expiry: u64) -> Vec<u8> {
    hmac_sha512_256(key, format!("{url}{issued} {expiry}").as_bytes())
}

/// Signs `url` at time `now` (unix seconds).
pub fn sign_url(key: &[u8], url: &str, now: u64) -> String {
    let (base, mut pairs, fragment) = split(url);
    pairs.retain(|(k, _)| k != ISSUED && k != EXPIRY && k != SIGNATURE);
    let issued = now;
    let expiry = now + LIFETIME_SECS;
    pairs.push((ISSUED.into(), issued.to_string()));
    pairs.push((EXPIRY.into(), expiry.to_string()));
    let unsigned = join(base, &go_encode_query(&pairs), fragment);
    let sig = b64url_padded(&mac(key, &unsigned, issued, expiry));
    pairs.push((SIGNATURE.into(), sig));
    join(base, &go_encode_query(&pairs), fragment)
}

/// Checks a signed URL (as received: scheme://host/path?query) at time `now`.
pub fn verify_signed_url(key: &[u8], url: &str, now: u64) -> Result<(), SignedUrlError> {
    let (base, mut pairs, fragment) = split(url);
    let sig = pairs
        .iter()
        .find(|(k, _)| k == SIGNATURE)
        .and_then(|(_, v)| b64_decode_any(v))
        .ok_or(SignedUrlError::MissingSignature)?;
    pairs.retain(|(k, _)| k != SIGNATURE);
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<u64>().ok())
    };
    let (issued, expiry) = match (get(ISSUED), get(EXPIRY)) {
        (Some(i), Some(e)) => (i, e),
        _ => return Err(SignedUrlError::MalformedTimes),
    };
    if now.saturating_sub(LEEWAY_SECS) > expiry {
        return Err(SignedUrlError::Expired);
    }
    if now + LEEWAY_SECS < issued {
        return Err(SignedUrlError::IssuedInFuture);
    }
    let unsigned = join(base, &go_encode_query(&pairs), fragment);
    if ct_eq(&mac(key, &unsigned, issued, expiry), &sig) {
        Ok(())
    } else {
        Err(SignedUrlError::BadSignature)
    }
}

/// First value of a query parameter in a URL string (form-decoded).
pub fn query_param(url: &str, name: &str) -> Option<String> {
    split(url)
        .1
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = "https://pomerium.io?pomerium_expiry=1574118151&pomerium_issued=1574117851&pomerium_signature=XtvM-Y-oPvoGGV2Q5G0vrQ_CgNeYhVyTG5dHIqLsBOU%3D";

    #[test]
    fn pomerium_test_vector() {
        assert_eq!(
            sign_url(b"test-key", "https://pomerium.io", 1574117851),
            VECTOR
        );
        assert_eq!(verify_signed_url(b"test-key", VECTOR, 1574117851), Ok(()));
    }

    #[test]
    fn rejects_wrong_key_tampering_and_time() {
        assert_eq!(
            verify_signed_url(b"other-key", VECTOR, 1574117851),
            Err(SignedUrlError::BadSignature)
        );
        let tampered = VECTOR.replace("pomerium.io", "evil.io");
        assert_eq!(
            verify_signed_url(b"test-key", &tampered, 1574117851),
            Err(SignedUrlError::BadSignature)
        );
        let extra = VECTOR.replace("pomerium.io?", "pomerium.io?a=b&");
        assert_eq!(
            verify_signed_url(b"test-key", &extra, 1574117851),
            Err(SignedUrlError::BadSignature)
        );
        // within leeway after expiry: ok; beyond: expired
        assert_eq!(
            verify_signed_url(b"test-key", VECTOR, 1574118151 + 300),
            Ok(())
        );
        assert_eq!(
            verify_signed_url(b"test-key", VECTOR, 1574118151 + 301),
            Err(SignedUrlError::Expired)
        );
        assert_eq!(
            verify_signed_url(b"test-key", VECTOR, 1574117851 - 301),
            Err(SignedUrlError::IssuedInFuture)
        );
        assert_eq!(
            verify_signed_url(b"test-key", "https://pomerium.io?x=1", 1),
            Err(SignedUrlError::MissingSignature)
        );
    }

    #[test]
    fn round_trip_with_existing_query_and_encoding() {
        let url = build_url(
            "https://authenticate.example.com/.pomerium/sign_in",
            &[("pomerium_redirect_uri", "https://app.example.com/x?y=1 2&z")],
        );
        assert!(
            url.contains("pomerium_redirect_uri=https%3A%2F%2Fapp.example.com%2Fx%3Fy%3D1+2%26z")
        );
        let signed = sign_url(b"k", &url, 1000);
        assert_eq!(verify_signed_url(b"k", &signed, 1100), Ok(()));
        assert_eq!(
            query_param(&signed, "pomerium_redirect_uri").unwrap(),
            "https://app.example.com/x?y=1 2&z"
        );
        // Re-signing replaces old signature parameters.
        let resigned = sign_url(b"k", &signed, 2000);
        assert_eq!(resigned.matches(SIGNATURE).count(), 1);
        assert_eq!(verify_signed_url(b"k", &resigned, 2000), Ok(()));
    }
}
